package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/fence"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/config"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// stack is everything a scan needs, wired together.
type stack struct {
	cli    *executor.Client
	runner *executor.Executor
	scans  *scans.Service
	store  *store.Store
	close  func()
}

// bringUp connects to the engine, ensures the image (building it on first
// use, saying so on stderr), sweeps orphans and returns the scans service
// with the queue bounds q. With sweepAside (the CLI) the start-up sweep
// runs beside the scan instead of before it; a server sweeps before it
// serves.
func bringUp(ctx context.Context, s *settings, log *slog.Logger, stderr io.Writer, meter scans.Meter, sweepAside bool, q scans.Config) (*stack, error) {
	instance := envOr("NMAP_MCP_INSTANCE", newInstance())
	opts, err := s.sandboxOptions(instance)
	if err != nil {
		return nil, err
	}
	// The history and the audit trail open while the engine answers.
	type local struct {
		st          *store.Store
		trail       *audit.Log
		interrupted []string
		err         error
	}
	localC := make(chan local, 1)
	go func() {
		var l local
		if l.st, l.err = s.openStore(ctx); l.err == nil {
			if l.trail, l.interrupted, l.err = openAudit(s); l.err != nil {
				l.st.Close()
			}
		}
		localC <- l
	}()
	closeLocal := func(l local) {
		if l.err == nil {
			l.st.Close()
			l.trail.Close()
		}
	}
	cli, err := executor.Connect(ctx)
	if err != nil {
		closeLocal(<-localC)
		return nil, err
	}
	log.Debug("engine connected", "host", cli.DaemonHost())
	img, err := images.New(cli, stderr, s.Image.DebianMirror).Ensure(ctx)
	if err != nil {
		cli.Close()
		closeLocal(<-localC)
		return nil, err
	}
	log.Debug("scanner image verified", "tag", img.Tag)
	l := <-localC
	if l.err != nil {
		cli.Close()
		return nil, l.err
	}
	st, trail, interrupted := l.st, l.trail, l.interrupted
	if len(interrupted) > 0 {
		log.Info("audit: closed scans a previous server left open", "count", len(interrupted))
	}
	ex := executor.New(cli, log)
	if network := opts.FencedNetwork(); network != "" {
		// Fencers start on the first fenced scan (which creates the
		// managed network if needed); a server then keeps some waiting.
		warm, refill := min(max(q.Concurrency, 1), 4), true
		if sweepAside {
			warm, refill = 0, false // a one-shot CLI scan starts exactly the fencer it needs
		}
		ex.SetFencer(fence.NewPool(cli, fence.Config{Image: img.ID, Network: network,
			Create: opts.Network == "" || opts.Network == sandbox.Fenced, Warm: warm, Refill: refill,
			Labels: sandbox.OwnerLabels(instance)}, log))
	}
	for _, w := range s.Warnings() {
		log.Warn("config: " + w)
	}
	swept := make(chan struct{})
	sweep := func() {
		defer close(swept)
		if removed, err := ex.Sweep(ctx); err != nil {
			log.Warn("start-up sweep failed", "err", err)
		} else if len(removed) > 0 {
			log.Info("start-up sweep removed orphaned scan containers", "count", len(removed))
		}
		log.Debug("start-up sweep done")
	}
	if sweepAside {
		go sweep() // close waits for it
	} else {
		sweep()
	}
	// The policy reads NSE categories from the image through the service.
	var svc *scans.Service
	pcfg := s.Policy()
	pcfg.HostNetwork = opts.Network == "" || opts.Network == "host"
	pcfg.MaxAddressesPerScan = s.Budgets.MaxAddressesPerScan
	pol, err := policy.New(pcfg, net.DefaultResolver, func(ctx context.Context) (*policy.ScriptIndex, error) {
		return svc.ScriptIndex(ctx)
	})
	if err != nil {
		cli.Close()
		st.Close()
		trail.Close()
		return nil, fmt.Errorf("config %s: %w", s.configPath, err)
	}
	q.Sandbox, q.MaxAddresses, q.Limits, q.Client = opts, s.Budgets.MaxAddressesPerScan, s.ResultLimits(), "local"
	svc = scans.New(q, scans.Deps{Runner: ex, Image: img, Store: st, Audit: trail, Policy: pol, Meter: meter, Log: log, Advice: advice})
	return &stack{cli: cli, runner: ex, scans: svc, store: st, close: func() {
		<-swept
		// The history and the trail close while the engine client does.
		done := make(chan struct{})
		go func() { st.Close(); trail.Close(); close(done) }()
		cli.Close()
		<-done
	}}, nil
}

// retain applies store.keep now and every hour until ctx ends, off the
// start-up path.
func (st *stack) retain(ctx context.Context, rule string, log *slog.Logger) {
	keep, err := store.ParseKeep(rule)
	if err != nil || keep == (store.Keep{}) {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		// A watch's baseline is kept whatever its age.
		baselines, err := st.store.Baselines(ctx)
		var p store.Pruned
		if err == nil {
			p, err = st.store.Prune(ctx, keep, baselines, time.Now())
		}
		switch {
		case err != nil:
			log.Warn("retention (store.keep) failed", "err", err)
		case p.Deleted+p.XMLDropped > 0:
			log.Info("retention (store.keep)", "deleted", p.Deleted, "raw_xml_dropped", p.XMLDropped)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// advice says what to change when a scan hits a limit: the edge knows the
// tool arguments, config keys, flags and variables; the runner does not.
func advice(err error) string {
	var (
		te *executor.TimeoutError
		oe *executor.OOMError
		pe *executor.PidsError
		ie *executor.ImageError
	)
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("; raise timeout_seconds (at most %s), or scan fewer targets or ports", config.Where("sandbox.max_timeout_seconds"))
	case errors.As(err, &oe):
		return "; raise " + config.Where("sandbox.memory") + ", or scan fewer targets"
	case errors.As(err, &pe):
		return "; raise " + config.Where("sandbox.pids")
	case errors.As(err, &ie):
		return "; build it with: nmap-mcp image build"
	}
	return ""
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
