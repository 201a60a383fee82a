package executor

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// This file is the runner contract, shared by every runner (the Docker
// runner in this package, the Kubernetes runner in internal/kuberunner):
// what a job is, what a run returns, the lifecycle events, the typed
// errors, and how a finished run is judged (Classify). How a runner
// collects output is Output (output.go); the bookkeeping of what it
// started is lifecycle.Tracker (package internal/lifecycle).

// Runner runs one prepared container to its end, as exec.Cmd's Run runs
// a process: it starts the spec's container, streams its stdout and stderr
// to the job's writers, waits for the exit (code, OOM, pids, deadline) and
// removes the container; ctx's end kills it. The Result comes back even
// with an error, so partial output is never lost. *Executor (Docker) is
// one; a Kubernetes runner is another.
type Runner interface {
	Run(ctx context.Context, job Job) (*Result, error)
	// Close waits until every container this runner started is gone, or
	// ctx ends.
	Close(ctx context.Context) error
}

// Shaper is a Runner that runs a spec otherwise than it was built (the
// Kubernetes runner: the pod's network, the cluster's seccomp profile);
// the scans service records the spec Shape returns, so that a record
// says what really ran.
type Shaper interface {
	Shape(spec sandbox.Spec) sandbox.Spec
}

// Job describes one container run, as exec.Cmd describes one process.
type Job struct {
	// Spec is the container: image, command, user, capabilities, limits,
	// network, deadline (from its start) and labels.
	Spec sandbox.Spec
	// Stdout and Stderr, when set, receive the output live as it arrives.
	Stdout, Stderr io.Writer
	// MaxOutput bounds the bytes kept of each stream (default 4 MiB);
	// further bytes are counted in Result.Dropped*.
	MaxOutput int
	// OnEvent, when set, is told of lifecycle steps (created, started,
	// exited, removed) as they happen.
	OnEvent func(Event)
	// BeforeStart, when set, runs after the container is created and
	// attached and before it starts; an error removes the container and
	// ends the run without starting it.
	BeforeStart func() error
}

// Step names one lifecycle step of a job's container (or Job).
type Step string

// The lifecycle steps, in the order they happen: fenced (Docker, fenced
// specs), created, started, killed (only on a deadline, a cancellation or
// a failure), exited, then removed — or abandoned when the engine did not
// answer until Close (the next start-up sweep removes it).
const (
	StepFenced    Step = "fenced"
	StepCreated   Step = "created"
	StepStarted   Step = "started"
	StepKilled    Step = "killed"
	StepExited    Step = "exited"
	StepRemoved   Step = "removed"
	StepAbandoned Step = "abandoned"
)

// Event is one lifecycle step of a job's container.
type Event struct {
	Step        Step
	ContainerID string
	Detail      string
	At          time.Time
}

// Result is what a run produced. Run returns it even when it also returns
// an error, so partial output is never lost.
type Result struct {
	ContainerID                  string
	Stdout, Stderr               []byte
	DroppedStdout, DroppedStderr int64
	ExitCode                     int
	OOMKilled                    bool
	TimedOut                     bool
	Canceled                     bool
	Created, Started, Exited     time.Time
}

// Duration is the time from the container's start to its exit.
func (r *Result) Duration() time.Duration {
	if r.Started.IsZero() || r.Exited.IsZero() {
		return 0
	}
	return r.Exited.Sub(r.Started)
}

// Classify turns a finished run into Run's error: nil when the program
// exited 0, else a cancellation, *TimeoutError, *OOMError, *PidsError or
// *ExitError, judged from res, the runner's wait error and stderr's tail.
func Classify(ctx context.Context, spec sandbox.Spec, res *Result, waitErr error, stderrTail string) error {
	return classify(ctx, spec, res, waitErr, stderrTail)
}

func classify(ctx context.Context, spec sandbox.Spec, res *Result, waitErr error, se string) error {
	switch {
	case res.Canceled:
		return fmt.Errorf("scan cancelled, container killed: %w", context.Cause(ctx))
	case res.TimedOut:
		return &TimeoutError{After: spec.Deadline}
	case res.OOMKilled:
		return &OOMError{Limit: spec.Memory}
	case waitErr != nil:
		return fmt.Errorf("wait for container %s: %w", shortID(res.ContainerID), waitErr)
	case res.ExitCode != 0:
		if isPidsExhausted(se) {
			var limit int64
			if spec.Pids > 0 {
				limit = spec.Pids
			}
			return &PidsError{Limit: limit, Stderr: se}
		}
		return &ExitError{Code: res.ExitCode, Stderr: se}
	}
	return nil
}

// tail returns the last 2 KiB of b as trimmed text.
func tail(b []byte) string {
	const n = 2 << 10
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// isPidsExhausted recognises the messages of a failed fork or thread
// creation (EAGAIN), which is how the pids limit shows inside a container.
func isPidsExhausted(stderr string) bool {
	s := strings.ToLower(stderr)
	return strings.Contains(s, "resource temporarily unavailable") ||
		strings.Contains(s, "cannot fork") || strings.Contains(s, "can't fork") ||
		strings.Contains(s, "pthread_create")
}

// TimeoutError means the container was killed at its wall-clock limit.
type TimeoutError struct{ After time.Duration }

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("timed out after %d s and was killed; the output so far is kept",
		int(e.After.Round(time.Second)/time.Second))
}

// OOMError means the kernel killed the container for its memory limit.
type OOMError struct{ Limit int64 }

func (e *OOMError) Error() string {
	return fmt.Sprintf("killed for exceeding the memory limit of %d MiB",
		e.Limit>>20)
}

// PidsError means a process or thread could not be created under the pids limit.
type PidsError struct {
	Limit  int64
	Stderr string
}

func (e *PidsError) Error() string {
	return fmt.Sprintf("ran out of processes under the pids limit of %d (%s)",
		e.Limit, firstLine(e.Stderr))
}

// ExitError means the program in the container exited with a non-zero code.
type ExitError struct {
	Code   int
	Stderr string // the tail of stderr
}

func (e *ExitError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("nmap exited with code %d and wrote nothing to stderr", e.Code)
	}
	return fmt.Sprintf("nmap exited with code %d: %s", e.Code, e.Stderr)
}

// ImageError means the image to run is missing or unusable.
type ImageError struct {
	Image string
	Err   error
}

func (e *ImageError) Error() string {
	return fmt.Sprintf("scanner image %s is missing or unusable: %v", e.Image, e.Err)
}

func (e *ImageError) Unwrap() error { return e.Err }

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// LostError means the scan's container was lost while it ran: the
// connection to the engine broke (the engine was killed or restarted), so
// its exit status is unknown, or it was killed by a signal the executor
// did not send (a stopping engine stops its containers, as docker stop
// does). The output received until then is kept in the Result; the
// executor keeps trying to remove the container until the engine answers
// again.
type LostError struct {
	ContainerID string
	Err         error
}

func (e *LostError) Error() string {
	return fmt.Sprintf("the scan's container %s was lost while it ran: %v; the output received until then is kept",
		shortID(e.ContainerID), e.Err)
}

func (e *LostError) Unwrap() error { return e.Err }
