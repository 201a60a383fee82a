package results

import (
	"fmt"
	"sort"
	"strings"
)

// Diff is what changed from one result (Before) to another (After).
type Diff struct {
	HostsAppeared    []string      `json:"hosts_appeared" desc:"hosts up now, not before"`
	HostsDisappeared []string      `json:"hosts_disappeared" desc:"hosts up before, not now"`
	PortChanges      []PortChange  `json:"port_changes" desc:"port state changes"`
	ServiceChanges   []ServiceDiff `json:"service_changes" desc:"service, product or version changes"`
}

// PortChange is a port whose state changed, or that appeared in or
// vanished from the listing ("" for absent).
type PortChange struct {
	Host     string `json:"host" desc:"host"`
	Protocol string `json:"protocol" desc:"tcp or udp"`
	Port     int    `json:"port" desc:"port"`
	From     string `json:"from" desc:"state before (empty: not listed)"`
	To       string `json:"to" desc:"state now (empty: not listed)"`
}

// ServiceDiff is a change of service name, product or version on a port.
type ServiceDiff struct {
	Host     string `json:"host" desc:"host"`
	Protocol string `json:"protocol" desc:"tcp or udp"`
	Port     int    `json:"port" desc:"port"`
	Field    string `json:"field" desc:"service, product or version"`
	From     string `json:"from" desc:"before"`
	To       string `json:"to" desc:"now"`
}

// Empty reports whether nothing changed.
func (d Diff) Empty() bool {
	return len(d.HostsAppeared)+len(d.HostsDisappeared)+len(d.PortChanges)+len(d.ServiceChanges) == 0
}

type portKey struct {
	proto string
	port  int
}

// hostKey identifies a host by its first address (or name).
func hostKey(h Host) string {
	if len(h.Addresses) > 0 {
		return h.Addresses[0]
	}
	if len(h.Hostnames) > 0 {
		return h.Hostnames[0]
	}
	return ""
}

// Compare returns what changed from before to after. Only hosts that are
// up count as present. A port absent from one listing counts as in the
// state nmap folded the rest into (e.g. closed), or "" when unknown.
func Compare(before, after *Result) Diff {
	d := Diff{HostsAppeared: []string{}, HostsDisappeared: []string{}, PortChanges: []PortChange{}, ServiceChanges: []ServiceDiff{}}
	index := func(r *Result) map[string]Host {
		m := map[string]Host{}
		for _, h := range r.Hosts {
			if h.State == "up" {
				m[hostKey(h)] = h
			}
		}
		return m
	}
	b, a := index(before), index(after)
	for k := range a {
		if _, ok := b[k]; !ok {
			d.HostsAppeared = append(d.HostsAppeared, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d.HostsDisappeared = append(d.HostsDisappeared, k)
		}
	}
	for k, ha := range a {
		hb, ok := b[k]
		if !ok {
			continue
		}
		pb, pa := ports(hb), ports(ha)
		keys := map[portKey]bool{}
		for pk := range pb {
			keys[pk] = true
		}
		for pk := range pa {
			keys[pk] = true
		}
		for pk := range keys {
			x, inB := pb[pk]
			y, inA := pa[pk]
			from, to := defaultState(hb), defaultState(ha)
			if inB {
				from = x.State
			}
			if inA {
				to = y.State
			}
			if from != to {
				d.PortChanges = append(d.PortChanges, PortChange{Host: k, Protocol: pk.proto, Port: pk.port, From: from, To: to})
			}
			if inA && inB {
				for _, f := range [][3]string{{"service", x.Service, y.Service}, {"product", x.Product, y.Product}, {"version", x.Version, y.Version}} {
					if f[1] != f[2] {
						d.ServiceChanges = append(d.ServiceChanges, ServiceDiff{Host: k, Protocol: pk.proto, Port: pk.port, Field: f[0], From: f[1], To: f[2]})
					}
				}
			}
		}
	}
	sort.Strings(d.HostsAppeared)
	sort.Strings(d.HostsDisappeared)
	sort.Slice(d.PortChanges, func(i, j int) bool {
		x, y := d.PortChanges[i], d.PortChanges[j]
		return x.Host < y.Host || x.Host == y.Host && (x.Protocol < y.Protocol || x.Protocol == y.Protocol && x.Port < y.Port)
	})
	sort.Slice(d.ServiceChanges, func(i, j int) bool {
		x, y := d.ServiceChanges[i], d.ServiceChanges[j]
		return x.Host < y.Host || x.Host == y.Host && (x.Port < y.Port || x.Port == y.Port && x.Field < y.Field)
	})
	return d
}

func ports(h Host) map[portKey]Port {
	m := map[portKey]Port{}
	for _, p := range h.Ports {
		m[portKey{p.Protocol, p.Port}] = p
	}
	return m
}

// defaultState is the state of ports the host's listing folded away, when
// nmap folded them all into one state.
func defaultState(h Host) string {
	if len(h.OtherPorts) == 1 {
		return h.OtherPorts[0].State
	}
	return ""
}

// DiffText renders a diff in a few lines.
func DiffText(d Diff) string {
	if d.Empty() {
		return "no changes\n"
	}
	var b strings.Builder
	for _, h := range d.HostsAppeared {
		fmt.Fprintf(&b, "+ host %s appeared\n", h)
	}
	for _, h := range d.HostsDisappeared {
		fmt.Fprintf(&b, "- host %s disappeared\n", h)
	}
	for _, p := range d.PortChanges {
		fmt.Fprintf(&b, "~ %s %d/%s %s -> %s\n", p.Host, p.Port, p.Protocol, orNone(p.From), orNone(p.To))
	}
	for _, s := range d.ServiceChanges {
		fmt.Fprintf(&b, "~ %s %d/%s %s %q -> %q\n", s.Host, s.Port, s.Protocol, s.Field, s.From, s.To)
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(not listed)"
	}
	return s
}
