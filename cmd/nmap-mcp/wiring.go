package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/docker/docker/client"

	"github.com/nmap-mcp/nmap-mcp/audit"
	"github.com/nmap-mcp/nmap-mcp/engine"
	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/policy"
	"github.com/nmap-mcp/nmap-mcp/scanner"
	"github.com/nmap-mcp/nmap-mcp/store"
)

// stack is everything a scan needs, wired together.
type stack struct {
	cli      *client.Client
	scanner  *scanner.Scanner
	executor *executor.Executor
	store    *store.Store
	engine   string // engine version
	close    func()
}

// sweepAge is older than any scan may run, so a container that old is orphaned.
const sweepAge = 15 * time.Minute

// bringUp connects to the engine, ensures the image (building it on first
// use, saying so on stderr), sweeps orphans and returns a scanner.
func bringUp(ctx context.Context, s *settings, log *slog.Logger, stderr io.Writer, meter scanner.Meter) (*stack, error) {
	instance := envOr("NMAP_MCP_INSTANCE", newInstance())
	opts, err := s.sandboxOptions(instance)
	if err != nil {
		return nil, err
	}
	st, err := s.openStore(ctx)
	if err != nil {
		return nil, err
	}
	cli, err := engine.Connect(ctx)
	if err != nil {
		st.Close()
		return nil, err
	}
	log.Debug("engine connected", "host", cli.DaemonHost())
	img, err := images.New(cli, stderr, s.mirror).Ensure(ctx)
	if err != nil {
		cli.Close()
		st.Close()
		return nil, err
	}
	log.Debug("scanner image verified", "tag", img.Tag)
	trail, interrupted, err := openAudit(s)
	if err != nil {
		cli.Close()
		st.Close()
		return nil, err
	}
	if len(interrupted) > 0 {
		log.Info("audit: closed scans a previous server left open", "count", len(interrupted))
	}
	ex := executor.New(cli, log)
	if removed, err := ex.Sweep(ctx, sweepAge); err != nil {
		log.Warn("start-up sweep failed", "err", err)
	} else if len(removed) > 0 {
		log.Info("start-up sweep removed orphaned scan containers", "count", len(removed))
	}
	log.Debug("start-up sweep done")
	// The policy reads NSE categories from the image through the scanner.
	var sc *scanner.Scanner
	pol, err := policy.New(s.file.Policy(), net.DefaultResolver, func(ctx context.Context) (map[string][]string, error) {
		return sc.ScriptCategories(ctx)
	})
	if err != nil {
		cli.Close()
		st.Close()
		trail.Close()
		return nil, fmt.Errorf("config %s: %w", s.configPath, err)
	}
	sc = scanner.New(ex, img, scanner.Config{Sandbox: opts, MaxAddresses: s.maxAddresses, Store: st, Audit: trail,
		Policy: pol, Client: "local", Meter: meter, Log: log})
	return &stack{cli: cli, scanner: sc, executor: ex, store: st, close: func() { cli.Close(); st.Close(); trail.Close() }}, nil
}

func newInstance() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func nmapPackage() string { return images.NmapVersion }

// engineVersion describes the engine, e.g. "20.10.24+dfsg1 (API 1.41)".
func (st *stack) engineVersion(ctx context.Context) (string, error) {
	ver, err := st.cli.ServerVersion(ctx)
	if err != nil {
		return "", fmt.Errorf("ask the engine its version: %w", err)
	}
	return ver.Version + " (API " + ver.APIVersion + ")", nil
}

// openAudit opens the audit trail named by the settings.
func openAudit(s *settings) (*audit.Log, []string, error) {
	path, err := s.auditFile()
	if err != nil {
		return nil, nil, err
	}
	return audit.Open(path)
}
