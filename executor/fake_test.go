package executor_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// fakeEngine is a fake Docker engine (no engine needed: these tests run
// under -short) whose one container plays a script: it writes stdout and
// stderr, then exits with a code (or runs until killed), as the real
// engine reports it through attach, wait and inspect. They cover the
// Docker runner's lifecycle — start, events, deadline, cancel → kill,
// drain, classify, removal — without a container; the engine tests in
// executor_test.go prove the same against the real engine.
type fakeEngine struct {
	stdout, stderr string
	exit           int  // the exit code after the output
	oom            bool // the kernel killed it for memory
	hang           bool // runs until killed
	marker         bool // the launcher reports the exit in-band
	missingImage   bool
	failRemoves    int // removals that fail (an engine away) before one succeeds

	mu       sync.Mutex
	created  []string
	removed  []string
	removes  int
	killed   bool
	exitC    chan int
	waitC    chan container.WaitResponse
	conn     net.Conn // the engine's end of the attach stream
	state    container.State
	finished bool
}

func (f *fakeEngine) ContainerCreate(_ context.Context, cfg *container.Config, hc *container.HostConfig, _ *network.NetworkingConfig, _ *ocispec.Platform, name string) (container.CreateResponse, error) {
	if f.missingImage {
		return container.CreateResponse{}, cerrdefs.ErrNotFound.WithMessage("No such image: " + cfg.Image)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := "fake0123456789abcdef" + name
	f.created = append(f.created, id)
	f.exitC = make(chan int, 1)
	return container.CreateResponse{ID: id}, nil
}

func (f *fakeEngine) ContainerAttach(context.Context, string, container.AttachOptions) (types.HijackedResponse, error) {
	ours, theirs := net.Pipe()
	f.mu.Lock()
	f.conn = theirs
	f.mu.Unlock()
	return types.NewHijackedResponse(ours, "application/vnd.docker.multiplexed-stream"), nil
}

func (f *fakeEngine) ContainerWait(ctx context.Context, _ string, _ container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waitC = make(chan container.WaitResponse, 1)
	return f.waitC, make(chan error)
}

func (f *fakeEngine) ContainerStart(context.Context, string, container.StartOptions) error {
	f.mu.Lock()
	conn, exitC := f.conn, f.exitC
	f.mu.Unlock()
	go func() {
		out := stdcopy.NewStdWriter(conn, stdcopy.Stdout)
		errw := stdcopy.NewStdWriter(conn, stdcopy.Stderr)
		_, _ = io.WriteString(out, f.stdout)
		_, _ = io.WriteString(errw, f.stderr)
		code := f.exit
		if f.oom {
			code = 137
		}
		if f.hang {
			code = <-exitC
		} else if f.marker {
			line := "\n" + sandbox.ExitMarker + itoa(code) + "\n"
			_, _ = io.WriteString(out, line)
			_, _ = io.WriteString(errw, line)
		}
		conn.Close()
		f.exitWith(code)
	}()
	return nil
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func (f *fakeEngine) exitWith(code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.finished {
		return
	}
	f.finished = true
	f.state = container.State{Status: "exited", ExitCode: code, OOMKilled: f.oom}
	f.waitC <- container.WaitResponse{StatusCode: int64(code)}
}

func (f *fakeEngine) ContainerKill(context.Context, string, string) error {
	f.mu.Lock()
	f.killed = true
	exitC := f.exitC
	f.mu.Unlock()
	select {
	case exitC <- 137:
	default:
	}
	return nil
}

func (f *fakeEngine) ContainerInspect(context.Context, string) (container.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.state
	return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{State: &st}}, nil
}

func (f *fakeEngine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return nil, nil
}

func (f *fakeEngine) ContainerRemove(_ context.Context, id string, _ container.RemoveOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removes++
	if f.removes <= f.failRemoves {
		return errConn
	}
	f.removed = append(f.removed, id)
	return nil
}

// run runs one job on a fresh executor over f and returns what Run and
// the events said, after Close (so every removal has finished).
func runFake(t *testing.T, f *fakeEngine, ctx context.Context, deadline time.Duration) (*executor.Result, error, []string) {
	t.Helper()
	ex := executor.New(f, nil)
	var mu sync.Mutex
	var steps []string
	spec := sandbox.New(sandbox.Options{Limits: sandbox.DefaultLimits(), Network: sandbox.None}, sandbox.Scan{ID: "s1", Image: "img", Args: []string{"--version"}})
	spec.Deadline = deadline
	res, err := ex.Run(ctx, executor.Job{Spec: spec, OnEvent: func(ev executor.Event) {
		mu.Lock()
		steps = append(steps, string(ev.Step))
		mu.Unlock()
	}})
	// A removal the engine refused is retried in the background: wait for
	// it (Close would end the retries) before closing.
	for end := time.Now().Add(20 * time.Second); f.failRemoves > 0 && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		f.mu.Lock()
		n := len(f.removed)
		f.mu.Unlock()
		if n > 0 {
			break
		}
	}
	cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if cerr := ex.Close(cctx); cerr != nil {
		t.Fatalf("close: %v", cerr)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.created) > 0 && !slices.Equal(f.created, f.removed) {
		t.Errorf("created %v, removed %v: a container was left", f.created, f.removed)
	}
	mu.Lock()
	defer mu.Unlock()
	return res, err, slices.Clone(steps)
}

func TestFakeRunOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       *fakeEngine
		cancel  bool
		dl      time.Duration
		check   func(*executor.Result, error) bool
		lastTwo []string
	}{
		{name: "exit 0", f: &fakeEngine{stdout: "<nmaprun/>\n"},
			check: func(r *executor.Result, err error) bool {
				return err == nil && string(r.Stdout) == "<nmaprun/>\n" && r.ExitCode == 0 && r.Duration() >= 0
			}, lastTwo: []string{"exited", "removed"}},
		{name: "exit 0 reported in-band", f: &fakeEngine{stdout: "partial", marker: true},
			check: func(r *executor.Result, err error) bool {
				return err == nil && string(r.Stdout) == "partial" && !strings.Contains(string(r.Stderr), "nmap-mcp-exit")
			}, lastTwo: []string{"exited", "removed"}},
		{name: "non-zero exit", f: &fakeEngine{stderr: "Failed to resolve\n", exit: 1},
			check: func(r *executor.Result, err error) bool {
				var ee *executor.ExitError
				return errors.As(err, &ee) && ee.Code == 1 && strings.Contains(ee.Stderr, "Failed to resolve")
			}, lastTwo: []string{"exited", "removed"}},
		{name: "pids", f: &fakeEngine{stderr: "pthread_create: Resource temporarily unavailable\n", exit: 1},
			check: func(r *executor.Result, err error) bool {
				var pe *executor.PidsError
				return errors.As(err, &pe)
			}, lastTwo: []string{"exited", "removed"}},
		{name: "oom", f: &fakeEngine{stdout: "<host", oom: true},
			check: func(r *executor.Result, err error) bool {
				var oe *executor.OOMError
				return errors.As(err, &oe) && r.OOMKilled && string(r.Stdout) == "<host"
			}, lastTwo: []string{"exited", "removed"}},
		{name: "deadline", f: &fakeEngine{stdout: "so far", hang: true}, dl: 200 * time.Millisecond,
			check: func(r *executor.Result, err error) bool {
				var te *executor.TimeoutError
				return errors.As(err, &te) && r.TimedOut && string(r.Stdout) == "so far"
			}, lastTwo: []string{"exited", "removed"}},
		{name: "cancel", f: &fakeEngine{stdout: "so far", hang: true}, cancel: true,
			check: func(r *executor.Result, err error) bool {
				return errors.Is(err, context.Canceled) && r.Canceled && string(r.Stdout) == "so far"
			}, lastTwo: []string{"exited", "removed"}},
		{name: "missing image", f: &fakeEngine{missingImage: true},
			check: func(r *executor.Result, err error) bool {
				var ie *executor.ImageError
				return errors.As(err, &ie) && ie.Image == "img"
			}},
		{name: "removal retried until the engine answers", f: &fakeEngine{stdout: "x", failRemoves: 2},
			check:   func(r *executor.Result, err error) bool { return err == nil },
			lastTwo: []string{"exited", "removed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				time.AfterFunc(200*time.Millisecond, cancel)
			}
			res, err, steps := runFake(t, tc.f, ctx, tc.dl)
			if !tc.check(res, err) {
				t.Fatalf("result %+v, err %v", res, err)
			}
			if tc.lastTwo != nil && (len(steps) < 2 || !slices.Equal(steps[len(steps)-2:], tc.lastTwo)) {
				t.Errorf("steps %v, want to end with %v", steps, tc.lastTwo)
			}
			if (tc.cancel || tc.dl > 0) && !tc.f.killed {
				t.Error("the container was not killed")
			}
		})
	}
}

// fakeFencer hands out a namespace, or refuses, and counts releases.
type fakeFencer struct {
	err      error
	mu       sync.Mutex
	released int
}

func (f *fakeFencer) Fence(context.Context, sandbox.Spec) (string, func(), error) {
	if f.err != nil {
		return "", nil, f.err
	}
	return "container:fencer", func() { f.mu.Lock(); f.released++; f.mu.Unlock() }, nil
}
func (f *fakeFencer) Pending() []string           { return nil }
func (f *fakeFencer) Close(context.Context) error { return nil }

// A fenced spec joins the fencer's namespace and releases it once its
// container is gone; a fence that cannot be installed starts nothing
// (fail closed). Fake engine and fencer: runs under -short.
func TestFakeFenced(t *testing.T) {
	spec := sandbox.New(sandbox.Options{Limits: sandbox.DefaultLimits(), Network: "labnet"}, sandbox.Scan{ID: "f1", Image: "img",
		Placement: sandbox.Placement{Network: "labnet", Fence: &sandbox.Fence{Network: "labnet"}}})
	for _, refuse := range []bool{false, true} {
		eng := &fakeEngine{stdout: "ok"}
		fc := &fakeFencer{}
		if refuse {
			fc.err = errors.New("nft: no such table")
		}
		ex := executor.New(eng, nil)
		ex.SetFencer(fc)
		var steps []string
		_, err := ex.Run(context.Background(), executor.Job{Spec: spec, OnEvent: func(ev executor.Event) { steps = append(steps, string(ev.Step)) }})
		if err := ex.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if refuse {
			if err == nil || len(eng.created) != 0 {
				t.Fatalf("a refused fence: err %v, created %v", err, eng.created)
			}
			continue
		}
		if err != nil || fc.released != 1 || steps[0] != string(executor.StepFenced) {
			t.Fatalf("err %v, released %d, steps %v", err, fc.released, steps)
		}
	}
	// Without a fencer, a fenced spec is refused.
	eng := &fakeEngine{}
	if _, err := executor.New(eng, nil).Run(context.Background(), executor.Job{Spec: spec}); err == nil || len(eng.created) != 0 {
		t.Fatalf("no fencer: err %v, created %v", err, eng.created)
	}
}
