package results

import (
	"fmt"
	"strings"
)

// Text renders the result compactly: one line per host, one indented line
// per open port with its service and version, and a closing summary. When
// the text would pass maxBytes (0: no cap) it is cut at a line boundary and
// ends with a line saying so and pointing to more, e.g. "scan://ID".
func Text(r *Result, maxBytes int, more string) (text string, cut bool) {
	return render(r, maxBytes, more, true)
}

// Lean is Text for a reader that has the scan's status and duration from
// elsewhere: the closing summary line appears only when it adds something
// (several hosts, a partial result, an nmap error, something left out).
func Lean(r *Result, maxBytes int, more string) (text string, cut bool) {
	return render(r, maxBytes, more, r.Stats.HostsTotal > 1 || len(r.Hosts) > 1 || r.Partial || r.Stats.Error != "" || r.Dropped.Any())
}

func render(r *Result, maxBytes int, more string, summary bool) (text string, cut bool) {
	var lines []string
	for _, h := range r.Hosts {
		lines = append(lines, hostLine(h))
		for _, p := range h.OpenPorts() {
			lines = append(lines, "  "+portLine(p))
			for _, s := range p.Scripts {
				lines = append(lines, "    "+scriptLine(s))
			}
		}
		for _, s := range h.Scripts {
			lines = append(lines, "  "+scriptLine(s))
		}
		if len(h.OS) > 0 {
			lines = append(lines, fmt.Sprintf("  OS: %s (%d%%)", quoted(h.OS[0].Name, 120), h.OS[0].Accuracy))
		}
	}
	if len(r.Skipped) > 0 {
		lines = append(lines, "skipped targets: "+strings.Join(r.Skipped, " "))
	}

	if summary {
		lines = append(lines, summaryLine(r))
	}

	var b strings.Builder
	for i, l := range lines {
		if maxBytes > 0 && b.Len()+len(l)+1 > maxBytes-200 && i < len(lines)-1 {
			fmt.Fprintf(&b, "[cut at %d KB: %d more lines not shown; the full result is %s]\n%s\n",
				maxBytes/1024, len(lines)-1-i, more, summaryLine(r))
			return b.String(), true
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String(), false
}

func hostLine(h Host) string {
	var counts []string
	open := len(h.OpenPorts())
	if len(h.Ports) > 0 || len(h.OtherPorts) > 0 {
		counts = append(counts, fmt.Sprintf("%d open", open))
		byState := map[string]int{}
		var order []string
		add := func(state string, n int) {
			if _, ok := byState[state]; !ok {
				order = append(order, state)
			}
			byState[state] += n
		}
		for _, p := range h.Ports {
			if p.State != "open" && p.State != "open|filtered" {
				add(p.State, 1)
			}
		}
		for _, e := range h.OtherPorts {
			add(e.State, e.Count)
		}
		for _, s := range order {
			counts = append(counts, fmt.Sprintf("%d %s", byState[s], s))
		}
	}
	line := h.Name() + " " + h.State
	if h.State != "up" && h.Reason != "" {
		line += " (" + h.Reason + ")"
	}
	if len(counts) > 0 {
		line += ": " + strings.Join(counts, ", ")
	}
	return line
}

// portLine names the port and its service; what the remote service said
// of itself (product, version, extra info) is quoted as data.
func portLine(p Port) string {
	parts := []string{fmt.Sprintf("%d/%s %s", p.Port, p.Protocol, p.State)}
	if p.Service != "" {
		parts = append(parts, bounded(p.Service, 40))
	}
	if v := strings.TrimSpace(strings.Join([]string{p.Product, p.Version}, " ")); v != "" {
		parts = append(parts, quoted(v, 120))
	}
	if p.ExtraInfo != "" {
		parts = append(parts, "("+quoted(p.ExtraInfo, 120)+")")
	}
	return strings.Join(parts, " ")
}

// scriptLine shows an NSE output, from the scanned machine, quoted.
func scriptLine(s Script) string {
	return "| " + bounded(s.ID, 64) + ": " + quoted(s.Output, 200)
}

// bounded is a remote name on one line, at most n bytes, unquoted: for
// names that are words (service names, hostnames, script ids).
func bounded(s string, n int) string {
	s = strings.Join(strings.Fields(clean(s, false)), "_")
	if len(s) > n {
		return s[:n]
	}
	return s
}

func summaryLine(r *Result) string {
	s := fmt.Sprintf("%d %s up, %d down, %.2f s", r.Stats.HostsUp, plural(r.Stats.HostsUp, "host", "hosts"), r.Stats.HostsDown, r.Stats.ElapsedSeconds)
	if r.Partial {
		s = fmt.Sprintf("partial result: %d hosts finished before the scan stopped", len(r.Hosts))
	}
	if r.Stats.Error != "" {
		s += "; nmap error: " + r.Stats.Error
	}
	if r.Dropped.Any() {
		s += "; not kept (over the result's size bounds): " + r.Dropped.String()
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
