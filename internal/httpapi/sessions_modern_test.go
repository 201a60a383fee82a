package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// modernInit is an initialize of protocol 2026-07-28, which removed it:
// the answer is 404 with -32601, and no session exists in that protocol.
const modernInit = `{"jsonrpc":"2.0","id":500,"method":"initialize","params":{"_meta":{` +
	`"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},` +
	`"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}}}`

// Regression (found by the MCP conformance suite's server-stateless,
// sep-2575-http-server-method-not-found-404-initialize): a 2026-07-28
// initialize opens no session, so the session caps do not apply to it;
// before, once the client held http.max_sessions_per_client sessions it
// got 429 -32000 (too many sessions) instead of 404 -32601. The era is
// read as mcp-go reads it: the Mcp-Protocol-Version header or the body's
// _meta. No engine (-short).
func TestModernInitializeTakesNoSession(t *testing.T) {
	s, alice, _ := twoClients(t, Config{MaxSessions: 1, MaxSessionsPerClient: 1})
	initSession(t, s, alice) // both caps reached
	for name, header := range map[string]string{"header and _meta": "2026-07-28", "_meta only": ""} {
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(modernInit))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+alice)
		req.Header.Set("Mcp-Method", "initialize")
		if header != "" {
			req.Header.Set("MCP-Protocol-Version", header)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		var msg struct {
			Error struct{ Code int } `json:"error"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &msg)
		if rec.Code == http.StatusTooManyRequests || rec.Code == http.StatusServiceUnavailable || msg.Error.Code == -32000 {
			t.Errorf("%s: a 2026-07-28 initialize met the session caps: %d %s", name, rec.Code, rec.Body)
		}
		if header != "" && (rec.Code != http.StatusNotFound || msg.Error.Code != -32601) {
			t.Errorf("%s: %d %s, want 404 with -32601 (initialize was removed in 2026-07-28)", name, rec.Code, rec.Body)
		}
		if sid := rec.Header().Get("Mcp-Session-Id"); sid != "" {
			t.Errorf("%s: a 2026-07-28 initialize got session %q", name, sid)
		}
	}
	// A 2025-11-25 initialize still meets them.
	if rec := do(s, http.MethodPost, "/mcp", alice, "", initBody); rec.Code != http.StatusTooManyRequests {
		t.Errorf("2025-11-25 initialize beyond the cap: %d %s, want 429", rec.Code, rec.Body)
	}
}
