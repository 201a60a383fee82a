package mcpserver_test

import (
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// On protocol 2026-07-28 the tasks capability lives only under
// capabilities.extensions["io.modelcontextprotocol/tasks"]: server/discover
// must not carry the 2025-11-25 capabilities.tasks slot (SEP-2663; the MCP
// conformance suite's tasks-capability-negotiation/tasks-extension-advertised
// check), while the 2025-11-25 initialize still does (taskServer checks
// that). mcp-go v1.2.1 puts both in server/discover. Fake runner, no engine
// (-short).
func TestDiscoverAdvertisesTasksOnlyAsExtension(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	c := taskServer(t, st, &gatedRunner{})
	for _, declared := range []bool{true, false} {
		disc := result(t, c.call("server/discover", map[string]any{"_meta": modernMeta(declared, false)}))
		caps, _ := disc["capabilities"].(map[string]any)
		if _, v1 := caps["tasks"]; v1 {
			t.Errorf("server/discover (client declares the extension: %v) has the 2025-11-25 capabilities.tasks slot: %v", declared, caps)
		}
		ext, _ := caps["extensions"].(map[string]any)
		if _, ok := ext[extTasks]; !ok {
			t.Errorf("server/discover (client declares the extension: %v) lacks extensions[%q]: %v", declared, extTasks, caps)
		}
		if caps["tools"] == nil {
			t.Errorf("server/discover lost the tools capability: %v", caps)
		}
	}
}
