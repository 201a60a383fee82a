package executor_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

var env *testkit.Env

func TestMain(m *testing.M) {
	os.Exit(testkit.Main(m, "executor", func(e *testkit.Env) { env = e }))
}

// job builds a sandboxed job running the scanner image with args.
func job(t *testing.T, lim sandbox.Limits, priv sandbox.Privilege, args ...string) executor.Job {
	t.Helper()
	return executor.Job{Spec: sandbox.New(env.Options(lim), sandbox.Scan{ID: t.Name(), Image: env.Image.Tag, Args: args, Privilege: priv, Placement: testkit.HostPlacement})}
}

func newExec() *executor.Executor { return executor.New(env.Client, nil) }

// run runs j on a fresh executor and waits for its background removal.
func run(t *testing.T, ctx context.Context, j executor.Job) (*executor.Result, error) {
	t.Helper()
	ex := newExec()
	res, err := ex.Run(ctx, j)
	if werr := ex.Close(context.Background()); werr != nil {
		t.Fatal(werr)
	}
	return res, err
}

func assertGone(t *testing.T, res *executor.Result) {
	t.Helper()
	if res == nil || res.ContainerID == "" {
		t.Fatalf("no container id in result %+v", res)
	}
	if !env.ContainerGone(context.Background(), res.ContainerID) {
		t.Fatalf("container %.12s still exists after Run returned", res.ContainerID)
	}
}

func TestRunConnectScan(t *testing.T) {
	testkit.NeedEngine(t)
	open := testkit.TCPListener(t)
	closed := testkit.ClosedTCPPort(t)
	var live bytes.Buffer
	j := job(t, sandbox.DefaultLimits(), sandbox.Unprivileged, "-sT", "-p", fmt.Sprintf("%d,%d", open, closed), "--", "127.0.0.1")
	j.Stdout = &live
	var steps []string
	var mu sync.Mutex
	j.OnEvent = func(ev executor.Event) { mu.Lock(); steps = append(steps, string(ev.Step)); mu.Unlock() }
	res, err := run(t, context.Background(), j)
	if err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, res.Stderr)
	}
	out := string(res.Stdout)
	if !strings.Contains(out, fmt.Sprintf("%d/tcp open", open)) || !strings.Contains(out, fmt.Sprintf("%d/tcp closed", closed)) {
		t.Fatalf("output lacks the open and closed ports:\n%s", out)
	}
	if live.String() != out {
		t.Errorf("live copy differs from the kept output")
	}
	if strings.Contains(out, "\x1e") || strings.Contains(string(res.Stderr), "\x1e") || strings.HasSuffix(out, "\n\n") {
		t.Errorf("the launcher's exit line leaked into the output: %q / %q", out, res.Stderr)
	}
	if res.ExitCode != 0 || res.Duration() <= 0 {
		t.Errorf("exit %d duration %v", res.ExitCode, res.Duration())
	}
	mu.Lock()
	if got := strings.Join(steps, ","); got != "created,started,exited,removed" {
		t.Errorf("events %s", got)
	}
	mu.Unlock()
	assertGone(t, res)
}

// slowScan is a scan slowed with --scan-delay so that it outlasts a short
// deadline; -v makes nmap print as it goes.
func slowScan(t *testing.T, timeout time.Duration) executor.Job {
	lim := sandbox.DefaultLimits()
	lim.Timeout = timeout
	port := testkit.TCPListener(t)
	return job(t, lim, sandbox.Unprivileged, "-v", "-sT", "-Pn", "--scan-delay", "1s", "-p", "1-30,"+strconv.Itoa(port), "--", "127.0.0.1")
}

func TestTimeoutKeepsPartialOutput(t *testing.T) {
	testkit.NeedEngine(t)
	res, err := run(t, context.Background(), slowScan(t, 2*time.Second))
	var te *executor.TimeoutError
	if !errors.As(err, &te) || !res.TimedOut {
		t.Fatalf("err = %v (timed out %v); want *TimeoutError", err, res.TimedOut)
	}
	if !strings.Contains(err.Error(), "timed out after 2 s") {
		t.Errorf("message %q", err)
	}
	if !strings.Contains(string(res.Stdout), "Starting Nmap") {
		t.Fatalf("partial output lost: %q", res.Stdout)
	}
	assertGone(t, res)
}

func TestCancelKillsWithinOneSecond(t *testing.T) {
	testkit.NeedEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	j := slowScan(t, time.Minute)
	started := make(chan struct{})
	var once sync.Once
	j.Stdout = writerFunc(func(p []byte) {
		if bytes.Contains(p, []byte("Starting Nmap")) {
			once.Do(func() { close(started) })
		}
	})
	type out struct {
		res *executor.Result
		err error
	}
	done := make(chan out, 1)
	go func() { r, e := newExec().Run(ctx, j); done <- out{r, e} }()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("scan did not start")
	}
	cancel()
	cancelled := time.Now()
	o := <-done
	elapsed := time.Since(cancelled)
	if !errors.Is(o.err, context.Canceled) || !o.res.Canceled {
		t.Fatalf("err = %v; want context.Canceled", o.err)
	}
	assertGone(t, o.res)
	// The bound: the container is gone within 1 s of the cancel.
	if elapsed > time.Second {
		t.Fatalf("container removed %v after cancel; want within 1s", elapsed)
	}
	t.Logf("cancel to container gone: %v", elapsed)
	if !strings.Contains(string(o.res.Stdout), "Starting Nmap") {
		t.Errorf("partial output lost: %q", o.res.Stdout)
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

func TestOOMKilled(t *testing.T) {
	testkit.NeedEngine(t)
	lim := sandbox.DefaultLimits()
	lim.Memory = 8 << 20
	port := testkit.TCPListener(t)
	res, err := run(t, context.Background(), job(t, lim, sandbox.Unprivileged, "-sT", "-sV", "-p", strconv.Itoa(port), "--", "127.0.0.1"))
	var oe *executor.OOMError
	if !errors.As(err, &oe) || !res.OOMKilled {
		t.Fatalf("err = %v (oom %v, exit %d); want *OOMError", err, res.OOMKilled, res.ExitCode)
	}
	if !strings.Contains(err.Error(), "memory limit of 8 MiB") {
		t.Errorf("message %q does not say the limit", err)
	}
	assertGone(t, res)
}

func TestPidsExhausted(t *testing.T) {
	testkit.NeedEngine(t)
	lim := sandbox.DefaultLimits()
	lim.Pids = 4
	j := job(t, lim, sandbox.Unprivileged)
	j.Spec.Command = []string{"/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 3 & done; wait"}
	res, err := run(t, context.Background(), j)
	var pe *executor.PidsError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v (exit %d, stderr %q); want *PidsError", err, res.ExitCode, res.Stderr)
	}
	if !strings.Contains(err.Error(), "pids limit of 4") {
		t.Errorf("message %q", err)
	}
	assertGone(t, res)
}

func TestExitErrorCarriesStderr(t *testing.T) {
	testkit.NeedEngine(t)
	res, err := run(t, context.Background(), job(t, sandbox.DefaultLimits(), sandbox.Unprivileged, "--no-such-option"))
	var ee *executor.ExitError
	if !errors.As(err, &ee) || ee.Code == 0 {
		t.Fatalf("err = %v; want *ExitError", err)
	}
	if !strings.Contains(ee.Stderr, "no-such-option") {
		t.Errorf("stderr %q does not explain", ee.Stderr)
	}
	assertGone(t, res)
}

func TestOutputIsBounded(t *testing.T) {
	testkit.NeedEngine(t)
	j := job(t, sandbox.DefaultLimits(), sandbox.Unprivileged, "--version")
	j.MaxOutput = 10
	res, err := run(t, context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != 10 || res.DroppedStdout == 0 {
		t.Fatalf("kept %d bytes, dropped %d", len(res.Stdout), res.DroppedStdout)
	}
	assertGone(t, res)
}

func TestMissingImage(t *testing.T) {
	testkit.NeedEngine(t)
	j := job(t, sandbox.DefaultLimits(), sandbox.Unprivileged, "--version")
	j.Spec.Image = "nmap-mcp/nmap:no-such-tag"
	res, err := run(t, context.Background(), j)
	var ie *executor.ImageError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "no-such-tag") {
		t.Fatalf("err = %v; want *ImageError naming the image", err)
	}
	if res.ContainerID != "" {
		t.Fatalf("a container was created: %s", res.ContainerID)
	}
}

func TestAlreadyCancelledRunsNothing(t *testing.T) {
	testkit.NeedEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := run(t, ctx, job(t, sandbox.DefaultLimits(), sandbox.Unprivileged, "--version"))
	if !errors.Is(err, context.Canceled) || res.ContainerID != "" {
		t.Fatalf("err = %v, container %q", err, res.ContainerID)
	}
}

func TestSweepRemovesOrphansOnly(t *testing.T) {
	testkit.NeedEngine(t)
	ctx := context.Background()
	// A pid that existed and is gone: a finished child of ours.
	child := exec.Command("true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := child.ProcessState.Pid()

	mk := func(name string, pid int) string {
		cfg, hc := executor.DockerConfig(sandbox.New(env.Options(sandbox.DefaultLimits()), sandbox.Scan{ID: name, Image: env.Image.Tag, Args: []string{"--version"}, Placement: testkit.HostPlacement}))
		cfg.Labels[sandbox.LabelOwnerPID] = strconv.Itoa(pid)
		c, err := env.Client.ContainerCreate(ctx, cfg, hc, nil, nil, "")
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return c.ID
	}
	orphan := mk("orphan", deadPID)
	mine := mk("mine", os.Getpid())
	// Regression (security review 12): a container with our managed label
	// but not our full label set is not ours to remove.
	cfg, hc := executor.DockerConfig(sandbox.New(env.Options(sandbox.DefaultLimits()), sandbox.Scan{ID: "stranger", Image: env.Image.Tag, Args: []string{"--version"}, Placement: testkit.HostPlacement}))
	cfg.Labels = map[string]string{sandbox.LabelManaged: "true"}
	c, err := env.Client.ContainerCreate(ctx, cfg, hc, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	stranger := c.ID
	t.Cleanup(func() {
		_ = env.Client.ContainerRemove(ctx, mine, container.RemoveOptions{Force: true})
		_ = env.Client.ContainerRemove(ctx, orphan, container.RemoveOptions{Force: true})
		_ = env.Client.ContainerRemove(ctx, stranger, container.RemoveOptions{Force: true})
	})
	removed, err := newExec().Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A server that another test package starts at the same moment sweeps
	// this host too, and may take the orphan first: then it is gone all
	// the same, and this sweep removed nothing else.
	if (!contains(removed, orphan) && !env.ContainerGone(ctx, orphan)) || contains(removed, mine) || contains(removed, stranger) {
		t.Fatalf("swept %v; want the orphan %.12s and not the live one %.12s", removed, orphan, mine)
	}
	if !env.ContainerGone(ctx, orphan) || env.ContainerGone(ctx, mine) || env.ContainerGone(ctx, stranger) {
		t.Fatal("sweep removed the wrong containers")
	}
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
