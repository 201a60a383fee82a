package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"runtime/debug"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/metrics"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

// serveMemoryLimit is the server's soft memory limit (GOMEMLIMIT
// overrides it): the garbage collector works harder as the heap nears it,
// so concurrent reads of large results stay within a small footprint
// (BenchmarkLargeResult: 174 MB peak RSS without it).
const serveMemoryLimit = 96 << 20

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(serveMemoryLimit)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings
	if err := s.register(fs, args); err != nil {
		return err
	}
	httpAddr := fs.String("http", envOr("NMAP_MCP_HTTP", ""), "serve MCP streamable HTTP at ADDR/mcp instead of stdio, e.g. "+s.HTTP.Addr+" (env NMAP_MCP_HTTP)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: nmap-mcp serve [--http ADDR] [flags]\n\nServe MCP over stdio (default; stdout carries only the protocol, logs go to stderr or --log-file),\nor over streamable HTTP with --http (see http in the config file for tokens, origins and TLS).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if err := s.parsed(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	logger, closeLog, err := s.logger(stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	if s.Concurrency() < 1 || s.Queue.Size < 0 || s.Queue.TimeoutSeconds < 0 {
		return fmt.Errorf("max-concurrent %d, queue-size %d, queue-timeout %d: need at least 1 running scan and no negative bound",
			s.Concurrency(), s.Queue.Size, s.Queue.TimeoutSeconds)
	}
	perClient := s.Queue.PerClient
	if perClient == 0 && (*httpAddr == "" || len(s.HTTP.Tokens) == 0) {
		// One client only (stdio, or HTTP without tokens: "local"): no
		// share to keep; the queue's own bound applies.
		perClient = math.MaxInt32
	}
	var svc *scans.Service
	meters := metrics.New(func() (int, int) {
		if svc == nil {
			return 0, 0
		}
		return svc.QueueStats()
	})
	st, err := bringUp(ctx, &s, logger, stderr, meters, false, scans.Config{Concurrency: s.Concurrency(), QueueSize: s.Queue.Size,
		MaxQueueWait: time.Duration(s.Queue.TimeoutSeconds) * time.Second, PerClient: perClient})
	if err != nil {
		return err
	}
	defer st.close()
	svc = st.scans
	go st.retain(ctx, s.Store.Keep, logger)
	// Without an engine the server starts anyway: nmap_version and
	// /healthz say so, and scans work once it answers.
	engineVersion, err := st.version(ctx)
	if err != nil {
		engineVersion = "not answering"
	}
	// Watches run while the server runs; on the way out they stop first,
	// then the scans service is closed, then their runs are waited for.
	subs := mcpserver.NewSubscriptions()
	wcfg := watchConfig(&s)
	wcfg.WebhookOutcome = meters.Webhook
	watch := watches.New(st.store, svc, wcfg, logger)
	watch.Notify = subs.Changed
	watchCtx, stopWatches := context.WithCancel(ctx)
	watchesDone := make(chan struct{})
	go func() { defer close(watchesDone); watch.Run(watchCtx) }()
	defer func() { stopWatches(); <-watchesDone }()
	delivery := mcpserver.NewDelivery()
	srv := mcpserver.New(mcpserver.Deps{Scans: svc, Watches: watch, Subscriptions: subs, Delivery: delivery, Log: logger, Refused: meters.Refused,
		Info: mcpserver.Info{ServerVersion: version, EngineVersion: engineVersion, Engine: st.version}})
	if *httpAddr != "" {
		return serveHTTP(ctx, &s, *httpAddr, st, srv, watch, delivery, meters, logger)
	}
	stdio := server.NewStdioServer(srv)
	stdio.SetErrorLogger(log.New(stderr, "nmap-mcp: ", log.LstdFlags))
	logger.Info("serving MCP on stdio", "image", svc.Image().Tag, "engine", engineVersion, "store", st.store.Path())
	err = stdio.Listen(ctx, os.Stdin, delivery.Writer(os.Stdout))
	stopWatches()
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if cerr := svc.Close(wctx); cerr != nil {
		logger.Warn("some scans or their containers did not stop in time; the next start-up sweep removes what is left", "err", cerr)
	}
	cancel()
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		logger.Info("stdio closed; exiting")
		return nil
	}
	return fmt.Errorf("serve stdio: %w", err)
}

// flagErr turns -h into a clean exit and other flag errors into exit 2.
func flagErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return &exitCode{2}
}
