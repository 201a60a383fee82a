package scans

import (
	"fmt"
	"strings"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// DefaultTextCap bounds the result text, in bytes.
const DefaultTextCap = 16 << 10

// maxTextNotes bounds the notes shown in a result's text; the record
// keeps them all.
const maxTextNotes = 5

// RecordText is the text a model or a person reads for one scan: a header
// (status, command, sandbox), the compact result (one line per host, one per
// open port with service and version), and the error if any, within maxBytes
// (0: no cap). A cut text says so and points to scan://ID. cut reports
// whether it was cut.
func RecordText(rec *store.Record, maxBytes int) (text string, cut bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "Scan %s: %s", rec.ID, rec.Status)
	if rec.Status != store.Running {
		fmt.Fprintf(&b, " after %.2f s", rec.Duration().Seconds())
		if rec.Status == store.Done || rec.Status == store.Failed {
			fmt.Fprintf(&b, " (exit %d)", rec.ExitCode)
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Command: %s\n", strings.Join(rec.Argv, " "))
	fmt.Fprintf(&b, "Sandbox: image %s (%.19s); %s; timeout %d s\n", rec.ImageTag, rec.ImageID, rec.Limits.Profile, rec.Limits.TimeoutSeconds)
	if rec.Result != nil {
		if rec.Result.Partial && rec.Status != store.Running {
			b.WriteString("Partial result: the hosts below finished before the scan stopped.\n")
		}
		b.WriteString("\n")
		budget := 0
		if maxBytes > 0 {
			budget = max(maxBytes-b.Len()-1024, 512)
		}
		body, c := results.Text(rec.Result, budget, "scan://"+rec.ID)
		b.WriteString(body)
		cut = c
	} else if rec.Status != store.Running {
		b.WriteString("\n(no result: nmap printed no usable XML)\n")
	}
	if rec.Error != "" {
		msg := rec.Error
		if len(msg) > 900 {
			msg = msg[:897] + "..."
		}
		fmt.Fprintf(&b, "\nError: %s\n", msg)
	}
	for i, n := range rec.Notes {
		if i == maxTextNotes {
			fmt.Fprintf(&b, "Note: %d more notes in scan://%s\n", len(rec.Notes)-i, rec.ID)
			break
		}
		fmt.Fprintf(&b, "Note: %s\n", n)
	}
	if rec.RawXMLTruncated {
		fmt.Fprintf(&b, "The raw XML kept (scan://%s/xml) was cut at its size cap; the decoded result was read from nmap's whole output, within its own bounds.\n", rec.ID)
	}
	return b.String(), cut
}

// BriefText is the lean text a model reads for one scan: one header line
// (id, status, duration, a short sandbox summary), then the hosts and open
// ports, and what went wrong or was left out — what it needs to act on.
// The command, the full sandbox line and every field are in the
// structured result and in scan://ID.
func BriefText(rec *store.Record, maxBytes int) (text string, cut bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.ID, rec.Status)
	if rec.Status != store.Running && rec.Status != store.Queued {
		fmt.Fprintf(&b, ", %.2fs", rec.Duration().Seconds())
		if rec.ExitCode != 0 {
			fmt.Fprintf(&b, " (exit %d)", rec.ExitCode)
		}
	}
	if s := shortSandbox(rec.Limits.Profile); s != "" {
		b.WriteString("; " + s)
	}
	b.WriteString("\n")
	if rec.Result != nil {
		budget := 0
		if maxBytes > 0 {
			budget = max(maxBytes-b.Len()-1024, 512)
		}
		body, c := results.Lean(rec.Result, budget, "scan://"+rec.ID)
		b.WriteString(body)
		cut = c
	}
	if rec.Error != "" {
		msg := rec.Error
		if len(msg) > 600 {
			msg = msg[:597] + "..."
		}
		fmt.Fprintf(&b, "error: %s\n", msg)
	}
	if n := len(rec.Notes); n > 0 {
		fmt.Fprintf(&b, "note: %s", rec.Notes[0])
		if n > 1 {
			fmt.Fprintf(&b, " (and %d more notes in scan://%s)", n-1, rec.ID)
		}
		b.WriteString("\n")
	}
	if g := rec.Approval; g != nil && g.Approved() {
		fmt.Fprintf(&b, "approval: %s\n", g.String())
	}
	if rec.RawXMLTruncated {
		fmt.Fprintf(&b, "raw XML cut at its size cap (scan://%s/xml); the result above is complete within its bounds\n", rec.ID)
	}
	return b.String(), cut
}

// shortSandbox is the start of the sandbox profile: user, capabilities
// and network.
func shortSandbox(profile string) string {
	parts := strings.SplitN(profile, ", ", 4)
	return strings.Join(parts[:min(3, len(parts))], ", ")
}
