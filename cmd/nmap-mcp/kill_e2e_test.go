package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// Killing the server (SIGKILL) mid-scan, then starting it again: the audit
// trail has the admission and an interrupted record, the history says
// interrupted, and no container is left.
func TestServerKilledMidScan(t *testing.T) {
	testkit.NeedEngine(t)
	dir := t.TempDir()
	storePath, auditPath := filepath.Join(dir, "scans.db"), filepath.Join(dir, "audit.jsonl")
	start := func() (*exec.Cmd, *mcp.ClientSession) {
		cmd := exec.Command(binary, "serve")
		cmd.Env = serverEnv("NMAP_MCP_STORE="+storePath, "NMAP_MCP_AUDIT="+auditPath)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
		sess, err := client.Connect(context.Background(), &mcp.CommandTransport{Command: cmd, TerminateDuration: time.Second}, nil)
		if err != nil {
			t.Fatalf("connect: %v\n%s", err, stderr.String())
		}
		return cmd, sess
	}
	cmd, sess := start()
	port := testkit.TCPListener(t)
	res, text := call(t, sess, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprintf("1-60,%d", port), "timing": "T2", "wait": false})
	if res.IsError {
		t.Fatal(text)
	}
	id := res.StructuredContent.(map[string]any)["scan_id"].(string)
	if !testkit.Eventually(20*time.Second, func() bool { return len(ourContainers(t)) == 1 }) {
		t.Fatal("the scan's container never appeared")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = sess.Close()

	recs, err := audit.Tail(auditPath, 10)
	if err != nil || len(recs) != 1 || recs[0].Event != audit.Admitted || recs[0].ScanID != id || recs[0].Targets != "127.0.0.1" {
		t.Fatalf("audit after the kill: %v %+v", err, recs)
	}

	_, sess2 := start()
	defer sess2.Close()
	if !testkit.Eventually(10*time.Second, func() bool { return len(ourContainers(t)) == 0 }) {
		t.Fatalf("containers left after the restart: %d", len(ourContainers(t)))
	}
	recs, _ = audit.Tail(auditPath, 10)
	if len(recs) != 2 || recs[1].Event != audit.Interrupted || recs[1].ScanID != id {
		t.Fatalf("audit after the restart: %+v", recs)
	}
	if rep, err := audit.Verify(auditPath); err != nil || rep.Records != 2 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	_, text = call(t, sess2, "get_scan", map[string]any{"id": id})
	if !strings.Contains(text, "interrupted") {
		t.Fatalf("history after the restart: %s", text)
	}
}
