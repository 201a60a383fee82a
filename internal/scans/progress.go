package scans

import (
	"fmt"
	"strings"
	"sync"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// Progress bounds on the overall 0..100 scale: the queue and container
// start take the first points; nmap's tasks share the middle; 100 is the
// end of the call.
const (
	progressStarted = 2.0  // container started
	progressNmapEnd = 98.0 // nmap's tasks end here
)

type phase struct {
	names        []string // task-name prefixes nmap reports
	start, width float64
}

// Tracker maps nmap's per-task percentages onto one overall scale that
// never goes backwards, across nmap's successive tasks (host discovery,
// port scan, service scan, scripts) and repeated host groups.
type Tracker struct {
	mu     sync.Mutex
	phases []phase
	last   float64
}

// NewTracker lays out the phases the plan will go through.
func NewTracker(p *scanargs.Plan) *Tracker {
	type part struct {
		names  []string
		weight float64
	}
	discovery := part{[]string{"Ping Scan", "ARP Ping Scan", "Parallel DNS resolution", "System DNS resolution"}, 10}
	var parts []part
	switch {
	case p.Type == scanargs.Ping:
		discovery.weight = 100
		parts = []part{discovery}
	default:
		if !p.SkipHostDiscovery {
			parts = append(parts, discovery)
		}
		parts = append(parts, part{[]string{"Connect Scan", "SYN Stealth Scan", "UDP Scan"}, 70})
		if p.ServiceVersions {
			parts = append(parts, part{[]string{"Service scan"}, 25}, part{[]string{"NSE", "Script scan"}, 5})
		}
	}
	var total float64
	for _, pt := range parts {
		total += pt.weight
	}
	t := &Tracker{last: 0}
	at := progressStarted
	span := progressNmapEnd - progressStarted
	for _, pt := range parts {
		w := span * pt.weight / total
		t.phases = append(t.phases, phase{names: pt.names, start: at, width: w})
		at += w
	}
	return t
}

// Started moves the scale to the container start.
func (t *Tracker) Started() float64 { return t.raise(progressStarted) }

// Update maps one <taskprogress> to the overall scale and a message such
// as "SYN Stealth Scan 48%, about 3 s left".
func (t *Tracker) Update(p results.Progress) (float64, string) {
	overall := -1.0
	for _, ph := range t.phases {
		for _, n := range ph.names {
			if strings.HasPrefix(p.Task, n) {
				overall = ph.start + ph.width*min(max(p.Percent, 0), 100)/100
			}
		}
	}
	msg := fmt.Sprintf("%s %.0f%%", p.Task, p.Percent)
	if p.RemainingSeconds > 0 {
		msg += fmt.Sprintf(", about %d s left", p.RemainingSeconds)
	}
	if overall < 0 {
		return t.Current(), msg
	}
	return t.raise(overall), msg
}

// Current is the overall progress so far.
func (t *Tracker) Current() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

func (t *Tracker) raise(v float64) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v > t.last {
		t.last = v
	}
	return t.last
}

// HostMessage describes a finished host, e.g. "127.0.0.1: 2 open ports".
func HostMessage(h results.Host) string {
	if h.State != "up" {
		return fmt.Sprintf("%s: %s", h.Name(), h.State)
	}
	n := len(h.OpenPorts())
	unit := "ports"
	if n == 1 {
		unit = "port"
	}
	return fmt.Sprintf("%s: %d open %s", h.Name(), n, unit)
}
