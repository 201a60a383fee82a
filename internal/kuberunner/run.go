package kuberunner

import (
	"context"
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/lifecycle"
)

// run is the state of one Run: Runner.start makes it, step handles one
// event at a time (the pod's watch, the Job's events, the exit reported
// in-band, the log's end, and the timers), over says when it is done and
// finish turns it into Run's error.
type run struct {
	r   *Runner
	ctx context.Context
	job executor.Job
	res *executor.Result
	out *executor.Output

	name     string
	selector metav1.ListOptions
	// The watches live as long as the run, whatever ctx does: after a
	// cancellation we still follow the pod to its end.
	watchCtx  context.Context
	stopWatch context.CancelFunc
	podW      watch.Interface
	evW       watch.Interface
	podC      <-chan watch.Event
	eventC    <-chan watch.Event

	podName     string
	started     bool
	logsDone    chan struct{}
	logErr      error
	reported    <-chan int
	stopReport  chan struct{}
	statusKnown bool
	term        *corev1.ContainerStateTerminated
	unschedMsg  string
	failure     error
	killed      bool
	// gone is set once the Job is seen deleted (or handed to a background
	// deletion).
	gone bool
	// created is set once the Job exists.
	created bool
	// deleteErr is the error of the kill's deletion of the Job.
	deleteErr error
	// lostSince is when the pod's watch ended and could not be opened
	// again (the API server stopped answering); zero while it runs.
	lostSince   time.Time
	rewatch     <-chan time.Time
	rewatchWait time.Duration

	deadline, unsched, giveUp <-chan time.Time
	timers                    []*time.Timer
	done                      <-chan struct{}
}

// start builds the Job, opens the pod's watch, creates the Job and opens
// the watch of its events. It returns the run to close even with an error
// once there is something to close.
func (r *Runner) start(ctx context.Context, job executor.Job, res *executor.Result, out *executor.Output) (*run, error) {
	kj, err := JobFor(r.cfg, job.Spec)
	if err != nil {
		return nil, err
	}
	if job.BeforeStart != nil {
		if err := job.BeforeStart(); err != nil {
			return nil, err
		}
	}
	s := &run{r: r, ctx: ctx, job: job, res: res, out: out, name: kj.Name, done: ctx.Done(),
		selector: metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + kj.Name}}
	s.watchCtx, s.stopWatch = context.WithCancel(context.WithoutCancel(ctx))
	s.podW, err = r.client.WatchPods(s.watchCtx, r.cfg.Namespace, s.selector)
	if err != nil {
		return s, r.apiErr("watch the scan's pod", err)
	}
	s.podC = s.podW.ResultChan()

	stepCtx, stepCancel := context.WithTimeout(context.WithoutCancel(ctx), r.cleanup)
	defer stepCancel()
	created, err := r.client.CreateJob(stepCtx, r.cfg.Namespace, kj)
	if err != nil {
		return s, r.apiErr("create the scan's Job", err)
	}
	res.ContainerID = "job/" + s.name
	res.Created = time.Now()
	r.track.Add(s.name)
	s.created = true
	s.emit(executor.StepCreated, "")
	s.stopReport = make(chan struct{})
	// Refusals of the Job's pod (Pod Security, quota) show only as events.
	if evW, err := r.client.WatchEvents(s.watchCtx, r.cfg.Namespace, metav1.ListOptions{
		FieldSelector: "involvedObject.uid=" + string(created.UID)}); err == nil {
		s.evW = evW
		s.eventC = evW.ResultChan()
	} else {
		r.log.Debug("watch the Job's events (refusals will show only as a timeout)", "err", err)
	}
	return s, nil
}

// close releases what start and the events opened; a Job not yet seen
// gone is deleted in the background.
func (s *run) close() {
	for _, t := range s.timers {
		t.Stop()
	}
	if s.stopReport != nil {
		close(s.stopReport)
	}
	if s.evW != nil {
		s.evW.Stop()
	}
	if s.created && !s.gone {
		s.r.deleteInBackground(s.name, func() { s.emit(executor.StepRemoved, "") },
			func(err error) { s.emit(executor.StepAbandoned, err.Error()) })
	}
	if s.podW != nil {
		s.podW.Stop()
	}
	s.stopWatch()
}

func (s *run) emit(step executor.Step, detail string) {
	if s.job.OnEvent != nil {
		s.job.OnEvent(executor.Event{Step: step, ContainerID: s.res.ContainerID, Detail: detail, At: time.Now()})
	}
}

// timer returns a timer's channel, stopped when the run closes.
func (s *run) timer(d time.Duration) <-chan time.Time {
	t := time.NewTimer(d)
	s.timers = append(s.timers, t)
	return t.C
}

// over says whether the run is done with the pod.
func (s *run) over() bool {
	switch {
	case s.logsDone == nil && (s.failure != nil || s.killed) && !s.started:
		return true // nothing ran, nothing to read
	case s.logsDone != nil && isClosed(s.logsDone) && (s.statusKnown || s.term != nil || s.killed):
		return true
	case s.statusKnown && !s.killed:
		// The launcher reports the exit after the last of nmap's output,
		// on both streams: everything is in. The pod's end and the Job's
		// deletion finish in the background.
		return true
	}
	return false
}

// step waits for the next event and handles it.
func (s *run) step() {
	select {
	case ev, ok := <-s.podC:
		s.onPodEvent(ev, ok)
	case ev, ok := <-s.eventC:
		s.onJobEvent(ev, ok)
	case status := <-s.reported:
		s.onExitReported(status)
	case <-logsDoneC(s.logsDone):
		// over decides; without an exit status yet, the pod's watch will
		// tell how it ended.
	case <-s.rewatch:
		s.rewatch = nil
		s.watchAgain()
	case <-s.giveUp:
		s.onGiveUp()
	case <-s.deadline:
		s.onDeadline()
	case <-s.unsched:
		s.onUnschedulable()
	case <-s.done:
		s.onCancel()
	}
}

// kill deletes the Job, once; the run then drains for a bounded time.
func (s *run) kill(why string) {
	if s.killed {
		return
	}
	s.killed = true
	s.emit(executor.StepKilled, why)
	s.deleteErr = s.r.deleteJob(s.name)
	s.giveUp = s.timer(lifecycle.DrainGrace + 5*time.Second)
}

// fail records the run's first failure and kills it.
func (s *run) fail(err error, why string) {
	if s.failure == nil {
		s.failure = err
	}
	s.kill(why)
}

func (s *run) onPodEvent(ev watch.Event, ok bool) {
	if !ok {
		s.onWatchEnded()
		return
	}
	pod, isPod := ev.Object.(*corev1.Pod)
	if !isPod {
		return
	}
	s.podName = pod.Name
	if s.failure == nil && !s.killed {
		if p := s.r.podProblem(pod); p != nil {
			s.fail(p, "the cluster could not run it")
			return
		}
		if msg, ok := unschedulable(pod); ok && s.unsched == nil {
			s.unschedMsg = msg
			grace := s.r.cfg.UnschedulableGrace
			if grace <= 0 {
				grace = 15 * time.Second
			}
			s.unsched = s.timer(grace)
		}
	}
	cs := scanStatus(pod)
	if cs == nil {
		return
	}
	if !s.started && (cs.State.Running != nil || cs.State.Terminated != nil) {
		s.onScanStarted(pod.Name, cs)
	}
	if cs.State.Terminated != nil {
		s.term = cs.State.Terminated
	}
}

// onWatchEnded picks up where a pod watch that ended was: watches end
// now and then, and all of them when the API server stops.
func (s *run) onWatchEnded() {
	s.podW.Stop()
	s.podC = nil
	if s.lostSince.IsZero() {
		s.lostSince, s.rewatchWait = time.Now(), retryFirst
	}
	s.watchAgain()
}

// watchAgain opens the pod's watch again; while the API server does not
// answer it tries again with backoff, and after the API grace the scan is
// lost (its pod may run on: the Job is deleted once the API answers).
func (s *run) watchAgain() {
	w, err := s.r.client.WatchPods(s.watchCtx, s.r.cfg.Namespace, s.selector)
	if err == nil {
		if away := time.Since(s.lostSince); away > time.Second {
			s.r.log.Info("the Kubernetes API answers again; following the scan's pod", "job", s.name, "after", away.Round(time.Millisecond))
		}
		s.podW, s.podC = w, w.ResultChan()
		s.lostSince = time.Time{}
		return
	}
	if !transient(err) {
		s.fail(s.r.apiErr("watch the scan's pod", err), "lost the pod's watch")
		return
	}
	grace := s.r.cfg.APIGrace
	if grace <= 0 {
		grace = 60 * time.Second
	}
	if away := time.Since(s.lostSince); away >= grace && s.failure == nil && !s.killed {
		s.fail(&executor.LostError{ContainerID: s.res.ContainerID, Err: fmt.Errorf(
			"the Kubernetes API server stopped answering for %s (%v); the Job is deleted as soon as it answers again",
			away.Round(time.Second), err)}, "lost the Kubernetes API")
	}
	// Keep trying: after a kill, until the drain gives up.
	s.rewatch = s.timer(s.rewatchWait)
	s.rewatchWait = min(2*s.rewatchWait, retryMax)
}

// onScanStarted starts following the log once the scan container runs.
func (s *run) onScanStarted(pod string, cs *corev1.ContainerStatus) {
	s.started = true
	// When the runner sees it: the API's start time has only second
	// precision. The wall clock counts from here.
	s.res.Started = time.Now()
	s.emit(executor.StepStarted, "pod "+pod)
	if err := s.r.checkImage(cs); err != nil && s.failure == nil {
		s.fail(err, "image mismatch")
	}
	done := make(chan struct{})
	s.logsDone = done
	go func() {
		defer close(done)
		s.logErr = s.r.follow(s.watchCtx, pod, s.out)
	}()
	s.reported = s.out.Reported(s.stopReport)
	if s.job.Spec.Deadline > 0 {
		s.deadline = s.timer(s.job.Spec.Deadline)
	}
}

func (s *run) onJobEvent(ev watch.Event, ok bool) {
	if !ok {
		s.eventC = nil
		return
	}
	if e, isEvent := ev.Object.(*corev1.Event); isEvent && e.Reason == "FailedCreate" && s.failure == nil {
		s.fail(refused(s.r.cfg.Namespace, e.Message), "the cluster refused its pod")
	}
}

func (s *run) onExitReported(status int) {
	s.reported = nil
	if status < 128 {
		s.res.ExitCode, s.statusKnown = status, true
	}
}

// onGiveUp ends the drain after a kill: keep what was read.
func (s *run) onGiveUp() {
	s.giveUp = nil
	s.stopWatch() // ends the log stream
	s.podC, s.eventC, s.rewatch = nil, nil, nil
	if s.logsDone == nil {
		s.logsDone = make(chan struct{})
		close(s.logsDone)
	}
}

func (s *run) onDeadline() {
	s.deadline = nil
	s.res.TimedOut = true
	s.kill("wall-clock limit")
}

func (s *run) onUnschedulable() {
	s.unsched = nil
	if !s.started && s.failure == nil {
		s.fail(&RefusedError{Cause: "unschedulable", Namespace: s.r.cfg.Namespace,
			Message: "no node can run the scan's pod: " + s.unschedMsg}, "unschedulable")
	}
}

func (s *run) onCancel() {
	s.done = nil
	s.res.Canceled = true
	s.kill("cancelled")
}

// finish drains the log, completes the Result, removes a killed run's
// Job and judges the run.
func (s *run) finish() error {
	s.drain()
	s.out.Flush()
	s.res.Exited = time.Now()
	if s.term != nil {
		if !s.statusKnown {
			s.res.ExitCode = int(s.term.ExitCode)
		}
		s.res.OOMKilled = s.term.Reason == "OOMKilled"
	}
	s.removeKilled()
	s.emit(executor.StepExited, fmt.Sprintf("exit code %d", s.res.ExitCode))
	return s.judge()
}

// drain waits, a bounded time, for the rest of the log.
func (s *run) drain() {
	if s.logsDone == nil {
		return
	}
	if s.statusKnown && !isClosed(s.logsDone) {
		s.stopWatch() // nothing more to read; the kubelet may take a second to end the stream
	}
	select {
	case <-s.logsDone:
	case <-time.After(lifecycle.DrainGrace):
		s.stopWatch()
		<-s.logsDone
	}
}

// removeKilled waits until a killed run's Job is gone, as a killed
// container is before Run returns, unless the API does not answer: then
// close retries its deletion in the background.
func (s *run) removeKilled() {
	if !s.killed || s.deleteErr != nil {
		return
	}
	if err := s.r.waitGone(s.name); err == nil {
		s.gone = true
		s.r.track.Gone(s.name)
		s.emit(executor.StepRemoved, "")
	}
}

// judge is Run's error.
func (s *run) judge() error {
	res := s.res
	if s.failure != nil && !res.Canceled {
		return s.failure
	}
	var waitErr error
	if s.logErr != nil && !res.Canceled && !res.TimedOut && !s.statusKnown {
		waitErr = fmt.Errorf("read the pod's log: %w", s.logErr)
	}
	if s.podName == "" && !res.Canceled && waitErr == nil && s.term == nil && !s.statusKnown {
		waitErr = errors.New("the Job's pod never appeared")
	}
	return executor.Classify(s.ctx, s.job.Spec, res, waitErr, s.out.StderrTail())
}
