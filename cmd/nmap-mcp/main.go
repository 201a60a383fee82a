// Command nmap-mcp is an MCP server that runs Nmap scans in short-lived,
// capability-limited Docker containers, plus a CLI for one-off scans and
// for managing the scanner image. This package parses flags and
// subcommands; package internal/app wires the server.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nmap-mcp/nmap-mcp/images"
)

// version is the nmap-mcp release.
const version = "0.1.0"

const usage = `nmap-mcp runs Nmap scans for LLM clients, each in its own sandboxed container.

Usage:
  nmap-mcp serve [flags]            serve MCP over stdio (for LM Studio, Claude Desktop, ...)
  nmap-mcp serve --http ADDR        serve MCP streamable HTTP at http://ADDR/mcp
  nmap-mcp token add NAME           make a bearer token for --http (stored as SHA-256 in the config)
  nmap-mcp scan [flags] TARGETS...  run one sandboxed scan and print the result
  nmap-mcp scans list|show|diff     read the scan history
  nmap-mcp watch add|list|show|rm   scheduled rescans that say what changed (run by serve)
  nmap-mcp inventory find|changes|host  what past scans found, and what changed (no scan)
  nmap-mcp config init|check FILE   print a commented default config, or validate one
  nmap-mcp audit verify|tail        check or show the audit trail
  nmap-mcp image build [--no-cache] build the pinned scanner image (and its base, offline if need be)
  nmap-mcp image inspect            show the scanner image: tag, ID, labels, nmap version
  nmap-mcp version                  print the version

Run "nmap-mcp COMMAND --help" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ce *exitCode
		if errors.As(err, &ce) {
			os.Exit(ce.code)
		}
		fmt.Fprintln(os.Stderr, "nmap-mcp:", err)
		os.Exit(1)
	}
}

// exitCode ends the program with a code after the message was printed.
type exitCode struct{ code int }

func (e *exitCode) Error() string { return fmt.Sprintf("exit %d", e.code) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitCode{2}
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stderr)
	case "scan":
		return cmdScan(ctx, args[1:], stdout, stderr)
	case "token":
		return cmdToken(args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "audit":
		return cmdAudit(ctx, args[1:], stdout, stderr)
	case "scans":
		return cmdScans(ctx, args[1:], stdout, stderr)
	case "watch":
		return cmdWatch(ctx, args[1:], stdout, stderr)
	case "inventory":
		return cmdInventory(ctx, args[1:], stdout, stderr)
	case "reap": // executor.ReapCommand, started by executor.Detach
		return cmdReap(ctx, args[1:], stderr)
	case "image":
		return cmdImage(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "nmap-mcp %s (scanner image: nmap %s)\n", version, images.NmapVersion)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "nmap-mcp: unknown command %q\n\n%s", args[0], usage)
		return &exitCode{2}
	}
}
