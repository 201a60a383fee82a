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
	"github.com/nmap-mcp/nmap-mcp/kuberunner"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// stack is everything a scan needs, wired together.
type stack struct {
	backend
	scans *scans.Service
	store *store.Store
	close func()
}

// backend is where scans run: the local Docker engine or a Kubernetes
// cluster, behind executor.Runner.
type backend struct {
	runner executor.Runner
	image  images.Info
	// sweep removes what a dead server left behind.
	sweep func(ctx context.Context) (int, error)
	// health says whether scans can run (engine or API, and the image).
	health func(ctx context.Context) error
	// version describes the engine or the cluster, for nmap_version.
	version func(ctx context.Context) (string, error)
	// detach hands removals still under way to a reaper when a CLI scan
	// ends; false when there is nothing to hand off.
	detach func() bool
	// closeFn closes the connection.
	closeFn func()
}

// bringUp connects to the engine or cluster, ensures the image (building
// it on first use with Docker, saying so on stderr), sweeps orphans and
// returns the scans service with the queue bounds q. With sweepAside (the
// CLI) the start-up sweep runs beside the scan instead of before it; a
// server sweeps before it serves.
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
			if l.trail, l.interrupted, l.err = openAudit(s, log); l.err != nil {
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
	var be backend
	if s.Runner == "kubernetes" {
		be, err = kubeBackend(ctx, s, opts, log)
	} else {
		be, err = dockerBackend(ctx, s, opts, log, stderr, sweepAside, q)
	}
	if err != nil {
		closeLocal(<-localC)
		return nil, err
	}
	l := <-localC
	if l.err != nil {
		be.closeFn()
		return nil, l.err
	}
	st, trail, interrupted := l.st, l.trail, l.interrupted
	if len(interrupted) > 0 {
		log.Info("audit: closed scans a previous server left open", "count", len(interrupted))
	}
	for _, w := range s.Warnings() {
		log.Warn("config: " + w)
	}
	swept := make(chan struct{})
	sweep := func() {
		defer close(swept)
		if removed, err := be.sweep(ctx); err != nil {
			log.Warn("start-up sweep failed", "err", err)
		} else if removed > 0 {
			log.Info("start-up sweep removed scans a previous server left behind", "count", removed)
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
		<-swept
		be.closeFn()
		st.Close()
		trail.Close()
		return nil, fmt.Errorf("config %s: %w", s.configPath, err)
	}
	q.Sandbox, q.MaxAddresses, q.Limits, q.Client = opts, s.Budgets.MaxAddressesPerScan, s.ResultLimits(), "local"
	svc = scans.New(q, scans.Deps{Runner: be.runner, Image: be.image, Store: st, Audit: trail, Policy: pol, Meter: meter, Log: log, Advice: advice(s.Runner)})
	return &stack{backend: be, scans: svc, store: st, close: func() {
		<-swept
		// The history and the trail close while the engine client does.
		done := make(chan struct{})
		go func() { st.Close(); trail.Close(); close(done) }()
		be.closeFn()
		<-done
	}}, nil
}

// dockerBackend connects to the local engine, ensures the image and
// prepares the fence pool.
func dockerBackend(ctx context.Context, s *settings, opts sandbox.Options, log *slog.Logger, stderr io.Writer, sweepAside bool, q scans.Config) (backend, error) {
	cli, err := executor.Connect(ctx)
	if err != nil {
		return backend{}, err
	}
	log.Debug("engine connected", "host", cli.DaemonHost())
	img, err := images.New(cli, stderr, s.Image.DebianMirror).Ensure(ctx)
	if err != nil {
		cli.Close()
		return backend{}, err
	}
	log.Debug("scanner image verified", "tag", img.Tag)
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
			Labels: sandbox.OwnerLabels(opts.Instance)}, log))
	}
	if opts.FencedNetwork() != "" {
		// Scans of loopback run on the host network inside the host fence.
		ex.SetHostFence(fence.NewHostFence(cli, fence.HostConfig{Image: img.ID, Labels: sandbox.OwnerLabels(opts.Instance)}, log))
	}
	return backend{
		runner: ex,
		image:  img,
		sweep: func(ctx context.Context) (int, error) {
			removed, err := ex.Sweep(ctx)
			return len(removed), err
		},
		health: func(ctx context.Context) error {
			if _, err := cli.Ping(ctx); err != nil {
				return fmt.Errorf("docker engine unreachable: %w", err)
			}
			_, err := images.New(cli, nil, "").Verify(ctx, img.ID)
			return err
		},
		version: func(ctx context.Context) (string, error) {
			ver, err := cli.ServerVersion(ctx)
			if err != nil {
				return "", fmt.Errorf("ask the engine its version: %w", err)
			}
			return ver.Version + " (API " + ver.APIVersion + ")", nil
		},
		detach:  ex.Detach,
		closeFn: func() { cli.Close() },
	}, nil
}

// kubeBackend connects to the cluster; the image is the configured pin,
// which the nodes must already have or pull (the runner builds nothing).
func kubeBackend(ctx context.Context, s *settings, opts sandbox.Options, log *slog.Logger) (backend, error) {
	k := s.Kubernetes
	client, err := kuberunner.Connect(ctx, k.Kubeconfig, log)
	if err != nil {
		return backend{}, err
	}
	kr, err := kuberunner.New(client, kuberunner.Config{Namespace: k.Namespace, Image: k.Image, NodeSelector: k.NodeSelector,
		ServiceAccount: k.ServiceAccount, SeccompProfile: k.SeccompProfile, Instance: opts.Instance}, log)
	if err != nil {
		return backend{}, err
	}
	log.Debug("kubernetes runner", "namespace", k.Namespace, "image", k.Image)
	return backend{
		runner: kr,
		image:  images.Info{Tag: k.Image, ID: kr.Config().Digest(), NmapVersion: images.NmapVersion},
		sweep: func(ctx context.Context) (int, error) {
			removed, err := kr.Sweep(ctx)
			return len(removed), err
		},
		health:  kr.Health,
		version: kr.Version,
		detach:  func() bool { return false },
		closeFn: func() {},
	}, nil
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
func advice(runner string) func(error) string {
	return func(err error) string { return adviceFor(runner, err) }
}

func adviceFor(runner string, err error) string {
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
	case errors.As(err, &ie) && runner == "kubernetes":
		return "; load it on the nodes or push it to their registry (README: Kubernetes runner), and set " + config.Where("kubernetes.image")
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

// openAudit opens the audit trail named by the settings; what its checks
// find (a repair at start-up, tampering while the server runs) goes to log.
func openAudit(s *settings, log *slog.Logger) (*audit.Log, []string, error) {
	path, err := s.auditFile()
	if err != nil {
		return nil, nil, err
	}
	return audit.OpenWith(path, audit.Options{Log: log})
}
