package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/export"
	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// cmdInventory reads the inventory of what past scans found: it catches
// up with the history first (every finished scan not yet ingested), then
// answers without scanning. Like "scans", it reads the history file
// directly, so whoever can read it sees every client's inventory;
// --client keeps one.
func cmdInventory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = `Usage:
  nmap-mcp inventory find [--address A|CIDR] [--port N] [--protocol tcp] [--state open] [--service S]
                          [--product P] [--version '<9.0'] [--seen-since 24h] [--changed-since 168h]
                          [--gone no|yes|any] [--client C] [--limit N] [--offset N] [--csv|--json]
  nmap-mcp inventory changes [--address A|CIDR] [--port N] [--since 24h] [--until T] [--kind K]
                          [--client C] [--limit N] [--offset N] [--csv|--json]
  nmap-mcp inventory host [--client C] ADDRESS      (its ports, gone ones too, and its change log, as JSON)
  nmap-mcp inventory sweep [--gone-after 30d|720h]  (mark gone now what was not seen for that long;
                                                    default: inventory.gone_after; at least an hour)
`
	sub, fs, set, ok, err := subcommand("inventory", usage, args, stderr)
	if !ok {
		return err
	}
	address := fs.String("address", "", "an IP address or a CIDR block (find, changes)")
	port := fs.Int("port", 0, "a port (find, changes)")
	protocol := fs.String("protocol", "", "tcp, udp or sctp (find)")
	state := fs.String("state", "", "port state as last seen: open, closed, filtered, ... (find)")
	service := fs.String("service", "", "nmap's service name, exact (find)")
	product := fs.String("product", "", "product, exact, any case (find)")
	version := fs.String("version", "", "version comparison: '<9.0', '>=8.0,<9.0', 9.2 (begins with), =9.2p1 (find)")
	seenSince := fs.String("seen-since", "", "seen by a scan since this RFC 3339 time or this long ago (find)")
	changedSince := fs.String("changed-since", "", "changed since this RFC 3339 time or this long ago (find)")
	gone := fs.String("gone", "", "no (default), yes or any (find)")
	since := fs.String("since", "24h", "changes from this RFC 3339 time or this long ago (changes)")
	until := fs.String("until", "", "changes before this RFC 3339 time or this long ago (changes)")
	kind := fs.String("kind", "", "only changes of this kind, e.g. port_appeared (changes)")
	client := fs.String("client", "", "only this client's inventory (default: every client's)")
	limit := fs.Int("limit", 50, fmt.Sprintf("at most this many hosts or changes (up to %d)", inventory.MaxLimit))
	offset := fs.Int("offset", 0, "skip this many first (paging)")
	asCSV := fs.Bool("csv", false, "print CSV (find, changes)")
	asJSON := fs.Bool("json", false, "print JSON (find, changes)")
	goneAfter := fs.String("gone-after", "", "not seen for this long is gone: days (30d) or a duration of at least an hour (sweep; default: inventory.gone_after)")
	fs.Usage = func() { fmt.Fprint(stderr, usage+"\nFlags:\n"); fs.PrintDefaults() }
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return flagErr(err)
	}
	if err := set.parsed(); err != nil {
		return err
	}
	if *asCSV && *asJSON {
		return fmt.Errorf("give --csv or --json, not both")
	}
	// The server's setting unless given; the same rule as the setting
	// (a slip such as --gone-after 1s marked the whole inventory gone).
	cfg := set.resolved.Inventory
	if *goneAfter != "" {
		d, err := inventory.ParseGoneAfter(*goneAfter)
		if err != nil {
			return fmt.Errorf("invalid --gone-after %w", err)
		}
		cfg.GoneAfter = d
	}
	when := func(flag, v string) (time.Time, error) {
		if v == "" {
			return time.Time{}, nil
		}
		t, err := store.ParseSince(v, time.Now())
		if err != nil {
			return time.Time{}, fmt.Errorf("--%s: %w", flag, err)
		}
		return t, nil
	}
	st, err := set.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	inv, err := inventory.New(ctx, st, cfg)
	if err != nil {
		return err
	}
	if n, err := inv.CatchUp(ctx, 0); err != nil {
		return err
	} else if n > 0 {
		fmt.Fprintf(stderr, "inventory: ingested %d finished scans\n", n)
	}
	switch sub {
	case "find":
		if len(pos) != 0 {
			return fmt.Errorf("inventory find takes flags only (e.g. --address %s)", pos[0])
		}
		q := inventory.Query{Client: *client, Address: *address, Port: *port, Protocol: *protocol, State: *state, Service: *service,
			Product: *product, Version: *version, Gone: *gone, Limit: *limit, Offset: *offset}
		if q.SeenSince, err = when("seen-since", *seenSince); err != nil {
			return err
		}
		if q.ChangedSince, err = when("changed-since", *changedSince); err != nil {
			return err
		}
		f, err := inv.Find(ctx, q)
		if err != nil {
			return err
		}
		switch {
		case *asCSV:
			return export.InventoryCSV(stdout, f)
		case *asJSON:
			return export.JSON(stdout, f)
		}
		_, err = io.WriteString(stdout, mcpserver.FoundText(f, 0))
		return err
	case "changes":
		if len(pos) != 0 {
			return fmt.Errorf("inventory changes takes flags only (e.g. --address %s)", pos[0])
		}
		q := inventory.ChangeQuery{Client: *client, Address: *address, Port: *port, Limit: *limit, Offset: *offset}
		if *kind != "" {
			q.Kinds = []string{*kind}
		}
		if q.Since, err = when("since", *since); err != nil {
			return err
		}
		if q.Until, err = when("until", *until); err != nil {
			return err
		}
		c, err := inv.Changes(ctx, q)
		if err != nil {
			return err
		}
		switch {
		case *asCSV:
			return export.ChangesCSV(stdout, c)
		case *asJSON:
			return export.JSON(stdout, c)
		}
		_, err = io.WriteString(stdout, mcpserver.ChangesText(c, 0))
		return err
	case "host":
		if len(pos) != 1 {
			return fmt.Errorf("inventory host takes one address")
		}
		tl, err := inv.Host(ctx, *client, pos[0])
		if err != nil {
			return err
		}
		if len(tl.Hosts) == 0 {
			return fmt.Errorf("no host %s in the inventory", pos[0])
		}
		return export.JSON(stdout, tl)
	case "sweep":
		sw, err := inv.Sweep(ctx, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s (not seen for %s)\n", sw, inv.GoneAfter())
		return nil
	default:
		return fmt.Errorf("unknown inventory command %q\n\n%s", sub, usage)
	}
}
