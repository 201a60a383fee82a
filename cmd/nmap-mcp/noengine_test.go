package main

import (
	"net/http"
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
