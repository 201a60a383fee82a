package main

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// TestTypeScriptSDK drives the built binary with the TypeScript SDK's
// client (testdata/tssdk/client.mjs), on the real engine, scanning closed
// ports of 127.0.0.1: the approval elicitation answered yes, no and not at
// all (approval.timeout_seconds 3), nmap_scan as a task (created, result,
// get, list, cancel) and the task read back by a second server on the same
// history. It needs node and the SDK: NMAP_MCP_TS_SDK names a folder where
// `npm install @modelcontextprotocol/sdk@1.32` was run; without it the test
// skips saying so.
func TestTypeScriptSDK(t *testing.T) {
	testkit.NeedEngine(t)
	node, dir := tsScripts(t, nil, "client.mjs")
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("approval:\n  timeout_seconds: 3\n  rules:\n    - name: two-ports\n      min_ports: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", binary, cfg)
	cmd.Dir = dir
	cmd.Env = serverEnv("NMAP_MCP_STORE=" + filepath.Join(dir, "scans.db"))
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node client: %v\n%s\n%s", err, out, stderr)
	}
	var got struct {
		Approve struct {
			IsError  bool
			Status   string
			Approval struct{ Outcome, By, Via, Reason string }
			Asked    int
		}
		Deny struct {
			IsError bool
			Text    string
		}
		NoAnswer struct {
			IsError bool
			Text    string
			Seconds float64
		}
		TaskCreated struct{ TaskID, Status string } `json:"taskCreated"`
		TaskResult  struct {
			IsError bool
			Status  string
			ScanID  string `json:"scan_id"`
		} `json:"taskResult"`
		TaskGet      struct{ Status string } `json:"taskGet"`
		TaskList     []string                `json:"taskList"`
		Cancel       struct{ Status string }
		AfterRestart struct{ TaskID, Status string } `json:"afterRestart"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output: %v\n%s", err, out)
	}
	a := got.Approve
	switch {
	case a.IsError || a.Status != "done" || a.Approval.Outcome != "approved" || a.Approval.Via != "elicitation" || a.Approval.Reason != "ts says yes" ||
		!strings.Contains(a.Approval.By, "ts-sdk-test") || a.Asked != 1:
		t.Errorf("approve: %+v", a)
	case !got.Deny.IsError || !strings.Contains(got.Deny.Text, "not approved; nothing was run"):
		t.Errorf("deny: %+v", got.Deny)
	case !got.NoAnswer.IsError || !strings.Contains(got.NoAnswer.Text, "Not answered") || got.NoAnswer.Seconds > 10:
		t.Errorf("no answer: %+v", got.NoAnswer)
	case got.TaskCreated.Status != "working" || got.TaskResult.IsError || got.TaskResult.Status != "done" || got.TaskResult.ScanID != got.TaskCreated.TaskID:
		t.Errorf("task: created %+v, result %+v", got.TaskCreated, got.TaskResult)
	case got.TaskGet.Status != "completed" || len(got.TaskList) < 4 || got.Cancel.Status != "cancelled":
		t.Errorf("task get %+v, list %v, cancel %+v", got.TaskGet, got.TaskList, got.Cancel)
	case got.AfterRestart.TaskID != got.TaskCreated.TaskID || got.AfterRestart.Status != "completed":
		t.Errorf("after a restart: %+v", got.AfterRestart)
	}
}

// tsScripts is node and a temporary folder holding the TypeScript SDK's
// node_modules (a link to NMAP_MCP_TS_SDK's), the named scripts of
// testdata/tssdk and the extra files; without node or the SDK the test
// skips, except under CI, where it fails.
func tsScripts(t *testing.T, extra map[string][]byte, scripts ...string) (node, dir string) {
	t.Helper()
	sdk := os.Getenv("NMAP_MCP_TS_SDK")
	if sdk == "" {
		msg := "needs the TypeScript SDK: npm install @modelcontextprotocol/sdk@1.32 in a folder and set NMAP_MCP_TS_SDK to it (scripts/test.sh does)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; it is required under CI")
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("NMAP_MCP_TS_SDK is set but node is not on PATH: %v", err)
	}
	dir = t.TempDir()
	if err := os.Symlink(filepath.Join(sdk, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, name := range scripts {
		b, err := os.ReadFile(filepath.Join("testdata", "tssdk", name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	maps.Copy(files, extra)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return node, dir
}
