// Package results decodes nmap's XML output (-oX -) incrementally, element
// by element, into a compact typed result; renders that result as short text
// for models that read only text; and compares two results.
//
// Why not the typed model of github.com/Ullaakut/nmap/v3: it is decoded
// through encoding/xml, which reached about 8,000 hosts/s here (raw tokens
// alone, 13,000) against a target of 50,000. This package tokenizes with
// github.com/orisano/gosax and fills its own model directly (about 55,000
// hosts/s, flat memory; see BenchmarkDecode). Its Result is also smaller
// than nmap's full model: it carries what a reader acts on, its arrays are
// never null, and its JSON schema (Schema) has no $ref and no boolean
// subschemas, which LM Studio and the TypeScript SDK require.
package results

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Result is one scan's decoded outcome.
type Result struct {
	// NmapVersion and Args come from the <nmaprun> element.
	NmapVersion string `json:"nmap_version"`
	Args        string `json:"args"`
	Hosts       []Host `json:"hosts"`
	Stats       Stats  `json:"stats"`
	// Partial is true when the XML ended before </nmaprun>: the scan was
	// cut short (timed out, cancelled, failed) and Hosts holds those that
	// finished.
	Partial bool `json:"partial"`
	// Skipped lists targets nmap could not use (e.g. unresolvable names).
	Skipped []string `json:"skipped"`
	// Dropped counts what the result's bounds left out (see Limits).
	Dropped Dropped `json:"dropped"`
}

// Dropped counts hosts, ports and NSE output bytes a result left out to
// stay within its bounds.
type Dropped struct {
	Hosts       int `json:"hosts"`
	Ports       int `json:"ports"`
	ScriptBytes int `json:"script_bytes"`
}

// Any reports whether anything was left out.
func (d Dropped) Any() bool { return d.Hosts+d.Ports+d.ScriptBytes > 0 }

// String says what was left out, e.g. "2 hosts, 10 ports".
func (d Dropped) String() string {
	var parts []string
	if d.Hosts > 0 {
		parts = append(parts, fmt.Sprintf("%d hosts", d.Hosts))
	}
	if d.Ports > 0 {
		parts = append(parts, fmt.Sprintf("%d ports", d.Ports))
	}
	if d.ScriptBytes > 0 {
		parts = append(parts, fmt.Sprintf("%d bytes of NSE output", d.ScriptBytes))
	}
	return strings.Join(parts, ", ")
}

// Host is one scanned host.
type Host struct {
	Addresses []string `json:"addresses"`
	Hostnames []string `json:"hostnames"`
	State     string   `json:"state"`  // up, down, unknown
	Reason    string   `json:"reason"` // e.g. syn-ack, conn-refused, no-response
	Ports     []Port   `json:"ports"`
	// OtherPorts summarises ports nmap folded into <extraports>,
	// e.g. {"state": "closed", "count": 97}.
	OtherPorts []PortCount `json:"other_ports"`
	OS         []OSMatch   `json:"os"`
	Scripts    []Script    `json:"scripts"`
}

// Port is one reported port.
type Port struct {
	Protocol  string   `json:"protocol"`
	Port      int      `json:"port"`
	State     string   `json:"state"`
	Reason    string   `json:"reason"`
	Service   string   `json:"service"`
	Product   string   `json:"product"`
	Version   string   `json:"version"`
	ExtraInfo string   `json:"extra_info"`
	Scripts   []Script `json:"scripts"`
}

// PortCount is a number of ports in one state that nmap did not list.
type PortCount struct {
	State string `json:"state"`
	Count int    `json:"count"`
}

// OSMatch is one OS detection guess.
type OSMatch struct {
	Name     string `json:"name"`
	Accuracy int    `json:"accuracy"`
}

// Script is the output of one NSE script.
type Script struct {
	ID     string `json:"id"`
	Output string `json:"output"`
}

// Stats are the run statistics from <runstats>.
type Stats struct {
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	HostsUp        int     `json:"hosts_up"`
	HostsDown      int     `json:"hosts_down"`
	HostsTotal     int     `json:"hosts_total"`
	Exit           string  `json:"exit"` // "success" or "error"; empty when partial
	Error          string  `json:"error"`
	Summary        string  `json:"summary"`
}

// Progress is one <taskprogress> report.
type Progress struct {
	Task             string  `json:"task"`
	Percent          float64 `json:"percent"`
	RemainingSeconds int     `json:"remaining_seconds"`
}

// OpenPorts returns the host's ports in state open (or open|filtered).
func (h Host) OpenPorts() []Port {
	var out []Port
	for _, p := range h.Ports {
		if p.State == "open" || p.State == "open|filtered" {
			out = append(out, p)
		}
	}
	return out
}

// Name is the host's first address, with its first hostname if any.
func (h Host) Name() string {
	name := ""
	if len(h.Addresses) > 0 {
		name = h.Addresses[0]
	}
	if len(h.Hostnames) > 0 {
		if name == "" {
			return h.Hostnames[0]
		}
		return name + " (" + h.Hostnames[0] + ")"
	}
	return name
}

// Normalize replaces nil slices with empty ones, so JSON never has null
// where the schema says array. It writes nothing when there is nothing to
// replace, so it is safe on results that are already normal.
func (r *Result) Normalize() {
	fill(&r.Hosts)
	fill(&r.Skipped)
	for i := range r.Hosts {
		r.Hosts[i].normalize()
	}
}

func (h *Host) normalize() {
	fill(&h.Addresses)
	fill(&h.Hostnames)
	fill(&h.Ports)
	fill(&h.OtherPorts)
	fill(&h.OS)
	fill(&h.Scripts)
	for j := range h.Ports {
		fill(&h.Ports[j].Scripts)
	}
}

func fill[T any](s *[]T) {
	if *s == nil {
		*s = []T{}
	}
}

// OpenPortCount is the number of open ports over all hosts.
func (r *Result) OpenPortCount() int {
	n := 0
	for _, h := range r.Hosts {
		n += len(h.OpenPorts())
	}
	return n
}

// FromJSON decodes a Result from JSON, with no nil slices.
func FromJSON(b []byte) (Result, error) {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return Result{}, fmt.Errorf("decode result JSON: %w", err)
	}
	r.Normalize()
	return r, nil
}
