package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// validateStructured checks a result's structuredContent against the
// tool's published outputSchema with an independent JSON Schema validator,
// and checks the schema has what LM Studio and the TypeScript SDK reject.
func validateStructured(t *testing.T, tools map[string]*mcp.Tool, name string, res *mcp.CallToolResult) map[string]any {
	t.Helper()
	tool := tools[name]
	if tool == nil || tool.OutputSchema == nil {
		t.Fatalf("%s has no output schema", name)
	}
	schemaJSON, err := json.Marshal(tool.OutputSchema)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`"$ref"`, `"$defs"`, `:true`, `"null"`} {
		if bytes.Contains(schemaJSON, []byte(bad)) {
			t.Fatalf("%s output schema contains %s: %s", name, bad, schemaJSON)
		}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		t.Fatal(err)
	}
	if doc.(map[string]any)["type"] != "object" {
		t.Fatalf("%s output schema type is %v", name, doc.(map[string]any)["type"])
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("out.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("out.json")
	if err != nil {
		t.Fatalf("compile %s output schema: %v", name, err)
	}
	inst, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(inst))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(v); err != nil {
		t.Fatalf("%s structuredContent does not match its outputSchema: %v\n%s", name, err, inst)
	}
	return v.(map[string]any)
}

func toolMap(t *testing.T, s *mcp.ClientSession) map[string]*mcp.Tool {
	res, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		m[tool.Name] = tool
	}
	return m
}

// Scan, open a listener, scan again, and diff: the new open port shows.
func TestHistoryAndDiff(t *testing.T) {
	testkit.NeedEngine(t)
	storePath := filepath.Join(t.TempDir(), "scans.db")
	s := connect(t, "NMAP_MCP_STORE="+storePath)
	tools := toolMap(t, s)
	port := testkit.ClosedTCPPort(t)
	args := map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)}

	res1, text1 := call(t, s, "nmap_scan", args)
	if res1.IsError {
		t.Fatalf("first scan: %s", text1)
	}
	out1 := validateStructured(t, tools, "nmap_scan", res1)

	testkit.ListenOn(t, port) // opened between the scans
	res2, text2 := call(t, s, "nmap_scan", args)
	if res2.IsError || !strings.Contains(text2, fmt.Sprintf("%d/tcp open", port)) {
		t.Fatalf("second scan: %s", text2)
	}
	out2 := validateStructured(t, tools, "nmap_scan", res2)

	dres, dtext := call(t, s, "diff_scans", map[string]any{"target": "127.0.0.1"})
	if dres.IsError {
		t.Fatalf("diff: %s", dtext)
	}
	d := validateStructured(t, tools, "diff_scans", dres)
	if d["before"] != out1["scan_id"] || d["after"] != out2["scan_id"] {
		t.Fatalf("diff compared %v -> %v; want %v -> %v", d["before"], d["after"], out1["scan_id"], out2["scan_id"])
	}
	want := fmt.Sprintf("127.0.0.1 %d/tcp closed -> open", port)
	if !strings.Contains(dtext, want) {
		t.Fatalf("diff text lacks %q:\n%s", want, dtext)
	}
	changes := d["diff"].(map[string]any)["port_changes"].([]any)
	if len(changes) != 1 || changes[0].(map[string]any)["to"] != "open" {
		t.Fatalf("port changes %v", changes)
	}

	// The same diff by ids, get_scan, list_scans and the resources.
	if r, text := call(t, s, "diff_scans", map[string]any{"id_a": out1["scan_id"], "id_b": out2["scan_id"]}); r.IsError || !strings.Contains(text, want) {
		t.Fatalf("diff by ids: %s", text)
	}
	gres, gtext := call(t, s, "get_scan", map[string]any{"id": out2["scan_id"]})
	if gres.IsError || !strings.Contains(gtext, fmt.Sprintf("%d/tcp open", port)) {
		t.Fatalf("get_scan: %s", gtext)
	}
	validateStructured(t, tools, "get_scan", gres)
	lres, ltext := call(t, s, "list_scans", map[string]any{"target": "127.0.0.1", "limit": 5})
	if lres.IsError || strings.Count(ltext, "\n") != 2 {
		t.Fatalf("list_scans: %s", ltext)
	}
	validateStructured(t, tools, "list_scans", lres)
	for _, uri := range []string{"scan://" + out2["scan_id"].(string), "scan://" + out2["scan_id"].(string) + "/xml"} {
		rr, err := s.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: uri})
		if err != nil || len(rr.Contents) != 1 || !strings.Contains(rr.Contents[0].Text, "127.0.0.1") {
			t.Fatalf("read %s: %v %+v", uri, err, rr)
		}
	}

	// Unknown ids and incomparable requests are isError results naming the id.
	for _, c := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"get_scan", map[string]any{"id": "nosuchscan"}, `"nosuchscan"`},
		{"diff_scans", map[string]any{"id_a": out1["scan_id"], "id_b": "nosuchscan"}, `"nosuchscan"`},
		{"diff_scans", map[string]any{"target": "127.0.0.99"}, "127.0.0.99"},
		{"diff_scans", map[string]any{}, "give two scan ids"},
	} {
		r, text := call(t, s, c.tool, c.args)
		if !r.IsError || !strings.Contains(text, c.want) {
			t.Errorf("%s %v: isError %v, %q; want an error naming %s", c.tool, c.args, r.IsError, text, c.want)
		}
	}
}
