package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/auth"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit/oidcop"
)

// Red-team regressions of the provider sign-in's start and callback.
// The "provider" here only serves a discovery document (no tokens are
// made: a code redeemed at it fails), enough for /auth/login to build its
// redirect; no node, no engine, runs under -short.

func discoveryOnly(t *testing.T) string {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.Error(w, "no", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "authorization_endpoint": srv.URL + "/auth",
			"token_endpoint": srv.URL + "/token", "jwks_uri": srv.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"}})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func providerView(t *testing.T) *Handler {
	t.Helper()
	v, err := auth.New(auth.Config{Issuer: discoveryOnly(t), Audience: "http://127.0.0.1:8808/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	login, err := v.NewLogin(auth.LoginConfig{ClientID: "web", RedirectURL: "http://127.0.0.1:8808/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Login: login, Authenticate: func(string) (string, bool, bool) { return "", false, false }}, &fakeScans{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func startLogin(t *testing.T, h *Handler, next string) (*http.Cookie, string, int) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/auth/login?next="+url.QueryEscape(next), nil))
	if rec.Code != http.StatusFound {
		return nil, "", rec.Code
	}
	loc, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == loginCookie {
			return c, loc.Query().Get("state"), rec.Code
		}
	}
	t.Fatal("no login cookie")
	return nil, "", 0
}

func callback(h *Handler, c *http.Cookie, state string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/auth/callback?code=x&state="+url.QueryEscape(state), nil)
	if c != nil {
		r.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// TestProviderLoginNotExhaustible: /auth/login needs no session, so
// anyone could start sign-ins; kept in a bounded table, 1000 of them (a
// loop of GETs) refused every person's provider sign-in with 503 for ten
// minutes. Each sign-in's state now travels sealed in its own cookie.
func TestProviderLoginNotExhaustible(t *testing.T) {
	h := providerView(t)
	for i := range 1001 {
		if _, _, code := startLogin(t, h, "/scans"); code != http.StatusFound {
			t.Fatalf("sign-in %d: %d, want 302: starting sign-ins must not lock others out", i, code)
		}
	}
}

// TestProviderCallbackState: the callback takes only its own browser's
// sign-in: no cookie, another sign-in's cookie, a tampered cookie are
// refused before the code is redeemed; the matching pair goes on to the
// provider (which, here, cannot redeem it).
func TestProviderCallbackState(t *testing.T) {
	h := providerView(t)
	a, stateA, _ := startLogin(t, h, "/scans")
	b, stateB, _ := startLogin(t, h, "/audit")
	tampered := *a
	tampered.Value = strings.ToUpper(a.Value[:8]) + a.Value[8:]
	if tampered.Value == a.Value {
		tampered.Value = "x" + a.Value[1:]
	}
	for name, tc := range map[string]struct {
		c     *http.Cookie
		state string
	}{"no cookie": {nil, stateA}, "another sign-in's cookie": {b, stateA}, "tampered": {&tampered, stateA}, "empty state": {a, ""}} {
		rec := callback(h, tc.c, tc.state)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "start again") {
			t.Errorf("%s: %d %.200s, want 400 start again", name, rec.Code, rec.Body)
		}
	}
	rec := callback(h, a, stateA)
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "could not be checked") {
		t.Errorf("matching state: %d %.300s, want 401 from the code's redemption", rec.Code, rec.Body)
	}
	_ = stateB
}

// TestProviderSignInStandingNeedsScan: a web sign-in renewed the person's
// standing (which keeps their watches scanning) whatever their roles, so
// a person moved out of the scanners' group kept their watches running by
// signing in to read. Only a person with the scan role renews it now.
// Real provider (node; its sign-in over HTTP, no browser), not -short.
func TestProviderSignInStandingNeedsScan(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an OpenID provider (node); not under -short")
	}
	const base = "http://127.0.0.1:8808"
	op := oidcop.Start(t, oidcop.Config{Resource: base + "/mcp", Scopes: []string{"nmap:read"},
		Clients: []oidcop.Client{{ClientID: "nmap-web", RedirectURIs: []string{base + "/auth/callback"}}},
		Groups:  map[string][]string{"alice": {"readers"}, "carol": {"scanners"}}})
	v, err := auth.New(auth.Config{Issuer: op.Issuer(), Audience: base + "/mcp", IdentityClaim: "preferred_username",
		Grants: map[auth.Role]auth.Grant{auth.Read: {Groups: []string{"readers"}}, auth.Scan: {Groups: []string{"scanners"}},
			auth.Approve: {}, auth.Admin: {}}})
	if err != nil {
		t.Fatal(err)
	}
	login, err := v.NewLogin(auth.LoginConfig{ClientID: "nmap-web", RedirectURL: base + "/auth/callback", Scopes: []string{"nmap:read"}})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	h, err := New(Config{Login: login, Seen: func(id auth.Identity) { seen = append(seen, id.Name) },
		Authenticate: func(string) (string, bool, bool) { return "", false, false }}, &fakeScans{})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"alice", "carol"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/auth/login", nil))
		var cookie *http.Cookie
		for _, c := range rec.Result().Cookies() {
			if c.Name == loginCookie {
				cookie = c
			}
		}
		back, err := op.Login(context.Background(), rec.Header().Get("Location"), who)
		if err != nil || cookie == nil {
			t.Fatalf("%s: %v (cookie %v)", who, err, cookie)
		}
		r := httptest.NewRequest(http.MethodGet, "/auth/callback?"+back.RawQuery, nil)
		r.AddCookie(cookie)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK ||
			!strings.Contains(rec.Body.String(), "signed-in-as") {
			t.Fatalf("%s: callback %d %.300s", who, rec.Code, rec.Body)
		}
	}
	if len(seen) != 1 || seen[0] != "carol" {
		t.Fatalf("standing renewed for %v, want only carol (the scan role)", seen)
	}
}
