package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/audit"
)

// cmdAudit checks the audit trail's hash chain (verify), shows its latest
// records (tail) or starts a new file that continues the chain (rotate).
func cmdAudit(_ context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "Usage: nmap-mcp audit verify [--audit PATH]   check the hash chain (across rotated files)\n       nmap-mcp audit tail [--audit PATH] [-n N]  show the latest records\n       nmap-mcp audit rotate [--audit PATH]   start a new file that continues the chain\n"
	sub, fs, s, ok, err := subcommand("audit", usage, args, stderr)
	if !ok {
		return err
	}
	n := fs.Int("n", 20, "records to show (tail)")
	if err := fs.Parse(args[1:]); err != nil {
		return flagErr(err)
	}
	if err := s.parsed(); err != nil {
		return err
	}
	path, err := s.auditFile()
	if err != nil {
		return err
	}
	switch sub {
	case "verify":
		rep, err := audit.Verify(path)
		for _, n := range rep.Notes {
			fmt.Fprintf(stdout, "note: %s\n", n)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d records, chain intact up to its head checkpoint", path, rep.Records)
		if len(rep.Files) > 0 {
			fmt.Fprintf(stdout, ", through %d rotated files (oldest %s)", len(rep.Files), rep.Files[0])
		}
		fmt.Fprintln(stdout)
		return nil
	case "rotate":
		l, _, err := audit.Open(path)
		if err != nil {
			return err
		}
		defer l.Close()
		old, err := l.Rotate()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "moved the trail to %s; %s continues its chain (audit verify follows both)\n", old, path)
		return nil
	case "tail":
		recs, err := audit.Tail(path, *n)
		if err != nil {
			return err
		}
		head, known, err := audit.ReadHead(path)
		if err != nil {
			return err
		}
		for _, r := range recs {
			fmt.Fprintf(stdout, "%d %s %-11s scan %s client %s", r.Seq, r.Time.Local().Format(time.RFC3339), r.Event, r.ScanID, r.Client)
			if r.Targets != "" {
				fmt.Fprintf(stdout, " targets [%s]", r.Targets)
			}
			if r.Outcome != "" {
				fmt.Fprintf(stdout, " outcome %s", r.Outcome)
			}
			if known && r.Seq > head.Seq {
				// Past the head: a crash's, or someone else's (audit verify tells).
				fmt.Fprint(stdout, " [past the head checkpoint: not attested; run nmap-mcp audit verify]")
			}
			fmt.Fprintln(stdout)
		}
		return nil
	default:
		fmt.Fprintf(stderr, "nmap-mcp: unknown audit command %q\n%s", args[0], usage)
		return &exitCode{2}
	}
}
