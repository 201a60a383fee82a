package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/export"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/web"
)

func cmdScans(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = `Usage:
  nmap-mcp scans list [--target T] [--status S] [--since 24h] [--limit N]
  nmap-mcp scans show [--json|--xml|--html|--csv] ID
  nmap-mcp scans diff [--html|--csv|--json] ID_A ID_B
  nmap-mcp scans diff [--html|--csv|--json] --target T      (its latest two finished scans)

--xml is nmap's own XML, the format DefectDojo's "Nmap Scan" import reads.
`
	sub, fs, set, ok, err := subcommand("scans", usage, args, stderr)
	if !ok {
		return err
	}
	target := fs.String("target", "", "only scans that listed this target (list, diff)")
	status := fs.String("status", "", "only scans with this status (list)")
	since := fs.String("since", "", "only scans started since this RFC 3339 time or this long ago, e.g. 24h (list)")
	limit := fs.Int("limit", 20, "at most this many scans (list)")
	asJSON := fs.Bool("json", false, "print the full record as JSON (show)")
	asXML := fs.Bool("xml", false, "print nmap's raw XML (show)")
	asHTML := fs.Bool("html", false, "write a standalone HTML page, e.g. > report.html (show, diff)")
	asCSV := fs.Bool("csv", false, "print CSV: one row per port (show) or per change (diff)")
	fs.Usage = func() { fmt.Fprint(stderr, usage+"\nFlags:\n"); fs.PrintDefaults() }
	// Flags may come before or after the ids ("scans show ID --html").
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return flagErr(err)
	}
	if err := set.parsed(); err != nil {
		return err
	}
	st, err := set.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	// The history alone, no runner: the CLI reads the history file
	// directly, so whoever can read it sees every client's scans.
	svc := scans.New(scans.Config{}, scans.Deps{Store: st})
	ctx = scans.WithAdmin(ctx)
	switch sub {
	case "list":
		f := store.Filter{Target: *target, Status: *status, Limit: *limit}
		if *since != "" {
			t, err := store.ParseSince(*since, time.Now())
			if err != nil {
				return err
			}
			f.Since = t
		}
		recs, err := svc.List(ctx, f)
		if err != nil {
			return err
		}
		for _, r := range recs {
			up, open := r.HostsUp, r.OpenPorts
			fmt.Fprintf(stdout, "%s  %s  %-11s %-7s %5.1fs  %3d up %4d open  %s\n", r.ID, r.CreatedAt.Local().Format("2006-01-02 15:04:05"),
				r.Status, r.ScanType, r.Duration().Seconds(), up, open, r.Targets)
		}
		return nil
	case "show":
		if len(pos) != 1 {
			return fmt.Errorf("scans show takes one scan id")
		}
		id := pos[0]
		if *asXML {
			xml, err := svc.RawXML(ctx, id)
			if err != nil {
				return err
			}
			_, err = stdout.Write(xml)
			return err
		}
		snap, err := svc.Get(ctx, id)
		if err != nil {
			return err
		}
		rec := snap.Record
		if *asHTML {
			return web.Report(stdout, rec)
		}
		if *asCSV {
			return export.ScanCSV(stdout, rec.ID, rec.Result)
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rec)
		}
		text, _ := scans.RecordText(rec, 0)
		fmt.Fprint(stdout, text)
		return nil
	case "diff":
		var a, b string
		if len(pos) == 2 {
			a, b = pos[0], pos[1]
		} else if len(pos) != 0 {
			return fmt.Errorf("scans diff takes two scan ids, or --target")
		}
		ra, rb, err := svc.Pair(ctx, a, b, *target)
		if err != nil {
			return err
		}
		if *asHTML {
			return web.DiffReport(stdout, ra, rb)
		}
		switch {
		case *asCSV:
			return export.DiffCSV(stdout, ra.ID, rb.ID, results.Compare(ra.Result, rb.Result))
		case *asJSON:
			return export.DiffJSON(stdout, ra.ID, rb.ID, results.Compare(ra.Result, rb.Result))
		}
		fmt.Fprintf(stdout, "Changes from scan %s to scan %s:\n%s", ra.ID, rb.ID, results.DiffText(results.Compare(ra.Result, rb.Result)))
		return nil
	default:
		fmt.Fprintf(stderr, "nmap-mcp: unknown scans command %q\n%s", sub, usage)
		return &exitCode{2}
	}
}
