package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/config"
)

// Regression (security review 13): the log file is opened without
// following a symlink planted at its path.
func TestLogFileNoFollow(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	link := filepath.Join(dir, "nmap-mcp.log")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	c := config.Default()
	c.Log.File = link
	s := settings{Config: &c}
	if _, _, err := s.logger(os.Stderr); err == nil || !strings.Contains(err.Error(), "open log file") {
		t.Fatalf("logger through a symlink: %v", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("the symlink's target was created: %v", err)
	}
}

// Fix-it advice is added at the edge: the runner's typed errors say what
// happened; cmd says which argument, key, flag or variable to change.
func TestAdvice(t *testing.T) {
	for err, want := range map[error]string{
		&executor.OOMError{Limit: 512 << 20}:       "sandbox.memory in the config file, --memory or NMAP_MCP_MEMORY",
		&executor.PidsError{Limit: 8}:              "--pids or NMAP_MCP_PIDS",
		&executor.TimeoutError{After: time.Second}: "raise timeout_seconds",
		&executor.ImageError{Image: "x"}:           "nmap-mcp image build",
	} {
		if got := adviceFor("docker", err); !strings.Contains(got, want) {
			t.Errorf("%T: %q, want %q", err, got, want)
		}
	}
}
