package kuberunner_test

// Fast tests of the runner's lifecycle without a cluster: client-go's
// fake clientset holds the Jobs, watch.FakeWatchers drive the pod's and
// the Job's events, and an io.Pipe is the pod's log stream. They run under
// -short and need no engine and no cluster.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/kuberunner"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

const fakeNS = "scans"

var fakeImage = "docker.io/nmap-mcp/nmap@sha256:" + strings.Repeat("a", 64)

// fakeCluster is the fake API one run talks to.
type fakeCluster struct {
	t  *testing.T
	cs *fake.Clientset

	mu sync.Mutex
	// podWatches are handed out in order to the runner's pod watches;
	// watchErr, when set, is the error of a pod watch beyond them.
	podWatches []*watch.FakeWatcher
	nextWatch  int
	watchErr   error
	events     *watch.FakeWatcher
	// logW writes the pod's log; ending it (Close) ends the stream.
	logW    *io.PipeWriter
	logR    *io.PipeReader
	deleted chan string
	// onDelete, when set, runs when the runner deletes the Job (as the
	// kubelet stops the pod).
	onDelete func()
}

func newFakeCluster(t *testing.T, podWatches int) *fakeCluster {
	f := &fakeCluster{t: t, cs: fake.NewClientset(), events: watch.NewFakeWithChanSize(10, false),
		deleted: make(chan string, 4)}
	for range podWatches {
		f.podWatches = append(f.podWatches, watch.NewFakeWithChanSize(10, false))
	}
	f.logR, f.logW = io.Pipe()
	f.cs.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.nextWatch < len(f.podWatches) {
			w := f.podWatches[f.nextWatch]
			f.nextWatch++
			return true, w, nil
		}
		if f.watchErr != nil {
			return true, nil, f.watchErr
		}
		return true, watch.NewFake(), nil
	})
	f.cs.PrependWatchReactor("events", func(k8stesting.Action) (bool, watch.Interface, error) {
		return true, f.events, nil
	})
	f.cs.PrependReactor("delete", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.deleted <- a.(k8stesting.DeleteAction).GetName()
		f.mu.Lock()
		od := f.onDelete
		f.mu.Unlock()
		if od != nil {
			od()
		}
		return false, nil, nil // the tracker deletes it
	})
	return f
}

func (f *fakeCluster) api() kuberunner.API {
	return &testkit.ClientsetAPI{Clientset: f.cs, Logs: func(ctx context.Context, ns, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
		if opts.Container != kuberunner.ScanContainer || !opts.Follow {
			f.t.Errorf("log options %+v, want the scan container followed", opts)
		}
		go func() {
			<-ctx.Done()
			f.logR.CloseWithError(ctx.Err())
		}()
		return f.logR, nil
	}}
}

func (f *fakeCluster) runner(t *testing.T, shape func(*kuberunner.Config)) *kuberunner.Runner {
	t.Helper()
	cfg := kuberunner.Config{Namespace: fakeNS, Image: fakeImage, Instance: "fake"}
	if shape != nil {
		shape(&cfg)
	}
	r, err := kuberunner.New(f.api(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		if p := r.Pending(); len(p) != 0 {
			t.Errorf("pending after close: %v", p)
		}
		jobs, err := f.cs.BatchV1().Jobs(fakeNS).List(context.Background(), metav1.ListOptions{})
		if err != nil || len(jobs.Items) != 0 {
			t.Errorf("Jobs left: %v %v", jobs, err)
		}
	})
	return r
}

// pod is the scan's pod in a given state of its scan container.
func pod(state corev1.ContainerState, conds ...corev1.PodCondition) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "scan-pod", Namespace: fakeNS},
		Status: corev1.PodStatus{
			Phase:             corev1.PodRunning,
			Conditions:        conds,
			ContainerStatuses: []corev1.ContainerStatus{{Name: kuberunner.ScanContainer, State: state, ImageID: fakeImage}},
		},
	}
}

func running() *corev1.Pod {
	return pod(corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})
}

func terminated(code int32, reason string) *corev1.Pod {
	return pod(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason}})
}

// exitLines is what the pod's launcher prints after nmap exits with code.
func exitLines(code int) string {
	return fmt.Sprintf("\n\x1enmap-mcp-exit=%d\n\x1f\n\x1f\x1enmap-mcp-exit=%d\n", code, code)
}

// fakeSpec is a scan spec with the given deadline (0: none).
func fakeSpec(deadline time.Duration) sandbox.Spec {
	sp := spec(sandbox.Unprivileged, nil, 0, "-sT", "-p", "1", "127.0.0.1")
	sp.Deadline = deadline
	return sp
}

// events records a run's lifecycle steps.
type events struct {
	mu    sync.Mutex
	steps []executor.Step
}

func (e *events) on(ev executor.Event) {
	e.mu.Lock()
	e.steps = append(e.steps, ev.Step)
	e.mu.Unlock()
}

func (e *events) has(steps ...executor.Step) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range steps {
		if !slices.Contains(e.steps, s) {
			return false
		}
	}
	return true
}

// runAsync runs job and returns its outcome on a channel.
type outcome struct {
	res *executor.Result
	err error
}

func runAsync(ctx context.Context, r *kuberunner.Runner, job executor.Job) <-chan outcome {
	c := make(chan outcome, 1)
	go func() {
		res, err := r.Run(ctx, job)
		c <- outcome{res, err}
	}()
	return c
}

func wait(t *testing.T, c <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-c:
		return o
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
		return outcome{}
	}
}

func TestFakeRunExitsZeroWithOutput(t *testing.T) {
	f := newFakeCluster(t, 1)
	r := f.runner(t, nil)
	var ev events
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(time.Minute), OnEvent: ev.on})
	f.podWatches[0].Add(pod(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}))
	f.podWatches[0].Modify(running())
	_, _ = io.WriteString(f.logW, "<nmaprun>\n\x1fWarning: one\n</nmaprun>\n"+exitLines(0))
	o := wait(t, c)
	if o.err != nil {
		t.Fatalf("err %v", o.err)
	}
	if string(o.res.Stdout) != "<nmaprun>\n</nmaprun>\n" || string(o.res.Stderr) != "Warning: one\n" || o.res.ExitCode != 0 {
		t.Fatalf("stdout %q stderr %q exit %d", o.res.Stdout, o.res.Stderr, o.res.ExitCode)
	}
	if !strings.HasPrefix(o.res.ContainerID, "job/") || o.res.Started.IsZero() || o.res.Exited.IsZero() {
		t.Fatalf("result %+v", o.res)
	}
	if !ev.has(executor.StepCreated, executor.StepStarted, executor.StepExited) || ev.has(executor.StepKilled) {
		t.Fatalf("steps %v", ev.steps)
	}
	_ = f.logW.Close()
}

func TestFakeNonZeroExit(t *testing.T) {
	f := newFakeCluster(t, 1)
	r := f.runner(t, nil)
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(time.Minute)})
	f.podWatches[0].Add(running())
	_, _ = io.WriteString(f.logW, "\x1fFailed to resolve \"nowhere\".\n"+exitLines(1))
	o := wait(t, c)
	var ee *executor.ExitError
	if !errors.As(o.err, &ee) || ee.Code != 1 || !strings.Contains(ee.Stderr, "Failed to resolve") || o.res.ExitCode != 1 {
		t.Fatalf("err %v, res %+v", o.err, o.res)
	}
	_ = f.logW.Close()
}

func TestFakeOOMKilled(t *testing.T) {
	f := newFakeCluster(t, 1)
	r := f.runner(t, nil)
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(time.Minute)})
	f.podWatches[0].Add(running())
	_, _ = io.WriteString(f.logW, "<nmaprun>\n")
	_ = f.logW.Close() // the kernel killed it: no exit line
	f.podWatches[0].Modify(terminated(137, "OOMKilled"))
	o := wait(t, c)
	var oe *executor.OOMError
	if !errors.As(o.err, &oe) || !o.res.OOMKilled || o.res.ExitCode != 137 || string(o.res.Stdout) != "<nmaprun>\n" {
		t.Fatalf("err %v, res %+v", o.err, o.res)
	}
}

func TestFakeDeadlineKills(t *testing.T) {
	f := newFakeCluster(t, 1)
	f.onDelete = func() {
		_ = f.logW.Close()
		f.podWatches[0].Modify(terminated(143, "Error"))
	}
	r := f.runner(t, nil)
	var ev events
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(300 * time.Millisecond), OnEvent: ev.on})
	f.podWatches[0].Add(running())
	_, _ = io.WriteString(f.logW, "partial\n")
	o := wait(t, c)
	var te *executor.TimeoutError
	if !errors.As(o.err, &te) || !o.res.TimedOut || string(o.res.Stdout) != "partial\n" {
		t.Fatalf("err %v, res %+v", o.err, o.res)
	}
	// A killed run's Job is gone before Run returns.
	if !ev.has(executor.StepKilled, executor.StepRemoved) || len(r.Pending()) != 0 {
		t.Fatalf("steps %v, pending %v", ev.steps, r.Pending())
	}
}

func TestFakeCancel(t *testing.T) {
	f := newFakeCluster(t, 1)
	f.onDelete = func() { _ = f.logW.Close() }
	r := f.runner(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	c := runAsync(ctx, r, executor.Job{Spec: fakeSpec(time.Minute)})
	f.podWatches[0].Add(running())
	_, _ = io.WriteString(f.logW, "partial\n")
	cancel()
	o := wait(t, c)
	if !errors.Is(o.err, context.Canceled) || !o.res.Canceled || string(o.res.Stdout) != "partial\n" {
		t.Fatalf("err %v, res %+v", o.err, o.res)
	}
	select {
	case <-f.deleted:
	default:
		t.Fatal("the Job was not deleted")
	}
}

func TestFakeRefusedByEvent(t *testing.T) {
	f := newFakeCluster(t, 1)
	r := f.runner(t, nil)
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(time.Minute)})
	f.events.Add(&corev1.Event{Reason: "FailedCreate",
		Message: `Error creating: pods "x" is forbidden: violates PodSecurity "restricted:latest": unrestricted capabilities`})
	o := wait(t, c)
	var re *kuberunner.RefusedError
	if !errors.As(o.err, &re) || re.Cause != "pod-security" || re.Level != "restricted:latest" {
		t.Fatalf("err %v", o.err)
	}
}

func TestFakeUnschedulable(t *testing.T) {
	f := newFakeCluster(t, 1)
	r := f.runner(t, func(c *kuberunner.Config) { c.UnschedulableGrace = 100 * time.Millisecond })
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(time.Minute)})
	p := pod(corev1.ContainerState{}, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
		Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."})
	p.Status.ContainerStatuses = nil
	f.podWatches[0].Add(p)
	o := wait(t, c)
	var re *kuberunner.RefusedError
	if !errors.As(o.err, &re) || re.Cause != "unschedulable" || !strings.Contains(o.err.Error(), "node affinity/selector") {
		t.Fatalf("err %v", o.err)
	}
}

func TestFakeImageProblem(t *testing.T) {
	f := newFakeCluster(t, 1)
	r := f.runner(t, nil)
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(time.Minute)})
	f.podWatches[0].Add(pod(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: "not present"}}))
	o := wait(t, c)
	var ie *executor.ImageError
	if !errors.As(o.err, &ie) {
		t.Fatalf("err %v", o.err)
	}
}

// A pod watch that ends is opened again, and the run goes on.
func TestFakeWatchEndsAndResumes(t *testing.T) {
	f := newFakeCluster(t, 2)
	r := f.runner(t, nil)
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(time.Minute)})
	f.podWatches[0].Stop()
	f.podWatches[1].Add(running())
	_, _ = io.WriteString(f.logW, "ok\n"+exitLines(0))
	o := wait(t, c)
	if o.err != nil || string(o.res.Stdout) != "ok\n" {
		t.Fatalf("err %v, res %+v", o.err, o.res)
	}
	_ = f.logW.Close()
}

// The API refuses to create the Job: the error names what was refused.
func TestFakeCreateForbidden(t *testing.T) {
	f := newFakeCluster(t, 1)
	f.cs.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "x", errors.New("no"))
	})
	r := f.runner(t, nil)
	_, err := r.Run(context.Background(), executor.Job{Spec: fakeSpec(time.Minute)})
	var re *kuberunner.RefusedError
	if !errors.As(err, &re) || re.Cause != "forbidden" || !strings.Contains(err.Error(), "create the scan's Job") {
		t.Fatalf("err %v", err)
	}
}

// connRefused is the error of a call to an API server that is down.
var connRefused = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}

// A pod watch that ends and cannot be opened again within the API grace
// (the API server is down) ends the run as lost, keeping the output read
// until then; the Job is deleted once the API answers.
func TestFakeLostWatch(t *testing.T) {
	f := newFakeCluster(t, 1)
	f.watchErr = connRefused
	f.onDelete = func() { _ = f.logW.Close() }
	r := f.runner(t, func(c *kuberunner.Config) { c.APIGrace = 300 * time.Millisecond })
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(time.Minute)})
	f.podWatches[0].Add(running())
	_, _ = io.WriteString(f.logW, "partial\n")
	time.Sleep(50 * time.Millisecond)
	f.podWatches[0].Stop()
	o := wait(t, c)
	var lost *executor.LostError
	if !errors.As(o.err, &lost) || !strings.Contains(o.err.Error(), "stopped answering") || string(o.res.Stdout) != "partial\n" {
		t.Fatalf("err %v, res %+v", o.err, o.res)
	}
}

// A watch refused for good (not a server away) fails the run at once,
// naming what was refused.
func TestFakeWatchRefused(t *testing.T) {
	f := newFakeCluster(t, 1)
	f.watchErr = apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("no"))
	f.onDelete = func() { _ = f.logW.Close() }
	r := f.runner(t, nil)
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(time.Minute)})
	f.podWatches[0].Add(running())
	time.Sleep(50 * time.Millisecond)
	f.podWatches[0].Stop()
	o := wait(t, c)
	var re *kuberunner.RefusedError
	if !errors.As(o.err, &re) || !strings.Contains(o.err.Error(), "watch the scan's pod") {
		t.Fatalf("err %v", o.err)
	}
}

// The API server restarts mid-scan: the pod's watch and its log stream
// break; both are opened again when it answers, the log resumes after
// what was read (nothing twice, nothing lost) and the scan finishes.
func TestFakeAPIRestartResumes(t *testing.T) {
	f := newFakeCluster(t, 2)
	var mu sync.Mutex
	var opened int
	streams := []string{"line one\n\x1fwarn\nline t", "line one\n\x1fwarn\nline two\nline three\n" + exitLines(0)}
	api := f.api().(*testkit.ClientsetAPI)
	api.Logs = func(ctx context.Context, ns, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
		mu.Lock()
		defer mu.Unlock()
		opened++
		switch opened {
		case 1: // cut mid-line by the restart
			return io.NopCloser(io.MultiReader(strings.NewReader(streams[0]), errReader{io.ErrUnexpectedEOF})), nil
		case 2: // the API server is still down
			return nil, connRefused
		}
		return io.NopCloser(strings.NewReader(streams[1])), nil
	}
	r, err := kuberunner.New(api, kuberunner.Config{Namespace: fakeNS, Image: fakeImage}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(time.Minute)})
	f.podWatches[0].Add(running())
	f.podWatches[0].Stop() // the API server went away
	f.podWatches[1].Add(running())
	o := wait(t, c)
	if o.err != nil || string(o.res.Stdout) != "line one\nline two\nline three\n" || string(o.res.Stderr) != "warn\n" {
		t.Fatalf("err %v, stdout %q stderr %q", o.err, o.res.Stdout, o.res.Stderr)
	}
	if opened != 3 {
		t.Fatalf("log opened %d times, want 3", opened)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// The Job's deletion is retried while the API does not answer, and ends
// once it does; one never deleted by Close is named by Close.
func TestFakeDeletionRetried(t *testing.T) {
	f := newFakeCluster(t, 1)
	var mu sync.Mutex
	failures := 3
	f.cs.PrependReactor("delete", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			return true, nil, connRefused
		}
		return false, nil, nil
	})
	r := f.runner(t, nil)
	var ev events
	c := runAsync(context.Background(), r, executor.Job{Spec: fakeSpec(time.Minute), OnEvent: ev.on})
	f.podWatches[0].Add(running())
	_, _ = io.WriteString(f.logW, "ok\n"+exitLines(0))
	if o := wait(t, c); o.err != nil {
		t.Fatal(o.err)
	}
	_ = f.logW.Close()
	for end := time.Now().Add(5 * time.Second); len(r.Pending()) > 0 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if failures != 0 || !ev.has(executor.StepRemoved) {
		t.Fatalf("failures left %d, steps %v", failures, ev.steps)
	}

	g := newFakeCluster(t, 1)
	g.cs.PrependReactor("delete", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, connRefused
	})
	r2, err := kuberunner.New(g.api(), kuberunner.Config{Namespace: fakeNS, Image: fakeImage}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ev2 events
	c = runAsync(context.Background(), r2, executor.Job{Spec: fakeSpec(time.Minute), OnEvent: ev2.on})
	g.podWatches[0].Add(running())
	_, _ = io.WriteString(g.logW, "ok\n"+exitLines(0))
	if o := wait(t, c); o.err != nil {
		t.Fatal(o.err)
	}
	_ = g.logW.Close()
	time.Sleep(300 * time.Millisecond)
	if len(r2.Pending()) != 1 {
		t.Fatalf("pending %v, want the Job", r2.Pending())
	}
	err = r2.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "were not deleted") || !ev2.has(executor.StepAbandoned) {
		t.Fatalf("close: %v, steps %v", err, ev2.steps)
	}
}

// An API server that is down when a scan starts gives an error that
// says so and what to do.
func TestFakeAPIDownAtStart(t *testing.T) {
	f := newFakeCluster(t, 0)
	f.watchErr = connRefused
	r := f.runner(t, nil)
	_, err := r.Run(context.Background(), executor.Job{Spec: fakeSpec(time.Minute)})
	if err == nil || !strings.Contains(err.Error(), "did not answer") || !strings.Contains(err.Error(), "as soon as it does") {
		t.Fatalf("err %v", err)
	}
}
