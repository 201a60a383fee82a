package kuberunner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/fence"
	"github.com/nmap-mcp/nmap-mcp/internal/lifecycle"
)

// Runner runs scans as Jobs in one namespace; it is an executor.Runner.
type Runner struct {
	client API
	cfg    Config
	log    *slog.Logger
	// cleanup bounds each API call made on a context of our own (create,
	// delete, the wait for a deleted Job to be gone).
	cleanup time.Duration

	// track holds the Jobs created and not yet seen gone, and their
	// background deletions.
	track *lifecycle.Tracker
}

// New returns a runner; log may be nil. It checks cfg. client may be nil
// for a runner that only shapes specs (Shape).
func New(client API, cfg Config, log *slog.Logger) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{client: client, cfg: cfg, log: log, cleanup: 30 * time.Second, track: lifecycle.New()}, nil
}

// Config is the runner's configuration.
func (r *Runner) Config() Config { return r.cfg }

// Run creates the spec's Job, follows its pod's log into the job's
// writers, and deletes the Job: the Kubernetes counterpart of
// executor.Executor.Run, with the same errors (*executor.TimeoutError,
// *executor.OOMError, *executor.ExitError, *executor.ImageError,
// *fence.Error, a cancellation) plus *RefusedError when the cluster
// refuses or cannot place the pod. The Result comes back even with an
// error; ContainerID is "job/NAME".
func (r *Runner) Run(ctx context.Context, job executor.Job) (*executor.Result, error) {
	res := &executor.Result{}
	if err := ctx.Err(); err != nil {
		res.Canceled = true
		return res, fmt.Errorf("scan not started: %w", err)
	}
	out := executor.NewOutput(job)
	defer out.Fill(res)
	s, err := r.start(ctx, job, res, out)
	if s != nil {
		defer s.close()
	}
	if err != nil {
		return res, err
	}
	for !s.over() {
		s.step()
	}
	return res, s.finish()
}

// follow streams the scan container's log into out, splitting it back
// into stdout and stderr. A stream the API server cut (it stopped or
// restarted) is opened again, with backoff, until ctx ends, and resumes
// after the bytes already read: the pod's log is the same file.
func (r *Runner) follow(ctx context.Context, pod string, out *executor.Output) error {
	var read int64
	wait := retryFirst
	for {
		rc, err := r.client.PodLogs(ctx, r.cfg.Namespace, pod, &corev1.PodLogOptions{Container: ScanContainer, Follow: true})
		if err == nil {
			err = skip(rc, read)
			if err == nil {
				var n int64
				var cut []byte
				n, cut, err = demux(rc, out.Stdout(), out.Stderr())
				read += n
				if err != nil && (ctx.Err() != nil || !transient(err)) {
					passOn(cut, out.Stdout(), out.Stderr()) // keep what was read
				}
			}
			rc.Close()
			if errors.Is(err, io.EOF) {
				return nil // the log is shorter than what was read: nothing new
			}
			if err == nil {
				return nil
			}
		}
		if ctx.Err() != nil || !transient(err) {
			return err
		}
		r.log.Debug("the pod's log stream broke; opening it again", "pod", pod, "read", read, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		wait = min(2*wait, retryMax)
	}
}

// skip discards the first n bytes of a log stream opened again.
func skip(r io.Reader, n int64) error {
	if n == 0 {
		return nil
	}
	_, err := io.CopyN(io.Discard, r, n)
	return err
}

// demux splits a pod log whose stderr lines start with stderrMark. It
// returns the bytes of the lines it passed on; a last line that an error
// cut short is returned apart (cut), not passed on, so that a stream
// opened again can resume at a line's start.
func demux(r io.Reader, stdout, stderr io.Writer) (n int64, cut []byte, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return n, line, err
		}
		passOn(line, stdout, stderr)
		n += int64(len(line))
		if err == io.EOF {
			return n, nil, nil
		}
	}
}

// passOn writes one line of the pod's log to its stream.
func passOn(line []byte, stdout, stderr io.Writer) {
	if len(line) == 0 {
		return
	}
	if line[0] == stderrMark {
		_, _ = stderr.Write(line[1:])
	} else {
		_, _ = stdout.Write(line)
	}
}

// transient says whether err is the API server going away or failing for
// now (a restart, an overload), worth trying again; not a refusal.
func transient(err error) bool {
	var ne net.Error
	return utilnet.IsProbableEOF(err) || utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) ||
		utilnet.IsHTTP2ConnectionLost(err) || utilnet.IsTimeout(err) || utilnet.IsNoRoutesError(err) ||
		errors.As(err, &ne) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsTooManyRequests(err) || apierrors.IsInternalError(err)
}

// podProblem says why a pod cannot run the scan, or nil.
func (r *Runner) podProblem(pod *corev1.Pod) error {
	for _, cs := range pod.Status.InitContainerStatuses {
		if cs.Name == FenceContainer && cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0 {
			msg := strings.TrimSpace(cs.State.Terminated.Message)
			if msg == "" {
				msg = cs.State.Terminated.Reason
			}
			return &fence.Error{Err: fmt.Errorf("the fence init container exited with code %d: %s", cs.State.Terminated.ExitCode, msg)}
		}
	}
	all := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range all {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "ImageInspectError":
			return &executor.ImageError{Image: r.cfg.Image, Err: fmt.Errorf("%s on the node: %s", w.Reason, w.Message)}
		case "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "PreCreateHookError", "PreStartHookError":
			return &RefusedError{Cause: w.Reason, Namespace: r.cfg.Namespace,
				Message: fmt.Sprintf("the node could not start container %s: %s", cs.Name, w.Message)}
		}
	}
	if pod.Status.Phase == corev1.PodFailed && scanStatus(pod) != nil && scanStatus(pod).State.Terminated == nil {
		return &RefusedError{Cause: pod.Status.Reason, Namespace: r.cfg.Namespace, Message: "the pod failed before nmap ran: " + pod.Status.Message}
	}
	return nil
}

// unschedulable reports the scheduler's message for a pod no node takes.
func unschedulable(pod *corev1.Pod) (string, bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return c.Message, true
		}
	}
	return "", false
}

func scanStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == ScanContainer {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// checkImage refuses a pod whose image is not the configured pin.
func (r *Runner) checkImage(cs *corev1.ContainerStatus) error {
	want := r.cfg.Digest()
	if cs.ImageID == "" || want == "" {
		return nil // not reported yet; the pull policy and the digest reference still pin it
	}
	if !strings.HasSuffix(cs.ImageID, "@"+want) && cs.ImageID != want {
		return &ImagePinError{Want: r.cfg.Image, Got: cs.ImageID}
	}
	return nil
}

// Backoff of the retries while the API server does not answer: the first
// retry comes after retryFirst, each later one after twice the wait
// before it, up to retryMax.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 2 * time.Second
)

// deleteJob deletes a Job and its pod (foreground propagation), once.
func (r *Runner) deleteJob(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cleanup)
	defer cancel()
	fg := metav1.DeletePropagationForeground
	err := r.client.DeleteJob(ctx, r.cfg.Namespace, name, metav1.DeleteOptions{PropagationPolicy: &fg})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete Job %s: %w", name, err)
	}
	return nil
}

// waitGone waits until the Job (and so, with foreground deletion, its
// pod) is gone. It gives up when the API does not answer, or the Job is
// still there after the clean-up bound.
func (r *Runner) waitGone(name string) error {
	end := time.Now().Add(r.cleanup)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := r.client.GetJob(ctx, r.cfg.Namespace, name)
		cancel()
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return fmt.Errorf("see whether Job %s is gone: %w", name, err)
		case !time.Now().Before(end):
			return fmt.Errorf("Job %s is still there %s after its deletion", name, r.cleanup)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeJob deletes the Job and waits until it is gone, retrying with
// backoff while the API server does not answer (a restart leaves the Job
// of a lost scan behind; its deletion works once the API answers again),
// until it is gone or Close is called, after which it tries once more and
// gives up.
func (r *Runner) removeJob(name string) error {
	start := time.Now()
	wait := retryFirst
	for n := 1; ; n++ {
		err := r.deleteJob(name)
		if err == nil {
			err = r.waitGone(name)
		}
		if err == nil {
			if n > 1 {
				r.log.Info("deleted the Job of a scan once the API answered again", "job", name, "after", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		select {
		case <-r.track.Stopping():
			return fmt.Errorf("delete Job %s (gave up after %d attempts): %w", name, n, err)
		default:
		}
		if n == 1 {
			r.log.Warn("delete the scan's Job; retrying until the API answers", "job", name, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.track.Stopping():
			t.Stop()
		}
		wait = min(2*wait, retryMax)
	}
}

// deleteInBackground removes the Job in the background (removeJob); one
// it gives up on is named by Close, and its TTL or the next start-up
// sweep removes it.
func (r *Runner) deleteInBackground(name string, removed func(), abandoned func(error)) {
	r.track.Go(func() {
		err := r.removeJob(name)
		r.track.Gone(name)
		if err != nil {
			r.log.Error("delete the scan's Job; its TTL or the next start-up sweep will", "job", name, "err", err)
			r.track.Abandon(name)
			abandoned(err)
			return
		}
		removed()
	})
}

// Close waits until every Job this runner created is gone, or ctx ends;
// deletions still retrying (the API does not answer) try once more and
// give up, and the Jobs given up on are named in the error.
func (r *Runner) Close(ctx context.Context) error {
	if err := r.track.Wait(ctx, "Jobs being deleted"); err != nil {
		return err
	}
	if abandoned := r.track.Abandoned(); len(abandoned) > 0 {
		return fmt.Errorf("Jobs %s were not deleted (the Kubernetes API did not answer); their TTL or the next start-up sweep removes them", strings.Join(abandoned, ", "))
	}
	return nil
}

// Pending lists the Jobs created and not yet seen gone.
func (r *Runner) Pending() []string { return r.track.Pending() }

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// logsDoneC is c while it may still close; nil (never ready) otherwise,
// so the loop does not spin on a closed channel.
func logsDoneC(c chan struct{}) chan struct{} {
	if c == nil || isClosed(c) {
		return nil
	}
	return c
}
