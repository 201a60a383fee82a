package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	s := settings{logFile: link, logLevel: "info"}
	if _, _, err := s.logger(os.Stderr); err == nil || !strings.Contains(err.Error(), "open log file") {
		t.Fatalf("logger through a symlink: %v", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("the symlink's target was created: %v", err)
	}
}
