package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/nmap-mcp/nmap-mcp/internal/app"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
)

func cmdScan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings
	if err := s.register(fs, args); err != nil {
		return err
	}
	var (
		req      scanargs.Request
		topPorts int
		timeoutS int
	)
	fs.StringVar(&req.ScanType, "type", "connect", "scan type: connect, syn, udp or ping")
	fs.StringVar(&req.Ports, "ports", "", "ports, e.g. 22,80,8000-8100 (not with --top-ports)")
	fs.IntVar(&topPorts, "top-ports", 0, "scan the N most common ports (default 100 when --ports is not given)")
	fs.BoolVar(&req.ServiceVersions, "service-versions", false, "detect service versions (-sV)")
	fs.BoolVar(&req.SkipHostDiscovery, "skip-host-discovery", false, "treat all targets as up (-Pn)")
	fs.StringVar(&req.Timing, "timing", "", "timing template T0-T5")
	fs.IntVar(&timeoutS, "timeout-seconds", 0, "wall clock of this scan in seconds (default: --timeout)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: nmap-mcp scan [flags] TARGETS...\n\nRun one sandboxed scan with the same validation as the MCP tool, and print the result.\nExample: nmap-mcp scan --ports 22,80,443 127.0.0.1\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if err := s.parsed(); err != nil {
		return err
	}
	req.Targets = strings.Join(fs.Args(), " ")
	if topPorts != 0 {
		req.TopPorts = &topPorts
	}
	if timeoutS != 0 {
		req.TimeoutSeconds = &timeoutS
	}
	// Refuse bad input before touching the engine or the image.
	if _, err := req.Plan(s.resolved.Rules); err != nil {
		return fmt.Errorf("scan refused, nothing was run: %w", err)
	}
	logger, closeLog, err := s.logger(stderr)
	if err != nil {
		return err
	}
	defer closeLog()

	a, err := s.newApp(ctx, app.OneShot, logger, stderr)
	if err != nil {
		return err
	}
	// Removals still under way when the result is printed go to a
	// detached reaper, so the command ends with its output.
	defer func() {
		if !a.Detach() {
			_ = a.Scans().Close(context.WithoutCancel(ctx))
		}
		a.Close()
	}()
	sc, err := a.Scans().Submit(ctx, req, scans.Options{Events: func(ev scans.Event) {
		if ev.Kind == scans.Started {
			fmt.Fprintln(stderr, "nmap-mcp: scanning", req.Targets)
		}
	}})
	if err != nil {
		return fmt.Errorf("scan refused, nothing was run: %w", err)
	}
	text, _ := scans.RecordText(sc.Snapshot().Record, 0)
	fmt.Fprint(stdout, text)
	if err := sc.Err(); err != nil {
		fmt.Fprintln(stderr, "nmap-mcp:", err)
		return &exitCode{1}
	}
	return nil
}
