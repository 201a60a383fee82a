package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A server whose DOCKER_HOST names no engine starts (stdio and HTTP),
// lists its tools and answers every call that needs the engine with what
// to do; /healthz is 503 and says why. No engine is needed: this runs
// under -short too. (Before, serve exited at once.)
func TestServeWithoutAnyEngine(t *testing.T) {
	noEngine := "DOCKER_HOST=unix://" + t.TempDir() + "/no-engine.sock"
	s := connect(t, noEngine)
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
	hs := startHTTPNoWait(t, noEngine)
	if code, body := hs.healthz(t); code != http.StatusServiceUnavailable || !strings.Contains(body, "unreachable") || !strings.Contains(body, "no restart needed") {
		t.Fatalf("/healthz: %d %s", code, body)
	}
}

// The same with the Kubernetes runner and an API server that does not
// answer (a kubeconfig naming a closed loopback port): the server starts,
// refuses scans saying so, and /healthz is 503. (Before, serve exited.)
func TestServeWithoutKubernetesAPI(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	port := freePortTB(t) // closed again: nothing answers there
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
	kube := []string{"NMAP_MCP_RUNNER=kubernetes", "NMAP_MCP_KUBECONFIG=" + kubeconfig, "NMAP_MCP_KUBE_NAMESPACE=scans",
		"NMAP_MCP_KUBE_IMAGE=nmap-mcp/nmap@sha256:" + strings.Repeat("0", 64)}
	s := connect(t, kube...)
	res, text := call(t, s, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": "22"})
	for _, want := range []string{"nothing was run", "did not answer", fmt.Sprint(port), "no restart needed"} {
		if !res.IsError || !strings.Contains(text, want) {
			t.Fatalf("nmap_scan lacks %q: %s", want, text)
		}
	}
	hs := startHTTPNoWait(t, kube...)
	if code, body := hs.healthz(t); code != http.StatusServiceUnavailable || !strings.Contains(body, "did not answer") {
		t.Fatalf("/healthz: %d %s", code, body)
	}
}
