package httpapi

import (
	"testing"

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
