package mcpserver

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// Every tool's schemas, derived from the Go types, have the shape LM
// Studio and the TypeScript SDK accept: an object at the top, no $ref or
// $defs, no boolean subschema, every array with its items, and every
// property typed. Pure logic: no engine needed.
func TestDerivedSchemasAreClientSafe(t *testing.T) {
	rules := scanargs.Rules{MaxTimeout: 600 * time.Second, DefaultTimeout: 220 * time.Second}
	for _, tool := range append([]any{}, scanTool(rules), versionTool(), listTool(), getTool(), diffTool(), cancelTool(), scopeTool()) {
		b, _ := json.Marshal(tool)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		name := m["name"].(string)
		for _, key := range []string{"inputSchema", "outputSchema"} {
			s, ok := m[key].(map[string]any)
			if !ok {
				continue
			}
			if s["type"] != "object" {
				t.Errorf("%s %s: top type %v", name, key, s["type"])
			}
			raw, _ := json.Marshal(s)
			if strings.Contains(string(raw), "$ref") || strings.Contains(string(raw), "$defs") || strings.Contains(string(raw), ":true") && strings.Contains(string(raw), `"items":true`) {
				t.Errorf("%s %s: %s", name, key, raw)
			}
			walk(t, name+" "+key, s)
		}
	}
	b, _ := json.Marshal(scanTool(rules))
	for _, want := range []string{`"timeout_seconds":{"default":220,"description":"Stop the scan after this many seconds (1-600). Example: 120","maximum":600,"minimum":1,"type":"integer"}`,
		`"required":["targets"]`, `"enum":["connect","syn","udp","ping"]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("nmap_scan schema lacks %s", want)
		}
	}
	if got := strings.Join(scanargs.ParameterNames, ","); !strings.HasPrefix(got, "targets,scan_type,ports,top_ports") {
		t.Errorf("parameter names %s", got)
	}
}

func walk(t *testing.T, where string, s map[string]any) {
	t.Helper()
	switch s["type"] {
	case "object":
		props, _ := s["properties"].(map[string]any)
		for k, v := range props {
			sub, ok := v.(map[string]any)
			if !ok {
				t.Errorf("%s.%s: not a schema object: %v", where, k, v)
				continue
			}
			walk(t, where+"."+k, sub)
		}
	case "array":
		items, ok := s["items"].(map[string]any)
		if !ok {
			t.Errorf("%s: array without items", where)
			return
		}
		walk(t, where+"[]", items)
	case "string", "integer", "number", "boolean":
	default:
		t.Errorf("%s: type %v", where, s["type"])
	}
}
