package kuberunner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/fence"
	"github.com/nmap-mcp/nmap-mcp/internal/lifecycle"
)

// Runner runs scans as Jobs in one namespace; it is an executor.Runner.
type Runner struct {
	client kubernetes.Interface
	cfg    Config
	log    *slog.Logger
	// cleanup bounds each API call made on a context of our own (create,
	// delete, the wait for a deleted Job to be gone).
	cleanup time.Duration

	// track holds the Jobs created and not yet seen gone, and their
	// background deletions.
	track *lifecycle.Tracker
}

// New returns a runner; log may be nil. It checks cfg.
func New(client kubernetes.Interface, cfg Config, log *slog.Logger) (*Runner, error) {
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
	emit := func(step executor.Step, detail string) {
		if job.OnEvent != nil {
			job.OnEvent(executor.Event{Step: step, ContainerID: res.ContainerID, Detail: detail, At: time.Now()})
		}
	}
	kj, err := JobFor(r.cfg, job.Spec)
	if err != nil {
		return res, err
	}
	if job.BeforeStart != nil {
		if err := job.BeforeStart(); err != nil {
			return res, err
		}
	}
	name := kj.Name
	// The watches live as long as the run, whatever ctx does: after a
	// cancellation we still follow the pod to its end.
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	pods := r.client.CoreV1().Pods(r.cfg.Namespace)
	selector := metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + name}
	podW, err := pods.Watch(watchCtx, selector)
	if err != nil {
		return res, r.apiErr("watch the scan's pod", err)
	}
	defer func() { podW.Stop() }()

	stepCtx, stepCancel := context.WithTimeout(context.WithoutCancel(ctx), r.cleanup)
	defer stepCancel()
	created, err := r.client.BatchV1().Jobs(r.cfg.Namespace).Create(stepCtx, kj, metav1.CreateOptions{})
	if err != nil {
		return res, r.apiErr("create the scan's Job", err)
	}
	res.ContainerID = "job/" + name
	res.Created = time.Now()
	r.track.Add(name)
	emit(executor.StepCreated, "")
	gone := false
	defer func() {
		if !gone {
			r.deleteInBackground(name, func() { emit(executor.StepRemoved, "") })
		}
	}()
	// Refusals of the Job's pod (Pod Security, quota) show only as events.
	var eventC <-chan watch.Event
	if evW, err := r.client.CoreV1().Events(r.cfg.Namespace).Watch(watchCtx, metav1.ListOptions{
		FieldSelector: "involvedObject.uid=" + string(created.UID)}); err == nil {
		defer evW.Stop()
		eventC = evW.ResultChan()
	} else {
		r.log.Debug("watch the Job's events (refusals will show only as a timeout)", "err", err)
	}

	var (
		podName     string
		started     bool
		logsDone    chan struct{}
		logErr      error
		reported    <-chan int
		statusKnown bool
		term        *corev1.ContainerStateTerminated
		deadline    <-chan time.Time
		unsched     <-chan time.Time
		unschedMsg  string
		failure     error
		killed      bool
		giveUp      <-chan time.Time
		done        = ctx.Done()
	)
	stopReport := make(chan struct{})
	defer close(stopReport)
	kill := func(why string) {
		if killed {
			return
		}
		killed = true
		emit(executor.StepKilled, why)
		r.deleteJob(name)
		giveUp = time.After(lifecycle.DrainGrace + 5*time.Second)
	}
	podC := podW.ResultChan()
	for {
		if logsDone == nil && (failure != nil || killed) && !started {
			break // nothing ran, nothing to read
		}
		if logsDone != nil && isClosed(logsDone) && (statusKnown || term != nil || killed) {
			break
		}
		if statusKnown && !killed {
			// The launcher reports the exit after the last of nmap's
			// output, on both streams: everything is in. The pod's end
			// and the Job's deletion finish in the background.
			break
		}
		select {
		case ev, ok := <-podC:
			if !ok {
				// Watches end now and then; pick up where it was.
				podW.Stop()
				if podW, err = pods.Watch(watchCtx, selector); err != nil {
					if failure == nil {
						failure = r.apiErr("watch the scan's pod", err)
					}
					kill("lost the pod's watch")
					podC = nil
					continue
				}
				podC = podW.ResultChan()
				continue
			}
			pod, isPod := ev.Object.(*corev1.Pod)
			if !isPod {
				continue
			}
			podName = pod.Name
			if failure == nil && !killed {
				if p := r.podProblem(pod); p != nil {
					failure = p
					kill("the cluster could not run it")
					continue
				}
				if msg, ok := unschedulable(pod); ok && unsched == nil {
					unschedMsg = msg
					grace := r.cfg.UnschedulableGrace
					if grace <= 0 {
						grace = 15 * time.Second
					}
					t := time.NewTimer(grace)
					defer t.Stop()
					unsched = t.C
				}
			}
			cs := scanStatus(pod)
			if cs == nil {
				continue
			}
			if !started && (cs.State.Running != nil || cs.State.Terminated != nil) {
				started = true
				// When the runner sees it: the API's start time has only
				// second precision. The wall clock counts from here.
				res.Started = time.Now()
				emit(executor.StepStarted, "pod "+pod.Name)
				if err := r.checkImage(cs); err != nil && failure == nil {
					failure = err
					kill("image mismatch")
				}
				logsDone = make(chan struct{})
				go func(pod string, done chan struct{}) {
					defer close(done)
					logErr = r.follow(watchCtx, pod, out)
				}(pod.Name, logsDone)
				reported = out.Reported(stopReport)
				if job.Spec.Deadline > 0 {
					t := time.NewTimer(job.Spec.Deadline)
					defer t.Stop()
					deadline = t.C
				}
			}
			if cs.State.Terminated != nil {
				term = cs.State.Terminated
			}
		case ev, ok := <-eventC:
			if !ok {
				eventC = nil
				continue
			}
			if e, isEvent := ev.Object.(*corev1.Event); isEvent && e.Reason == "FailedCreate" && failure == nil {
				failure = refused(r.cfg.Namespace, e.Message)
				kill("the cluster refused its pod")
			}
		case status := <-reported:
			reported = nil
			if status < 128 {
				res.ExitCode, statusKnown = status, true
			}
		case <-logsDoneC(logsDone):
			// The checks at the top decide; without an exit status yet,
			// the pod's watch will tell how it ended.
		case <-giveUp:
			giveUp = nil
			stopWatch() // ends the log stream: keep what was read
			podC, eventC = nil, nil
			if logsDone == nil {
				logsDone = make(chan struct{})
				close(logsDone)
			}
		case <-deadline:
			deadline = nil
			res.TimedOut = true
			kill("wall-clock limit")
		case <-unsched:
			unsched = nil
			if !started && failure == nil {
				failure = &RefusedError{Cause: "unschedulable", Namespace: r.cfg.Namespace,
					Message: "no node can run the scan's pod: " + unschedMsg}
				kill("unschedulable")
			}
		case <-done:
			done = nil
			res.Canceled = true
			kill("cancelled")
		}
	}
	if statusKnown && logsDone != nil && !isClosed(logsDone) {
		stopWatch() // nothing more to read; the kubelet may take a second to end the stream
	}
	if logsDone != nil {
		select {
		case <-logsDone:
		case <-time.After(lifecycle.DrainGrace):
			stopWatch()
			<-logsDone
		}
	}
	out.Flush()
	res.Exited = time.Now()
	if term != nil {
		if !statusKnown {
			res.ExitCode = int(term.ExitCode)
		}
		res.OOMKilled = term.Reason == "OOMKilled"
	}
	if killed {
		// A killed run's Job is gone before Run returns, as a killed
		// container is.
		gone = true
		r.waitGone(name)
		emit(executor.StepRemoved, "")
	}
	emit(executor.StepExited, fmt.Sprintf("exit code %d", res.ExitCode))
	if failure != nil && !res.Canceled {
		return res, failure
	}
	var waitErr error
	if logErr != nil && !res.Canceled && !res.TimedOut && !statusKnown {
		waitErr = fmt.Errorf("read the pod's log: %w", logErr)
	}
	if podName == "" && !res.Canceled && waitErr == nil && term == nil && !statusKnown {
		waitErr = errors.New("the Job's pod never appeared")
	}
	return res, executor.Classify(ctx, job.Spec, res, waitErr, out.StderrTail())
}

// follow streams the scan container's log into out, splitting it back
// into stdout and stderr.
func (r *Runner) follow(ctx context.Context, pod string, out *executor.Output) error {
	rc, err := r.client.CoreV1().Pods(r.cfg.Namespace).GetLogs(pod, &corev1.PodLogOptions{Container: ScanContainer, Follow: true}).Stream(ctx)
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
	err := r.client.BatchV1().Jobs(r.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg})
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
		_, err := r.client.BatchV1().Jobs(r.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
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
