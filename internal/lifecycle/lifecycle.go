// Package lifecycle is the bookkeeping every runner shares: what it
// started and has not yet seen gone (a scan container, a Kubernetes Job, a
// fencer or warden container), the background work that removes them, the
// signal that ends their retries when the runner closes, and the ones it
// gave up on. The Docker runner (package executor), its fencer pool and
// host fence (package executor/fencer) and the Kubernetes runner (package
// internal/kuberunner) each hold one Tracker, so Pending and Close mean
// the same everywhere; DrainGrace is the one bound on output after an
// exit or a kill.
package lifecycle

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// DrainGrace bounds how long a runner lets a program's output keep
// flowing after its exit or a kill before it cuts the stream, keeping what
// arrived.
const DrainGrace = 3 * time.Second

// Tracker records the objects a runner started and has not yet seen gone,
// and the background work that removes them. The zero value is not
// usable; call New. Its methods are safe for concurrent use.
type Tracker struct {
	mu        sync.Mutex
	pending   map[string]struct{}
	abandoned []string
	// active counts background work; idle is closed while it is 0 (work
	// may start while Wait waits, which a sync.WaitGroup forbids).
	active   int
	idle     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
}

// New returns an empty tracker.
func New() *Tracker {
	idle := make(chan struct{})
	close(idle)
	return &Tracker{pending: map[string]struct{}{}, idle: idle, stop: make(chan struct{})}
}

// Add records id as started and not yet gone.
func (t *Tracker) Add(id string) {
	t.mu.Lock()
	t.pending[id] = struct{}{}
	t.mu.Unlock()
}

// Gone records that id is gone (removed or deleted).
func (t *Tracker) Gone(id string) {
	t.mu.Lock()
	delete(t.pending, id)
	t.mu.Unlock()
}

// Pending lists, sorted, what was started and is not yet gone — for a
// hand-off to a reaper, or a test's leak check.
func (t *Tracker) Pending() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Sorted(maps.Keys(t.pending))
}

// Go runs f in the background; Wait waits for it, and for work started
// while it waits.
func (t *Tracker) Go(f func()) {
	t.mu.Lock()
	if t.active == 0 {
		t.idle = make(chan struct{})
	}
	t.active++
	t.mu.Unlock()
	go func() {
		defer func() {
			t.mu.Lock()
			t.active--
			if t.active == 0 {
				close(t.idle)
			}
			t.mu.Unlock()
		}()
		f()
	}()
}

// Stopping is closed once Wait is called: removals still retrying (the
// engine or API server is away) try once more and give up.
func (t *Tracker) Stopping() <-chan struct{} { return t.stop }

// Abandon records that the runner gave up removing id (Stopping closed
// before the engine answered); the next start-up sweep removes it.
func (t *Tracker) Abandon(id string) {
	t.mu.Lock()
	t.abandoned = append(t.abandoned, id)
	t.mu.Unlock()
}

// Abandoned lists what the runner gave up removing.
func (t *Tracker) Abandoned() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.abandoned)
}

// Wait closes Stopping and waits until the background work is done or
// ctx ends; what names the objects in the error, e.g. "container
// removals".
func (t *Tracker) Wait(ctx context.Context, what string) error {
	t.stopOnce.Do(func() { close(t.stop) })
	for {
		t.mu.Lock()
		idle, active := t.idle, t.active
		t.mu.Unlock()
		if active == 0 {
			return nil
		}
		select {
		case <-idle:
			// Work may have started since: look again.
		case <-ctx.Done():
			return fmt.Errorf("wait for %s (still pending: %v): %w", what, t.Pending(), ctx.Err())
		}
	}
}
