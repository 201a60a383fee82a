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
