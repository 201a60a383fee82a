package scans_test

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Approval gates run here against the fake runner (no engine, -short):
// a rule asks for scans of two or more ports; one port needs nothing.

type approvalFixture struct {
	*fixture
	questions *approval.Store
}

func newApprovalFixture(t *testing.T, cfg scans.Config, rule approval.Rule, timeout time.Duration, pcfg *policy.Config) *approvalFixture {
	t.Helper()
	rules, err := approval.Compile(approval.Config{Rules: []approval.Rule{rule}})
	if err != nil {
		t.Fatal(err)
	}
	lim := rules.Limits()
	lim.Timeout = timeout
	questions := approval.NewStore(lim, nil)
	st, trail := testkit.OpenHistory(t)
	var pol scans.Checker
	if pcfg != nil {
		p, err := policy.New(*pcfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		pol = p
	}
	cfg.Sandbox.Limits = sandbox.DefaultLimits()
	cfg.MaxAddresses = 4096
	f := &fixture{runner: newFakeRunner(), store: st, trail: trail.Path()}
	f.svc = scans.New(cfg, scans.Deps{Runner: f.runner, Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"},
		Store: st, Audit: trail, Policy: pol, ApprovalRules: rules, Approvals: questions})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.svc.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return &approvalFixture{fixture: f, questions: questions}
}

var twoPorts = approval.Rule{Name: "two-ports", MinPorts: 2}

func twoPortReq() scanargs.Request { return scanargs.Request{Targets: "127.0.0.1", Ports: "22,80"} }

// ask puts the question for r as the MCP layer does and answers it.
func (f *approvalFixture) ask(t *testing.T, ctx context.Context, r scanargs.Request, approve bool, by string) string {
	t.Helper()
	d, err := f.svc.Decide(ctx, r)
	if err != nil || !d.Needed {
		t.Fatalf("decide: %+v %v", d, err)
	}
	q, err := f.questions.Ask(d, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.questions.Decide(q.ID, d.Hash, approval.Answer{Approve: approve, By: by, ByClient: d.Client, Via: approval.ViaElicitation, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	return q.ID
}

func (f *approvalFixture) nothingStored(t *testing.T) {
	t.Helper()
	recs, err := f.store.List(context.Background(), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Fatalf("%d records stored, want none: %+v", len(recs), recs[0])
	}
}

// Nothing that needs approval runs without it; an approval admits exactly
// its scan once: a changed argument is asked again, and no replay.
func TestApprovalBindsArguments(t *testing.T) {
	f := newApprovalFixture(t, scans.Config{}, twoPorts, time.Minute, nil)
	ctx := context.Background()
	var need *scans.ApprovalNeededError
	if _, err := f.svc.Submit(ctx, twoPortReq(), scans.Options{Detach: true}); !errors.As(err, &need) || need.Decision.Rule != "two-ports" {
		t.Fatalf("unapproved submit: %v, want *ApprovalNeededError", err)
	}
	f.nothingStored(t)

	id := f.ask(t, ctx, twoPortReq(), true, "user of local")
	changed := twoPortReq()
	changed.Ports = "22,81"
	var mm *approval.MismatchError
	if _, err := f.svc.Submit(ctx, changed, scans.Options{Detach: true, ApprovalID: id}); !errors.As(err, &mm) {
		t.Fatalf("approval used for changed arguments: %v, want *approval.MismatchError", err)
	}
	f.nothingStored(t)

	sc, err := f.svc.Submit(ctx, twoPortReq(), scans.Options{Detach: true, ApprovalID: id})
	if err != nil {
		t.Fatal(err)
	}
	f.runner.finish(f.started(t))
	rec := wait(t, sc)
	stored := f.stored(t, sc.ID, store.Done, "admitted:", "ended:done")
	for _, r := range []*store.Record{rec, stored} {
		if r.Approval == nil || !r.Approval.Approved() || r.Approval.By != "user of local" || r.Approval.Rule != "two-ports" || len(r.Approval.Hash) != 64 {
			t.Fatalf("record's approval: %+v", r.Approval)
		}
	}
	lines, err := audit.Tail(f.trail, 10)
	if err != nil {
		t.Fatal(err)
	}
	var g approval.Grant
	if err := json.Unmarshal(lines[0].Approval, &g); err != nil || lines[0].Event != audit.Admitted || g.By != "user of local" || g.Hash != rec.Approval.Hash {
		t.Fatalf("audit admission line's approval: %s (%v)", lines[0].Approval, err)
	}

	// No replay: the same approval does not admit a second scan.
	if _, err := f.svc.Submit(ctx, twoPortReq(), scans.Options{Detach: true, ApprovalID: id}); !errors.Is(err, approval.ErrUnknown) {
		t.Fatalf("replayed approval: %v, want approval.ErrUnknown", err)
	}
	// A scan no rule asks for runs as before.
	sc, err = f.svc.Submit(ctx, req(22), scans.Options{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	f.runner.finish(f.started(t))
	if rec := wait(t, sc); rec.Status != store.Done || rec.Approval != nil {
		t.Fatalf("scan without a rule: %s %+v", rec.Status, rec.Approval)
	}
}

// A denial is recorded and audited, spends no budget and takes no queue
// place.
func TestDenialSpendsNothing(t *testing.T) {
	pcfg := policy.DefaultConfig()
	pcfg.ScansPerClient = 1
	f := newApprovalFixture(t, scans.Config{Concurrency: 1}, twoPorts, time.Minute, &pcfg)
	ctx := context.Background()
	id := f.ask(t, ctx, twoPortReq(), false, "user of local")
	var denied *scans.DeniedError
	_, err := f.svc.Submit(ctx, twoPortReq(), scans.Options{Detach: true, ApprovalID: id})
	if !errors.As(err, &denied) || denied.Grant.Outcome != approval.Denied {
		t.Fatalf("denied submit: %v", err)
	}
	rec := f.stored(t, denied.ScanID, store.Denied, "denied:denied")
	if rec.Approval == nil || rec.Approval.Outcome != approval.Denied || !strings.Contains(rec.Error, "not approved") {
		t.Fatalf("denied record: %+v %q", rec.Approval, rec.Error)
	}
	// The budget (one scan) is untouched, and the queue slot free.
	sc, err := f.svc.Submit(ctx, req(22), scans.Options{Detach: true})
	if err != nil {
		t.Fatalf("after a denial: %v", err)
	}
	f.runner.finish(f.started(t))
	wait(t, sc)
}

// Without a way to ask the client, a scan waits as pending-approval (no
// queue place; its record stored as pending, no audit line) until an
// approver answers; a timeout is a denial; second_person refuses the
// requester's own yes.
func TestPendingApproval(t *testing.T) {
	rule := twoPorts
	rule.SecondPerson = true
	pcfg := policy.DefaultConfig()
	pcfg.ScansPerClient = 2
	f := newApprovalFixture(t, scans.Config{Concurrency: 1, QueueSize: 0}, rule, 300*time.Millisecond, &pcfg)
	ctx := scans.WithClient(context.Background(), "alice")
	sc, err := f.svc.Submit(ctx, twoPortReq(), scans.Options{Detach: true, AwaitApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := f.svc.Get(ctx, sc.ID)
	if err != nil || !snap.Live || snap.Record.Status != store.PendingApproval {
		t.Fatalf("pending scan: %+v %v", snap, err)
	}
	list, err := f.svc.List(ctx, store.Filter{})
	if err != nil || len(list) != 1 || list[0].ID != sc.ID || list[0].Status != store.PendingApproval {
		t.Fatalf("list (the live scan once, not its stored copy too): %+v %v", list, err)
	}
	f.stored(t, sc.ID, store.PendingApproval)
	// It holds no queue place: a scan no rule asks for runs meanwhile.
	other, err := f.svc.Submit(ctx, req(22), scans.Options{Detach: true})
	if err != nil {
		t.Fatalf("queue held by a pending scan: %v", err)
	}
	f.runner.finish(f.started(t))
	wait(t, other)

	// Times out: a denial, recorded.
	rec := wait(t, sc)
	if rec.Status != store.Denied || rec.Approval == nil || rec.Approval.Outcome != approval.TimedOut {
		t.Fatalf("timed out: %s %+v", rec.Status, rec.Approval)
	}
	f.stored(t, sc.ID, store.Denied, "denied:denied")
	if f.questions.Len() != 0 {
		t.Fatalf("%d questions left", f.questions.Len())
	}

	// Asked again: alice cannot approve her own; bob can, and it runs.
	sc, err = f.svc.Submit(ctx, twoPortReq(), scans.Options{Detach: true, AwaitApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	qs := f.questions.List()
	if len(qs) != 1 || qs[0].ScanID != sc.ID || !strings.Contains(qs[0].Decision.Text, "127.0.0.1 (1 addresses)") {
		t.Fatalf("questions: %+v", qs)
	}
	if _, err := f.questions.Decide(qs[0].ID, qs[0].Decision.Hash, approval.Answer{Approve: true, By: "alice", ByClient: "alice", Via: approval.ViaWeb}); !errors.Is(err, approval.ErrSelfApproval) {
		t.Fatalf("self-approval: %v", err)
	}
	if _, err := f.questions.Decide(qs[0].ID, qs[0].Decision.Hash, approval.Answer{Approve: true, By: "bob", ByClient: "bob", Via: approval.ViaWeb, Reason: "ok"}); err != nil {
		t.Fatal(err)
	}
	f.runner.finish(f.started(t))
	rec = wait(t, sc)
	if rec.Status != store.Done || rec.Approval == nil || rec.Approval.By != "bob" {
		t.Fatalf("approved by bob: %s %+v", rec.Status, rec.Approval)
	}
	f.stored(t, sc.ID, store.Done, "admitted:", "ended:done")

	// A pending scan can be cancelled; its question goes.
	sc, err = f.svc.Submit(ctx, twoPortReq(), scans.Options{Detach: true, AwaitApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	if !f.svc.Cancel(ctx, sc.ID) {
		t.Fatal("cancel of a pending scan")
	}
	if rec := wait(t, sc); rec.Status != store.Cancelled || f.questions.Len() != 0 {
		t.Fatalf("cancelled pending: %s, %d questions", rec.Status, f.questions.Len())
	}
	// Recorded, so get_scan (and a task) still finds it.
	f.stored(t, sc.ID, store.Cancelled, "denied:cancelled")
	if snap, err := f.svc.Get(ctx, sc.ID); err != nil || snap.Record.Status != store.Cancelled {
		t.Fatalf("get after cancel: %+v %v", snap.Record, err)
	}
}

// A watch of a scan a rule asks for is refused at creation.
func TestValidateRefusesApprovalScans(t *testing.T) {
	f := newApprovalFixture(t, scans.Config{}, twoPorts, time.Minute, nil)
	var need *scans.ApprovalNeededError
	if err := f.svc.Validate(context.Background(), twoPortReq()); !errors.As(err, &need) || !need.Unattended || !strings.Contains(err.Error(), "watch") {
		t.Fatalf("validate: %v", err)
	}
	if err := f.svc.Validate(context.Background(), req(22)); err != nil {
		t.Fatal(err)
	}
}

// A server that dies while a scan waits for approval leaves it
// interrupted, saying nothing ran, not unknown: the next start on the
// same history (store.Open) reads its stored pending record.
func TestPendingApprovalOutlivesItsServer(t *testing.T) {
	f := newApprovalFixture(t, scans.Config{}, twoPorts, time.Minute, nil)
	ctx := scans.WithClient(context.Background(), "alice")
	sc, err := f.svc.Submit(ctx, twoPortReq(), scans.Options{Detach: true, AwaitApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	f.stored(t, sc.ID, store.PendingApproval)
	// The server dies: its process is gone (a pid that has exited).
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.DB().Exec(`UPDATE scans SET owner_pid = ? WHERE id = ?`, dead.ProcessState.Pid(), sc.ID); err != nil {
		t.Fatal(err)
	}
	next, err := store.Open(context.Background(), f.store.Path(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	svc := scans.New(scans.Config{Sandbox: sandbox.Options{Limits: sandbox.DefaultLimits()}, MaxAddresses: 4096},
		scans.Deps{Runner: newFakeRunner(), Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"}, Store: next})
	defer svc.Close(context.Background())
	snap, err := svc.Get(ctx, sc.ID)
	if err != nil || snap.Record.Status != store.Interrupted || !strings.Contains(snap.Record.Error, "waited for approval; nothing ran") {
		t.Fatalf("after the restart: %+v %v", snap.Record, err)
	}
}

// When the record a scan that did not run begins with cannot be written
// (a store refusing new rows), its stored pending record ends in place:
// it never reads pending-approval while no one waits. No engine.
func TestUnrunEndsItsPendingRecordInPlace(t *testing.T) {
	f := newApprovalFixture(t, scans.Config{}, twoPorts, 200*time.Millisecond, nil)
	if _, err := f.store.DB().Exec(`CREATE TRIGGER refuse BEFORE INSERT ON scans WHEN NEW.status <> 'pending-approval' BEGIN SELECT RAISE(ABORT, 'no room'); END`); err != nil {
		t.Fatal(err)
	}
	ctx := scans.WithClient(context.Background(), "alice")
	sc, err := f.svc.Submit(ctx, twoPortReq(), scans.Options{Detach: true, AwaitApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec := wait(t, sc); rec.Status != store.Denied {
		t.Fatalf("not answered in time: %s", rec.Status)
	}
	snap, err := f.svc.Get(ctx, sc.ID)
	if err != nil || snap.Live || snap.Record.Status != store.Denied {
		t.Fatalf("after its end: %s live %v (%v)", snap.Record.Status, snap.Live, err)
	}
}
