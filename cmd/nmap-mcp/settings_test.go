package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
