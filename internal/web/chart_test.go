package web

import (
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// The chart draws finished scans oldest first, scaled to the most open
// ports; fewer than two finished scans draw nothing.
func TestOpenPortsChart(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	recs := []*store.Record{ // newest first, as List returns them
		{ID: "c", Status: store.Done, CreatedAt: t0.Add(2 * time.Hour), OpenPorts: 4},
		{ID: "x", Status: store.Failed, CreatedAt: t0.Add(90 * time.Minute), OpenPorts: 0},
		{ID: "b", Status: store.Done, CreatedAt: t0.Add(time.Hour), OpenPorts: 2},
		{ID: "a", Status: store.Done, CreatedAt: t0, OpenPorts: 0},
	}
	c := openPortsChart(recs)
	if c == nil || c.Max != 4 || len(c.Dots) != 3 || c.Points != "10,110 300,60 590,10" || !strings.Contains(c.Dots[2].Label, "4 open") {
		t.Fatalf("%+v", c)
	}
	if openPortsChart(recs[:1]) != nil {
		t.Error("one scan drew a chart")
	}
}
