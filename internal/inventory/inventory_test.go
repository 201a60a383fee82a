package inventory

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// These tests need no engine: results are built in Go and ingested into a
// real store file (SQLite) in a temporary folder.

func newInv(t testing.TB, cfg Config) (*Inventory, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "scans.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	inv, err := New(context.Background(), st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return inv, st
}

func host(addr string, ports ...results.Port) results.Host {
	h := results.Host{Addresses: []string{addr}, State: "up", Ports: ports}
	h.Ports = append([]results.Port{}, ports...)
	return h
}

func tcp(port int, state, service, product, version string) results.Port {
	return results.Port{Protocol: "tcp", Port: port, State: state, Service: service, Product: product, Version: version}
}

func scan(id, client string, at time.Time, hosts ...results.Host) Scan {
	r := &results.Result{Hosts: hosts}
	r.Normalize()
	return Scan{ID: id, Client: client, At: at, Result: r}
}

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func mustIngest(t *testing.T, inv *Inventory, sc Scan) Ingested {
	t.Helper()
	got, err := inv.Ingest(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func kinds(c *Changes) string {
	var k []string
	for _, x := range c.Changes {
		k = append(k, x.Kind+":"+x.From+">"+x.To)
	}
	return strings.Join(k, " | ")
}

// TestLifecycle: a port opens, a banner's version changes, a port
// closes, and later goes; values a scan did not observe stay; every fact
// says which scan saw it and when.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t, Config{GoneAfter: 24 * time.Hour})
	ssh := tcp(22, "open", "ssh", "OpenSSH", "8.9p1 Ubuntu 3")
	ssh.CPE = []string{"cpe:/a:openbsd:openssh:8.9p1"}
	h := host("10.1.2.3", ssh)
	h.Hostnames = []string{"db.lab"}
	h.OS = []results.OSMatch{{Name: "Linux 5.x", Accuracy: 95}}
	if got := mustIngest(t, inv, scan("s1", "alice", t0, h)); got.NewHosts != 1 || got.Ports != 1 || got.Changes != 1 {
		t.Fatalf("first ingest %+v", got)
	}
	if again := mustIngest(t, inv, scan("s1", "alice", t0, h)); !again.Already {
		t.Fatalf("second ingest of s1 not skipped: %+v", again)
	}
	// s2: port 80 opens; ssh upgraded; no hostnames, no OS (not observed).
	h2 := host("10.1.2.3", tcp(22, "open", "ssh", "OpenSSH", "9.6p1"), tcp(80, "open", "http", "", ""))
	mustIngest(t, inv, scan("s2", "alice", t0.Add(time.Hour), h2))
	// s3: a scan without service detection: product and version stay.
	mustIngest(t, inv, scan("s3", "alice", t0.Add(2*time.Hour), host("10.1.2.3", tcp(22, "open", "ssh", "", ""), tcp(80, "closed", "http", "", ""))))

	f, err := inv.Find(ctx, Query{Client: "alice", Address: "10.1.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Total != 1 || len(f.Hosts) != 1 {
		t.Fatalf("find %+v", f)
	}
	got := f.Hosts[0]
	if got.Address != "10.1.2.3" || got.Hostnames[0] != "db.lab" || got.OS != "Linux 5.x" || got.LastScan != "s3" ||
		got.FirstSeen != t0.Format(time.RFC3339) || got.LastSeen != t0.Add(2*time.Hour).Format(time.RFC3339) {
		t.Fatalf("host %+v", got)
	}
	p22, p80 := got.Ports[0], got.Ports[1]
	if p22.Product != "OpenSSH" || p22.Version != "9.6p1" || len(p22.CPE) != 0 || p22.ProductChanged != t0.Add(time.Hour).Format(time.RFC3339) ||
		p22.LastScan != "s3" || p22.StateChanged != t0.Format(time.RFC3339) {
		t.Fatalf("port 22 %+v", p22)
	}
	if p80.State != "closed" || p80.StateChanged != t0.Add(2*time.Hour).Format(time.RFC3339) || p80.FirstSeen != t0.Add(time.Hour).Format(time.RFC3339) {
		t.Fatalf("port 80 %+v", p80)
	}
	// Version comparison, numeric-aware.
	for v, want := range map[string]int{"<9.0": 0, "<10": 1, ">=9.6": 1, "9.6": 1, "9": 1, "=9.6": 0, "=9.6p1": 1, ">9.10": 0} {
		f, err := inv.Find(ctx, Query{Client: "alice", Product: "openssh", Version: v})
		if err != nil {
			t.Fatal(err)
		}
		if f.Total != want {
			t.Errorf("version %q: %d hosts, want %d", v, f.Total, want)
		}
	}
	// Port 80 later goes: s4 lists only 22, two days on; a sweep marks 80 gone.
	mustIngest(t, inv, scan("s4", "alice", t0.Add(50*time.Hour), host("10.1.2.3", tcp(22, "open", "ssh", "", ""))))
	sw, err := inv.Sweep(ctx, t0.Add(51*time.Hour))
	if err != nil || sw.Ports != 1 || sw.Hosts != 0 {
		t.Fatalf("sweep %+v %v", sw, err)
	}
	if f, _ := inv.Find(ctx, Query{Client: "alice", Port: 80}); f.Total != 0 {
		t.Fatalf("gone port 80 still found: %+v", f)
	}
	if f, _ := inv.Find(ctx, Query{Client: "alice", Port: 80, Gone: GoneOnly}); f.Total != 1 || !f.Hosts[0].Ports[0].Gone {
		t.Fatalf("gone port 80 not found as gone: %+v", f)
	}
	ch, err := inv.Changes(ctx, ChangeQuery{Client: "alice", Address: "10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	want := "port_gone:closed>gone | state:open>closed | product:OpenSSH>OpenSSH"
	if !strings.HasPrefix(kinds(ch), "port_gone:closed>gone | state:open>closed | ") || !strings.Contains(kinds(ch), "version:8.9p1 Ubuntu 3>9.6p1") ||
		!strings.Contains(kinds(ch), "port_appeared:>80/tcp open http") || !strings.HasSuffix(kinds(ch), "host_appeared:>22/tcp open ssh OpenSSH 8.9p1 Ubuntu 3") {
		t.Fatalf("changes %s (want like %s)", kinds(ch), want)
	}
	if ch.Changes[0].Scan != "" || ch.Changes[1].Scan != "s3" {
		t.Fatalf("change scans %+v", ch.Changes[:2])
	}
	// A window: only what s2 changed.
	win, err := inv.Changes(ctx, ChangeQuery{Client: "alice", Since: t0.Add(30 * time.Minute), Until: t0.Add(90 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range win.Changes {
		if c.Scan != "s2" {
			t.Fatalf("window holds %+v", c)
		}
	}
	if win.Total != 3 { // port 80 appeared; version and CPE changed (product same)
		t.Fatalf("window: %d changes: %s", win.Total, kinds(win))
	}
	// The host goes after a day unseen, and comes back.
	if sw, _ := inv.Sweep(ctx, t0.Add(80*time.Hour)); sw.Hosts != 1 || sw.Ports != 1 {
		t.Fatalf("second sweep %+v", sw)
	}
	back := mustIngest(t, inv, scan("s5", "alice", t0.Add(90*time.Hour), host("10.1.2.3", tcp(22, "open", "ssh", "", ""))))
	if back.NewHosts != 1 {
		t.Fatalf("back %+v", back)
	}
	tl, err := inv.Host(ctx, "alice", "10.1.2.3")
	if err != nil || len(tl.Hosts) != 1 || tl.Hosts[0].Gone || tl.Hosts[0].Ports[0].Gone || !tl.Hosts[0].Ports[1].Gone {
		t.Fatalf("timeline %+v %v", tl, err)
	}
	if tl.Changes[0].Kind != PortAppeared || tl.Changes[1].Kind != HostAppeared || tl.Changes[1].From != "gone" {
		t.Fatalf("timeline changes %s", kinds(&Changes{Changes: tl.Changes}))
	}
}

// TestTenancy: each client sees only its own inventory; an admin (no
// client) sees both.
func TestTenancy(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t, Config{})
	mustIngest(t, inv, scan("a1", "alice", t0, host("10.0.0.1", tcp(3389, "open", "ms-wbt-server", "", ""))))
	mustIngest(t, inv, scan("b1", "bob", t0, host("10.0.0.1", tcp(22, "open", "ssh", "", "")), host("10.0.0.2", tcp(3389, "open", "ms-wbt-server", "", ""))))
	for _, c := range []struct {
		client string
		want   int
	}{{"alice", 1}, {"bob", 1}, {"carol", 0}, {"", 2}} {
		f, err := inv.Find(ctx, Query{Client: c.client, Port: 3389, State: "open"})
		if err != nil {
			t.Fatal(err)
		}
		if f.Total != c.want {
			t.Errorf("client %q: %d hosts with 3389, want %d", c.client, f.Total, c.want)
		}
		for _, h := range f.Hosts {
			if c.client != "" && h.Client != c.client {
				t.Errorf("client %q sees %+v", c.client, h)
			}
		}
	}
	if tl, _ := inv.Host(ctx, "alice", "10.0.0.2"); len(tl.Hosts) != 0 || len(tl.Changes) != 0 {
		t.Fatalf("alice sees bob's host: %+v", tl)
	}
	if ch, _ := inv.Changes(ctx, ChangeQuery{Client: "alice"}); ch.Total != 1 {
		t.Fatalf("alice's changes %s", kinds(ch))
	}
	if tl, _ := inv.Host(ctx, "", "10.0.0.1"); len(tl.Hosts) != 2 {
		t.Fatalf("admin timeline %+v", tl)
	}
}

// TestQueryErrors: bad filters name the field, the value and the rule.
func TestQueryErrors(t *testing.T) {
	inv, _ := newInv(t, Config{})
	for _, q := range []Query{{Address: "10.0.0.0/33"}, {Port: 70000}, {Protocol: "icmp"}, {State: "up"}, {Version: "<"}, {Gone: "maybe"}, {Limit: 5000}} {
		_, err := inv.Find(context.Background(), q)
		var fe *FieldError
		if err == nil || !asField(err, &fe) {
			t.Errorf("query %+v: error %v, want a FieldError", q, err)
		}
	}
}

func asField(err error, fe **FieldError) bool {
	e, ok := err.(*FieldError)
	*fe = e
	return ok
}

func TestVersionKey(t *testing.T) {
	order := []string{"1.0", "2.4.6", "2.4.10", "8.9p1 Ubuntu 3ubuntu0.10", "9", "9.0", "9.0p1", "9.2p1", "9.10", "10.0", "10.0.1"}
	for i := 1; i < len(order); i++ {
		if !(VersionKey(order[i-1]) < VersionKey(order[i])) {
			t.Errorf("%q !< %q (%q, %q)", order[i-1], order[i], VersionKey(order[i-1]), VersionKey(order[i]))
		}
	}
	cmps, _ := ParseVersionFilter(">=8.0,<9.0")
	if !Match("8.9p1", cmps) || Match("9.0", cmps) || Match("", cmps) {
		t.Fatal("range filter")
	}
}

func TestRange(t *testing.T) {
	lo, hi, ok, err := Range("10.1.0.0/16")
	if err != nil || !ok {
		t.Fatal(err)
	}
	in, _ := parseHost("10.1.255.255")
	out, _ := parseHost("10.2.0.0")
	if k := string(key(in)); k < string(lo) || k > string(hi) {
		t.Fatal("10.1.255.255 not in 10.1.0.0/16")
	}
	if k := string(key(out)); k >= string(lo) && k <= string(hi) {
		t.Fatal("10.2.0.0 in 10.1.0.0/16")
	}
	if _, _, _, err := Range("2001:db8::/32"); err != nil {
		t.Fatal(err)
	}
}

func TestBoundKeepsCharacters(t *testing.T) {
	s := strings.Repeat("é", 300) // 2 bytes each
	if got := bound(s, 511); !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("bound cut a character: %q", got[len(got)-8:])
	}
}

// A big ingest writes through a connection with a 64 MB cache and rare
// checkpoints; it checkpoints at its end and never gives that
// connection back to the pool. No engine needed.
func TestBigIngestCheckpointsAndDropsItsConnection(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t, Config{ChunkHosts: 256})
	hosts := make([]results.Host, bigIngest+100)
	for i := range hosts {
		hosts[i] = host(fmt.Sprintf("10.9.%d.%d", i/256, i%256), tcp(22, "open", "ssh", "OpenSSH", "8.9"), tcp(80, "open", "http", "", ""))
	}
	if _, err := inv.Ingest(ctx, scan("big", "c", t0, hosts...)); err != nil {
		t.Fatal(err)
	}
	var busy, logged, copied int
	if err := inv.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logged, &copied); err != nil {
		t.Fatal(err)
	}
	if busy != 0 || logged != copied {
		t.Errorf("after the ingest the log holds %d frames, %d copied (busy %d): want all copied", logged, copied, busy)
	}
	// Every connection the pool hands out has SQLite's defaults (more
	// than the pool keeps idle are taken at once).
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 4 {
		c, err := inv.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var cache, auto int
		if err := c.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&cache); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil {
			t.Fatal(err)
		}
		if cache != -2000 || auto != 1000 {
			t.Errorf("a pooled connection has cache_size %d, wal_autocheckpoint %d: want SQLite's -2000 and 1000", cache, auto)
		}
	}
}
