package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// The approvals page at the HTTP level (no engine, no browser): who sees
// and answers what, the form token, second_person, a stale hash, and an
// answer that reaches the question store.
func TestApprovalsPage(t *testing.T) {
	rules, err := approval.Compile(approval.Config{Rules: []approval.Rule{{Name: "udp", ScanTypes: []string{"udp"}, SecondPerson: true}}})
	if err != nil {
		t.Fatal(err)
	}
	questions := approval.NewStore(approval.Limits{Timeout: time.Minute}, nil)
	ask := func(client, target string) approval.Pending {
		p, err := scanargs.Request{Targets: target, ScanType: "udp"}.Plan(scanargs.DefaultRules())
		if err != nil {
			t.Fatal(err)
		}
		d, err := rules.Decide(approval.Scan{Client: client, Validated: p})
		if err != nil {
			t.Fatal(err)
		}
		q, err := questions.Ask(d, "scan-"+client+"-"+target)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	alices := ask("alice", "127.0.0.1")
	bobs := ask("bob", "127.0.0.2")
	tokens := map[string]string{"alice-token": "alice", "bob-token": "bob", "carol-token": "carol"}
	h, err := New(Config{Approvals: questions, Approver: func(c string) bool { return c == "alice" || c == "bob" },
		Authenticate: func(tok string) (string, bool, bool) { c, ok := tokens[tok]; return c, false, ok }}, &fakeScans{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	session := func(token string) (*http.Cookie, string) {
		resp := signIn(t, srv, token, srv.URL)
		c := resp.Cookies()[0]
		h.mu.Lock()
		defer h.mu.Unlock()
		return c, h.sessions[c.Value].csrf
	}
	answer := func(c *http.Cookie, csrf string, q approval.Pending, hash, decision string) (int, string) {
		form := url.Values{"csrf": {csrf}, "hash": {hash}, "decision": {decision}, "reason": {"change window"}}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/approvals/"+q.ID, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", srv.URL)
		req.AddCookie(c)
		resp, err := noRedirect().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 1<<16)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
	alice, aliceCSRF := session("alice-token")
	carol, carolCSRF := session("carol-token")

	// An approver sees every waiting scan; her own has no buttons
	// (second_person).
	_, body := get(t, srv, "/approvals", alice)
	if !strings.Contains(body, alices.ScanID) || !strings.Contains(body, bobs.ScanID) || strings.Count(body, `class="approve"`) != 1 ||
		!strings.Contains(body, "someone else must answer") || !strings.Contains(body, "127.0.0.2 (1 addresses)") {
		t.Fatalf("alice's page:\n%s", body)
	}
	// Someone without the role sees only their own, and cannot answer.
	if _, body := get(t, srv, "/approvals", carol); strings.Contains(body, alices.ScanID) || strings.Contains(body, bobs.ScanID) {
		t.Fatalf("carol sees others' scans:\n%s", body)
	}
	if code, _ := answer(carol, carolCSRF, bobs, bobs.Decision.Hash, "approve"); code != http.StatusForbidden {
		t.Fatalf("carol answered: %d", code)
	}
	// Without the form token: refused.
	if code, _ := answer(alice, "wrong", bobs, bobs.Decision.Hash, "approve"); code != http.StatusForbidden {
		t.Fatalf("answer without the form token: %d", code)
	}
	// Her own scan: second_person refuses.
	if code, body := answer(alice, aliceCSRF, alices, alices.Decision.Hash, "approve"); code != http.StatusConflict || !strings.Contains(body, "second person") {
		t.Fatalf("self-approval: %d %s", code, body)
	}
	// A stale hash (the arguments on the page differ): refused.
	if code, _ := answer(alice, aliceCSRF, bobs, alices.Decision.Hash, "approve"); code != http.StatusConflict {
		t.Fatalf("stale hash: %d", code)
	}
	// Approve bob's.
	if code, _ := answer(alice, aliceCSRF, bobs, bobs.Decision.Hash, "approve"); code != http.StatusSeeOther {
		t.Fatalf("approve: %d", code)
	}
	g, err := questions.Take(bobs.ID, bobs.Decision.Hash, "bob")
	if err != nil || !g.Approved() || g.By != "alice" || g.Via != approval.ViaWeb || g.Reason != "change window" {
		t.Fatalf("grant: %+v %v", g, err)
	}
	// Bob denies alice's (anyone may say no).
	bob, bobCSRF := session("bob-token")
	if code, _ := answer(bob, bobCSRF, alices, alices.Decision.Hash, "deny"); code != http.StatusSeeOther {
		t.Fatalf("deny: %d", code)
	}
	if g, err := questions.Take(alices.ID, alices.Decision.Hash, "alice"); err != nil || g.Outcome != approval.Denied || g.By != "bob" {
		t.Fatalf("denial: %+v %v", g, err)
	}
}
