package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// A real scan as a task through protocol 2026-07-28's tasks extension
// (io.modelcontextprotocol/tasks), over `nmap-mcp serve` on stdio with raw
// JSON-RPC (no client library here speaks the extension): the call
// answers a task at once, tasks/get polls it to completed with nmap_scan's
// result inline. Needs the engine.
func TestScanAsExtensionTask(t *testing.T) {
	testkit.NeedEngine(t)
	cmd := exec.Command(binary, "serve")
	cmd.Env = serverEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("server stderr:\n%s", stderr.String())
		}
	})
	lines := make(chan map[string]any, 64)
	go func() {
		r := bufio.NewReaderSize(stdout, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				close(lines)
				return
			}
			var m map[string]any
			if json.Unmarshal(line, &m) == nil {
				lines <- m
			}
		}
	}()
	meta := map[string]any{
		"io.modelcontextprotocol/protocolVersion": "2026-07-28",
		"io.modelcontextprotocol/clientCapabilities": map[string]any{
			"extensions": map[string]any{"io.modelcontextprotocol/tasks": map[string]any{}}},
		"io.modelcontextprotocol/clientInfo": map[string]any{"name": "e2e-2026", "version": "1"},
	}
	next := 0
	rpc := func(method string, params map[string]any) map[string]any {
		t.Helper()
		next++
		params["_meta"] = meta
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": next, "method": method, "params": params})
		if _, err := stdin.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(time.Minute)
		for {
			select {
			case m, ok := <-lines:
				if !ok {
					t.Fatalf("%s: the server closed its output", method)
				}
				if id, _ := m["id"].(float64); int(id) == next {
					r, ok := m["result"].(map[string]any)
					if !ok {
						t.Fatalf("%s: %v", method, m)
					}
					return r
				}
			case <-deadline:
				t.Fatalf("%s: no answer", method)
			}
		}
	}
	open := testkit.TCPListener(t)
	closed := testkit.ClosedTCPPort(t)
	created := rpc("tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprintf("%d,%d", open, closed)}})
	id, _ := created["taskId"].(string)
	if created["resultType"] != "task" || id == "" || created["status"] != "working" {
		t.Fatalf("created: %v", created)
	}
	var g map[string]any
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		g = rpc("tasks/get", map[string]any{"taskId": id})
		if g["status"] != "working" || time.Now().After(deadline) {
			break
		}
	}
	res, _ := g["result"].(map[string]any)
	text := fmt.Sprint(res["content"])
	if g["status"] != "completed" || res["isError"] != false || !strings.Contains(text, fmt.Sprintf("%d/tcp open", open)) {
		t.Fatalf("tasks/get at the end: %v", g)
	}
}
