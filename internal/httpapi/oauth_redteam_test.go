package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/auth"
)

// Red-team regressions of the resource server's guard (pure functions and
// fakes: no provider, no engine; run under -short).

// TestRequiredRoleFailsClosed: a body the guard's decoder cannot read
// needs scan. encoding/json fills what it can past a type error (and folds
// key case), so a body with a mistyped duplicate of "params" used to be
// read as needing read only while the task layer (mcpserver.parseTask,
// params as json.RawMessage, last key wins) read a task-augmented
// nmap_scan from it: a read-only token started a scan.
func TestRequiredRoleFailsClosed(t *testing.T) {
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","PARAMS":5,"params":{"name":"nmap_scan","arguments":{"targets":"127.0.0.1"},"task":{}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x","params":{"name":"nmap_scan","arguments":{},"task":{}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[],"params":{"name":"cancel_scan","arguments":{"id":"x"}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/call","PARAMS":5,"params":{"name":"nmap_scan"}}]`,
		`{"jsonrpc":"2.0","id":1,"method":"tasks/cancel","params":{"taskId":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"nmap_scan"}}`,
	} {
		if got := requiredRole([]byte(body)); got != auth.Scan {
			t.Errorf("requiredRole(%s) = %s, want scan", body, got)
		}
	}
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_scans","arguments":{}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		``,
	} {
		if got := requiredRole([]byte(body)); got != auth.Read {
			t.Errorf("requiredRole(%s) = %s, want read", body, got)
		}
	}
}

// TestOAuthStandingNeedsScan: a person's standing keeps their watches
// (which scan) running without them. It was renewed by any valid token,
// before the role check, so a person whose roles were taken away at the
// provider (out of the scanners' group) but who can still get a token
// kept their watches scanning for ever, with one refused request a day.
// Only a token with the scan role renews it now. Real provider (node),
// not -short.
func TestOAuthStandingNeedsScan(t *testing.T) {
	s, op, _, seen := oauthServer(t)
	if code, _, body := call(t, s, providerToken(t, op, "robot", "nmap:read"), "list_scans"); code != 200 {
		t.Fatalf("read: %d %s", code, body)
	}
	if code, _, _ := call(t, s, providerToken(t, op, "robot", ""), "list_scans"); code != 403 {
		t.Fatalf("no role: %d, want 403", code)
	}
	if len(*seen) != 0 {
		t.Fatalf("standing renewed by tokens without the scan role: %+v", *seen)
	}
	if code, _, body := call(t, s, providerToken(t, op, "robot", "nmap:scan"), "nmap_scan"); code != 200 {
		t.Fatalf("scan: %d %s", code, body)
	}
	if len(*seen) == 0 || (*seen)[0].Name != "robot" {
		t.Fatalf("standing not renewed by a scan token: %+v", *seen)
	}
}

// TestOAuthRefusalIsBounded: a refusal names the token's key id, which
// anyone sends unsigned, so a key id of most of a megabyte was echoed in
// the 401's WWW-Authenticate, its body, and an info log line per request. The
// description is cut short now. The "provider" only serves discovery (no
// token is made); -short.
func TestOAuthRefusalIsBounded(t *testing.T) {
	var op *httptest.Server
	op = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": op.URL, "authorization_endpoint": op.URL + "/auth",
			"token_endpoint": op.URL + "/token", "jwks_uri": op.URL + "/jwks"})
	}))
	t.Cleanup(op.Close)
	v, err := auth.New(auth.Config{Issuer: op.URL, Audience: oauthAudience})
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	s, err := New(Config{Addr: "0.0.0.0:8808", Auth: v}, Deps{MCP: server.NewMCPServer("t", "1"),
		Log: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	junk := b64(map[string]string{"alg": "RS256", "kid": strings.Repeat("K", 200000)}) + "." +
		b64(map[string]any{"iss": op.URL, "aud": oauthAudience, "exp": 4102444800}) + ".c2ln"
	rec := do(s, http.MethodPost, "/mcp", junk, "", initBody)
	ch := rec.Header().Get("WWW-Authenticate")
	if rec.Code != http.StatusUnauthorized || !strings.Contains(ch, `error="invalid_token"`) {
		t.Fatalf("%d %.300q", rec.Code, ch)
	}
	if len(ch) > 2000 || rec.Body.Len() > 2000 || logged.Len() > 2000 {
		t.Fatalf("a refusal echoed the token: challenge %d bytes, body %d, log %d", len(ch), rec.Body.Len(), logged.Len())
	}
}
