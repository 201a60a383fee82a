package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/executor/fencer"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/kuberunner"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// backend is where scans run, as the App uses it: the local Docker engine
// or a Kubernetes cluster, behind executor.Runner. Both connect on use: a
// server starts before its engine answers.
type backend interface {
	// runner runs the scans.
	runner() executor.Runner
	// image is the scanner image known at start (zero when the engine
	// has not answered yet).
	image() images.Info
	// sweep removes what a dead server left behind (when the engine
	// first answers, if it does not yet).
	sweep(ctx context.Context) (int, error)
	// health says whether scans can run (engine or API, and the image).
	health(ctx context.Context) error
	// version describes the engine or the cluster, for nmap_version.
	version(ctx context.Context) (string, error)
	// ready says whether scans can run now and returns the image they
	// run (scans.Deps.Ready).
	ready(ctx context.Context) (images.Info, error)
	// detach hands removals still under way to a reaper when a CLI scan
	// ends; false when there is nothing to hand off.
	detach() bool
	// close closes the connection.
	close()
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

// engineDown is the error of a call made while a server's engine (or
// Kubernetes API) does not answer: its own advice, and that no restart is
// needed.
type engineDown struct{ err error }

func (e *engineDown) Error() string {
	return e.err.Error() + "; nmap-mcp keeps serving and uses it as soon as it answers (no restart needed)"
}

func (e *engineDown) Unwrap() error { return e.err }

// logSweep logs what a start-up sweep did.
func logSweep(log *slog.Logger, removed int, err error) {
	if err != nil {
		log.Warn("start-up sweep failed", "err", err)
	} else if removed > 0 {
		log.Info("start-up sweep removed scans a previous server left behind", "count", removed)
	}
}

// newDocker connects to the local engine, ensures the image and prepares
// the fence pool. A one-shot CLI run needs the engine now and fails at
// once without it. A server starts without it: every call that needs the
// engine then says what to do, each such call (and each health check)
// tries again, at most every engineRetry, and the server works as soon as
// the engine answers, with the image ensured (built if missing) and the
// start-up sweep done then.
func newDocker(ctx context.Context, opts *Options, sb sandbox.Options) (backend, error) {
	warm, refill := min(max(opts.Queue.Concurrency, 1), 4), true
	if opts.Queue.Sharding.Threshold > 0 {
		// A sharded scan starts all its shards at once: keep a fencer
		// warm for each (measured: 4 shards 3.07x with warm fencers,
		// 2.88x cold; docs/sharding.md), at most 8.
		warm = min(max(warm, opts.Queue.Sharding.Shards), 8)
	}
	if opts.Mode == OneShot {
		warm, refill = 0, false // a one-shot CLI scan starts exactly the fencer it needs
	}
	d := &dockerConn{opts: sb, mirror: opts.DebianMirror, log: opts.Log, stderr: opts.Stderr, oneShot: opts.Mode == OneShot,
		warm: warm, refill: refill}
	live, err := d.get(ctx)
	switch {
	case err != nil && d.oneShot:
		return nil, err
	case err != nil:
		d.log.Warn("serving without the Docker engine: scans are refused until it answers, then work without a restart", "err", err)
	default:
		d.log.Debug("engine connected", "host", live.cli.DaemonHost())
		d.img = live.img
	}
	return d, nil
}

// dockerConn is the connection to the Docker engine, made when the engine
// first answers. It owns the client and the executor.
type dockerConn struct {
	opts      sandbox.Options
	mirror    string
	log       *slog.Logger
	stderr    io.Writer
	oneShot   bool
	warm      int
	refill    bool
	img       images.Info                // at start
	live      atomic.Pointer[dockerLive] // set once, when the engine first answered
	mu        sync.Mutex                 // serialises attempts; guards the fields below
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
		if executor.IsUnreachable(err) && !d.oneShot {
			err = &engineDown{err}
		}
		d.err = err
		return nil, err
	}
	d.err = nil
	d.live.Store(live)
	if d.sweepLate {
		d.sweepLate = false
		removed, err := live.ex.Sweep(ctx)
		logSweep(d.log, len(removed), err)
	}
	return live, nil
}

// connect reaches the engine, ensures the image and makes the executor
// with its fences.
func (d *dockerConn) connect(ctx context.Context) (*dockerLive, error) {
	cli, err := executor.Connect(ctx)
	if err != nil {
		return nil, err
	}
	img, err := images.New(cli, d.stderr, d.mirror).Ensure(ctx)
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
		ex.SetFencer(fencer.NewPool(cli, fencer.Config{Image: img.ID, Network: network,
			Create: opts.Network == "" || opts.Network == sandbox.Fenced, Warm: d.warm, Refill: d.refill,
			Labels: sandbox.OwnerLabels(opts.Instance)}, d.log))
		// Scans of loopback run on the host network inside the host fence.
		ex.SetHostFence(fencer.NewHostFence(cli, fencer.HostConfig{Image: img.ID, Labels: sandbox.OwnerLabels(opts.Instance)}, d.log))
	}
	return &dockerLive{cli: cli, ex: ex, img: img}, nil
}

func (d *dockerConn) runner() executor.Runner { return (*lazyRunner)(d) }

func (d *dockerConn) image() images.Info { return d.img }

// sweep removes what a dead server left behind; without an engine it is
// done when the engine first answers.
func (d *dockerConn) sweep(ctx context.Context) (int, error) {
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

func (d *dockerConn) version(ctx context.Context) (string, error) {
	live, err := d.get(ctx)
	if err != nil {
		return "", err
	}
	ver, err := live.cli.ServerVersion(ctx)
	if err != nil {
		return "", fmt.Errorf("ask the engine its version: %w", err)
	}
	return ver.Version + " (API " + ver.APIVersion + ")", nil
}

func (d *dockerConn) ready(ctx context.Context) (images.Info, error) {
	live, err := d.get(ctx)
	if err != nil {
		return images.Info{}, err
	}
	return live.img, nil
}

func (d *dockerConn) detach() bool {
	if live := d.live.Load(); live != nil {
		return live.ex.Detach()
	}
	return true
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

// newKube connects to the cluster; the image is the configured pin, which
// the nodes must already have or pull (the runner builds nothing). As with
// Docker, a one-shot CLI run needs the API now, while a server starts
// without it and works as soon as it answers.
func newKube(ctx context.Context, opts *Options, instance string) (backend, error) {
	cfg := opts.Kubernetes
	cfg.Instance = instance
	// The configuration is checked now, and shapes specs without the API.
	shaper, err := kuberunner.New(nil, cfg, opts.Log)
	if err != nil {
		return nil, err
	}
	c := &kubeConn{kubeconfig: opts.Kubeconfig, cfg: cfg, log: opts.Log, oneShot: opts.Mode == OneShot, shaper: shaper,
		img: images.Info{Tag: cfg.Image, ID: cfg.Digest(), NmapVersion: images.NmapVersion}}
	if _, err := c.get(ctx); err != nil {
		if c.oneShot {
			return nil, err
		}
		c.log.Warn("serving without the Kubernetes API: scans are refused until it answers, then work without a restart", "err", err)
	}
	c.log.Debug("kubernetes runner", "namespace", cfg.Namespace, "image", cfg.Image)
	return c, nil
}

// kubeConn is the connection to the Kubernetes API, made when the API
// first answers (tried on use, at most every engineRetry).
type kubeConn struct {
	kubeconfig string
	cfg        kuberunner.Config
	log        *slog.Logger
	oneShot    bool
	shaper     *kuberunner.Runner // no client: Shape only
	img        images.Info

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
		if !c.oneShot {
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
		removed, err := kr.Sweep(ctx)
		logSweep(c.log, len(removed), err)
	}
	return kr, nil
}

func (c *kubeConn) runner() executor.Runner { return (*lazyKube)(c) }

func (c *kubeConn) image() images.Info { return c.img }

func (c *kubeConn) sweep(ctx context.Context) (int, error) {
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
}

func (c *kubeConn) health(ctx context.Context) error {
	kr, err := c.get(ctx)
	if err != nil {
		return err
	}
	return kr.Health(ctx)
}

func (c *kubeConn) version(ctx context.Context) (string, error) {
	kr, err := c.get(ctx)
	if err != nil {
		return "", err
	}
	return kr.Version(ctx)
}

func (c *kubeConn) ready(ctx context.Context) (images.Info, error) {
	if _, err := c.get(ctx); err != nil {
		return images.Info{}, err
	}
	return c.img, nil
}

func (c *kubeConn) detach() bool { return false }

func (c *kubeConn) close() {}

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
