package web_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/auth"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit/oidcop"
	"github.com/nmap-mcp/nmap-mcp/internal/web"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// The web view's sign-in through a real OpenID provider (oidc-provider on
// 127.0.0.1, internal/testkit/oidcop) in Chromium, the view served as
// http://localhost:PORT so that the provider is another site: alice and
// bob sign in at the provider's own login page, each sees only their own
// scans (tenancy by the provider's person), the session ends no later
// than the person's access token, a person without a role is refused, and
// a callback not started in this browser is refused. Roles come from the
// provider's groups (the provider grants every scope asked for). A fake
// runner: no engine; the browser and node are needed.
func TestBrowserProviderSignIn(t *testing.T) {
	testkit.NeedEngine(t) // the browser tests run without -short
	browser := chromium(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	aud := base + "/mcp"
	op := oidcop.Start(t, oidcop.Config{Resource: aud, Scopes: []string{"nmap:read", "nmap:scan"},
		Clients:        []oidcop.Client{{ClientID: "nmap-web", RedirectURIs: []string{base + "/auth/callback"}}},
		Groups:         map[string][]string{"alice": {"lab"}, "bob": {"lab"}, "mallory": {"visitors"}},
		AccessTokenTTL: 90 * time.Second})
	v, err := auth.New(auth.Config{Issuer: op.Issuer(), Audience: aud, IdentityClaim: "preferred_username",
		Grants: map[auth.Role]auth.Grant{auth.Read: {Groups: []string{"lab"}}, auth.Scan: {Groups: []string{"lab"}},
			auth.Approve: {Groups: []string{"approvers"}}, auth.Admin: {Groups: []string{"lab-admins"}}}})
	if err != nil {
		t.Fatal(err)
	}
	login, err := v.NewLogin(auth.LoginConfig{ClientID: "nmap-web", RedirectURL: base + "/auth/callback", Scopes: []string{"nmap:read"}})
	if err != nil {
		t.Fatal(err)
	}

	st, trail := testkit.OpenHistory(t)
	svc := scans.New(scans.Config{Sandbox: sandbox.Options{Limits: sandbox.DefaultLimits()}, MaxAddresses: 16, Concurrency: 2, QueueSize: 4},
		scans.Deps{Runner: instantRunner{}, Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"}, Store: st, Audit: trail})
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	ids := map[string]string{}
	for _, who := range []string{"alice", "bob"} {
		sc, err := svc.Submit(scans.WithClient(context.Background(), who), scanargs.Request{Targets: "127.0.0.1", Ports: "22"}, scans.Options{})
		if err != nil {
			t.Fatal(err)
		}
		<-sc.Done()
		ids[who] = sc.ID
	}

	var seen []string
	view, err := web.New(web.Config{AuditPath: trail.Path(), Login: login, Seen: func(id auth.Identity) { seen = append(seen, id.Name) },
		Authenticate: func(string) (string, bool, bool) { return "", false, false }}, svc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(view)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	signIn := func(who string) *session {
		t.Helper()
		sess := newSession(t, browser, 2*time.Minute)
		sess.do(who+" signs in at the provider", chromedp.Navigate(base+"/scans"), chromedp.WaitVisible(chromedp.CSS("#provider-signin")),
			chromedp.Click(chromedp.CSS("#provider-signin")), chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), who), chromedp.Submit(chromedp.CSS(`input[name="login"]`)))
		return sess
	}

	// alice: her scan, not bob's; the session ends with her token.
	alice := signIn("alice")
	alice.do("alice's scans", chromedp.WaitVisible(chromedp.CSS(`a[href="/scans/`+ids["alice"]+`"]`)))
	if !strings.Contains(alice.text("header"), "alice") {
		t.Fatalf("header does not name alice: %q", alice.text("header"))
	}
	if n := alice.eval(`String(document.querySelectorAll('a[href="/scans/` + ids["bob"] + `"]').length)`); n != "0" {
		t.Fatal("alice sees bob's scan")
	}
	res, err := chromedp.Call(alice.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range res.Cookies {
		if c.Name == web.CookieName {
			found = true
			if until := time.Unix(int64(c.Expires), 0); time.Until(until) > 91*time.Second || !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
				t.Fatalf("session cookie %+v: want HttpOnly, Strict, ending with the 90 s token", c)
			}
		}
	}
	if !found {
		t.Fatal("no session cookie after the provider's sign-in")
	}
	// bob's scan page: not found for alice.
	status := alice.eval(`fetch("/scans/`+ids["bob"]+`").then(r => String(r.status))`, chromedp.EvalAwaitPromise)
	if status != "404" {
		t.Fatalf("alice reading bob's scan: HTTP %s", status)
	}

	// bob, in his own browser: his scan only.
	bob := signIn("bob")
	bob.do("bob's scans", chromedp.WaitVisible(chromedp.CSS(`a[href="/scans/`+ids["bob"]+`"]`)))
	if n := bob.eval(`String(document.querySelectorAll('a[href="/scans/` + ids["alice"] + `"]').length)`); n != "0" {
		t.Fatal("bob sees alice's scan")
	}

	// mallory has no role here.
	mallory := signIn("mallory")
	mallory.do("mallory refused", chromedp.WaitVisible(chromedp.CSS(".error")))
	if msg := mallory.text(".error"); !strings.Contains(msg, "no role") {
		t.Fatalf("mallory: %q", msg)
	}
	if strings.Join(seen, ",") != "alice,bob" {
		t.Fatalf("standing told of %v; want alice,bob", seen)
	}

	// A callback this browser did not start: refused, nothing redeemed.
	resp, err := http.Get(base + "/auth/callback?state=forged&code=stolen")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged callback: %d", resp.StatusCode)
	}
}
