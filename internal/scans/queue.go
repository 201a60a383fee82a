package scans

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrQueueFull is returned at once when every run slot is taken and the
// waiting line is at its bound.
var ErrQueueFull = errors.New("the scan queue is full")

// QueueFullError says how full the queue is and what to do.
type QueueFullError struct{ Running, Waiting int }

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("the scan queue is full (%d running, %d waiting); try again when a scan has finished, or cancel one with cancel_scan", e.Running, e.Waiting)
}

func (e *QueueFullError) Unwrap() error { return ErrQueueFull }

// QueueTimeoutError says a caller waited too long for a run slot.
type QueueTimeoutError struct{ Waited time.Duration }

func (e *QueueTimeoutError) Error() string {
	return fmt.Sprintf("waited %d s in the scan queue without a free slot; try again later", int(e.Waited.Seconds()))
}

// Queue admits at most Slots holders at once and keeps at most Waiting
// more in first-in, first-out order.
//
// A holder whose scan is finished for its client but whose container is
// still being removed (Ticket.Finished) keeps its slot, so that no more
// than Slots containers ever exist at once; but it no longer counts
// against callers: each slot in teardown lends one extra place in line,
// so a call made right after a scan reports done waits for the removal
// (bounded by it) instead of being refused.
type Queue struct {
	mu      sync.Mutex
	slots   int
	maxWait int
	running int // holders, including those in teardown
	tearing int // holders whose scan is finished (Ticket.Finished)
	waiters []*waiter
}

type waiter struct {
	ready    chan struct{} // closed when granted a slot
	position func(int)     // told the 1-based position when it changes
	granted  bool
}

// NewQueue returns a queue with slots run slots and room for waiting callers.
func NewQueue(slots, waiting int) *Queue {
	return &Queue{slots: max(slots, 1), maxWait: max(waiting, 0)}
}

// Stats returns how many hold a slot and how many wait.
func (q *Queue) Stats() (running, waiting int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running, len(q.waiters)
}

// Ticket is a caller's place at the queue: a run slot already, or a place
// in line.
type Ticket struct {
	q *Queue
	w *waiter // nil when the slot was free at once
	// held, finished and released are guarded by q.mu.
	held, finished, released bool
}

// Enter takes a run slot at once if one is free, else a place in line,
// telling position (if set) the caller's 1-based place whenever it
// changes. It fails at once with a *QueueFullError when the line is full.
func (q *Queue) Enter(position func(int)) (*Ticket, error) {
	q.mu.Lock()
	if q.running < q.slots && len(q.waiters) == 0 {
		q.running++
		q.mu.Unlock()
		return &Ticket{q: q}, nil
	}
	if len(q.waiters) >= q.maxWait+q.tearing {
		running, waiting := q.running, len(q.waiters)
		q.mu.Unlock()
		return nil, &QueueFullError{Running: running, Waiting: waiting}
	}
	w := &waiter{ready: make(chan struct{}), position: position}
	q.waiters = append(q.waiters, w)
	pos := len(q.waiters)
	q.mu.Unlock()
	if position != nil {
		position(pos)
	}
	return &Ticket{q: q, w: w}, nil
}

// Wait blocks until the ticket holds a run slot. It fails with a
// *QueueTimeoutError after maxWait (0: no bound), or with ctx's error; the
// place in line is then given up. The returned release must be called once.
func (t *Ticket) Wait(ctx context.Context, maxWait time.Duration) (release func(), err error) {
	q, w := t.q, t.w
	if w == nil {
		return q.releaser(t), nil
	}
	var timeout <-chan time.Time
	if maxWait > 0 {
		tm := time.NewTimer(maxWait)
		defer tm.Stop()
		timeout = tm.C
	}
	start := time.Now()
	select {
	case <-w.ready:
		return q.releaser(t), nil
	case <-ctx.Done():
		err = fmt.Errorf("left the scan queue: %w", ctx.Err())
	case <-timeout:
		err = &QueueTimeoutError{Waited: time.Since(start)}
	}
	q.mu.Lock()
	if w.granted {
		// Granted in the meantime: give the slot back.
		q.mu.Unlock()
		q.releaser(t)()
		return nil, err
	}
	tell := q.remove(w)
	q.mu.Unlock()
	runAll(tell)
	return nil, err
}

// Cancel gives up the ticket's slot or place in line without waiting.
func (t *Ticket) Cancel() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if release, err := t.Wait(ctx, 0); err == nil {
		release()
	}
}

// Acquire is Enter followed by Wait.
func (q *Queue) Acquire(ctx context.Context, maxWait time.Duration, position func(int)) (release func(), err error) {
	t, err := q.Enter(position)
	if err != nil {
		return nil, err
	}
	return t.Wait(ctx, maxWait)
}

func runAll(fns []func()) {
	for _, f := range fns {
		f()
	}
}

// Finished tells the queue that the ticket's scan is final for its client
// and only its container's removal holds the slot: until release, the slot
// lends one extra place in line. It does nothing for a ticket that holds
// no slot, or after release, or the second time.
func (t *Ticket) Finished() {
	if t == nil {
		return
	}
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if t.held && !t.finished && !t.released {
		t.finished = true
		q.tearing++
	}
}

func (q *Queue) releaser(t *Ticket) func() {
	q.mu.Lock()
	t.held = true
	q.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			t.released = true
			if t.finished {
				q.tearing--
			}
			q.running--
			tell := q.grant()
			q.mu.Unlock()
			runAll(tell)
		})
	}
}

// grant hands free slots to the first waiters and returns the calls that
// tell the rest their new positions. Called with mu held.
func (q *Queue) grant() []func() {
	moved := false
	for q.running < q.slots && len(q.waiters) > 0 {
		w := q.waiters[0]
		q.waiters = q.waiters[1:]
		w.granted = true
		q.running++
		close(w.ready)
		moved = true
	}
	if moved {
		return q.positions()
	}
	return nil
}

func (q *Queue) remove(w *waiter) []func() {
	for i, x := range q.waiters {
		if x == w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			return q.positions()
		}
	}
	return nil
}

// positions returns the calls that tell each waiter its place, to run
// after mu is released. Called with mu held.
func (q *Queue) positions() []func() {
	var fns []func()
	for i, w := range q.waiters {
		if w.position != nil {
			f, pos := w.position, i+1
			fns = append(fns, func() { f(pos) })
		}
	}
	return fns
}
