package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/nmap-mcp/nmap-mcp/internal/app"
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
	mode := app.Stdio
	if *httpAddr != "" {
		mode = app.HTTP
	}
	a, err := s.newApp(ctx, mode, logger, stderr)
	if err != nil {
		return err
	}
	defer a.Close()
	if mode == app.HTTP {
		return a.ServeHTTP(ctx, *httpAddr)
	}
	return a.ServeStdio(ctx, os.Stdin, os.Stdout, stderr)
}

// flagErr turns -h into a clean exit and other flag errors into exit 2.
func flagErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return &exitCode{2}
}
