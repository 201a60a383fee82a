package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/nmap-mcp/nmap-mcp/executor/fencer"
	"github.com/nmap-mcp/nmap-mcp/internal/fence"
	"github.com/nmap-mcp/nmap-mcp/internal/lifecycle"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Engine is the part of the Docker client the executor uses;
// *client.Client satisfies it.
type Engine interface {
	fencer.Containers // create, attach, start, remove
	ContainerWait(ctx context.Context, container string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerKill(ctx context.Context, container, signal string) error
	ContainerInspect(ctx context.Context, container string) (container.InspectResponse, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
}

// Fencer installs a fenced spec's allowlist in a network namespace before
// its container starts (package fence is one).
type Fencer interface {
	// Fence returns the network mode that joins the fenced namespace
	// ("container:ID") and a release func to call once the spec's
	// container is gone; its error means nothing may start.
	Fence(ctx context.Context, spec sandbox.Spec) (network string, release func(), err error)
	// Pending lists the fencer containers not yet removed.
	Pending() []string
	// Close removes what is left, waiting until it is gone or ctx ends.
	Close(ctx context.Context) error
}

// HostFencer keeps scans that run on the host's network to loopback
// (package fence's HostFence is one).
type HostFencer interface {
	// Ensure puts the host fence in place and returns the cgroup parent the
	// spec's container must be started under; its error means nothing may
	// start.
	Ensure(ctx context.Context) (cgroupParent string, err error)
	// Pending lists the containers of the host fence not yet removed.
	Pending() []string
	// Close removes them, waiting until they are gone or ctx ends.
	Close(ctx context.Context) error
}

// Executor runs jobs on one engine.
type Executor struct {
	engine    Engine
	fencer    Fencer
	hostFence HostFencer
	log       *slog.Logger
	// cleanup bounds kill, inspect and removal, which run on a context of
	// their own so that a cancelled caller cannot leak a container.
	cleanup time.Duration

	// track holds the containers not yet removed and their background
	// removals; Close ends the retries of lost containers and names those
	// it gave up on.
	track *lifecycle.Tracker
}

// New returns an executor for engine; log may be nil.
func New(engine Engine, log *slog.Logger) *Executor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Executor{engine: engine, log: log, cleanup: 30 * time.Second, track: lifecycle.New()}
}

// SetFencer lets the executor run fenced specs; without one, a spec with
// a Fence is refused. Close closes f too. Call it before the first Run.
func (e *Executor) SetFencer(f Fencer) { e.fencer = f }

// SetHostFence lets the executor run specs fenced on the host network
// (sandbox.Spec.HostFence); without one, such a spec is refused. Close
// closes h too. Call it before the first Run.
func (e *Executor) SetHostFence(h HostFencer) { e.hostFence = h }

// defaultMaxOutput is the default bound of kept output per stream.
const defaultMaxOutput = 4 << 20

// Run creates, starts and waits for the job's container, and removes it.
// The error is nil only when the program exited 0; otherwise it is a
// *TimeoutError, *OOMError, *PidsError, *ExitError, *ImageError, a
// *LostError (the engine stopped or restarted while the container ran),
// an error wrapping the context's error, or an engine error.
//
// A container the engine could not remove (it stopped or restarted) is
// removed in the background, retrying with backoff until the engine
// answers again or Close gives up; Pending lists it meanwhile and the
// "removed" event comes when it is gone.
//
// When the program reports its exit status in-band (sandbox.ExitMarker)
// and was not killed by a signal, Run returns as soon as that report and
// all output have arrived; the engine's exit processing and the removal
// then finish in the background (see Wait and Pending). A deadline or a
// cancellation kills and removes the container before Run returns.
func (e *Executor) Run(ctx context.Context, job Job) (*Result, error) {
	res := &Result{}
	if err := ctx.Err(); err != nil {
		res.Canceled = true
		return res, fmt.Errorf("scan not started: %w", err)
	}
	emit := func(step Step, id, detail string) {
		if job.OnEvent != nil {
			job.OnEvent(Event{Step: step, ContainerID: id, Detail: detail, At: time.Now()})
		}
	}
	out := NewOutput(job)
	outWatch, errWatch := out.outWatch, out.errWatch
	defer out.Fill(res)

	// Create, attach and start run to completion even when ctx ends
	// meanwhile: a call cut short on our side can still land on the
	// engine's, and a container we did not hear of would leak. ctx is
	// checked after each step instead.
	stepCtx, stepCancel := context.WithTimeout(context.WithoutCancel(ctx), e.cleanup)
	defer stepCancel()
	// A fenced spec's container joins a namespace whose allowlist is in
	// place before it is even created; released once it is removed.
	release := func() {}
	if job.Spec.Fence != nil {
		if e.fencer == nil {
			return res, &fence.Error{Err: errors.New("this runner has no fencer")}
		}
		mode, rel, err := e.fencer.Fence(ctx, job.Spec)
		if err != nil {
			if ctx.Err() != nil {
				res.Canceled = true
				return res, fmt.Errorf("scan cancelled before it started: %w", ctx.Err())
			}
			return res, err
		}
		emit(StepFenced, "", fmt.Sprintf("%d allowed addresses, %s", job.Spec.Fence.Addresses(), mode))
		job.Spec.Network, release = mode, rel
	}
	// A host-network spec runs in the host fence's cgroup, and only once
	// the fence is in place.
	if job.Spec.HostFence {
		if e.hostFence == nil {
			return res, &fencer.HostError{Err: errors.New("this runner has no host fence")}
		}
		parent, err := e.hostFence.Ensure(ctx)
		if err != nil {
			if ctx.Err() != nil {
				res.Canceled = true
				return res, fmt.Errorf("scan cancelled before it started: %w", ctx.Err())
			}
			return res, err
		}
		job.Spec.CgroupParent = parent
		emit(StepFenced, "", "host network fenced to loopback, cgroup "+parent)
	}
	cfg, hc := DockerConfig(job.Spec)
	created, err := e.engine.ContainerCreate(stepCtx, cfg, hc, nil, nil, job.Spec.Name)
	if err != nil {
		release()
		if cerrdefs.IsNotFound(err) {
			return res, &ImageError{Image: cfg.Image, Err: err}
		}
		return res, fmt.Errorf("create container: %w", err)
	}
	id := created.ID
	res.ContainerID = id
	res.Created = time.Now()
	emit(StepCreated, id, "")
	e.track.Add(id)
	background := false
	defer func() {
		if background {
			return
		}
		if e.removeOnce(id) {
			release()
			e.track.Gone(id)
			emit(StepRemoved, id, "")
			return
		}
		e.track.Go(func() {
			err := e.removeRetrying(id)
			release()
			e.track.Gone(id)
			if err != nil {
				emit(StepAbandoned, id, err.Error())
				return
			}
			emit(StepRemoved, id, "")
		})
	}()

	if ctx.Err() != nil {
		res.Canceled = true
		return res, fmt.Errorf("scan cancelled before it started: %w", ctx.Err())
	}
	hijack, err := e.engine.ContainerAttach(stepCtx, id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return res, e.startErr(ctx, res, "attach to container", err)
	}
	defer func() {
		if !background {
			hijack.Close()
		}
	}()

	// The wait must outlive the caller's context: after a kill we still
	// want the exit status before removing the container.
	waitCtx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if !background {
			stopWait()
		}
	}()
	waitC, waitErrC := e.engine.ContainerWait(waitCtx, id, container.WaitConditionNextExit)

	if job.BeforeStart != nil {
		if err := job.BeforeStart(); err != nil {
			return res, err
		}
	}
	if ctx.Err() != nil {
		res.Canceled = true
		return res, fmt.Errorf("scan cancelled before it started: %w", ctx.Err())
	}
	if err := e.engine.ContainerStart(stepCtx, id, container.StartOptions{}); err != nil {
		return res, e.startErr(ctx, res, "start container", err)
	}
	res.Started = time.Now()
	emit(StepStarted, id, "")

	copyDone := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(outWatch, errWatch, hijack.Reader)
		out.Flush()
		copyDone <- err
	}()
	stopReport := make(chan struct{})
	defer close(stopReport)
	reported := out.Reported(stopReport)

	var deadline <-chan time.Time
	if job.Spec.Deadline > 0 {
		t := time.NewTimer(job.Spec.Deadline)
		defer t.Stop()
		deadline = t.C
	}
	done := ctx.Done()
	var waitErr error
	lost := false // the connection to the engine broke
wait:
	for {
		select {
		case status := <-reported:
			reported = nil
			if status >= 128 {
				continue // killed by a signal: wait for the engine to say why
			}
			res.ExitCode = status
			res.Exited = time.Now()
			background = true
			e.finishInBackground(id, hc, hijack, waitC, waitErrC, copyDone, stopWait, func() { release(); emit(StepRemoved, id, "") })
			emit(StepExited, id, fmt.Sprintf("exit code %d (reported)", status))
			return res, classify(ctx, job.Spec, res, nil, out.StderrTail())
		case st := <-waitC:
			res.ExitCode = int(st.StatusCode)
			if st.Error != nil && st.Error.Message != "" {
				waitErr = errors.New(st.Error.Message)
			}
			break wait
		case err := <-waitErrC:
			waitErr, lost = err, true
			e.kill(id)
			break wait
		case <-deadline:
			res.TimedOut = true
			deadline = nil
			e.kill(id)
			emit(StepKilled, id, "wall-clock limit")
		case <-done:
			res.Canceled = true
			done = nil
			e.kill(id)
			emit(StepKilled, id, "cancelled")
		}
	}
	res.Exited = time.Now()

	// Let the rest of the output drain, but not forever.
	select {
	case <-copyDone:
	case <-time.After(lifecycle.DrainGrace):
		hijack.Close()
		<-copyDone
	}

	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cleanup)
	defer cancel()
	if info, err := e.engine.ContainerInspect(ictx, id); err == nil && info.State != nil {
		res.OOMKilled = info.State.OOMKilled
		if waitErr == nil {
			res.ExitCode = info.State.ExitCode
		}
	}
	if lost && !res.Canceled && !res.TimedOut {
		emit(StepExited, id, "lost to the engine")
		return res, &LostError{ContainerID: id, Err: fmt.Errorf("the Docker engine stopped or restarted (%w)", waitErr)}
	}
	if waitErr == nil && res.ExitCode == 128+9 && !res.Canceled && !res.TimedOut && !res.OOMKilled {
		// The engine may record an OOM kill a moment after the exit: look
		// again before calling the kill someone else's.
		for i := 0; i < 10 && !res.OOMKilled; i++ {
			time.Sleep(50 * time.Millisecond)
			if info, err := e.engine.ContainerInspect(ictx, id); err == nil && info.State != nil {
				res.OOMKilled = info.State.OOMKilled
			}
		}
	}
	if waitErr == nil && (res.ExitCode == 128+9 || res.ExitCode == 128+15) && !res.Canceled && !res.TimedOut && !res.OOMKilled {
		// Killed by a signal we did not send: a stopping engine stops
		// its containers (SIGTERM, then SIGKILL), as docker stop does.
		emit(StepExited, id, fmt.Sprintf("exit code %d, killed from outside", res.ExitCode))
		return res, &LostError{ContainerID: id, Err: fmt.Errorf("it was killed from outside (exit code %d): the Docker engine stopped or restarted, or someone stopped the container", res.ExitCode)}
	}
	emit(StepExited, id, fmt.Sprintf("exit code %d", res.ExitCode))
	return res, classify(ctx, job.Spec, res, waitErr, out.StderrTail())
}

// finishInBackground completes a run whose exit status arrived in-band:
// it waits for the engine to see the exit (killing the container if that
// takes too long), lets the stream end, checks the final state, and removes
// the container.
func (e *Executor) finishInBackground(id string, hc *container.HostConfig, hijack types.HijackedResponse,
	waitC <-chan container.WaitResponse, waitErrC <-chan error, copyDone <-chan error, stopWait func(), removed func()) {
	e.track.Go(func() {
		defer e.track.Gone(id)
		defer stopWait()
		select {
		case <-waitC:
		case <-waitErrC:
		case <-time.After(e.cleanup):
			e.kill(id)
		}
		select {
		case <-copyDone:
		case <-time.After(lifecycle.DrainGrace):
		}
		hijack.Close()
		ctx, cancel := context.WithTimeout(context.Background(), e.cleanup)
		defer cancel()
		if info, err := e.engine.ContainerInspect(ctx, id); err == nil && info.State != nil && info.State.OOMKilled {
			e.log.Warn("container reported a clean exit but was OOM-killed afterwards", "container", shortID(id), "memory", hc.Memory)
		}
		if !e.removeOnce(id) {
			_ = e.removeRetrying(id) // the scan has its result; the sweep backs this up
		}
		removed()
	})
}

// Close blocks until every background removal has finished or ctx ends,
// then closes the fencer and the host fence.
func (e *Executor) Close(ctx context.Context) error {
	// Removals still retrying (the engine is away) try once more and give
	// up: the server is closing.
	var errs []error
	if err := e.track.Wait(ctx, "container removals"); err != nil {
		errs = append(errs, err)
	}
	if abandoned := e.track.Abandoned(); len(abandoned) > 0 {
		// The fences are still closed below: a server closing with the
		// engine away must not leave its fencers and warden too.
		errs = append(errs, fmt.Errorf("containers %s were not removed (the engine did not answer); the next start-up sweep removes them", strings.Join(abandoned, ", ")))
	}
	if e.fencer != nil {
		errs = append(errs, e.fencer.Close(ctx))
	}
	if e.hostFence != nil {
		errs = append(errs, e.hostFence.Close(ctx))
	}
	return errors.Join(errs...)
}

// startErr turns a failure between create and start into an error.
func (e *Executor) startErr(ctx context.Context, res *Result, what string, err error) error {
	if ctx.Err() != nil {
		res.Canceled = true
		return fmt.Errorf("scan cancelled before it started: %w", ctx.Err())
	}
	return fmt.Errorf("%s %.12s: %w", what, res.ContainerID, err)
}

func (e *Executor) kill(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cleanup)
	defer cancel()
	if err := e.engine.ContainerKill(ctx, id, "KILL"); err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
		e.log.Warn("kill container", "container", shortID(id), "err", err)
	}
}

// removeOnce tries once to remove the container and reports whether it
// is gone.
func (e *Executor) removeOnce(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), e.cleanup)
	defer cancel()
	err := e.engine.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		e.log.Warn("remove container; retrying until the engine answers", "container", shortID(id), "err", err)
		return false
	}
	return true
}

// removeRetrying removes the container, retrying with backoff until it is
// gone or Close is called (fencer.RemoveRetrying); a container it gives up
// on is named by Close.
func (e *Executor) removeRetrying(id string) error {
	start := time.Now()
	if err := fencer.RemoveRetrying(e.engine, id, e.track.Stopping(), e.cleanup, nil); err != nil {
		e.log.Error("remove container; the next start-up sweep will retry", "container", shortID(id), "err", err)
		e.track.Abandon(shortID(id))
		return err
	}
	e.log.Info("removed a container the engine had kept", "container", shortID(id), "after", time.Since(start).Round(time.Millisecond))
	return nil
}

// shortID is a Docker container id's usual 12-character form; other
// runners' names (a Kubernetes "job/NAME") are kept whole.
func shortID(id string) string {
	if len(id) == 64 && strings.Trim(id, "0123456789abcdef") == "" {
		return id[:12]
	}
	return id
}

// remove tries once to remove the container (the sweep and the reaper,
// which a later start-up sweep backs up).
func (e *Executor) remove(id string) {
	if !e.removeOnce(id) {
		e.log.Error("remove container; the next start-up sweep will retry", "container", shortID(id))
	}
}
