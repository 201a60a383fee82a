package mcpserver

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
)

// The inventory tools' schemas have the shape LM Studio accepts (as
// TestDerivedSchemasAreClientSafe holds for the others): an object at
// the top, no $ref or $defs, no boolean subschemas, arrays with items,
// every property typed; state's enum holds nmap's states. No engine.
func TestInventorySchemasAreClientSafe(t *testing.T) {
	for _, tool := range []any{findHostsTool(), changesTool()} {
		b, _ := json.Marshal(tool)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		name := m["name"].(string)
		for _, key := range []string{"inputSchema", "outputSchema"} {
			s, ok := m[key].(map[string]any)
			if !ok || s["type"] != "object" {
				t.Fatalf("%s %s: %v", name, key, m[key])
			}
			if strings.Contains(string(b), "$ref") || strings.Contains(string(b), "$defs") || strings.Contains(string(b), `"items":true`) {
				t.Errorf("%s: %s", name, b)
			}
			walk(t, name+" "+key, s)
		}
		ann, _ := m["annotations"].(map[string]any)
		if ann["readOnlyHint"] != true || ann["destructiveHint"] != false {
			t.Errorf("%s annotations %v", name, ann)
		}
	}
	b, _ := json.Marshal(findHostsTool())
	if !strings.Contains(string(b), `"enum":["open","closed","filtered","unfiltered","open|filtered","closed|filtered"]`) {
		t.Errorf("find_hosts state enum: %s", b)
	}
}

// inventory_changes' kind enum is every kind the change log writes
// (inventory.ChangeKinds), no more, no fewer. No engine.
func TestChangeKindEnumIsTheLogs(t *testing.T) {
	f, ok := reflect.TypeOf(changesArgs{}).FieldByName("Kind")
	if !ok {
		t.Fatal("changesArgs has no Kind")
	}
	if got, want := f.Tag.Get("enum"), strings.Join(inventory.ChangeKinds, "|"); got != want {
		t.Fatalf("kind enum %q, want %q", got, want)
	}
}
