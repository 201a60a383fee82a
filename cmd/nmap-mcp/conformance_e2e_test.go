package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// The MCP conformance suite's generic server scenarios, as a Go test:
// server-initialize, ping, logging-set-level, tools-list,
// server-sse-multiple-streams and dns-rebinding-protection, against
// `serve --http` on loopback without tokens. The suite itself
// (@modelcontextprotocol/conformance 0.1.16) installs offline from the npm
// registry but needs Node 22 (fs.globSync); these machines have Node 20.
// Each check below follows the suite's own requests and verdicts.

// rpc posts one JSON-RPC message and returns the status, the response
// headers and the message in the body (JSON, or the first SSE event).
func rpc(t *testing.T, endpoint string, hdr map[string]string, msg string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && strings.TrimSpace(data) != "" {
				body = []byte(data)
				break
			}
		}
	}
	var out map[string]any
	_ = json.Unmarshal(body, &out)
	return resp.StatusCode, resp.Header, out
}

func TestConformanceServerScenarios(t *testing.T) {
	testkit.NeedEngine(t)
	s := startHTTPConfig(t, "http:\n  origins: []\n", "NMAP_MCP_NETWORK=none")
	endpoint := s.url + "/mcp"
	host := strings.TrimPrefix(s.url, "http://")

	// server-initialize
	status, hdr, msg := rpc(t, endpoint, nil, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"conformance","version":"1"}}}`)
	result, _ := msg["result"].(map[string]any)
	info, _ := result["serverInfo"].(map[string]any)
	sid := hdr.Get("Mcp-Session-Id")
	if status != 200 || result["protocolVersion"] != "2025-11-25" || info["name"] == "" || info["version"] == nil || result["capabilities"] == nil || sid == "" {
		t.Fatalf("server-initialize: %d %v (session %q)", status, msg, sid)
	}
	sess := map[string]string{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}
	if status, _, _ := rpc(t, endpoint, sess, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); status != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d", status)
	}

	// ping and logging-set-level: an empty result.
	for name, req := range map[string]string{
		"ping":              `{"jsonrpc":"2.0","id":2,"method":"ping"}`,
		"logging-set-level": `{"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"info"}}`,
	} {
		status, _, msg := rpc(t, endpoint, sess, req)
		if r, ok := msg["result"].(map[string]any); status != 200 || !ok || len(r) != 0 {
			t.Errorf("%s: %d %v", name, status, msg)
		}
	}

	// tools-list: every tool has a name, a description and an object input schema.
	status, _, msg = rpc(t, endpoint, sess, `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`)
	result, _ = msg["result"].(map[string]any)
	tools, _ := result["tools"].([]any)
	if status != 200 || len(tools) == 0 {
		t.Fatalf("tools-list: %d %v", status, msg)
	}
	for _, tl := range tools {
		tool := tl.(map[string]any)
		schema, _ := tool["inputSchema"].(map[string]any)
		if tool["name"] == "" || tool["description"] == "" || schema["type"] != "object" {
			t.Errorf("tools-list: %v", tool)
		}
	}

	// server-sse-multiple-streams: three concurrent POSTs, each answered.
	var wg sync.WaitGroup
	results := make([]string, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, msg := rpc(t, endpoint, map[string]string{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-03-26",
				"Accept": "text/event-stream, application/json"}, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list","params":{}}`, 1000+i))
			results[i] = fmt.Sprintf("%d %v", status, msg["id"])
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r != fmt.Sprintf("200 %d", 1000+i) {
			t.Errorf("server-sse-multiple-streams: stream %d: %s", i, r)
		}
	}

	// dns-rebinding-protection: a foreign Host/Origin is refused with 4xx,
	// this server's own localhost Host/Origin is accepted with 2xx.
	initMsg := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"conformance-dns-rebinding-test","version":"1.0.0"}}}`
	if status, _, _ := rpc(t, endpoint, map[string]string{"Host": "evil.example.com", "Origin": "http://evil.example.com"}, initMsg); status < 400 || status > 499 {
		t.Errorf("dns-rebinding-protection: evil Host/Origin got %d, want 4xx", status)
	}
	port := host[strings.LastIndexByte(host, ':'):]
	for _, h := range []string{host, "localhost" + port} {
		u := url.URL{Scheme: "http", Host: h}
		if status, _, _ := rpc(t, endpoint, map[string]string{"Host": h, "Origin": u.String()}, initMsg); status < 200 || status > 299 {
			t.Errorf("dns-rebinding-protection: Host/Origin %s got %d, want 2xx", h, status)
		}
	}
}
