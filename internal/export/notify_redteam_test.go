package export

import (
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// TestTeamsHostileBannersBounded: a change list of 100 version changes
// whose banners are made of characters that escaping lengthens ('<'
// becomes "&lt;", then "\u0026lt;" in JSON: 9 bytes) made a Teams
// message of over 150 KB, which Teams refuses whole (28 KB): a hostile
// host could have a watch's whole notice dropped. The message stays
// within the limit and says how many changes it left out. Pure function,
// no network.
func TestTeamsHostileBannersBounded(t *testing.T) {
	d := results.Diff{}
	banner := strings.Repeat("<", 79) // nmap keeps at most 79 bytes of a version
	for i := range 100 {
		d.ServiceChanges = append(d.ServiceChanges, results.ServiceDiff{Host: "10.1.0.5", Protocol: "tcp", Port: 1000 + i, Field: "version", From: banner, To: banner + "*"})
	}
	n := Notice{Watch: "lab", Scan: "s2", Baseline: "s1", Targets: "10.1.0.0/24", At: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC), Diff: d}
	b, err := Teams(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckTeams(b); err != nil {
		t.Fatal(err)
	}
	if len(b) > 28<<10 || !strings.Contains(string(b), "more changes") {
		t.Fatalf("%d bytes (Teams' limit is %d), says what it left out: %v", len(b), 28<<10, strings.Contains(string(b), "more changes"))
	}
	if b, err := Slack(n); err != nil || CheckSlack(b) != nil {
		t.Fatalf("Slack: %v %v", err, CheckSlack(b))
	}
	// An ordinary notice keeps every change.
	b, _ = Teams(notice(3))
	if strings.Contains(string(b), "more changes") || !strings.Contains(string(b), "1002/tcp") {
		t.Fatalf("three changes: %s", b)
	}
}
