package mcpserver

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Structured output keeps arrays non-null and cuts hosts to the cap,
// saying how many it left out. (Pure logic: no engine needed.)
func TestOutputCapAndArrays(t *testing.T) {
	rec := &store.Record{ID: "x", Status: store.Done, Argv: []string{"nmap"}}
	b, _ := json.Marshal(output(rec, 1024))
	for _, bad := range []string{"null"} {
		if strings.Contains(string(b), bad) {
			t.Fatalf("empty record output has %s: %s", bad, b)
		}
	}
	r := &results.Result{}
	for i := 0; i < 500; i++ {
		r.Hosts = append(r.Hosts, results.Host{Addresses: []string{fmt.Sprintf("10.0.%d.%d", i/256, i%256)}, State: "up"})
	}
	rec.Result = r
	out := output(rec, 4096)
	if !out.Truncated || out.HostsOmitted == 0 || len(out.Result.Hosts)+out.HostsOmitted != 500 {
		t.Fatalf("truncated %v omitted %d kept %d", out.Truncated, out.HostsOmitted, len(out.Result.Hosts))
	}
	b, _ = json.Marshal(out)
	if strings.Contains(string(b), "null") || len(b) > 8192 {
		t.Fatalf("output %d bytes: %.200s", len(b), b)
	}
}
