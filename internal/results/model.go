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
// never null, and its fields carry the descriptions (desc tags) from which
// the MCP layer derives its JSON schema.
package results

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Result is one scan's decoded outcome.
type Result struct {
	// NmapVersion and Args come from the <nmaprun> element.
	NmapVersion string `json:"nmap_version" desc:"nmap version"`
	Args        string `json:"args" desc:"nmap command line"`
	Hosts       []Host `json:"hosts" desc:"hosts in the order nmap finished them"`
	Stats       Stats  `json:"stats" desc:"run statistics"`
	// Partial is true when the XML ended before </nmaprun>: the scan was
	// cut short (timed out, cancelled, failed) and Hosts holds those that
	// finished.
	Partial bool `json:"partial" desc:"true when the scan stopped early; hosts holds those that finished"`
	// Skipped lists targets nmap could not use (e.g. unresolvable names).
	Skipped []string `json:"skipped" desc:"targets nmap skipped"`
	// Dropped counts what the result's bounds left out (see Limits).
	Dropped Dropped `json:"dropped" desc:"what the result's size bounds left out; all zero when the result is complete"`
}

// Dropped counts hosts, ports and NSE output bytes a result left out to
// stay within its bounds.
type Dropped struct {
	Hosts       int `json:"hosts" desc:"hosts left out of the result (over the per-scan bound)"`
	Ports       int `json:"ports" desc:"listed ports left out of the result (over the per-scan bound)"`
	ScriptBytes int `json:"script_bytes" desc:"bytes of NSE output left out"`
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
	Addresses []string `json:"addresses" desc:"IP addresses"`
	Hostnames []string `json:"hostnames" desc:"host names"`
	State     string   `json:"state" desc:"up, down or unknown"`
	Reason    string   `json:"reason" desc:"why nmap decided the state, e.g. syn-ack"`
	Ports     []Port   `json:"ports" desc:"ports nmap listed"`
	// OtherPorts summarises ports nmap folded into <extraports>,
	// e.g. {"state": "closed", "count": 97}.
	OtherPorts []PortCount `json:"other_ports" desc:"ports folded into counts"`
	OS         []OSMatch   `json:"os" desc:"OS detection guesses"`
	Scripts    []Script    `json:"scripts" desc:"host-level NSE output"`
}

// Port is one reported port.
type Port struct {
	Protocol  string `json:"protocol" desc:"tcp or udp"`
	Port      int    `json:"port" desc:"port number"`
	State     string `json:"state" desc:"open, closed, filtered, open|filtered, ..."`
	Reason    string `json:"reason" desc:"why nmap decided the state, e.g. syn-ack"`
	Service   string `json:"service" desc:"service name, e.g. ssh"`
	Product   string `json:"product" desc:"product, e.g. OpenSSH"`
	Version   string `json:"version" desc:"version, e.g. 9.2p1"`
	ExtraInfo string `json:"extra_info" desc:"extra service detail"`
	// CPE lists the CPE names nmap's service detection matched.
	CPE     []string `json:"cpe" desc:"CPE names of the service, e.g. cpe:/a:openbsd:openssh:9.2p1"`
	Scripts []Script `json:"scripts" desc:"NSE output for this port"`
}

// PortCount is a number of ports in one state that nmap did not list.
type PortCount struct {
	State string `json:"state" desc:"state"`
	Count int    `json:"count" desc:"how many"`
}

// OSMatch is one OS detection guess.
type OSMatch struct {
	Name     string `json:"name" desc:"OS name"`
	Accuracy int    `json:"accuracy" desc:"percent"`
}

// Script is the output of one NSE script.
type Script struct {
	ID     string `json:"id" desc:"NSE script name"`
	Output string `json:"output" desc:"script output"`
}

// Stats are the run statistics from <runstats>.
type Stats struct {
	ElapsedSeconds float64 `json:"elapsed_seconds" desc:"scan time"`
	HostsUp        int     `json:"hosts_up" desc:"hosts up"`
	HostsDown      int     `json:"hosts_down" desc:"hosts down"`
	HostsTotal     int     `json:"hosts_total" desc:"hosts scanned"`
	Exit           string  `json:"exit" desc:"success or error; empty when partial"`
	Error          string  `json:"error" desc:"nmap's error message"`
	Summary        string  `json:"summary" desc:"nmap's summary line"`
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

// Name is the host's first address, with its first hostname if any
// (bounded and on one line: a reverse-DNS name comes from the network).
func (h Host) Name() string {
	name := ""
	if len(h.Addresses) > 0 {
		name = h.Addresses[0]
	}
	if len(h.Hostnames) > 0 {
		hn := bounded(h.Hostnames[0], 253)
		if name == "" {
			return hn
		}
		return name + " (" + hn + ")"
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
		fill(&h.Ports[j].CPE)
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
