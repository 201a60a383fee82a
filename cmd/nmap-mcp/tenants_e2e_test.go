package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/httpapi"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// as returns a session on s with another token.
func (s *httpServer) as(t *testing.T, secret string) *mcp.ClientSession {
	t.Helper()
	other := *s
	other.token = secret
	return other.connect(t, "2025-11-25", nil)
}

// Regression (security review 4 and 5): over HTTP a scan belongs to the
// client that started it. Another token neither lists, reads, diffs,
// cancels nor reads the resources of it (a foreign id is "not found", as
// an unknown one), an admin token sees all, a session id used with
// another token gets 404, and one client cannot fill the whole queue.
// Scans target only a loopback listener the test opens.
func TestHTTPTenants(t *testing.T) {
	testkit.NeedEngine(t)
	bobSecret, bob, _ := httpapi.NewToken("bob")
	rootSecret, root, _ := httpapi.NewToken("root")
	root.Admin = true
	s := startHTTPTokens(t, []httpapi.Token{bob, root}, "queue:\n  max_concurrent: 1\n  size: 2\n  per_client: 2\n")
	alice := s.connect(t, "2025-11-25", nil)
	bobS := s.as(t, bobSecret)
	rootS := s.as(t, rootSecret)
	port := testkit.TCPListener(t)

	start := func(sess *mcp.ClientSession, args map[string]any) (string, string) {
		args["wait"] = false
		res, text := call(t, sess, "nmap_scan", args)
		if res.IsError {
			return "", text
		}
		return res.StructuredContent.(map[string]any)["scan_id"].(string), text
	}
	slow, _ := start(alice, slowArgs(port))
	quick, _ := start(alice, map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)})
	// Alice has her share (2); a third is refused, and Bob still gets in.
	if id, text := start(alice, map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)}); id != "" || !strings.Contains(text, "queue.per_client") {
		t.Fatalf("alice's third scan: %q %s", id, text)
	}
	if id, text := start(bobS, map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)}); id == "" {
		t.Fatalf("bob's scan refused: %s", text)
	}

	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"get_scan", map[string]any{"id": slow}},
		{"cancel_scan", map[string]any{"id": slow}},
		{"get_scan", map[string]any{"id": "000000000000"}},
	} {
		res, text := call(t, bobS, c.tool, c.args)
		if !res.IsError || !strings.Contains(text, "no scan with id") {
			t.Fatalf("bob %s %v: %s", c.tool, c.args, text)
		}
	}
	_, text := call(t, bobS, "list_scans", map[string]any{})
	if strings.Contains(text, slow) || strings.Contains(text, quick) {
		t.Fatalf("bob lists alice's scans: %s", text)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, uri := range []string{"scan://" + quick, "scan://" + quick + "/xml"} {
		if _, err := bobS.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri}); err == nil || !strings.Contains(err.Error(), "no scan with id") {
			t.Fatalf("bob reads %s: %v", uri, err)
		}
	}
	_, text = call(t, rootS, "list_scans", map[string]any{})
	if !strings.Contains(text, slow) || !strings.Contains(text, quick) {
		t.Fatalf("admin does not see alice's scans: %s", text)
	}
	// The slow scan is still running: Bob's cancel did nothing.
	if _, text := call(t, alice, "get_scan", map[string]any{"id": slow}); !strings.Contains(text, "running") {
		t.Fatalf("alice's scan after bob's cancel: %s", text)
	}
	if res, text := call(t, alice, "cancel_scan", map[string]any{"id": slow}); res.IsError {
		t.Fatalf("alice cancels her scan: %s", text)
	}

	// A session id is bound to the token that created it.
	sid := alice.ID()
	for _, method := range []string{http.MethodPost, http.MethodDelete} {
		body := strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/list"}`)
		req, _ := http.NewRequest(method, s.url+"/mcp", body)
		req.Header.Set("Authorization", "Bearer "+bobSecret)
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s with alice's session and bob's token: %d %s", method, resp.StatusCode, b)
		}
	}
	// Alice's session still works after Bob's attempt to delete it.
	if res, _ := call(t, alice, "list_scans", map[string]any{}); res.IsError {
		t.Fatal("alice's session was hurt by bob's DELETE")
	}
	if !testkit.Eventually(20*time.Second, func() bool { return len(ourContainers(t)) == 0 }) {
		t.Fatalf("containers left: %d", len(ourContainers(t)))
	}
}
