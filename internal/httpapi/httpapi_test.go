package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// These tests need no engine: the health check is a counter.

// Regression (security review 11): the server bounds reads, writes and
// idle keep-alive connections, and /healthz, which needs no token, does
// not cost engine calls per request.
func TestTimeoutsAndHealthCache(t *testing.T) {
	var checks atomic.Int32
	s, err := New(Config{Addr: "127.0.0.1:0"}, Deps{MCP: server.NewMCPServer("t", "1"),
		Health: func(context.Context) error { checks.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if s.http.ReadHeaderTimeout == 0 || s.http.ReadTimeout == 0 || s.http.WriteTimeout == 0 || s.http.IdleTimeout == 0 {
		t.Fatalf("timeouts: %+v", s.http)
	}
	if s.cfg.MaxConnections != 256 {
		t.Fatalf("max connections %d", s.cfg.MaxConnections)
	}
	for i := 0; i < 50; i++ {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != 200 {
			t.Fatalf("healthz %d", rec.Code)
		}
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("50 health requests ran %d checks; want 1", n)
	}
}

func testServer(t *testing.T) (*Server, string) {
	t.Helper()
	secret, tok, err := NewToken("alice")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: []Token{tok}, Origins: []string{"http://allowed.test"}, MaxBody: 1024},
		Deps{MCP: server.NewMCPServer("t", "1")})
	if err != nil {
		t.Fatal(err)
	}
	return s, secret
}

func do(s *Server, method, path, token, origin, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// Bearer tokens, the Origin allowlist, the body bound and the drain, each
// answered before anything reaches MCP.
func TestGuard(t *testing.T) {
	s, secret := testServer(t)
	for _, c := range []struct {
		name, token, origin, body string
		want                      int
	}{
		{"no token", "", "", initBody, http.StatusUnauthorized},
		{"wrong token", "nmcp_wrong", "", initBody, http.StatusUnauthorized},
		{"foreign origin", secret, "http://evil.test", initBody, http.StatusForbidden},
		{"body too large", secret, "", `{"x":"` + strings.Repeat("a", 2000) + `"}`, http.StatusRequestEntityTooLarge},
		{"allowed origin", secret, "http://allowed.test", initBody, http.StatusOK},
		{"no origin", secret, "", initBody, http.StatusOK},
	} {
		if got := do(s, http.MethodPost, "/mcp", c.token, c.origin, c.body).Code; got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	if rec := do(s, http.MethodPost, "/mcp", "", "", initBody); rec.Header().Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	s.Drain()
	if got := do(s, http.MethodPost, "/mcp", secret, "", initBody).Code; got != http.StatusServiceUnavailable {
		t.Errorf("draining: %d, want 503", got)
	}
}

// A session belongs to the token that created it.
func TestSessionBoundToToken(t *testing.T) {
	aliceSecret, aliceTok, _ := NewToken("alice")
	bobSecret, bobTok, _ := NewToken("bob")
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: []Token{aliceTok, bobTok}}, Deps{MCP: server.NewMCPServer("t", "1")})
	if err != nil {
		t.Fatal(err)
	}
	rec := do(s, http.MethodPost, "/mcp", aliceSecret, "", initBody)
	sid := rec.Header().Get(server.HeaderKeySessionID)
	if rec.Code != 200 || sid == "" {
		t.Fatalf("initialize: %d, session %q", rec.Code, sid)
	}
	req := httptest.NewRequest(http.MethodDelete, "/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+bobSecret)
	req.Header.Set(server.HeaderKeySessionID, sid)
	out := httptest.NewRecorder()
	s.Handler().ServeHTTP(out, req)
	if out.Code != http.StatusNotFound {
		t.Fatalf("bob deletes alice's session: %d", out.Code)
	}
}

// On a loopback listener this machine's own browser origins are accepted
// (the MCP conformance suite's dns-rebinding-protection scenario); foreign
// origins are still refused, and on other listeners only the configured
// ones pass.
func TestLocalOrigins(t *testing.T) {
	s, secret := testServer(t)
	for origin, want := range map[string]int{
		"http://localhost:8808": http.StatusOK, "http://127.0.0.1:9": http.StatusOK, "http://[::1]:8808": http.StatusOK,
		"https://localhost": http.StatusOK, "http://localhost.evil.test": http.StatusForbidden,
		"http://127.0.0.1.nip.io:8808": http.StatusForbidden, "http://evil.test": http.StatusForbidden,
		"file://localhost": http.StatusForbidden,
	} {
		if got := do(s, http.MethodPost, "/mcp", secret, origin, initBody).Code; got != want {
			t.Errorf("Origin %s: %d, want %d", origin, got, want)
		}
	}
	_, tok, _ := NewToken("alice")
	lan, err := New(Config{Addr: "192.0.2.1:8808", Tokens: []Token{tok}}, Deps{MCP: server.NewMCPServer("t", "1")})
	if err != nil {
		t.Fatal(err)
	}
	if lan.originAllowed("http://localhost:8808") {
		t.Error("a non-loopback listener accepted a localhost origin")
	}
}

// noScans is an empty history for the web view.
type noScans struct{}

func (noScans) List(context.Context, store.Filter) ([]*store.Record, error) { return nil, nil }
func (noScans) Get(_ context.Context, id string) (scans.Snapshot, error) {
	return scans.Snapshot{}, &store.NotFoundError{ID: id}
}
func (noScans) RawXML(_ context.Context, id string) ([]byte, error) {
	return nil, &store.NotFoundError{ID: id}
}
func (noScans) Pair(context.Context, string, string, string) (*store.Record, *store.Record, error) {
	return nil, nil, &store.NotFoundError{}
}
func (noScans) Live(context.Context) []scans.Snapshot { return nil }

// The web view is served at / beside /mcp, signs in with the server's
// tokens (a bearer header is not a session), and /mcp keeps its own rules.
func TestWebViewBesideMCP(t *testing.T) {
	secret, tok, _ := NewToken("alice")
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: []Token{tok}}, Deps{MCP: server.NewMCPServer("t", "1"), Scans: noScans{}})
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(s, http.MethodGet, "/scans", secret, "", ""); rec.Code != http.StatusSeeOther {
		t.Errorf("/scans with a bearer token but no session: %d", rec.Code)
	}
	if rec := do(s, http.MethodGet, "/signin", "", "", ""); rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("/signin: %d %v", rec.Code, rec.Header())
	}
	form := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/signin", strings.NewReader("token="+token))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://example.com") // httptest's host
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec
	}
	if rec := form("nope"); rec.Code != http.StatusUnauthorized {
		t.Errorf("sign-in with a wrong token: %d", rec.Code)
	}
	if rec := form(secret); rec.Code != http.StatusSeeOther || !strings.Contains(rec.Header().Get("Set-Cookie"), "HttpOnly") {
		t.Errorf("sign-in with alice's token: %d %v", rec.Code, rec.Header())
	}
	if rec := do(s, http.MethodPost, "/mcp", "", "", initBody); rec.Code != http.StatusUnauthorized {
		t.Errorf("/mcp without a token: %d", rec.Code)
	}
}
