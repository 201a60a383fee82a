package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/auth"
	"github.com/nmap-mcp/nmap-mcp/internal/httpapi"
	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
)

// serving is what both transports share while the App serves: retention,
// the watches and the MCP server.
type serving struct {
	mcp      *server.MCPServer
	tasks    *mcpserver.Tasks
	delivery *mcpserver.Delivery
	cancel   context.CancelFunc // stops retention and the watches
	wait     func()             // waits for them to stop
}

// startServing starts retention and the watches and builds the MCP
// server. Without an engine the server starts anyway: nmap_version and
// /healthz say so, and scans work once it answers.
//
// approvalsURL is the web view's page of scans waiting for approval (""
// without a web view: such scans are then refused unless the client can
// ask its user).
//
// tasks: the transport passes requests through serving.tasks, so nmap_scan
// may be called as an MCP task (mcpserver/tasks.go).
func (a *App) startServing(ctx context.Context, approvalsURL string, tasks bool) (*serving, string) {
	bg, cancel := context.WithCancel(ctx)
	retained := make(chan struct{})
	go func() { defer close(retained); a.store.PruneEvery(bg, time.Hour, a.opts.Keep, a.log) }()
	engineVersion, err := a.be.version(ctx)
	if err != nil {
		engineVersion = "not answering"
	}
	// Watches run while the server runs; on the way out they stop first,
	// then the scans service is closed, then their runs are waited for.
	subs := mcpserver.NewSubscriptions()
	a.watches.Notify = subs.Changed
	watchesDone := make(chan struct{})
	go func() { defer close(watchesDone); a.watches.Run(bg) }()
	// The inventory follows the history: every finished scan is ingested,
	// and what was not seen for inventory.gone_after is marked gone.
	inventoried := make(chan struct{})
	go func() { defer close(inventoried); a.inventory.Follow(bg, 5*time.Second, time.Hour, a.log) }()
	delivery := mcpserver.NewDelivery()
	deps := mcpserver.Deps{Scans: a.scans, Watches: a.watches, Inventory: a.inventory, Subscriptions: subs, Delivery: delivery, Log: a.log, Tasks: tasks,
		Refused: a.meters.Refused, ApprovalsURL: approvalsURL, Info: mcpserver.Info{ServerVersion: a.opts.ServerVersion, EngineVersion: engineVersion, Engine: a.be.version}}
	srv := mcpserver.New(deps)
	return &serving{mcp: srv, tasks: mcpserver.NewTasks(deps), delivery: delivery, cancel: cancel, wait: func() { <-watchesDone; <-retained; <-inventoried }}, engineVersion
}

// ServeStdio serves MCP over in and out (stdout carries only the
// protocol) until in ends or ctx does, then stops the watches and closes
// the scans service. errLog receives the transport's own errors.
func (a *App) ServeStdio(ctx context.Context, in io.Reader, out io.Writer, errLog io.Writer) error {
	s, engineVersion := a.startServing(ctx, "", true)
	defer func() { s.cancel(); s.wait() }()
	stdio := server.NewStdioServer(s.mcp)
	stdio.SetErrorLogger(log.New(errLog, "nmap-mcp: ", log.LstdFlags))
	a.log.Info("serving MCP on stdio", "image", a.scans.Image().Tag, "engine", engineVersion, "store", a.store.Path())
	in, w := s.tasks.Stdio(ctx, in, s.delivery.Writer(out))
	err := stdio.Listen(ctx, in, w)
	s.cancel()
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if cerr := a.scans.Close(wctx); cerr != nil {
		a.log.Warn("some scans or their containers did not stop in time; the next start-up sweep removes what is left", "err", cerr)
	}
	cancel()
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		a.log.Info("stdio closed; exiting")
		return nil
	}
	return fmt.Errorf("serve stdio: %w", err)
}

// ServeHTTP serves MCP over streamable HTTP at addr until ctx ends
// (SIGTERM or SIGINT), then drains: new calls get 503, running scans get
// the grace period, the rest are cancelled (their records say so), and no
// container is left.
func (a *App) ServeHTTP(ctx context.Context, addr string) error {
	s, _ := a.startServing(ctx, "the web view's approvals page, /approvals", true)
	defer func() { s.cancel(); s.wait() }()
	cfg := a.opts.HTTP
	cfg.Addr = addr
	tag := a.scans.Image().Tag // for logs; scans and health use the ID
	var (
		err   error
		front *httpapi.Server
	)
	var seen func(auth.Identity)
	if a.opts.Auth != nil {
		if cfg.Auth, cfg.Login, err = a.provider(addr); err != nil {
			return err
		}
		seen = func(id auth.Identity) { a.standing.Seen(ctx, id) }
	}
	front, err = httpapi.New(cfg, httpapi.Deps{MCP: s.mcp, Delivery: s.delivery, Health: a.be.health, Metrics: a.meters.Handler(),
		Refused: a.meters.Refused, Log: a.log, Scans: a.scans, AuditPath: a.opts.AuditPath, Watches: a.watches, Approvals: a.scans.Approvals(), Tasks: s.tasks, Inventory: a.inventory,
		Seen: seen})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	served := make(chan error, 1)
	go func() { served <- front.Serve(ln) }()
	a.log.Info("serving MCP over HTTP", "url", "http://"+ln.Addr().String()+"/mcp", "web", "http://"+ln.Addr().String()+"/", "tokens", len(cfg.Tokens),
		"image", tag, "store", a.store.Path())
	if a.opts.Listening != nil {
		a.opts.Listening(ln.Addr())
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	grace := a.opts.Grace
	a.log.Info("shutting down: refusing new calls, waiting for running scans", "grace", grace)
	front.Drain()
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if r, w := a.scans.QueueStats(); r == 0 && w == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.scans.Close(cctx); err != nil {
		a.log.Warn("some scans or their containers did not stop in time; the next start-up sweep removes what is left", "err", err)
	}
	// Every call has ended by now; only idle SSE streams remain.
	sctx, scancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_ = front.Shutdown(sctx)
	scancel()
	a.log.Info("http server stopped")
	return nil
}

// provider is the identity provider's token verifier and, when the web
// view signs in through it, its login; an audience (and redirect URL) the
// config leaves empty is derived from addr. Neither reaches the provider
// yet.
func (a *App) provider(addr string) (*auth.Verifier, *auth.Login, error) {
	ac := *a.opts.Auth
	if ac.Audience == "" {
		aud, err := auth.DeriveAudience(addr, a.opts.HTTP.TLSCert != "")
		if err != nil {
			return nil, nil, fmt.Errorf("config %s: %w", a.opts.ConfigPath, err)
		}
		ac.Audience = aud
	}
	v, err := auth.New(ac)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", a.opts.ConfigPath, err)
	}
	if a.opts.Login == nil {
		return v, nil, nil
	}
	lc := *a.opts.Login
	if lc.RedirectURL == "" {
		lc.RedirectURL = strings.TrimSuffix(ac.Audience, "/mcp") + "/auth/callback"
	}
	l, err := v.NewLogin(lc)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", a.opts.ConfigPath, err)
	}
	return v, l, nil
}
