package web_test

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/internal/web"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// instantRunner plays a container that finds nothing, at once: the
// approval path needs no engine, only the browser.
type instantRunner struct{}

func (instantRunner) Run(_ context.Context, job executor.Job) (*executor.Result, error) {
	xml := `<?xml version="1.0"?><nmaprun scanner="nmap" args="nmap" version="7.93"><runstats><finished elapsed="1" exit="success"/><hosts up="0" down="0" total="0"/></runstats></nmaprun>`
	if job.Stdout != nil {
		_, _ = io.WriteString(job.Stdout, xml)
	}
	if job.OnEvent != nil {
		job.OnEvent(executor.Event{Step: "removed", At: time.Now()})
	}
	return &executor.Result{ContainerID: "c-fake", Stdout: []byte(xml)}, nil
}

func (instantRunner) Close(context.Context) error { return nil }

// The web approval path in Chromium: a scan waits as pending-approval; its
// requester (an approver too) cannot approve it under second_person, and a
// forged post of hers is refused; bob approves it with a reason and it
// runs, the scan page saying who approved; bob denies another, which is
// recorded as denied and never runs. A fake runner: no engine; the
// browser is needed (skipped under -short, as the other browser test).
func TestBrowserApproval(t *testing.T) {
	testkit.NeedEngine(t) // the browser tests run without -short
	browser := chromium(t)
	rules, err := approval.Compile(approval.Config{Rules: []approval.Rule{{Name: "two-ports", MinPorts: 2, SecondPerson: true}}})
	if err != nil {
		t.Fatal(err)
	}
	st, trail := testkit.OpenHistory(t)
	svc := scans.New(scans.Config{Sandbox: sandbox.Options{Limits: sandbox.DefaultLimits()}, MaxAddresses: 16, Concurrency: 2, QueueSize: 2},
		scans.Deps{Runner: instantRunner{}, Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"}, Store: st, Audit: trail,
			ApprovalRules: rules, Approvals: approval.NewStore(rules.Limits(), nil)})
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	alice := scans.WithClient(context.Background(), "alice")
	pending := func(ports string) *scans.Scan {
		t.Helper()
		sc, err := svc.Submit(alice, scanargs.Request{Targets: "127.0.0.1", Ports: ports}, scans.Options{Detach: true, AwaitApproval: true})
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	first := pending("22,80")

	tokens := map[string]string{"alice-token": "alice", "bob-token": "bob"}
	view, err := web.New(web.Config{AuditPath: trail.Path(), Approvals: svc.Approvals(), Approver: func(c string) bool { return c == "alice" || c == "bob" },
		Authenticate: func(tok string) (string, bool, bool) { c, ok := tokens[tok]; return c, false, ok }}, svc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(view)
	t.Cleanup(srv.Close)

	sess := newSession(t, browser, 2*time.Minute)
	bctx := sess.ctx
	do, text, eval := sess.do, sess.text, sess.eval
	shots := artifacts(t)
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err == nil {
			_ = writeFile(shots, name, png)
		}
	}
	signIn := func(token string) {
		t.Helper()
		do("sign in "+token, chromedp.Navigate(srv.URL+"/signin?next=/approvals"), chromedp.WaitVisible(chromedp.CSS("#token")),
			chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Click(chromedp.CSS("#signin")),
			// The sign-in page has a heading too: wait until it is gone,
			// or the next navigation aborts the pending one.
			chromedp.WaitNotPresent(chromedp.CSS("#token")), chromedp.WaitVisible(chromedp.CSS("main h1")))
	}

	// Alice asked for the scan: she sees it waiting, without buttons.
	signIn("alice-token")
	do("alice's approvals", chromedp.Navigate(srv.URL+"/approvals"), chromedp.WaitVisible(chromedp.CSS("#q-"+first.ID)))
	section := text("#q-" + first.ID)
	shot("approval-requester")
	if !strings.Contains(section, "someone else must answer") || !strings.Contains(section, "Ports: 22,80 (2 per host)") ||
		eval(`String(document.querySelectorAll("#q-`+first.ID+` button.approve").length)`) != "0" {
		t.Fatalf("alice's view of her own waiting scan:\n%s", section)
	}
	// A forged post of hers, with her own form token: refused.
	q := svc.Approvals().List()[0]
	status := eval(`fetch("/approvals/`+q.ID+`", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"},
		body: "csrf=" + document.querySelector("input[name=csrf]").value + "&hash=`+q.Decision.Hash+`&decision=approve"}).then(r => String(r.status))`,
		chromedp.EvalAwaitPromise)
	if status != "409" {
		t.Fatalf("alice's self-approval: HTTP %s, want 409", status)
	}
	if got := first.Snapshot().Record.Status; got != store.PendingApproval {
		t.Fatalf("after the self-approval the scan is %s", got)
	}
	do("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#token")))

	// Bob approves with a reason; the scan runs.
	signIn("bob-token")
	do("bob approves", chromedp.Navigate(srv.URL+"/approvals"), chromedp.WaitVisible(chromedp.CSS("#q-"+first.ID+" button.approve")),
		chromedp.SendKeys(chromedp.CSS("#q-"+first.ID+" input.reason"), "change window 42"),
		chromedp.Click(chromedp.CSS("#q-"+first.ID+" button.approve")), chromedp.WaitVisible(chromedp.CSS("#done")))
	shot("approval-approved")
	select {
	case <-first.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the approved scan did not run")
	}
	rec := first.Snapshot().Record
	if rec.Status != store.Done || rec.Approval == nil || rec.Approval.By != "bob" || rec.Approval.Reason != "change window 42" {
		t.Fatalf("approved scan: %s %+v", rec.Status, rec.Approval)
	}

	// Bob denies another: recorded as denied, never run.
	second := pending("22,443")
	do("bob denies", chromedp.Navigate(srv.URL+"/approvals"), chromedp.WaitVisible(chromedp.CSS("#q-"+second.ID+" button.deny")),
		chromedp.Click(chromedp.CSS("#q-"+second.ID+" button.deny")), chromedp.WaitVisible(chromedp.CSS("#done")))
	select {
	case <-second.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the denied scan did not end")
	}
	stored, err := st.Get(context.Background(), second.ID, "")
	if err != nil || stored.Status != store.Denied || stored.Approval == nil || stored.Approval.Outcome != approval.Denied || stored.StartedAt.IsZero() == false {
		t.Fatalf("denied record: %+v %v", stored, err)
	}
	// Alice's scan pages say who answered (bob sees only his own scans).
	do("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#token")))
	signIn("alice-token")
	do("the scan page", chromedp.Navigate(srv.URL+"/scans/"+first.ID), chromedp.WaitVisible(chromedp.CSS("#approval")))
	if got := text("#approval"); !strings.Contains(got, "approved by bob (web)") || !strings.Contains(got, "two-ports") || !strings.Contains(got, rec.Approval.Hash) {
		t.Fatalf("scan page's approval: %q", got)
	}
	do("the denied scan's page", chromedp.Navigate(srv.URL+"/scans/"+second.ID), chromedp.WaitVisible(chromedp.CSS("#approval")))
	shot("approval-denied")
	if got := text("#approval"); !strings.Contains(got, "denied by bob (web)") {
		t.Fatalf("denied scan's page: %q", got)
	}
}

func writeFile(dir, name string, png []byte) error {
	return os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
}
