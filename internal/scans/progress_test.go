package scans

import (
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// Progress never goes backwards across nmap's tasks and host groups.
func TestTrackerRises(t *testing.T) {
	tr := NewTracker(&scanargs.Plan{Type: scanargs.SYN, ServiceVersions: true})
	last := tr.Started()
	steps := []results.Progress{
		{Task: "Ping Scan", Percent: 50}, {Task: "Ping Scan", Percent: 100},
		{Task: "Parallel DNS resolution of 1 host.", Percent: 100},
		{Task: "SYN Stealth Scan", Percent: 10, RemainingSeconds: 9}, {Task: "SYN Stealth Scan", Percent: 90},
		{Task: "SYN Stealth Scan", Percent: 5}, // the next host group starts over
		{Task: "Service scan", Percent: 50}, {Task: "NSE", Percent: 100}, {Task: "Unknown task", Percent: 1},
	}
	for _, s := range steps {
		v, msg := tr.Update(s)
		if v < last || v > progressNmapEnd || msg == "" {
			t.Fatalf("%+v: %.1f after %.1f (%q)", s, v, last, msg)
		}
		last = v
	}
	if last < 90 {
		t.Fatalf("ended at %.1f", last)
	}
	if _, msg := tr.Update(results.Progress{Task: "SYN Stealth Scan", Percent: 48, RemainingSeconds: 3}); msg != "SYN Stealth Scan 48%, about 3 s left" {
		t.Fatalf("message %q", msg)
	}
	if m := HostMessage(results.Host{Addresses: []string{"127.0.0.1"}, State: "up", Ports: []results.Port{{State: "open"}, {State: "open"}}}); m != "127.0.0.1: 2 open ports" {
		t.Fatalf("host message %q", m)
	}
}
