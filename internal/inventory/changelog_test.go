package inventory

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/owner"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// The change log is bounded: a host that changes its banner on every
// one of 300 ports at every scan (a tarpit) logs at most MaxHostChanges
// entries a scan and one changes_omitted entry counting the rest, while
// its inventory still takes every new value; entries older than
// ChangesKeep are deleted by the sweep, newer ones stay. No engine.
func TestChangeLogBounded(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t, Config{ChangesKeep: 48 * time.Hour})
	tarpit := func(version string) results.Host {
		ports := make([]results.Port, 300)
		for i := range ports {
			ports[i] = tcp(1000+i, "open", "http", "Tarpit", version)
		}
		return host("10.7.0.1", ports...)
	}
	mustIngest(t, inv, scan("s1", "c", t0, tarpit("1.0"), host("10.7.0.2", tcp(22, "open", "ssh", "OpenSSH", "8.9"))))
	got := mustIngest(t, inv, scan("s2", "c", t0.Add(time.Hour), tarpit("2.0"), host("10.7.0.2", tcp(22, "open", "ssh", "OpenSSH", "9.6"))))
	if got.Changes != 301 {
		t.Fatalf("changes found: %d, want 301 (300 versions of the tarpit, 1 of the other host)", got.Changes)
	}
	ch, err := inv.Changes(ctx, ChangeQuery{Client: "c", Address: "10.7.0.1", Since: t0.Add(time.Hour), Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Total != MaxHostChanges+1 {
		t.Fatalf("the tarpit's log for s2: %d entries, want %d (%d and one changes_omitted)", ch.Total, MaxHostChanges+1, MaxHostChanges)
	}
	omitted := 0
	for _, c := range ch.Changes {
		if c.Kind == ChangesOmitted {
			omitted++
			if !strings.HasPrefix(c.To, "200 more changes") || c.Scan != "s2" {
				t.Errorf("changes_omitted entry: %+v", c)
			}
		}
	}
	if omitted != 1 {
		t.Fatalf("%d changes_omitted entries, want 1: %s", omitted, kinds(ch))
	}
	// The other host's change is logged in full; the tarpit's values
	// are all the new ones.
	if other, err := inv.Changes(ctx, ChangeQuery{Client: "c", Address: "10.7.0.2", Since: t0.Add(time.Hour)}); err != nil || kinds(other) != "version:8.9>9.6" {
		t.Fatalf("the other host: %s %v", kinds(other), err)
	}
	if f, err := inv.Find(ctx, Query{Client: "c", Product: "Tarpit", Version: "=1.0"}); err != nil || f.Total != 0 {
		t.Fatalf("tarpit ports still at 1.0: %+v %v", f, err)
	}
	if f, err := inv.Find(ctx, Query{Client: "c", Product: "Tarpit", Version: "=2.0"}); err != nil || f.Total != 1 || f.Hosts[0].PortsOmitted != 300-MaxPortsPerHost {
		t.Fatalf("tarpit ports at 2.0: %+v %v", f, err)
	}

	// Two days after s1 (and a day after s2): s1's entries go, s2's stay.
	before, err := inv.Changes(ctx, ChangeQuery{Client: "c", Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := inv.Sweep(ctx, t0.Add(48*time.Hour+30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if sw.Changes != 2 || !strings.Contains(sw.String(), "2 change log entries older than inventory.changes_keep deleted") {
		t.Fatalf("sweep: %+v (%s), want s1's 2 host_appeared entries deleted", sw, sw)
	}
	after, err := inv.Changes(ctx, ChangeQuery{Client: "c", Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if after.Total != before.Total-2 {
		t.Fatalf("after the sweep %d entries, want %d", after.Total, before.Total-2)
	}
	for _, c := range after.Changes {
		if c.Scan == "s1" {
			t.Fatalf("an entry of s1 outlived changes_keep: %+v", c)
		}
	}
	// Kept for ever when ChangesKeep is 0.
	keep, _ := newInv(t, Config{})
	mustIngest(t, keep, scan("s1", "c", t0, host("10.7.0.2", tcp(22, "open", "ssh", "OpenSSH", "8.9"))))
	if sw, err := keep.Sweep(ctx, t0.Add(100*365*24*time.Hour)); err != nil || sw.Changes != 0 {
		t.Fatalf("sweep without changes_keep: %+v %v", sw, err)
	}
}

// The sweep deletes old entries in batches (sweepBatch a transaction),
// all of them. No engine.
func TestSweepDeletesOldChangesInBatches(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t, Config{ChangesKeep: time.Hour})
	n := sweepBatch + 10
	hosts := make([]results.Host, n)
	for i := range hosts {
		hosts[i] = host(fmt.Sprintf("10.8.%d.%d", i/256, i%256), tcp(22, "open", "ssh", "", ""))
	}
	mustIngest(t, inv, scan("s1", "c", t0, hosts...))
	sw, err := inv.Sweep(ctx, t0.Add(2*time.Hour))
	if err != nil || sw.Changes != int64(n) {
		t.Fatalf("sweep: %+v %v, want %d entries deleted", sw, err, n)
	}
}

// An inventory of schema version 5 (indexes with the client last, no
// inv_clients) migrates: its clients are listed, the indexes begin with
// the client, and every answer is the same. No engine.
func TestMigrationClientFirst(t *testing.T) {
	ctx := context.Background()
	inv, st := newInv(t, Config{})
	mustIngest(t, inv, scan("a1", "alice", t0, host("10.9.0.1", tcp(3389, "open", "ms-wbt-server", "", "")), host("10.9.0.2", tcp(22, "open", "ssh", "OpenSSH", "8.9"))))
	mustIngest(t, inv, scan("b1", "bob", t0, host("10.9.0.1", tcp(3389, "open", "ms-wbt-server", "", ""), tcp(22, "open", "ssh", "OpenSSH", "9.6"))))
	queries := []Query{{Client: "alice", Port: 3389}, {Client: "bob", Product: "openssh", Version: "<9.7"}, {Port: 3389}, {Service: "ssh"}, {Address: "10.9.0.0/24"}}
	answers := func(inv *Inventory) string {
		var out []string
		for _, q := range queries {
			f, err := inv.Find(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(f.Total))
			for _, h := range f.Hosts {
				out = append(out, h.Client+" "+h.Address+fmt.Sprint(len(h.Ports)))
			}
		}
		c, err := inv.Changes(ctx, ChangeQuery{})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(out, ";") + " changes " + kinds(c)
	}
	want := answers(inv)
	// Back to version 5's shape.
	for _, q := range []string{`DROP TABLE inv_clients`,
		`DROP INDEX inv_ports_port`, `DROP INDEX inv_ports_product`, `DROP INDEX inv_ports_service`, `DROP INDEX inv_changes_at`, `DROP INDEX inv_changes_addr`, `DROP INDEX inv_changes_time`,
		`CREATE INDEX inv_ports_port ON inv_ports(port, akey, state, gone_at, client)`,
		`CREATE INDEX inv_ports_product ON inv_ports(product COLLATE NOCASE, vkey, gone_at, client, akey)`,
		`CREATE INDEX inv_ports_service ON inv_ports(service, akey, state, gone_at, client)`,
		`CREATE INDEX inv_changes_at ON inv_changes(at, client, akey, port, kind)`,
		`CREATE INDEX inv_changes_addr ON inv_changes(akey, at, client, port, kind)`,
		`ALTER TABLE inv_scans DROP COLUMN owner_pid`, `ALTER TABLE inv_scans DROP COLUMN owner_host`,
		`UPDATE inventory_schema_version SET version = 5`} {
		if _, err := inv.db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	again, err := New(ctx, st, Config{})
	if err != nil {
		t.Fatal(err)
	}
	var clients string
	if err := again.db.QueryRow(`SELECT group_concat(client, ',') FROM (SELECT client FROM inv_clients ORDER BY client)`).Scan(&clients); err != nil || clients != "alice,bob" {
		t.Fatalf("inv_clients: %q %v", clients, err)
	}
	var sqls string
	if err := again.db.QueryRow(`SELECT group_concat(sql, ' | ') FROM sqlite_master WHERE type = 'index' AND name IN ('inv_ports_port', 'inv_ports_product', 'inv_ports_service', 'inv_changes_at', 'inv_changes_addr')`).Scan(&sqls); err != nil {
		t.Fatal(err)
	}
	if strings.Count(sqls, "(client, ") != 5 {
		t.Fatalf("indexes after the migration: %s", sqls)
	}
	if got := answers(again); got != want {
		t.Fatalf("answers after the migration:\n%s\nwant\n%s", got, want)
	}
}

// A client missing from inv_clients (an older nmap-mcp ingesting into the
// file after it was migrated) is listed again by the sweep, so that an
// administrator's queries see it. No engine.
func TestSweepListsEveryClient(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t, Config{})
	mustIngest(t, inv, scan("b1", "bob", t0, host("10.9.0.1", tcp(3389, "open", "ms-wbt-server", "", ""))))
	if _, err := inv.db.Exec(`DELETE FROM inv_clients`); err != nil {
		t.Fatal(err)
	}
	if f, err := inv.Find(ctx, Query{Port: 3389}); err != nil || f.Total != 0 {
		t.Fatalf("before the sweep: %+v %v (the test's premise)", f, err)
	}
	if _, err := inv.Sweep(ctx, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if f, err := inv.Find(ctx, Query{Port: 3389}); err != nil || f.Total != 1 {
		t.Fatalf("after the sweep: %+v %v", f, err)
	}
}

// An ingest not complete is done again by its own process or when that
// process is gone, but not beside another live process's ingest under way
// (a CLI command beside the server redid its big ingest). No engine.
func TestIncompleteIngestOfAnotherLiveProcessIsLeft(t *testing.T) {
	inv, _ := newInv(t, Config{})
	sc := scan("s1", "alice", t0, host("10.9.0.1", tcp(22, "open", "ssh", "", "")))
	// Another process began it: pid 1 lives on this host.
	if _, err := inv.db.Exec(`INSERT INTO inv_scans (scan_id, client, at, owner_pid, owner_host) VALUES ('s1', 'alice', 1, 1, ?)`, owner.Host()); err != nil {
		t.Fatal(err)
	}
	if got := mustIngest(t, inv, sc); !got.Already || got.Hosts != 0 {
		t.Fatalf("beside a live process's ingest: %+v, want left to it", got)
	}
	// That process is gone: done here.
	if _, err := inv.db.Exec(`UPDATE inv_scans SET owner_pid = ? WHERE scan_id = 's1'`, deadPID(t)); err != nil {
		t.Fatal(err)
	}
	if got := mustIngest(t, inv, sc); got.Already || got.Hosts != 1 {
		t.Fatalf("after its process died: %+v, want ingested", got)
	}
	if got := mustIngest(t, inv, sc); !got.Already {
		t.Fatalf("once complete: %+v, want already", got)
	}
}

// deadPID is the process id of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	return dead.ProcessState.Pid()
}
