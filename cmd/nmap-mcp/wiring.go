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
	"sync"
	"sync/atomic"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/executor/fencer"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/config"
	"github.com/nmap-mcp/nmap-mcp/internal/kuberunner"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
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
	// ready, when set, says whether scans can run now and returns the
	// image they run (scans.Deps.Ready): a server that started before its
	// engine connects on use.
	ready func(ctx context.Context) (images.Info, error)
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
		be, err = kubeBackend(ctx, s, opts, log, sweepAside)
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
	svc = scans.New(q, scans.Deps{Runner: be.runner, Image: be.image, Store: st, Audit: trail, Policy: pol, Meter: meter, Log: log, Advice: advice(s.Runner),
		Ready: be.ready})
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
// prepares the fence pool. A one-shot CLI run (sweepAside) needs the
// engine now and fails at once without it. A server starts without it:
// every call that needs the engine then says what to do, each such call
// (and each health check) tries again, at most every engineRetry, and the
// server works as soon as the engine answers, with the image ensured (built
// if missing) and the start-up sweep done then.
func dockerBackend(ctx context.Context, s *settings, opts sandbox.Options, log *slog.Logger, stderr io.Writer, sweepAside bool, q scans.Config) (backend, error) {
	d := &dockerConn{s: s, opts: opts, log: log, stderr: stderr, sweepAside: sweepAside, q: q}
	live, err := d.get(ctx)
	switch {
	case err != nil && sweepAside:
		return backend{}, err
	case err != nil:
		log.Warn("serving without the Docker engine: scans are refused until it answers, then work without a restart", "err", err)
	default:
		log.Debug("engine connected", "host", live.cli.DaemonHost())
	}
	var img images.Info
	if live != nil {
		img = live.img
	}
	return backend{
		runner: (*lazyRunner)(d),
		image:  img,
		sweep:  d.startSweep,
		health: d.health,
		version: func(ctx context.Context) (string, error) {
			live, err := d.get(ctx)
			if err != nil {
				return "", err
			}
			ver, err := live.cli.ServerVersion(ctx)
			if err != nil {
				return "", fmt.Errorf("ask the engine its version: %w", err)
			}
			return ver.Version + " (API " + ver.APIVersion + ")", nil
		},
		detach: func() bool {
			if live := d.live.Load(); live != nil {
				return live.ex.Detach()
			}
			return true
		},
		ready: func(ctx context.Context) (images.Info, error) {
			live, err := d.get(ctx)
			if err != nil {
				return images.Info{}, err
			}
			return live.img, nil
		},
		closeFn: d.close,
	}, nil
}

// engineRetry is the shortest time between two attempts to reach an
// engine that did not answer; a call in between waits for the next one.
const engineRetry = 500 * time.Millisecond

// waitRetry waits until another attempt is due after a failed one (lastErr
// at tried), so that a call made just after the engine came back reaches
// it; it returns lastErr if ctx ends first.
func waitRetry(ctx context.Context, tried time.Time, lastErr error) error {
	if lastErr == nil {
		return nil
	}
	if d := engineRetry - time.Since(tried); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return lastErr
		}
	}
	return nil
}

// dockerConn is a server's connection to the Docker engine, made when the
// engine first answers. It owns the client and the executor.
type dockerConn struct {
	s          *settings
	opts       sandbox.Options
	log        *slog.Logger
	stderr     io.Writer
	sweepAside bool
	q          scans.Config

	live atomic.Pointer[dockerLive] // set once, when the engine first answered

	mu        sync.Mutex // serialises attempts; guards the fields below
	tried     time.Time
	err       error
	sweepLate bool // the start-up sweep found no engine: sweep on connecting
	closed    bool
}

// dockerLive is what a connected engine gives.
type dockerLive struct {
	cli *executor.Client
	ex  *executor.Executor
	img images.Info
}

// get returns the connection, trying to make it when there is none.
func (d *dockerConn) get(ctx context.Context) (*dockerLive, error) {
	if live := d.live.Load(); live != nil {
		return live, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.getLocked(ctx)
}

func (d *dockerConn) getLocked(ctx context.Context) (*dockerLive, error) {
	if live := d.live.Load(); live != nil {
		return live, nil
	}
	if d.closed {
		return nil, errors.New("the server is shutting down")
	}
	if err := waitRetry(ctx, d.tried, d.err); err != nil {
		return nil, err
	}
	d.tried = time.Now()
	live, err := d.connect(ctx)
	if err != nil {
		if executor.IsUnreachable(err) && !d.sweepAside {
			err = &engineDown{err}
		}
		d.err = err
		return nil, err
	}
	d.err = nil
	d.live.Store(live)
	if d.sweepLate {
		d.sweepLate = false
		if removed, err := live.ex.Sweep(ctx); err != nil {
			d.log.Warn("start-up sweep failed", "err", err)
		} else if len(removed) > 0 {
			d.log.Info("start-up sweep removed scans a previous server left behind", "count", len(removed))
		}
	}
	return live, nil
}

// engineDown is the error of a call made while a server's engine (or
// Kubernetes API) does not answer: its own advice, and that no restart is
// needed.
type engineDown struct{ err error }

func (e *engineDown) Error() string {
	return e.err.Error() + "; nmap-mcp keeps serving and uses it as soon as it answers (no restart needed)"
}

func (e *engineDown) Unwrap() error { return e.err }

// connect reaches the engine, ensures the image and makes the executor
// with its fences.
func (d *dockerConn) connect(ctx context.Context) (*dockerLive, error) {
	cli, err := executor.Connect(ctx)
	if err != nil {
		return nil, err
	}
	img, err := images.New(cli, d.stderr, d.s.Image.DebianMirror).Ensure(ctx)
	if err != nil {
		cli.Close()
		return nil, err
	}
	d.log.Debug("scanner image verified", "tag", img.Tag)
	ex := executor.New(cli, d.log)
	opts := d.opts
	if network := opts.FencedNetwork(); network != "" {
		// Fencers start on the first fenced scan (which creates the
		// managed network if needed); a server then keeps some waiting.
		warm, refill := min(max(d.q.Concurrency, 1), 4), true
		if d.sweepAside {
			warm, refill = 0, false // a one-shot CLI scan starts exactly the fencer it needs
		}
		ex.SetFencer(fencer.NewPool(cli, fencer.Config{Image: img.ID, Network: network,
			Create: opts.Network == "" || opts.Network == sandbox.Fenced, Warm: warm, Refill: refill,
			Labels: sandbox.OwnerLabels(opts.Instance)}, d.log))
		// Scans of loopback run on the host network inside the host fence.
		ex.SetHostFence(fencer.NewHostFence(cli, fencer.HostConfig{Image: img.ID, Labels: sandbox.OwnerLabels(opts.Instance)}, d.log))
	}
	return &dockerLive{cli: cli, ex: ex, img: img}, nil
}

// startSweep removes what a dead server left behind; without an engine
// it is done when the engine first answers.
func (d *dockerConn) startSweep(ctx context.Context) (int, error) {
	live := d.live.Load()
	if live == nil {
		d.mu.Lock()
		if live = d.live.Load(); live == nil {
			d.sweepLate = true
		}
		d.mu.Unlock()
		if live == nil {
			return 0, nil
		}
	}
	removed, err := live.ex.Sweep(ctx)
	return len(removed), err
}

// health says whether scans can run: the engine answers and has the
// image. Without a connection it tries to make one, unless an attempt
// (which may be building the image) is under way.
func (d *dockerConn) health(ctx context.Context) error {
	live := d.live.Load()
	if live == nil {
		if !d.mu.TryLock() {
			return errors.New("connecting to the Docker engine and ensuring the scanner image (it is built if missing)")
		}
		var err error
		live, err = d.getLocked(ctx)
		d.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if _, err := live.cli.Ping(ctx); err != nil {
		return &engineDown{&executor.UnreachableError{Host: live.cli.DaemonHost(), Err: err}}
	}
	_, err := images.New(live.cli, nil, "").Verify(ctx, live.img.ID)
	return err
}

func (d *dockerConn) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	if live := d.live.Load(); live != nil {
		live.cli.Close()
	}
}

// lazyRunner runs scans on the engine once it answers (scans ask Ready
// first, so a Run without a connection is refused the same way).
type lazyRunner dockerConn

// Run implements executor.Runner.
func (r *lazyRunner) Run(ctx context.Context, job executor.Job) (*executor.Result, error) {
	live, err := (*dockerConn)(r).get(ctx)
	if err != nil {
		return &executor.Result{}, err
	}
	return live.ex.Run(ctx, job)
}

// Close implements executor.Runner: it waits for the executor's removals.
func (r *lazyRunner) Close(ctx context.Context) error {
	if live := (*dockerConn)(r).live.Load(); live != nil {
		return live.ex.Close(ctx)
	}
	return nil
}

// kubeBackend connects to the cluster; the image is the configured pin,
// which the nodes must already have or pull (the runner builds nothing).
// As with Docker, a one-shot CLI run needs the API now, while a server
// starts without it and works as soon as it answers.
func kubeBackend(ctx context.Context, s *settings, opts sandbox.Options, log *slog.Logger, sweepAside bool) (backend, error) {
	k := s.Kubernetes
	cfg := kuberunner.Config{Namespace: k.Namespace, Image: k.Image, NodeSelector: k.NodeSelector,
		ServiceAccount: k.ServiceAccount, SeccompProfile: k.SeccompProfile, Instance: opts.Instance}
	// The configuration is checked now, and shapes specs without the API.
	shaper, err := kuberunner.New(nil, cfg, log)
	if err != nil {
		return backend{}, err
	}
	c := &kubeConn{kubeconfig: k.Kubeconfig, cfg: cfg, log: log, sweepAside: sweepAside, shaper: shaper}
	if _, err := c.get(ctx); err != nil {
		if sweepAside {
			return backend{}, err
		}
		log.Warn("serving without the Kubernetes API: scans are refused until it answers, then work without a restart", "err", err)
	}
	log.Debug("kubernetes runner", "namespace", k.Namespace, "image", k.Image)
	img := images.Info{Tag: k.Image, ID: cfg.Digest(), NmapVersion: images.NmapVersion}
	return backend{
		runner: (*lazyKube)(c),
		image:  img,
		sweep: func(ctx context.Context) (int, error) {
			kr := c.live.Load()
			if kr == nil {
				c.mu.Lock()
				if kr = c.live.Load(); kr == nil {
					c.sweepLate = true
				}
				c.mu.Unlock()
				if kr == nil {
					return 0, nil
				}
			}
			removed, err := kr.Sweep(ctx)
			return len(removed), err
		},
		health: func(ctx context.Context) error {
			kr, err := c.get(ctx)
			if err != nil {
				return err
			}
			return kr.Health(ctx)
		},
		version: func(ctx context.Context) (string, error) {
			kr, err := c.get(ctx)
			if err != nil {
				return "", err
			}
			return kr.Version(ctx)
		},
		ready: func(ctx context.Context) (images.Info, error) {
			if _, err := c.get(ctx); err != nil {
				return images.Info{}, err
			}
			return img, nil
		},
		detach:  func() bool { return false },
		closeFn: func() {},
	}, nil
}

// kubeConn is a server's connection to the Kubernetes API, made when the
// API first answers (tried on use, at most every engineRetry).
type kubeConn struct {
	kubeconfig string
	cfg        kuberunner.Config
	log        *slog.Logger
	sweepAside bool
	shaper     *kuberunner.Runner // no client: Shape only

	live atomic.Pointer[kuberunner.Runner]

	mu        sync.Mutex
	tried     time.Time
	err       error
	sweepLate bool
}

func (c *kubeConn) get(ctx context.Context) (*kuberunner.Runner, error) {
	if kr := c.live.Load(); kr != nil {
		return kr, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if kr := c.live.Load(); kr != nil {
		return kr, nil
	}
	if err := waitRetry(ctx, c.tried, c.err); err != nil {
		return nil, err
	}
	c.tried = time.Now()
	client, err := kuberunner.Connect(ctx, c.kubeconfig, c.log)
	if err != nil {
		if !c.sweepAside {
			err = &engineDown{err}
		}
		c.err = err
		return nil, err
	}
	kr, err := kuberunner.New(client, c.cfg, c.log)
	if err != nil {
		return nil, err
	}
	c.err = nil
	c.live.Store(kr)
	if c.sweepLate {
		c.sweepLate = false
		if removed, err := kr.Sweep(ctx); err != nil {
			c.log.Warn("start-up sweep failed", "err", err)
		} else if len(removed) > 0 {
			c.log.Info("start-up sweep removed scans a previous server left behind", "count", len(removed))
		}
	}
	return kr, nil
}

// lazyKube runs scans as Jobs once the API answers.
type lazyKube kubeConn

// Run implements executor.Runner.
func (r *lazyKube) Run(ctx context.Context, job executor.Job) (*executor.Result, error) {
	kr, err := (*kubeConn)(r).get(ctx)
	if err != nil {
		return &executor.Result{}, err
	}
	return kr.Run(ctx, job)
}

// Close implements executor.Runner.
func (r *lazyKube) Close(ctx context.Context) error {
	if kr := (*kubeConn)(r).live.Load(); kr != nil {
		return kr.Close(ctx)
	}
	return nil
}

// Shape implements executor.Shaper: the spec as a Job runs it.
func (r *lazyKube) Shape(spec sandbox.Spec) sandbox.Spec { return r.shaper.Shape(spec) }

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
		te   *executor.TimeoutError
		oe   *executor.OOMError
		pe   *executor.PidsError
		ie   *executor.ImageError
		lost *executor.LostError
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
	case errors.As(err, &lost):
		return "; its container is removed as soon as the engine answers again; run the scan again then (nmap_version says whether the engine answers)"
	case executor.IsUnreachable(err):
		return "; start the Docker engine (systemctl start docker), or join the docker group, or point DOCKER_HOST at a running engine: the server uses it as soon as it answers, no restart needed"
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
