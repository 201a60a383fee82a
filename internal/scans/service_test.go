package scans_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// The lifecycle logic — queue, shares, budgets, records, audit, events —
// runs here against a fake runner: no Docker engine is needed, and these
// tests run under -short. The real runner is tested in scans_e2e_test.go
// and in executor.

// fakeRunner plays a container: each Run reports created and started,
// writes nmap-like XML for the scan's targets, then waits for the test to
// release it (or for ctx, which kills it), and reports exited and removed.
type fakeRunner struct {
	mu      sync.Mutex
	running int
	peak    int
	order   []string // scan ids in the order they started
	release map[string]chan runEnd
	start   chan string // told each scan id as it starts
	err     error       // returned by every Run before it starts, when set
}

type runEnd struct {
	exit int
	err  error
}

func newFakeRunner() *fakeRunner {
	return &fakeRunner{release: map[string]chan runEnd{}, start: make(chan string, 64)}
}

func (f *fakeRunner) end(id string) chan runEnd {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.release[id]
	if !ok {
		ch = make(chan runEnd, 1)
		f.release[id] = ch
	}
	return ch
}

// finish lets scan id end with exit code 0.
func (f *fakeRunner) finish(id string) { f.end(id) <- runEnd{} }

func (f *fakeRunner) Run(ctx context.Context, job executor.Job) (*executor.Result, error) {
	if f.err != nil {
		return &executor.Result{}, f.err
	}
	id := job.Spec.Labels[sandbox.LabelScanID]
	emit := func(step executor.Step) {
		if job.OnEvent != nil {
			job.OnEvent(executor.Event{Step: step, ContainerID: "c-" + id, At: time.Now()})
		}
	}
	res := &executor.Result{ContainerID: "c-" + id}
	emit("created")
	f.mu.Lock()
	f.running++
	f.peak = max(f.peak, f.running)
	f.order = append(f.order, id)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
		emit("removed")
	}()
	emit("started")
	f.start <- id
	xml := `<?xml version="1.0"?><nmaprun scanner="nmap" args="nmap" version="7.93">` +
		`<taskprogress task="Connect Scan" percent="50.00" remaining="1" etc="0"/>` +
		`<host><status state="up" reason="conn-refused"/><address addr="127.0.0.1" addrtype="ipv4"/>` +
		`<ports><port protocol="tcp" portid="22"><state state="open" reason="syn-ack"/><service name="ssh"/></port></ports></host>`
	write := func(s string) {
		if job.Stdout != nil {
			_, _ = io.WriteString(job.Stdout, s)
		}
		res.Stdout = append(res.Stdout, s...)
	}
	write(xml)
	var deadline <-chan time.Time
	if job.Spec.Deadline > 0 {
		deadline = time.After(job.Spec.Deadline)
	}
	select {
	case e := <-f.end(id):
		write(`<runstats><finished elapsed="1" exit="success"/><hosts up="1" down="0" total="1"/></runstats></nmaprun>`)
		res.ExitCode = e.exit
		emit("exited")
		return res, e.err
	case <-deadline:
		res.TimedOut = true
		emit("killed")
		return res, &executor.TimeoutError{After: job.Spec.Deadline}
	case <-ctx.Done():
		res.Canceled = true
		emit("killed")
		return res, fmt.Errorf("scan cancelled, container killed: %w", context.Cause(ctx))
	}
}

func (f *fakeRunner) Close(context.Context) error { return nil }

type fixture struct {
	svc    *scans.Service
	runner *fakeRunner
	store  *store.Store
	trail  string
}

func newFixture(t *testing.T, cfg scans.Config, pcfg *policy.Config) *fixture {
	t.Helper()
	st, trail := testkit.OpenHistory(t)
	var pol scans.Checker
	if pcfg != nil {
		p, err := policy.New(*pcfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		pol = p
	}
	if cfg.Sandbox.Limits.Timeout == 0 {
		cfg.Sandbox.Limits = sandbox.DefaultLimits()
	}
	cfg.MaxAddresses = 4096
	f := &fixture{runner: newFakeRunner(), store: st, trail: trail.Path()}
	f.svc = scans.New(cfg, scans.Deps{Runner: f.runner, Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"},
		Store: st, Audit: trail, Policy: pol})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.svc.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return f
}

func req(port int) scanargs.Request {
	return scanargs.Request{Targets: "127.0.0.1", Ports: fmt.Sprint(port)}
}

func (f *fixture) submit(t *testing.T, r scanargs.Request) *scans.Scan {
	t.Helper()
	sc, err := f.svc.Submit(context.Background(), r, scans.Options{Detach: true})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return sc
}

func (f *fixture) started(t *testing.T) string {
	t.Helper()
	select {
	case id := <-f.runner.start:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no scan started")
		return ""
	}
}

func wait(t *testing.T, sc *scans.Scan) *store.Record {
	t.Helper()
	select {
	case <-sc.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("scan %s did not end", sc.ID)
	}
	return sc.Snapshot().Record
}

// auditOf returns the audit events of one scan, in order.
func (f *fixture) auditOf(t *testing.T, id string) []string {
	t.Helper()
	recs, err := audit.Tail(f.trail, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		if r.ScanID == id {
			out = append(out, r.Event+":"+r.Outcome)
		}
	}
	return out
}

// stored checks the record as stored and its audit trail.
func (f *fixture) stored(t *testing.T, id, status string, audit ...string) *store.Record {
	t.Helper()
	rec, err := f.store.Get(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != status {
		t.Fatalf("scan %s stored as %s (%s), want %s", id, rec.Status, rec.Error, status)
	}
	if got := strings.Join(f.auditOf(t, id), " "); got != strings.Join(audit, " ") {
		t.Fatalf("audit of %s: %s, want %s", id, got, strings.Join(audit, " "))
	}
	return rec
}

func TestDoneRecordAuditAndEvents(t *testing.T) {
	f := newFixture(t, scans.Config{}, nil)
	var mu sync.Mutex
	var kinds []scans.EventKind
	var last float64
	go func() { f.runner.finish(f.started(t)) }()
	sc, err := f.svc.Submit(context.Background(), req(22), scans.Options{Events: func(ev scans.Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Kind != scans.Log {
			if ev.Percent < last {
				t.Errorf("progress fell from %.1f to %.1f", last, ev.Percent)
			}
			last = ev.Percent
		}
		kinds = append(kinds, ev.Kind)
	}})
	if err != nil || sc.Err() != nil {
		t.Fatalf("submit %v, scan %v", err, sc.Err())
	}
	rec := f.stored(t, sc.ID, store.Done, "admitted:", "ended:done")
	if rec.Result == nil || rec.OpenPorts != 1 || rec.ImageID != "sha256:fake" || rec.StartedAt.IsZero() || rec.EndedAt.IsZero() {
		t.Fatalf("record %+v", rec)
	}
	mu.Lock()
	defer mu.Unlock()
	seen := map[scans.EventKind]bool{}
	for _, k := range kinds {
		seen[k] = true
	}
	for _, k := range []scans.EventKind{scans.Started, scans.Progress, scans.HostDone, scans.Log, scans.Finished} {
		if !seen[k] {
			t.Errorf("event kind %d never came (%v)", k, kinds)
		}
	}
	if kinds[len(kinds)-1] != scans.Finished || last != 100 {
		t.Fatalf("last event %d at %.0f%%", kinds[len(kinds)-1], last)
	}
}

func TestFailedRecord(t *testing.T) {
	f := newFixture(t, scans.Config{}, nil)
	sc := f.submit(t, req(22))
	id := f.started(t)
	f.runner.end(id) <- runEnd{exit: 1, err: &executor.ExitError{Code: 1, Stderr: "boom"}}
	rec := wait(t, sc)
	if rec.Status != store.Failed || !strings.Contains(rec.Error, "boom") {
		t.Fatalf("%s %q", rec.Status, rec.Error)
	}
	f.stored(t, id, store.Failed, "admitted:", "ended:failed")
}

func TestTimedOutKeepsPartial(t *testing.T) {
	f := newFixture(t, scans.Config{}, nil)
	r := req(22)
	r.TimeoutSeconds = intp(1)
	sc := f.submit(t, r)
	f.started(t)
	rec := wait(t, sc)
	stored := f.stored(t, sc.ID, store.TimedOut, "admitted:", "ended:timed-out")
	if rec.Result == nil || !rec.Result.Partial || len(stored.Result.Hosts) != 1 {
		t.Fatalf("partial result lost: %+v", stored.Result)
	}
}

func TestEngineUnreachable(t *testing.T) {
	f := newFixture(t, scans.Config{}, nil)
	f.runner.err = &executor.UnreachableError{Host: "unix:///nowhere", Err: errors.New("connection refused")}
	sc, err := f.svc.Submit(context.Background(), req(22), scans.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := f.stored(t, sc.ID, store.Failed, "admitted:", "ended:failed")
	if !strings.Contains(rec.Error, "docker engine unreachable") {
		t.Fatalf("error %q", rec.Error)
	}
}

// FIFO order and the concurrency limit; a full queue is refused at once,
// a refusal spends no budget and leaves no record.
func TestQueueFIFOLimitAndFull(t *testing.T) {
	pcfg := policy.DefaultConfig()
	pcfg.ScansPerClient = 4
	f := newFixture(t, scans.Config{Concurrency: 1, QueueSize: 2, PerClient: 10}, &pcfg)
	first := f.submit(t, req(1))
	f.started(t)
	second, third := f.submit(t, req(2)), f.submit(t, req(3))
	if snap, _ := f.svc.Get(context.Background(), second.ID); snap.Record.Status != store.Queued || !strings.Contains(snap.Message, "position 1") {
		t.Fatalf("second: %s %q", snap.Record.Status, snap.Message)
	}
	var full *scans.QueueFullError
	if _, err := f.svc.Submit(context.Background(), req(4), scans.Options{Detach: true}); !errors.As(err, &full) {
		t.Fatalf("fourth: %v; want queue full", err)
	}
	for _, sc := range []*scans.Scan{first, second, third} {
		f.runner.finish(sc.ID)
		wait(t, sc)
		if sc != third {
			f.started(t)
		}
	}
	f.runner.mu.Lock()
	order, peak := strings.Join(f.runner.order, ","), f.runner.peak
	f.runner.mu.Unlock()
	if order != strings.Join([]string{first.ID, second.ID, third.ID}, ",") || peak != 1 {
		t.Fatalf("order %s, peak %d", order, peak)
	}
	// Three scans spent 3 of 4; the refused fourth spent nothing.
	last := f.submit(t, req(5))
	f.started(t)
	f.runner.finish(last.ID)
	wait(t, last)
	var be *policy.BudgetError
	if _, err := f.svc.Submit(context.Background(), req(6), scans.Options{Detach: true}); !errors.As(err, &be) {
		t.Fatalf("budget: %v", err)
	}
	if recs, _ := f.store.List(context.Background(), store.Filter{Limit: 100}); len(recs) != 4 {
		t.Fatalf("%d records; refusals must leave none", len(recs))
	}
}

func TestQueueTimeout(t *testing.T) {
	f := newFixture(t, scans.Config{Concurrency: 1, QueueSize: 1, MaxQueueWait: 100 * time.Millisecond, PerClient: 10}, nil)
	first := f.submit(t, req(1))
	f.started(t)
	second := f.submit(t, req(2))
	rec := wait(t, second)
	if rec.Status != store.Failed || !strings.Contains(rec.Error, "waited") {
		t.Fatalf("%s %q", rec.Status, rec.Error)
	}
	f.stored(t, second.ID, store.Failed, "admitted:", "ended:failed")
	f.runner.finish(first.ID)
	wait(t, first)
}

func TestCancelQueuedAndRunning(t *testing.T) {
	f := newFixture(t, scans.Config{Concurrency: 1, QueueSize: 1, PerClient: 10}, nil)
	running := f.submit(t, req(1))
	f.started(t)
	queued := f.submit(t, req(2))
	ctx := context.Background()
	if !f.svc.Cancel(ctx, queued.ID) {
		t.Fatal("cancel queued")
	}
	rec := f.stored(t, queued.ID, store.Cancelled, "admitted:", "ended:cancelled")
	if !strings.Contains(rec.Error, "cancel_scan") {
		t.Fatalf("queued error %q", rec.Error)
	}
	if !f.svc.Cancel(ctx, running.ID) {
		t.Fatal("cancel running")
	}
	rec = f.stored(t, running.ID, store.Cancelled, "admitted:", "ended:cancelled")
	if rec.Result == nil || len(rec.Result.Hosts) != 1 || !rec.Result.Partial {
		t.Fatalf("partial output lost: %+v", rec.Result)
	}
	if f.svc.Cancel(ctx, running.ID) {
		t.Fatal("cancelled twice")
	}
}

// A caller that goes away cancels a scan it waits for; a detached scan
// runs on.
func TestCallerGoneCancels(t *testing.T) {
	f := newFixture(t, scans.Config{Concurrency: 2, QueueSize: 2}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *scans.Scan)
	go func() {
		sc, _ := f.svc.Submit(ctx, req(1), scans.Options{})
		done <- sc
	}()
	f.started(t)
	cancel()
	sc := <-done
	f.stored(t, sc.ID, store.Cancelled, "admitted:", "ended:cancelled")
}

// Per-client share and ownership: another client's scan is not found.
func TestShareAndOwnership(t *testing.T) {
	f := newFixture(t, scans.Config{Concurrency: 1, QueueSize: 3, PerClient: 1}, nil)
	alice := scans.WithClient(context.Background(), "alice")
	bob := scans.WithClient(context.Background(), "bob")
	a, err := f.svc.Submit(alice, req(1), scans.Options{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	f.started(t)
	var se *scans.ShareError
	if _, err := f.svc.Submit(alice, req(2), scans.Options{Detach: true}); !errors.As(err, &se) {
		t.Fatalf("alice's second: %v", err)
	}
	b, err := f.svc.Submit(bob, req(3), scans.Options{Detach: true})
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	var nf *store.NotFoundError
	if _, err := f.svc.Get(bob, a.ID); !errors.As(err, &nf) {
		t.Fatalf("bob reads alice's live scan: %v", err)
	}
	if f.svc.Cancel(bob, a.ID) {
		t.Fatal("bob cancelled alice's scan")
	}
	if _, err := f.svc.Get(scans.WithAdmin(bob), a.ID); err != nil {
		t.Fatalf("admin: %v", err)
	}
	f.runner.finish(a.ID)
	wait(t, a)
	f.started(t)
	f.runner.finish(b.ID)
	wait(t, b)
	if _, err := f.svc.Get(bob, a.ID); !errors.As(err, &nf) {
		t.Fatalf("bob reads alice's stored scan: %v", err)
	}
	if recs, _ := f.svc.List(alice, store.Filter{}); len(recs) != 1 || recs[0].ID != a.ID {
		t.Fatalf("alice lists %d", len(recs))
	}
}

// A scan whose admission cannot be recorded does not run.
func TestUnrecordableScanDoesNotRun(t *testing.T) {
	f := newFixture(t, scans.Config{}, nil)
	f.store.Close()
	_, err := f.svc.Submit(context.Background(), req(1), scans.Options{})
	if err == nil || !strings.Contains(err.Error(), "scan not run") {
		t.Fatalf("err %v", err)
	}
	f.runner.mu.Lock()
	defer f.runner.mu.Unlock()
	if len(f.runner.order) != 0 {
		t.Fatal("a scan ran without its record")
	}
}

func TestScanAfterCloseIsNotLost(t *testing.T) {
	f := newFixture(t, scans.Config{Concurrency: 1, QueueSize: 1}, nil)
	sc := f.submit(t, req(1))
	f.started(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.svc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rec := f.stored(t, sc.ID, store.Cancelled, "admitted:", "ended:cancelled")
	if !strings.Contains(rec.Error, "shutting down") {
		t.Fatalf("error %q", rec.Error)
	}
}

// check_scope also says where each allowed target would be scanned:
// fenced, or on the host network for loopback. (Fake runner: nothing runs.)
func TestCheckScopeSaysWhereItRuns(t *testing.T) {
	pcfg := policy.DefaultConfig()
	f := newFixture(t, scans.Config{Concurrency: 1}, &pcfg)
	ds, err := f.svc.CheckScope(context.Background(), "127.0.0.1, 10.0.0.5, 169.254.169.254")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 || !strings.Contains(ds[0].Network, "fenced to loopback") || ds[1].Network != "fenced on network nmap-mcp" || ds[2].Allowed || ds[2].Network != "" {
		t.Fatalf("%+v", ds)
	}
}
