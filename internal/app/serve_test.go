package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/config"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// These tests run the composition root in-process, without the binary and
// without any engine or cluster (they pass under -short): the server
// starts, lists its tools and answers every call that needs the engine
// with what to do. cmd/nmap-mcp's end-to-end tests drive the real binary
// against the engine.

// logBuffer collects a test server's logs, shown when the test fails.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newTestApp makes an App from c (its history and trail in a temporary
// folder) for mode; it is closed when the test ends.
func newTestApp(t *testing.T, c config.Config, mode Mode) *App {
	t.Helper()
	c.Store.Path = filepath.Join(t.TempDir(), "scans.db")
	r, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := FromConfig(&c, r, "test.yaml", mode)
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	opts.Log, opts.Stderr, opts.ServerVersion = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), &logs, "test"
	a, err := New(t.Context(), opts)
	if err != nil {
		t.Fatalf("New: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		a.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return a
}

// serveStdio serves a over pipes and connects the official Go SDK's
// client to it; the session ends, and the server with it, when the test
// does.
func serveStdio(t *testing.T, a *App) *mcp.ClientSession {
	t.Helper()
	cr, cw := io.Pipe() // client to server
	sr, sw := io.Pipe() // server to client
	done := make(chan error, 1)
	go func() { done <- a.ServeStdio(context.Background(), cr, sw, io.Discard); sw.Close() }()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	sess, err := mcp.NewClient(&mcp.Implementation{Name: "app-test", Version: "1"}, nil).Connect(ctx, &mcp.IOTransport{Reader: sr, Writer: cw}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		sess.Close()
		cw.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeStdio: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("ServeStdio did not return when its input ended")
		}
	})
	return sess
}

// serveHTTP serves a over HTTP on a free loopback port and returns its
// URL; the server drains and stops when the test ends.
func serveHTTP(t *testing.T, a *App) string {
	t.Helper()
	addrC := make(chan net.Addr, 1)
	a.opts.Listening = func(addr net.Addr) { addrC <- addr }
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.ServeHTTP(ctx, "127.0.0.1:0") }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("ServeHTTP: %v", err)
		}
	})
	select {
	case addr := <-addrC:
		return "http://" + addr.String()
	case err := <-done:
		t.Fatalf("ServeHTTP: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the HTTP server did not listen")
	}
	return ""
}

func call(t *testing.T, s *mcp.ClientSession, name string, args map[string]any) (*mcp.CallToolResult, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return res, b.String()
}

func healthz(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A server whose DOCKER_HOST names no engine starts (stdio and HTTP),
// lists its tools and answers every call that needs the engine with what
// to do; /healthz is 503 and says why.
func TestServeWithoutAnyEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no-engine.sock")
	s := serveStdio(t, newTestApp(t, config.Default(), Stdio))
	tools, err := s.ListTools(t.Context(), nil)
	if err != nil || len(tools.Tools) == 0 {
		t.Fatalf("tools: %v", err)
	}
	res, text := call(t, s, "nmap_version", nil)
	if !res.IsError || !strings.Contains(text, "Docker engine: not answering") || !strings.Contains(text, "nmap-mcp: ") {
		t.Fatalf("nmap_version: %s", text)
	}
	res, text = call(t, s, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": "22"})
	for _, want := range []string{"nothing was run", "no-engine.sock", "start the Docker engine", "DOCKER_HOST", "docker group", "no restart needed"} {
		if !res.IsError || !strings.Contains(text, want) {
			t.Fatalf("nmap_scan lacks %q: %s", want, text)
		}
	}
	// Bad input is still told as such, before the engine is asked.
	if res, text = call(t, s, "nmap_scan", map[string]any{"targets": "-iL=/etc/passwd"}); !res.IsError || !strings.Contains(text, "targets") {
		t.Fatalf("bad input: %s", text)
	}
	url := serveHTTP(t, newTestApp(t, config.Default(), HTTP))
	if code, body := healthz(t, url); code != http.StatusServiceUnavailable || !strings.Contains(body, "unreachable") || !strings.Contains(body, "no restart needed") {
		t.Fatalf("/healthz: %d %s", code, body)
	}
}

// The same with the Kubernetes runner and an API server that does not
// answer (a kubeconfig naming a closed loopback port): the server starts,
// refuses scans saying so, and /healthz is 503.
func TestServeWithoutKubernetesAPI(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing answers there
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:%d", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, port)
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c := config.Default()
	c.Runner, c.Kubernetes.Kubeconfig, c.Kubernetes.Namespace = "kubernetes", kubeconfig, "scans"
	c.Kubernetes.Image = "nmap-mcp/nmap@sha256:" + strings.Repeat("0", 64)
	s := serveStdio(t, newTestApp(t, c, Stdio))
	res, text := call(t, s, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": "22"})
	for _, want := range []string{"nothing was run", "did not answer", fmt.Sprint(port), "no restart needed"} {
		if !res.IsError || !strings.Contains(text, want) {
			t.Fatalf("nmap_scan lacks %q: %s", want, text)
		}
	}
	url := serveHTTP(t, newTestApp(t, c, HTTP))
	if code, body := healthz(t, url); code != http.StatusServiceUnavailable || !strings.Contains(body, "did not answer") {
		t.Fatalf("/healthz: %d %s", code, body)
	}
}

// A one-shot command needs the engine now: New fails at once, naming it.
func TestOneShotNeedsTheEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no-engine.sock")
	c := config.Default()
	c.Store.Path = filepath.Join(t.TempDir(), "scans.db")
	r, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := FromConfig(&c, r, "test.yaml", OneShot)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := New(t.Context(), opts); err == nil || !strings.Contains(err.Error(), "no-engine.sock") {
		if a != nil {
			a.Close()
		}
		t.Fatalf("New without an engine: %v", err)
	}
}

// A serving App applies store.keep at start (and hourly): the oldest of
// three finished scans is gone under keep 1, without any engine.
func TestServeAppliesRetention(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no-engine.sock")
	c := config.Default()
	c.Store.Keep = "1"
	a := newTestApp(t, c, Stdio)
	t0 := time.Now().Add(-time.Hour)
	var recs []*store.Record
	for i := range 3 {
		recs = append(recs, &store.Record{ID: fmt.Sprint("s", i), Status: store.Done, Targets: "127.0.0.1",
			CreatedAt: t0.Add(time.Duration(i) * time.Minute), RawXML: []byte("<nmaprun/>"), Argv: []string{"nmap"}})
	}
	if err := a.Store().Import(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	serveStdio(t, a)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := a.Store().RawXML(t.Context(), "s0", ""); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("store.keep 1 was not applied while serving")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if x, err := a.Store().RawXML(t.Context(), "s2", ""); err != nil || len(x) == 0 {
		t.Fatalf("the newest scan lost its XML: %v", err)
	}
}
