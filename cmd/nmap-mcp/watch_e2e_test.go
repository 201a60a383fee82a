package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

// A watch on two loopback ports, driven over MCP against the real engine:
// a subscribed client is told when a run finds the second port opened,
// and again when it is closed; the webhook receiver gets correctly signed
// events; a webhook outside the allowlist is refused at creation; a
// restarted server keeps the watch and its baseline.
//
// It runs twice: with the client's newest protocol (2026-07-28, where a
// subscriptions/listen stream names the resources) and with 2025-11-25
// (resources/subscribe), as LM Studio speaks.
func TestWatchOverMCP(t *testing.T) {
	testkit.NeedEngine(t)
	for _, proto := range []string{"", "2025-11-25"} {
		name := proto
		if name == "" {
			name = "newest"
		}
		t.Run(name, func(t *testing.T) { watchOverMCP(t, proto) })
	}
}

func watchOverMCP(t *testing.T, proto string) {
	var (
		mu       sync.Mutex
		hooks    [][]byte
		badSigns int
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get(watches.SignatureHeader) != watches.Sign("s3cret", body) {
			badSigns++
		}
		hooks = append(hooks, body)
	}))
	defer receiver.Close()
	p1 := testkit.TCPListener(t)
	p2 := testkit.ClosedTCPPort(t)
	dir := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf("watches:\n  min_interval_seconds: 1\n  webhook_allow: [%q]\n", receiver.URL+"/hooks/"))
	env := []string{"NMAP_MCP_CONFIG=" + cfg, "NMAP_MCP_STORE=" + filepath.Join(dir, "scans.db"), "NMAP_MCP_WEBHOOK_SECRET=s3cret"}

	updated := make(chan string, 16)
	session := func() (*mcp.ClientSession, func()) {
		cmd := exec.Command(binary, "serve")
		cmd.Env = serverEnv(env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		client := mcp.NewClient(&mcp.Implementation{Name: "e2e-watch", Version: "1"}, &mcp.ClientOptions{
			ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) { updated <- req.Params.URI },
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, &mcp.ClientSessionOptions{ProtocolVersion: proto})
		if err != nil {
			t.Fatalf("connect: %v\n%s", err, stderr.String())
		}
		return s, func() {
			s.Close()
			if t.Failed() {
				t.Logf("server stderr:\n%s", stderr.String())
			}
		}
	}
	s, stop := session()
	defer func() { stop() }()

	// Outside the allowlist: refused, nothing stored.
	res, text := call(t, s, "watch_create", map[string]any{"name": "evil", "interval_seconds": 2, "targets": "127.0.0.1",
		"ports": fmt.Sprint(p1), "webhook": "http://127.0.0.1:9/elsewhere"})
	if !res.IsError || !strings.Contains(text, "watches.webhook_allow") {
		t.Fatalf("webhook outside the allowlist: %s", text)
	}
	res, text = call(t, s, "watch_create", map[string]any{"name": "lab", "interval_seconds": 2, "targets": "127.0.0.1",
		"ports": fmt.Sprintf("%d,%d", p1, p2), "webhook": receiver.URL + "/hooks/lab"})
	if res.IsError {
		t.Fatal(text)
	}
	if err := s.Subscribe(context.Background(), &mcp.SubscribeParams{URI: "watch://lab"}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	read := func() map[string]any {
		t.Helper()
		r, err := s.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "watch://lab"})
		if err != nil {
			t.Fatal(err)
		}
		var w map[string]any
		_ = json.Unmarshal([]byte(r.Contents[0].Text), &w)
		return w
	}
	waitFor := func(what string, cond func(w map[string]any) bool) map[string]any {
		t.Helper()
		var w map[string]any
		if !testkit.Eventually(60*time.Second, func() bool { w = read(); return cond(w) }) {
			t.Fatalf("%s: watch is %v", what, w)
		}
		return w
	}
	waitFor("the first run (baseline)", func(w map[string]any) bool { return w["baseline"] != "" && w["baseline"] != nil })
	drain := func() {
		for len(updated) > 0 {
			<-updated
		}
	}
	drain()

	// Open the second port: the next run reports it opened.
	ln := testkit.ListenOn(t, p2)
	expectUpdate := func(what string) {
		t.Helper()
		select {
		case uri := <-updated:
			if uri != "watch://lab" {
				t.Fatalf("%s: update for %s", what, uri)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: no notifications/resources/updated; watch is %v", what, read())
		}
	}
	expectUpdate("port opened")
	w := read()
	if change, _ := w["last_change"].(string); !strings.Contains(change, fmt.Sprintf("%d/tcp closed -> open", p2)) {
		t.Fatalf("last_change after opening: %q", change)
	}
	ln.Close()
	drain()
	expectUpdate("port closed")
	if change, _ := read()["last_change"].(string); !strings.Contains(change, fmt.Sprintf("%d/tcp open -> closed", p2)) {
		t.Fatalf("last_change after closing: %q", change)
	}

	// The webhook saw the changes, signed.
	if !testkit.Eventually(30*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(hooks) >= 2 }) {
		t.Fatalf("webhook deliveries: %d", len(hooks))
	}
	mu.Lock()
	var ev watches.Change
	_ = json.Unmarshal(hooks[0], &ev)
	if badSigns != 0 || ev.Watch != "lab" || len(ev.Diff.PortChanges) != 1 || ev.Diff.PortChanges[0].Port != p2 {
		t.Errorf("webhook: bad signatures %d, first event %s", badSigns, hooks[0])
	}
	mu.Unlock()

	// A restart keeps the watch and its baseline.
	before := read()
	stop()
	s, stop = session()
	res, text = call(t, s, "watch_list", nil)
	if res.IsError || !strings.Contains(text, "watch lab") {
		t.Fatalf("after restart: %s", text)
	}
	if after := read(); after["baseline"] == "" || after["runs"].(float64) < before["runs"].(float64) {
		t.Fatalf("after restart: %v (before %v)", after, before)
	}
	if res, text := call(t, s, "watch_delete", map[string]any{"name": "lab"}); res.IsError {
		t.Fatal(text)
	}
}
