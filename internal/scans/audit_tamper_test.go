package scans_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
)

// Regression (issue 27, item 2), through the service against the fake
// runner (no engine): after the audit trail is emptied while the server
// runs, the next scan is refused because the trail cannot be written —
// its records are not chained onto what is left — and verify still sees
// the break.
func TestScanRefusedWhenTrailTamperedWhileRunning(t *testing.T) {
	f := newFixture(t, scans.Config{}, nil)
	go func() { f.runner.finish(f.started(t)) }()
	sc, err := f.svc.Submit(context.Background(), req(22), scans.Options{})
	if err != nil || sc.Err() != nil {
		t.Fatalf("submit %v, scan %v", err, sc.Err())
	}
	if err := os.Truncate(f.trail, 0); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Submit(context.Background(), req(23), scans.Options{Detach: true})
	if err == nil || !strings.Contains(err.Error(), "audit trail") {
		t.Fatalf("a scan was admitted onto a tampered trail: %v", err)
	}
	if !strings.Contains(err.Error(), "shrank") {
		t.Errorf("refusal does not say what happened: %v", err)
	}
	if b, _ := os.ReadFile(f.trail); len(b) != 0 {
		t.Fatalf("records were written to the emptied trail:\n%s", b)
	}
	if _, err := audit.Verify(f.trail); err == nil {
		t.Fatal("verify says the emptied trail is intact")
	}
}
