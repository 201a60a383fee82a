package scanner

import (
	"fmt"
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
			fmt.Fprintf(&b, "Output cut: %d further bytes of nmap output were not kept.\n", res.DroppedStdout)
		}
		if se := strings.TrimSpace(string(res.Stderr)); se != "" && r.Outcome() == "completed" {
			fmt.Fprintf(&b, "nmap stderr: %s\n", se)
		}
	}
	return b.String()
}

// Text is the whole result text: header, nmap's normal output, footer.
func (r *Report) Text() string {
	var b strings.Builder
	b.WriteString(r.Header())
	b.WriteString("\n")
	if r.Result != nil && len(r.Result.Stdout) > 0 {
		b.Write(r.Result.Stdout)
		if r.Result.Stdout[len(r.Result.Stdout)-1] != '\n' {
			b.WriteString("\n")
		}
	} else {
		b.WriteString("(nmap printed nothing)\n")
	}
	b.WriteString("\n")
	b.WriteString(r.Footer())
	return b.String()
}

func plural(n uint64) string {
	if n == 1 {
		return ""
	}
	return "es"
}
