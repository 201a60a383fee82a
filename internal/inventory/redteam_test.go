package inventory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Red-team regression tests (no engine: results are built in Go and
// ingested into a store file in a temporary folder).

// tarpit is a host that answers on ports 1..n (a tarpit, or a firewall
// that accepts every SYN).
func tarpit(addr string, n int) results.Host {
	ports := make([]results.Port, 0, n)
	for p := 1; p <= n; p++ {
		ports = append(ports, tcp(p, "open", "unknown", "", ""))
	}
	return host(addr, ports...)
}

// TestTarpitPortsBounded: hosts that answer on thousands of ports do not
// put all of them in an answer. A port filter (state=open) listed every
// matching port of every host of the page: 20 tarpits of 1,500 ports made
// one find_hosts answer of 30,000 ports (a page of 200 hosts of 10,000
// ports each, the decoder's per-scan bound, 2,000,000), and a host's
// timeline listed every port it ever had (65,535 per protocol: 20 MB of
// JSON for one host:// read).
func TestTarpitPortsBounded(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t, Config{})
	var hosts []results.Host
	for i := range 20 {
		hosts = append(hosts, tarpit(fmt.Sprintf("10.9.0.%d", i+1), MaxTimelinePorts+500))
	}
	mustIngest(t, inv, scan("s1", "alice", t0, hosts...))
	for _, q := range []Query{{Client: "alice"}, {Client: "alice", State: "open"}, {Client: "alice", Protocol: "tcp", Address: "10.9.0.0/24"}} {
		f, err := inv.Find(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Hosts) != 20 {
			t.Fatalf("%+v: %d hosts", q, len(f.Hosts))
		}
		for _, h := range f.Hosts {
			if len(h.Ports) != MaxPortsPerHost || h.PortsOmitted != MaxTimelinePorts+500-MaxPortsPerHost {
				t.Fatalf("%+v: host %s lists %d ports, %d omitted; want %d and %d", q, h.Address, len(h.Ports), h.PortsOmitted,
					MaxPortsPerHost, MaxTimelinePorts+500-MaxPortsPerHost)
			}
		}
	}
	tl, err := inv.Host(ctx, "alice", "10.9.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Hosts) != 1 || len(tl.Hosts[0].Ports) != MaxTimelinePorts || tl.Hosts[0].PortsOmitted != 500 {
		t.Fatalf("timeline lists %d ports, %d omitted; want %d and 500", len(tl.Hosts[0].Ports), tl.Hosts[0].PortsOmitted, MaxTimelinePorts)
	}
}

// TestQueryTextBounded: a version filter of 2,000 comparisons (the web
// form and the CLI pass any length) reached SQLite as 2,000 conditions,
// whose "Expression tree is too large" error named the store's file to
// the caller; long text fields are refused the same way, naming the
// field, the rule and a shortened value, and so are too many comparisons.
func TestQueryTextBounded(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t, Config{})
	mustIngest(t, inv, scan("s1", "alice", t0, host("10.1.0.5", tcp(22, "open", "ssh", "OpenSSH", "8.9p1"))))
	long := strings.Repeat("<1,", 2000) + "<1"
	for _, c := range []struct {
		q     Query
		field string
	}{
		{Query{Client: "alice", Version: long}, "version"},
		{Query{Client: "alice", Version: strings.Repeat("<9,", MaxVersionComparisons) + "<9"}, "version"},
		{Query{Client: "alice", Product: strings.Repeat("x", MaxProductLen+1)}, "product"},
		{Query{Client: "alice", Service: strings.Repeat("x", MaxServiceLen+1)}, "service"},
		{Query{Client: "alice", Address: strings.Repeat("1", 100000)}, "address"},
	} {
		_, err := inv.Find(ctx, c.q)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || strings.Contains(err.Error(), "scans.db") || len(err.Error()) > 300 {
			t.Errorf("%s of %d bytes: %v (want a short FieldError naming %s)", c.field, len(c.q.Version+c.q.Product+c.q.Service+c.q.Address), err, c.field)
		}
	}
	if _, err := inv.Changes(ctx, ChangeQuery{Address: strings.Repeat("1", 100000)}); err == nil || len(err.Error()) > 300 {
		t.Errorf("changes, long address: %.300v", err)
	}
	if _, err := inv.Host(ctx, "alice", strings.Repeat("1", 100000)); err == nil || len(err.Error()) > 300 {
		t.Errorf("host, long address: %.300v", err)
	}
	f, err := inv.Find(ctx, Query{Client: "alice", Version: ">=8.0,<9.0,!=8.5"})
	if err != nil || len(f.Hosts) != 1 {
		t.Fatalf("three comparisons: %v", err)
	}
}

// TestInterruptedIngestResumes: an ingest is cut into transactions of
// ChunkHosts hosts; one stopped after its first chunk committed (the
// request whose catch-up ran it was cancelled, the server stopped, the
// disk filled) left the scan marked ingested, and its other hosts were
// never ingested: the next catch-up skipped it as done. The second chunk
// is made to fail here by a trigger; once it is gone, catching up again
// ingests the rest, without logging the first chunk's hosts twice.
func TestInterruptedIngestResumes(t *testing.T) {
	ctx := context.Background()
	inv, st := newInv(t, Config{ChunkHosts: 2})
	at := time.Now().Add(-time.Hour).UTC()
	r := &store.Record{ID: "big", Client: "alice", Targets: "10.0.0.0/29", ScanType: "connect", CreatedAt: at, StartedAt: at}
	if err := st.Begin(ctx, r); err != nil {
		t.Fatal(err)
	}
	res := &results.Result{}
	for i := 1; i <= 5; i++ {
		res.Hosts = append(res.Hosts, host(fmt.Sprintf("10.0.0.%d", i), tcp(22, "open", "ssh", "", "")))
	}
	res.Normalize()
	r.Status, r.Result, r.EndedAt = store.Done, res, at.Add(time.Second)
	if err := st.Finish(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.db.ExecContext(ctx, `CREATE TRIGGER fail_third BEFORE INSERT ON inv_hosts WHEN NEW.addr = '10.0.0.3'
		BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.CatchUp(ctx, 0); err == nil {
		t.Fatal("the ingest did not fail")
	}
	if _, err := inv.db.ExecContext(ctx, `DROP TRIGGER fail_third`); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.CatchUp(ctx, 0); err != nil {
		t.Fatal(err)
	}
	f, err := inv.Find(ctx, Query{Client: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Total != 5 {
		t.Fatalf("%d hosts of the scan's 5 in the inventory after catching up again", f.Total)
	}
	c, err := inv.Changes(ctx, ChangeQuery{Client: "alice", Kinds: []string{HostAppeared}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Total != 5 {
		t.Fatalf("%d host_appeared entries, want 5: %s", c.Total, kinds(c))
	}
	var complete int
	if err := inv.db.QueryRowContext(ctx, `SELECT complete FROM inv_scans WHERE scan_id = 'big'`).Scan(&complete); err != nil || complete != 1 {
		t.Fatalf("scan marked complete %d (%v)", complete, err)
	}
}
