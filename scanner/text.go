package scanner

import (
	"fmt"
	"github.com/nmap-mcp/nmap-mcp/results"
	"strings"
)

// Header is the part of the result text known before the scan runs: the
// executed command, the sandbox and the targets, as the original showed.
func (r *Report) Header() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Scan %s\n", r.ID)
	fmt.Fprintf(&b, "Command: %s\n", strings.Join(r.Argv, " "))
	fmt.Fprintf(&b, "Targets: %s (%d address%s)\n", r.Plan.TargetList(), r.Plan.Addresses, plural(r.Plan.Addresses))
	fmt.Fprintf(&b, "Sandbox: image %s (%.19s); %s; timeout %d s\n", r.Image.Tag, r.Image.ID, r.Sandbox, int(r.Plan.Timeout.Seconds()))
	return b.String()
}

// Footer says how the scan ended, with the error and stderr when it failed.
func (r *Report) Footer() string {
	var b strings.Builder
	dur := r.Ended.Sub(r.Started).Seconds()
	switch r.Outcome() {
	case "completed":
		fmt.Fprintf(&b, "Outcome: completed in %.2f s (exit 0)\n", dur)
	case "timed out", "cancelled":
		fmt.Fprintf(&b, "Outcome: %s after %.2f s: %v\nThe output above is partial: it is what nmap printed before the container was killed.\n", r.Outcome(), dur, r.Err)
	default:
		fmt.Fprintf(&b, "Outcome: failed after %.2f s: %v\n", dur, r.Err)
	}
	if res := r.Result; res != nil {
		if res.DroppedStdout > 0 {
			fmt.Fprintf(&b, "Raw XML cut: %d further bytes were decoded but not kept.\n", res.DroppedStdout)
		}
		if se := strings.TrimSpace(string(res.Stderr)); se != "" && r.Outcome() == "completed" {
			fmt.Fprintf(&b, "nmap warnings: %s\n", clipText(se, 512))
		}
	}
	return b.String()
}

// DefaultTextCap bounds the result text, in bytes.
const DefaultTextCap = 16 << 10

// Text is the whole result text: header, the compact result (one line per
// host, one per open port), and footer, within maxBytes (0: no cap). more
// names where the full result is, for the cut notice. cut reports whether
// the text was cut.
func (r *Report) Text(maxBytes int, more string) (text string, cut bool) {
	var b strings.Builder
	b.WriteString(r.Header())
	b.WriteString("\n")
	if r.Parsed != nil && (len(r.Parsed.Hosts) > 0 || r.DecodeErr == nil) {
		body, c := results.Text(r.Parsed, maxBytes-b.Len()-512, more)
		b.WriteString(body)
		cut = c
	} else {
		b.WriteString("(no result: nmap printed no usable XML)\n")
	}
	b.WriteString("\n")
	b.WriteString(r.Footer())
	if r.Err != nil && r.Result != nil {
		if se := strings.TrimSpace(string(r.Result.Stderr)); se != "" && !strings.Contains(r.Footer(), se) {
			if len(se) > 1024 {
				se = se[len(se)-1024:]
			}
			fmt.Fprintf(&b, "nmap stderr (last lines):\n%s\n", se)
		}
	}
	return b.String(), cut
}

func plural(n uint64) string {
	if n == 1 {
		return ""
	}
	return "es"
}

func clipText(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}
