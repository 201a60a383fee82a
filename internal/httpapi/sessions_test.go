package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

// These tests need no engine: the MCP server has no tools that scan.

const pingBody = `{"jsonrpc":"2.0","id":2,"method":"ping"}`

// inSession sends body on session sid with token.
func inSession(s *Server, method, sid, token, body string) *httptest.ResponseRecorder {
	// A GET that is accepted streams until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, method, "/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if sid != "" {
		req.Header.Set(server.HeaderKeySessionID, sid)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

func twoClients(t *testing.T, cfg Config) (s *Server, alice, bob string) {
	t.Helper()
	alice, aliceTok, _ := NewToken("alice")
	bob, bobTok, _ := NewToken("bob")
	cfg.Addr = "127.0.0.1:0"
	cfg.Tokens = []Token{aliceTok, bobTok}
	s, err := New(cfg, Deps{MCP: server.NewMCPServer("t", "1")})
	if err != nil {
		t.Fatal(err)
	}
	return s, alice, bob
}

func initSession(t *testing.T, s *Server, token string) string {
	t.Helper()
	rec := do(s, http.MethodPost, "/mcp", token, "", initBody)
	sid := rec.Header().Get(server.HeaderKeySessionID)
	if rec.Code != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d, session %q: %s", rec.Code, sid, rec.Body)
	}
	return sid
}

// Regression (issue 20.2): a session id the server never minted is not
// found, whatever the token; before, any well-formed id was accepted.
func TestSessionIDMustBeMinted(t *testing.T) {
	s, alice, _ := twoClients(t, Config{})
	forged := "mcp-session-0b7c6a52-1d3e-4f5a-9b8c-2d4e6f8a0b1c" // well formed, never minted
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		if rec := inSession(s, method, forged, alice, pingBody); rec.Code != http.StatusNotFound {
			t.Errorf("%s with a forged session id: %d, want 404: %s", method, rec.Code, rec.Body)
		}
	}
}

// Regression (issue 20.2): 10,001 initialize calls by one client evicted
// another client's binding, after which the victim's session id answered
// to the attacker's token. A live session's binding is never evicted; the
// attacker is refused at its own cap.
func TestLiveSessionNeverEvicted(t *testing.T) {
	s, alice, bob := twoClients(t, Config{})
	victim := initSession(t, s, alice)
	refused := 0
	for i := 0; i < 10001; i++ {
		rec := do(s, http.MethodPost, "/mcp", bob, "", initBody)
		switch rec.Code {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			refused++
			if i == 10000 && !strings.Contains(rec.Body.String(), "max_sessions_per_client") {
				t.Errorf("refusal does not name the setting: %s", rec.Body)
			}
		default:
			t.Fatalf("initialize %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if refused == 0 {
		t.Error("10,001 sessions of one client were all accepted")
	}
	if rec := inSession(s, http.MethodPost, victim, bob, pingBody); rec.Code != http.StatusNotFound {
		t.Errorf("alice's session with bob's token: %d, want 404", rec.Code)
	}
	if rec := inSession(s, http.MethodPost, victim, alice, pingBody); rec.Code != http.StatusOK {
		t.Errorf("alice's session with alice's token: %d, want 200: %s", rec.Code, rec.Body)
	}
}

// counted is an MCP server whose hooks count registered and unregistered
// sessions: what mcp-go keeps per session lives from one to the other.
func counted() (*server.MCPServer, *atomic.Int32, *atomic.Int32) {
	var reg, unreg atomic.Int32
	h := &server.Hooks{}
	h.AddOnRegisterSession(func(context.Context, server.ClientSession) { reg.Add(1) })
	h.AddOnUnregisterSession(func(context.Context, server.ClientSession) { unreg.Add(1) })
	s := server.NewMCPServer("t", "1", server.WithHooks(h), server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("noop", mcp.WithDescription("does nothing")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("ok"), nil
		})
	return s, &reg, &unreg
}

// A session ends on DELETE and after the idle timeout, never while a
// request is in flight; its binding and mcp-go's state go with it.
func TestSessionsEndAndForget(t *testing.T) {
	secret, tok, _ := NewToken("alice")
	mcpSrv, reg, unreg := counted()
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: []Token{tok}, SessionIdle: time.Hour}, Deps{MCP: mcpSrv})
	if err != nil {
		t.Fatal(err)
	}
	deleted, idle, busy := initSession(t, s, secret), initSession(t, s, secret), initSession(t, s, secret)
	if rec := inSession(s, http.MethodDelete, deleted, secret, ""); rec.Code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
	}
	if rec := inSession(s, http.MethodPost, deleted, secret, pingBody); rec.Code != http.StatusNotFound {
		t.Errorf("deleted session: %d, want 404", rec.Code)
	}
	leave, ok := s.sessions.enter(busy, "alice") // a call in flight
	if !ok {
		t.Fatal("busy session not found")
	}
	if n := s.sweepSessions(context.Background(), time.Now().Add(30*time.Minute)); n != 0 {
		t.Fatalf("%d sessions ended before the idle timeout", n)
	}
	if n := s.sweepSessions(context.Background(), time.Now().Add(2*time.Hour)); n != 1 {
		t.Fatalf("%d sessions idled out, want 1 (the busy one stays)", n)
	}
	if rec := inSession(s, http.MethodPost, idle, secret, pingBody); rec.Code != http.StatusNotFound {
		t.Errorf("idled-out session: %d, want 404", rec.Code)
	}
	if rec := inSession(s, http.MethodPost, busy, secret, pingBody); rec.Code != http.StatusOK {
		t.Errorf("busy session after the sweep: %d, want 200", rec.Code)
	}
	leave()
	if n := s.sweepSessions(context.Background(), time.Now().Add(2*time.Hour)); n != 1 {
		t.Fatalf("%d sessions idled out once the call ended, want 1", n)
	}
	if st := s.SessionStats(); st.Sessions != 0 || len(st.Clients) != 0 {
		t.Errorf("left after every session ended: %+v", st)
	}
	if reg.Load() != 3 || unreg.Load() != 3 {
		t.Errorf("mcp-go sessions registered %d, unregistered %d; want 3 and 3", reg.Load(), unreg.Load())
	}
}

// The caps: a client's own (429) and the server's (503), each naming its
// setting; an ended session makes room again. GET and DELETE without a
// session id are refused.
func TestSessionCaps(t *testing.T) {
	s, alice, bob := twoClients(t, Config{MaxSessions: 3, MaxSessionsPerClient: 2})
	a1 := initSession(t, s, alice)
	initSession(t, s, alice)
	rec := do(s, http.MethodPost, "/mcp", alice, "", initBody)
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "http.max_sessions_per_client") ||
		!strings.Contains(rec.Body.String(), `"id":1`) {
		t.Errorf("alice's third session: %d %s", rec.Code, rec.Body)
	}
	initSession(t, s, bob)
	rec = do(s, http.MethodPost, "/mcp", bob, "", initBody)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "http.max_sessions ") {
		t.Errorf("a fourth session on the server: %d %s", rec.Code, rec.Body)
	}
	if rec := inSession(s, http.MethodDelete, a1, alice, ""); rec.Code != http.StatusOK {
		t.Fatalf("DELETE: %d", rec.Code)
	}
	initSession(t, s, bob)
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		if rec := inSession(s, m, "", alice, ""); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "Mcp-Session-Id") {
			t.Errorf("%s without a session id: %d %s", m, rec.Code, rec.Body)
		}
	}
	if st := s.SessionStats(); st.Sessions != 3 || st.Clients["alice"] != 1 || st.Clients["bob"] != 2 {
		t.Errorf("stats: %+v", st)
	}
}

// A session that ends leaves no subscription behind in the MCP layer
// (mcpserver.Subscriptions forgets it when mcp-go unregisters it).
func TestSessionEndForgetsSubscriptions(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	sc := scans.New(scans.Config{}, scans.Deps{Store: st}) // no runner: nothing scans here
	subs := mcpserver.NewSubscriptions()
	mcpSrv := mcpserver.New(mcpserver.Deps{Scans: sc, Watches: watches.New(st, sc, watches.Config{}, nil), Subscriptions: subs})
	secret, tok, _ := NewToken("alice")
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: []Token{tok}, SessionIdle: time.Minute}, Deps{MCP: mcpSrv})
	if err != nil {
		t.Fatal(err)
	}
	subscribe := `{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"watch://lab"}}`
	deleted, idle := initSession(t, s, secret), initSession(t, s, secret)
	for _, sid := range []string{deleted, idle} {
		if rec := inSession(s, http.MethodPost, sid, secret, subscribe); rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "error") {
			t.Fatalf("subscribe: %d %s", rec.Code, rec.Body)
		}
	}
	if n := subs.Sessions(); n != 2 {
		t.Fatalf("%d sessions subscribed, want 2", n)
	}
	inSession(s, http.MethodDelete, deleted, secret, "")
	if n := subs.Sessions(); n != 1 {
		t.Errorf("after DELETE: %d sessions subscribed, want 1", n)
	}
	s.sweepSessions(context.Background(), time.Now().Add(2*time.Minute))
	if n := subs.Sessions(); n != 0 {
		t.Errorf("after the idle timeout: %d sessions subscribed, want 0", n)
	}
}

// A real client (the official go-sdk) over loopback HTTP, with each
// protocol version: its session is minted bound, serves calls and its
// GET stream, and is gone from the table once the client closes it.
func TestRealClientSessionLifecycle(t *testing.T) {
	secret, tok, _ := NewToken("alice")
	mcpSrv, reg, unreg := counted()
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: []Token{tok}}, Deps{MCP: mcpSrv})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveLoopback(t, s)
	for _, version := range []string{"2025-03-26", "2025-11-25", "2026-07-28"} {
		client := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, nil)
		tr := &sdk.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp",
			HTTPClient: &http.Client{Transport: bearerRT{token: secret}}}
		sess, err := client.Connect(context.Background(), tr, &sdk.ClientSessionOptions{ProtocolVersion: version})
		if err != nil {
			t.Fatalf("%s: connect: %v", version, err)
		}
		if res, err := sess.CallTool(context.Background(), &sdk.CallToolParams{Name: "noop"}); err != nil || res.IsError {
			t.Errorf("%s: call: %v %+v", version, err, res)
		}
		if version < "2026-07-28" && s.SessionStats().Clients["alice"] != 1 {
			t.Errorf("%s: session table: %+v", version, s.SessionStats())
		}
		if err := sess.Close(); err != nil {
			t.Errorf("%s: close: %v", version, err)
		}
		if !testkit.Eventually(2*time.Second, func() bool { return s.SessionStats().Sessions == 0 }) {
			t.Errorf("%s: sessions left after the client closed: %+v", version, s.SessionStats())
		}
	}
	if !testkit.Eventually(2*time.Second, func() bool { return unreg.Load() == reg.Load() }) {
		t.Errorf("mcp-go sessions registered %d, unregistered %d", reg.Load(), unreg.Load())
	}
}

type bearerRT struct{ token string }

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}
