package inventory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// BenchmarkScale1M builds the scale in one store file: 1,000,000
// finished scans in the history (one host, three ports and 2 KB of raw
// XML each, as BenchmarkHistoryScale's generator writes them; imported,
// not run) and an inventory of 100,000 hosts × 20 ports built through
// Ingest (two scans of 50,000 hosts), the inventory's follower placed at
// the history's end as if it had followed it. It reports the file's size
// per scan, list_scans with a target filter, and the inventory queries at
// that size. No engine.
//
//	go test -short -run '^$' -bench Scale1M -benchtime 20x -timeout 2h ./internal/inventory/
//
// NMAP_MCP_BENCH_SCANS sets the number of scans; NMAP_MCP_BENCH_KEEP=DIR
// keeps the file as DIR/scans.db (for timing `serve` start-up on it).
func BenchmarkScale1M(b *testing.B) {
	ctx := context.Background()
	n := 1000000
	if v, err := strconv.Atoi(os.Getenv("NMAP_MCP_BENCH_SCANS")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	if keep := os.Getenv("NMAP_MCP_BENCH_KEEP"); keep != "" {
		dir = keep
	}
	path := filepath.Join(dir, "scans.db")
	st, err := store.Open(ctx, path, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	xml := []byte(strings.Repeat("<!-- nmap raw xml -->", 100))
	t0 := time.Now().Add(-time.Duration(n) * time.Minute)
	var last *store.Record
	for i := 0; i < n; i += 5000 {
		var recs []*store.Record
		for j := i; j < min(i+5000, n); j++ {
			target := fmt.Sprintf("10.%d.%d.%d", j>>16&255, j>>8&255, j&255)
			at := t0.Add(time.Duration(j) * time.Minute)
			res := &results.Result{Hosts: []results.Host{{Addresses: []string{target}, State: "up", Ports: []results.Port{
				{Protocol: "tcp", Port: 22, State: "open", Service: "ssh"}, {Protocol: "tcp", Port: 80, State: "closed"},
				{Protocol: "tcp", Port: 443, State: "open", Service: "https"}}}}, Stats: results.Stats{HostsUp: 1, HostsTotal: 1}}
			last = &store.Record{ID: fmt.Sprintf("%012x", j), Status: store.Done, Targets: target, ScanType: "connect", Client: "local",
				Argv: []string{"nmap", "-sT", "--", target}, CreatedAt: at, StartedAt: at, EndedAt: at.Add(2 * time.Second), RawXML: xml, Result: res}
			recs = append(recs, last)
		}
		if err := st.Import(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	imported := time.Since(start)
	histBytes := fileBytes(path)
	inv, err := New(ctx, st, Config{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := inv.db.ExecContext(ctx, `UPDATE inv_follow SET created_at = ?, scan_id = ?`, store.Millis(last.CreatedAt), last.ID); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	a := netip.MustParseAddr("10.0.0.0")
	for s := 0; s < 2; s++ {
		hosts := genHosts(a, 50000, 0, rand.New(rand.NewPCG(uint64(s), 9)))
		if _, err := inv.Ingest(ctx, Scan{ID: fmt.Sprint("inv", s), Client: "local", At: t0.Add(time.Duration(n+s) * time.Minute), Result: &results.Result{Hosts: hosts}}); err != nil {
			b.Fatal(err)
		}
		for range 50000 {
			a = a.Next()
		}
	}
	built := time.Since(start)
	st.DB().ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	total := fileBytes(path)
	fmt.Printf("%d scans imported in %s: %d MB, %d bytes per scan; inventory 100,000 hosts × 20 ports built in %s: file %d MB (inventory %d MB)\n",
		n, imported.Round(time.Second), histBytes>>20, histBytes/int64(n), built.Round(time.Second), total>>20, (total-histBytes)>>20)
	for _, q := range []struct {
		name string
		run  func() (int, error)
	}{
		{"list-scans-target-no-match", func() (int, error) {
			r, err := st.List(ctx, store.Filter{Target: "192.0.2.1", Limit: 20})
			return len(r), err
		}},
		{"list-scans-target-match", func() (int, error) {
			r, err := st.List(ctx, store.Filter{Target: "10.1.2.3", Limit: 20})
			return len(r), err
		}},
		{"list-scans-newest", func() (int, error) {
			r, err := st.List(ctx, store.Filter{Limit: 20})
			return len(r), err
		}},
		{"port3389-open-in-16", func() (int, error) {
			f, err := inv.Find(ctx, Query{Client: "local", Address: "10.1.0.0/16", Port: 3389, State: "open"})
			return f.Total, err
		}},
		{"openssh-lt-9", func() (int, error) {
			f, err := inv.Find(ctx, Query{Client: "local", Product: "OpenSSH", Version: "<9.0"})
			return f.Total, err
		}},
	} {
		b.Run(q.name, func(b *testing.B) {
			got := 0
			for i := 0; i < b.N; i++ {
				if got, err = q.run(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(got), "matches")
		})
	}
}

func fileBytes(path string) int64 {
	var n int64
	for _, p := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}
