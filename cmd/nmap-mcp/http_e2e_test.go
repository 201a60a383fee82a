package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/httpapi"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// httpServer is a `nmap-mcp serve --http` process under test, on loopback.
type httpServer struct {
	cmd    *exec.Cmd
	url    string
	token  string
	stderr *bytes.Buffer
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// launchHTTP starts `serve --http` on a free loopback port with env (on
// top of serverEnv) and stops it when the test ends (SIGTERM, then
// SIGKILL after 20 s), logging its stderr if the test failed. It does not
// wait for the server.
func launchHTTP(t testing.TB, env ...string) *httpServer {
	t.Helper()
	return launchHTTPAt(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), env...)
}

// launchHTTPAt is launchHTTP at addr (a test that must name the
// server's URL before it starts, e.g. to its identity provider).
func launchHTTPAt(t testing.TB, addr string, env ...string) *httpServer {
	t.Helper()
	cmd := exec.Command(binary, "serve", "--http", addr)
	cmd.Env = serverEnv(env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &httpServer{cmd: cmd, url: "http://" + addr, stderr: &stderr}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("server stderr:\n%s", stderr.String())
		}
	})
	return s
}

// waitHealthy waits until s answers /healthz.
func waitHealthy(t testing.TB, s *httpServer) {
	t.Helper()
	if !testkit.Eventually(30*time.Second, func() bool {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}) {
		t.Fatalf("server did not become healthy:\n%s", s.stderr.String())
	}
}

// startHTTP starts a server with one token, "alice", and extra config.
func startHTTP(t *testing.T, extraConfig string, extraEnv ...string) *httpServer {
	t.Helper()
	return startHTTPTokens(t, nil, extraConfig, extraEnv...)
}

// startHTTPTokens starts a server with the token "alice" and more tokens.
func startHTTPTokens(t *testing.T, more []httpapi.Token, extraConfig string, extraEnv ...string) *httpServer {
	t.Helper()
	secret, tok, err := httpapi.NewToken("alice")
	if err != nil {
		t.Fatal(err)
	}
	tokens := fmt.Sprintf("    - name: alice\n      sha256: %s\n", tok.SHA256)
	for _, m := range more {
		tokens += fmt.Sprintf("    - name: %s\n      sha256: %s\n      admin: %v\n", m.Name, m.SHA256, m.Admin)
	}
	cfgText := fmt.Sprintf("http:\n  tokens:\n%s  origins: [\"http://allowed.test\"]\n%s", tokens, extraConfig)
	s := startHTTPConfig(t, cfgText, extraEnv...)
	s.token = secret
	return s
}

// startHTTPConfig starts `serve --http` on a free loopback port with the
// given configuration file.
func startHTTPConfig(t *testing.T, cfgText string, extraEnv ...string) *httpServer {
	t.Helper()
	s := launchHTTP(t, append([]string{"NMAP_MCP_CONFIG=" + writeConfig(t, cfgText),
		"NMAP_MCP_STORE=" + filepath.Join(t.TempDir(), "scans.db")}, extraEnv...)...)
	waitHealthy(t, s)
	return s
}

// bearer adds the token to every request.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

func (s *httpServer) connect(t *testing.T, version string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-http", Version: "1"}, opts)
	tr := &mcp.StreamableClientTransport{Endpoint: s.url + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{token: s.token, base: http.DefaultTransport}}}
	sess, err := client.Connect(context.Background(), tr, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect (%s): %v", version, err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

// Each protocol version: list the tools, scan a loopback listener with
// progress, cancel a scan.
func TestHTTPProtocolVersions(t *testing.T) {
	testkit.NeedEngine(t)
	srv := startHTTP(t, "")
	port := testkit.TCPListener(t)
	for _, version := range []string{"2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"} {
		t.Run(version, func(t *testing.T) {
			plog := newProgressLog()
			s := srv.connect(t, version, &mcp.ClientOptions{
				ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) { plog.add(r.Params) }})
			if got := s.InitializeResult().ProtocolVersion; got != version {
				t.Fatalf("negotiated %s", got)
			}
			tools, err := s.ListTools(context.Background(), nil)
			if err != nil || len(tools.Tools) < 6 {
				t.Fatalf("list tools: %v (%d)", err, len(tools.Tools))
			}
			tok := "p-" + version
			res, err := callWithToken(context.Background(), s, tok, map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)})
			if err != nil || res.IsError {
				t.Fatalf("scan: %v %+v", err, res)
			}
			// The token's name is the client identity of the record.
			id := res.StructuredContent.(map[string]any)["scan_id"].(string)
			rr, err := s.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "scan://" + id})
			if err != nil || !strings.Contains(rr.Contents[0].Text, `"client": "alice"`) {
				t.Fatalf("record client: %v %v", err, rr)
			}
			got := plog.waitFor(tok, 2, 10*time.Second)
			if len(got) < 2 || got[len(got)-1].Progress != 100 {
				t.Fatalf("progress over HTTP: %v", messages(got))
			}
			// Cancel a slowed scan mid-way.
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			ctok := "c-" + version
			go func() { _, err := callWithToken(ctx, s, ctok, slowArgs(port)); done <- err }()
			plog.waitFor(ctok, 2, 30*time.Second)
			cancel()
			<-done
			if !testkit.Eventually(5*time.Second, func() bool { return len(ourContainers(t)) == 0 }) {
				t.Fatal("container left after the cancel")
			}
			testkit.Eventually(5*time.Second, func() bool {
				r, _ := call(t, s, "list_scans", map[string]any{"limit": 1})
				return strings.Contains(fmt.Sprint(r.StructuredContent), "cancelled")
			})
			r, _ := call(t, s, "list_scans", map[string]any{"limit": 1})
			if !strings.Contains(fmt.Sprint(r.StructuredContent), "cancelled") {
				t.Fatalf("cancelled scan's record: %v", r.StructuredContent)
			}
		})
	}
}

// No token, a wrong token, a bad Origin and an oversized body get 401, 401,
// 403 and 413, and none reaches a tool.
func TestHTTPRefusals(t *testing.T) {
	testkit.NeedEngine(t)
	srv := startHTTP(t, "")
	toolCall := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nmap_scan","arguments":{"targets":"127.0.0.1"}}}`
	for _, c := range []struct {
		name   string
		header map[string]string
		body   string
		want   int
	}{
		{"no token", nil, toolCall, 401},
		{"wrong token", map[string]string{"Authorization": "Bearer nmcp_wrong"}, toolCall, 401},
		{"bad origin", map[string]string{"Authorization": "Bearer " + srv.token, "Origin": "http://evil.test"}, toolCall, 403},
		{"oversized", map[string]string{"Authorization": "Bearer " + srv.token}, strings.Repeat(" ", 2<<20) + toolCall, 413},
	} {
		req, _ := http.NewRequest("POST", srv.url+"/mcp", strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
		if c.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", c.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
	s := srv.connect(t, "2025-11-25", nil)
	res, _ := call(t, s, "list_scans", map[string]any{})
	if n := len(res.StructuredContent.(map[string]any)["scans"].([]any)); n != 0 {
		t.Fatalf("%d scans ran from refused requests", n)
	}
	resp, err := http.DefaultClient.Do(authed(srv, "GET", "/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`nmap_mcp_refusals_total{reason="auth"} 2`, `nmap_mcp_refusals_total{reason="origin"} 1`, `nmap_mcp_refusals_total{reason="body_too_large"} 1`, "nmap_mcp_scans_running 0"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func authed(s *httpServer, method, path string) *http.Request {
	req, _ := http.NewRequest(method, s.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	return req
}

// 50 sessions listing tools while 8 scan loopback listeners: no error, no
// leaked container; the server's peak RSS is reported.
func TestHTTPLoad(t *testing.T) {
	testkit.NeedEngine(t)
	srv := startHTTP(t, "", "NMAP_MCP_MAX_CONCURRENT=2")
	port := testkit.TCPListener(t)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := mcp.NewClient(&mcp.Implementation{Name: "load", Version: "1"}, nil)
			tr := &mcp.StreamableClientTransport{Endpoint: srv.url + "/mcp",
				HTTPClient: &http.Client{Transport: bearer{token: srv.token, base: http.DefaultTransport}}}
			sess, err := client.Connect(context.Background(), tr, nil)
			if err != nil {
				errs <- err
				return
			}
			defer sess.Close()
			for j := 0; j < 3; j++ {
				if _, err := sess.ListTools(context.Background(), nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := srv.connect(t, "", nil)
			res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "nmap_scan",
				Arguments: map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)}})
			if err == nil && res.IsError {
				err = fmt.Errorf("scan isError")
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !testkit.Eventually(10*time.Second, func() bool { return len(ourContainers(t)) == 0 }) {
		t.Fatal("containers left after the load")
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", srv.cmd.Process.Pid))
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			t.Logf("server peak RSS: %s", strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")))
		}
	}
}

// SIGTERM during a scan: the process exits within the grace period plus
// 2 s, and no container is left.
func TestHTTPSigtermDuringScan(t *testing.T) {
	testkit.NeedEngine(t)
	srv := startHTTP(t, "  grace_seconds: 2\n")
	port := testkit.TCPListener(t)
	s := srv.connect(t, "2025-11-25", nil)
	res, text := call(t, s, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprintf("1-60,%d", port), "timing": "T2", "wait": false})
	if res.IsError {
		t.Fatal(text)
	}
	if !testkit.Eventually(20*time.Second, func() bool { return len(ourContainers(t)) == 1 }) {
		t.Fatal("the scan never started")
	}
	start := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(4 * time.Second):
		t.Fatalf("still running %v after SIGTERM with a 2 s grace", time.Since(start))
	}
	t.Logf("exited %v after SIGTERM", time.Since(start))
	if n := len(ourContainers(t)); n != 0 {
		t.Fatalf("%d containers left", n)
	}
}
