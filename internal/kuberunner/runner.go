package kuberunner

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
// into stdout and stderr.
func (r *Runner) follow(ctx context.Context, pod string, out *executor.Output) error {
	rc, err := r.client.PodLogs(ctx, r.cfg.Namespace, pod, &corev1.PodLogOptions{Container: ScanContainer, Follow: true})
	if err != nil {
		return err
	}
	defer rc.Close()
	return demux(rc, out.Stdout(), out.Stderr())
}

// demux splits a pod log whose stderr lines start with stderrMark.
func demux(r io.Reader, stdout, stderr io.Writer) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if line[0] == stderrMark {
				_, _ = stderr.Write(line[1:])
			} else {
				_, _ = stdout.Write(line)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
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

// deleteJob deletes a Job and its pod (foreground propagation).
func (r *Runner) deleteJob(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cleanup)
	defer cancel()
	fg := metav1.DeletePropagationForeground
	err := r.client.DeleteJob(ctx, r.cfg.Namespace, name, metav1.DeleteOptions{PropagationPolicy: &fg})
	if err != nil && !apierrors.IsNotFound(err) {
		r.log.Error("delete the scan's Job; the next start-up sweep or its TTL will", "job", name, "err", err)
	}
}

// waitGone waits until the Job (and so, with foreground deletion, its
// pod) is gone, or the clean-up bound passes.
func (r *Runner) waitGone(name string) {
	defer r.track.Gone(name)
	end := time.Now().Add(r.cleanup)
	for time.Now().Before(end) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := r.client.GetJob(ctx, r.cfg.Namespace, name)
		cancel()
		if apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.log.Warn("the scan's Job is not gone yet; its TTL will remove it", "job", name)
}

func (r *Runner) deleteInBackground(name string, removed func()) {
	r.track.Go(func() {
		r.deleteJob(name)
		r.waitGone(name)
		removed()
	})
}

// Close waits until every Job this runner created is gone, or ctx ends.
func (r *Runner) Close(ctx context.Context) error {
	return r.track.Wait(ctx, "Jobs being deleted")
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
