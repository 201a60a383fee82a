package web

import (
	"fmt"
	"slices"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// chart is an inline SVG line of open ports over time for one target:
// drawn on the server, so the page needs no script for it.
type chart struct {
	Width, Height int
	Points        string // the polyline's "x,y x,y …"
	Dots          []dot
	Max           int
	From, To      time.Time
}

type dot struct {
	X, Y  int
	Label string
}

// openPortsChart charts the open ports of recs (newest first, as listed)
// in time order; nil when fewer than two scans finished.
func openPortsChart(recs []*store.Record) *chart {
	recs = slices.DeleteFunc(slices.Clone(recs), func(r *store.Record) bool { return r.Status != store.Done })
	if len(recs) < 2 {
		return nil
	}
	slices.Reverse(recs)
	c := &chart{Width: 600, Height: 120, From: recs[0].CreatedAt, To: recs[len(recs)-1].CreatedAt}
	for _, r := range recs {
		c.Max = max(c.Max, r.OpenPorts)
	}
	span := c.To.Sub(c.From)
	const pad = 10
	for i, r := range recs {
		x := pad
		if span > 0 {
			x += int(float64(c.Width-2*pad) * float64(r.CreatedAt.Sub(c.From)) / float64(span))
		} else {
			x += (c.Width - 2*pad) * i / (len(recs) - 1)
		}
		y := c.Height - pad
		if c.Max > 0 {
			y -= (c.Height - 2*pad) * r.OpenPorts / c.Max
		}
		if c.Points != "" {
			c.Points += " "
		}
		c.Points += fmt.Sprintf("%d,%d", x, y)
		c.Dots = append(c.Dots, dot{X: x, Y: y, Label: fmt.Sprintf("%s: %d open", r.CreatedAt.UTC().Format("2006-01-02 15:04"), r.OpenPorts)})
	}
	return c
}
