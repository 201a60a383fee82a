package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/server"
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
