package shardtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// TimingRunner wraps a runner and records when each job (each shard)
// reached each lifecycle step, for a benchmark's breakdown of where a
// sharded scan's time goes. It shapes specs as Inner does.
type TimingRunner struct {
	Inner executor.Runner
	mu    sync.Mutex
	jobs  []*jobTimes
}

type jobTimes struct {
	name      string
	call, ret time.Time
	steps     map[executor.Step]time.Time
	ran       time.Duration
}

// Reset forgets the jobs recorded so far.
func (t *TimingRunner) Reset() {
	t.mu.Lock()
	t.jobs = nil
	t.mu.Unlock()
}

// Runs is how many jobs were run since the last Reset.
func (t *TimingRunner) Runs() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.jobs)
}

// Run runs job through Inner, recording its steps.
func (t *TimingRunner) Run(ctx context.Context, job executor.Job) (*executor.Result, error) {
	jt := &jobTimes{name: job.Spec.Name, call: time.Now(), steps: map[executor.Step]time.Time{}}
	t.mu.Lock()
	t.jobs = append(t.jobs, jt)
	t.mu.Unlock()
	on := job.OnEvent
	job.OnEvent = func(ev executor.Event) {
		t.mu.Lock()
		jt.steps[ev.Step] = time.Now()
		t.mu.Unlock()
		if on != nil {
			on(ev)
		}
	}
	res, err := t.Inner.Run(ctx, job)
	t.mu.Lock()
	jt.ret = time.Now()
	if res != nil {
		jt.ran = res.Duration()
	}
	t.mu.Unlock()
	return res, err
}

// Close closes Inner.
func (t *TimingRunner) Close(ctx context.Context) error { return t.Inner.Close(ctx) }

// Shape shapes spec as Inner does (unchanged when Inner is no Shaper).
func (t *TimingRunner) Shape(spec sandbox.Spec) sandbox.Spec {
	if sh, ok := t.Inner.(executor.Shaper); ok {
		return sh.Shape(spec)
	}
	return spec
}

// Report lists, for each job since the last Reset, the offsets in
// seconds from start of its call, fence, create, start, exit, removal and
// return, and its container's run time.
func (t *TimingRunner) Report(start time.Time) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sb strings.Builder
	off := func(x time.Time) string {
		if x.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%.2f", x.Sub(start).Seconds())
	}
	for _, j := range t.jobs {
		fmt.Fprintf(&sb, "\n  %s: call %s fenced %s created %s started %s exited %s removed %s return %s (ran %.2fs)",
			j.name[max(0, len(j.name)-4):], off(j.call), off(j.steps[executor.StepFenced]), off(j.steps[executor.StepCreated]),
			off(j.steps[executor.StepStarted]), off(j.steps[executor.StepExited]), off(j.steps[executor.StepRemoved]),
			off(j.ret), j.ran.Seconds())
	}
	return sb.String()
}
