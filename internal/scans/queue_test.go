package scans_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

func TestQueueFIFOAndBounds(t *testing.T) {
	q := scans.NewQueue(1, 2)
	ctx := context.Background()
	rel1, err := q.Acquire(ctx, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int
	positions := map[int][]int{}
	var wg sync.WaitGroup
	for i := 1; i <= 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := q.Acquire(ctx, 0, func(p int) { mu.Lock(); positions[i] = append(positions[i], p); mu.Unlock() })
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			rel()
		}()
		// Let waiter i take its place before the next one.
		for {
			if _, w := q.Stats(); w == i {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	_, err = q.Acquire(ctx, 0, nil)
	var full *scans.QueueFullError
	if !errors.As(err, &full) || !errors.Is(err, scans.ErrQueueFull) || full.Waiting != 2 {
		t.Fatalf("third waiter: %v", err)
	}
	rel1()
	wg.Wait()
	if len(order) != 2 || order[0] != 1 || order[1] != 2 {
		t.Fatalf("order %v", order)
	}
	if got := positions[2]; len(got) < 2 || got[0] != 2 || got[len(got)-1] != 1 {
		t.Fatalf("waiter 2 positions %v; want 2 then 1", got)
	}
	if r, w := q.Stats(); r != 0 || w != 0 {
		t.Fatalf("stats %d %d", r, w)
	}
}

func TestQueueTimeoutAndCancel(t *testing.T) {
	q := scans.NewQueue(1, 5)
	rel, _ := q.Acquire(context.Background(), 0, nil)
	defer rel()
	_, err := q.Acquire(context.Background(), 30*time.Millisecond, nil)
	var qt *scans.QueueTimeoutError
	if !errors.As(err, &qt) {
		t.Fatalf("timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := q.Acquire(ctx, 0, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
	if _, w := q.Stats(); w != 0 {
		t.Fatalf("%d waiters left", w)
	}
}

// teardownRunner plays a runner that, like the Docker and Kubernetes
// runners, returns as soon as the container has exited and removes it in
// the background: here the removal waits until the test lets it go. It
// counts containers that exist (created, not yet removed). No engine.
type teardownRunner struct {
	mu         sync.Mutex
	containers int
	peak       int
	started    []string
	teardown   chan struct{} // closed: removals may finish
	wg         sync.WaitGroup
}

func (f *teardownRunner) Run(_ context.Context, job executor.Job) (*executor.Result, error) {
	id := job.Spec.Labels[sandbox.LabelScanID]
	emit := func(step executor.Step) {
		if job.OnEvent != nil {
			job.OnEvent(executor.Event{Step: step, ContainerID: "c-" + id, At: time.Now()})
		}
	}
	f.mu.Lock()
	f.containers++
	f.peak = max(f.peak, f.containers)
	f.started = append(f.started, id)
	f.mu.Unlock()
	emit("created")
	emit("started")
	xml := `<?xml version="1.0"?><nmaprun scanner="nmap" args="nmap" version="7.93"><host><status state="up" reason="conn-refused"/>` +
		`<address addr="127.0.0.1" addrtype="ipv4"/></host><runstats><finished elapsed="1" exit="success"/><hosts up="1" down="0" total="1"/></runstats></nmaprun>`
	if job.Stdout != nil {
		_, _ = io.WriteString(job.Stdout, xml)
	}
	emit("exited")
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		<-f.teardown
		f.mu.Lock()
		f.containers--
		f.mu.Unlock()
		emit("removed")
	}()
	return &executor.Result{ContainerID: "c-" + id, Stdout: []byte(xml)}, nil
}

func (f *teardownRunner) Close(context.Context) error { f.wg.Wait(); return nil }

// A scan that is done for its client does not hold the queue against the
// client's next call while its container is being removed: with one slot
// and no waiting room, a call made right after the first scan reports done
// is accepted and waits for the removal (the number of containers stays
// bounded by the slots); only a second extra call is refused. Runs against
// a fake runner whose teardown blocks (no engine).
func TestFinishedScanDoesNotHoldTheQueue(t *testing.T) {
	st, trail := testkit.OpenHistory(t)
	runner := &teardownRunner{teardown: make(chan struct{})}
	svc := scans.New(scans.Config{Concurrency: 1, QueueSize: 0, PerClient: 1, MaxAddresses: 16, Sandbox: sandbox.Options{Limits: sandbox.DefaultLimits()}},
		scans.Deps{Runner: runner, Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"}, Store: st, Audit: trail})
	released := false
	release := func() {
		if !released {
			released = true
			close(runner.teardown)
		}
	}
	t.Cleanup(func() {
		release()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	ctx := context.Background()
	first, err := svc.Submit(ctx, scanReq("1"), scans.Options{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first scan did not end")
	}
	if rec := first.Snapshot().Record; rec.Status != store.Done {
		t.Fatalf("first scan %s (%s)", rec.Status, rec.Error)
	}
	// The first scan is done; its container is still being removed.
	second, err := svc.Submit(ctx, scanReq("2"), scans.Options{Detach: true})
	if err != nil {
		t.Fatalf("a call right after the previous scan was done: %v", err)
	}
	var full *scans.QueueFullError
	if _, err := svc.Submit(scans.WithClient(ctx, "bob"), scanReq("3"), scans.Options{Detach: true}); !errors.As(err, &full) {
		t.Fatalf("a second extra call: %v; want the queue full (one slot, in teardown, already promised)", err)
	}
	time.Sleep(50 * time.Millisecond) // room for a wrong start
	runner.mu.Lock()
	n := len(runner.started)
	runner.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d containers started while the first was being removed; want 1", n)
	}
	release()
	select {
	case <-second.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the second scan did not end")
	}
	if rec := second.Snapshot().Record; rec.Status != store.Done {
		t.Fatalf("second scan %s (%s)", rec.Status, rec.Error)
	}
	runner.mu.Lock()
	peak := runner.peak
	runner.mu.Unlock()
	if peak != 1 {
		t.Fatalf("peak containers %d; want at most the slots (1)", peak)
	}
}

func scanReq(port string) scanargs.Request {
	return scanargs.Request{Targets: "127.0.0.1", Ports: port}
}

// A slot in teardown lends exactly one place in line, even with no
// waiting room; the borrower gets the slot when the teardown ends; a
// borrower that leaves gives the place back; Finished after release, or
// twice, changes nothing.
func TestQueueTeardownLendsOnePlace(t *testing.T) {
	q := scans.NewQueue(1, 0)
	ctx := context.Background()
	t1, err := q.Enter(nil)
	if err != nil {
		t.Fatal(err)
	}
	rel1, err := t1.Wait(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var full *scans.QueueFullError
	if _, err := q.Enter(nil); !errors.As(err, &full) {
		t.Fatalf("a running scan's slot lent a place: %v", err)
	}
	t1.Finished()
	t1.Finished()
	t2, err := q.Enter(nil)
	if err != nil {
		t.Fatalf("a slot in teardown lent no place: %v", err)
	}
	if _, err := q.Enter(nil); !errors.As(err, &full) {
		t.Fatalf("a slot in teardown lent two places: %v", err)
	}
	// The borrower leaves: the place is free again.
	t2.Cancel()
	t3, err := q.Enter(nil)
	if err != nil {
		t.Fatalf("the place was not given back: %v", err)
	}
	got := make(chan func(), 1)
	go func() {
		rel, err := t3.Wait(ctx, 0)
		if err != nil {
			t.Error(err)
		}
		got <- rel
	}()
	select {
	case <-got:
		t.Fatal("the borrower ran while the slot was in teardown")
	case <-time.After(30 * time.Millisecond):
	}
	rel1()
	t1.Finished() // after release: no effect
	rel3 := <-got
	if r, w := q.Stats(); r != 1 || w != 0 {
		t.Fatalf("stats %d %d; want 1 0", r, w)
	}
	if _, err := q.Enter(nil); !errors.As(err, &full) {
		t.Fatalf("a stale Finished lent a place: %v", err)
	}
	rel3()
	if r, w := q.Stats(); r != 0 || w != 0 {
		t.Fatalf("stats %d %d", r, w)
	}
}
