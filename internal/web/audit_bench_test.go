package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/audit"
)

// BenchmarkAuditPage times /audit views on a trail of 200,000 records
// (100,000 scans' admitted and ended lines, generated; one scan in a
// hundred is alice's, the rest local's) and reports the medians and the
// process's peak RSS while serving them (reset after the trail is made).
// Each round starts a new view (nothing verified yet): the first view,
// the newest page and a page 1,000 records from the start for an admin
// and for alice (whose lines are sparse), four such views at once, and a
// view after one more record. Goal: every view within 100 ms, the
// server under 60 MB.
//
//	go test ./internal/web -run '^$' -bench AuditPage -benchtime 3x
func BenchmarkAuditPage(b *testing.B) {
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("NMAP_MCP_BENCH_SCANS")); err == nil && v > 0 {
		n = v
	}
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	start := time.Now()
	l, _, err := audit.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().Add(-time.Duration(n) * time.Minute)
	for i := 0; i < n; i += 2500 {
		var batch []audit.Record
		for j := i; j < min(i+2500, n); j++ {
			id, c := fmt.Sprintf("%012x", j), "local"
			if j%100 == 0 {
				c = "alice"
			}
			target := fmt.Sprintf("127.%d.%d.%d", j>>16&255, j>>8&255, j&255)
			at := t0.Add(time.Duration(j) * time.Minute)
			batch = append(batch, audit.Record{Event: audit.Admitted, ScanID: id, Client: c, Targets: target, Time: at,
				Argv: []string{"nmap", "-sT", "-p", "22,80,443", "--", target}},
				audit.Record{Event: audit.Ended, ScanID: id, Client: c, Outcome: "done", Time: at, DurationMS: 2000})
		}
		if err := l.AppendBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	st, _ := os.Stat(path)
	b.Logf("generated %d records (%d MB) in %s", 2*n, st.Size()>>20, time.Since(start).Round(time.Millisecond))
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS(b)

	views := map[string][]float64{}
	var fullCheck []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, err := New(Config{AuditPath: path, Authenticate: func(tok string) (string, bool, bool) {
			return map[string]string{"a": "root", "b": "alice"}[tok], tok == "a", tok == "a" || tok == "b"
		}}, &fakeScans{})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(h)
		admin := signIn(b, srv, "a", srv.URL).Cookies()[0]
		alice := signIn(b, srv, "b", srv.URL).Cookies()[0]
		view := func(name, p string, c *http.Cookie) string {
			t := time.Now()
			resp, body := get(b, srv, p, c)
			ms := float64(time.Since(t).Microseconds()) / 1000
			if resp.StatusCode != 200 || !strings.Contains(body, "<table") {
				b.Fatalf("%s: %d", p, resp.StatusCode)
			}
			views[name] = append(views[name], ms)
			return body
		}
		t := time.Now()
		view("first-view-ms", "/audit", admin)
		for h.audit.checking() {
			time.Sleep(5 * time.Millisecond)
		}
		fullCheck = append(fullCheck, float64(time.Since(t).Milliseconds()))
		if body := view("admin-newest-ms", "/audit", admin); !strings.Contains(body, "chain verified") {
			b.Fatalf("not verified:\n%s", body)
		}
		view("admin-deep-ms", "/audit?before=1000", admin)
		view("alice-newest-ms", "/audit", alice)
		// alice pages by sealed cursors (no numbers): one made for record 1000.
		aliceDeep := "/audit?before=" + h.audit.seal("before", "alice", 1000)
		if body := view("alice-deep-ms", aliceDeep, alice); strings.Contains(body, "not a link") {
			b.Fatalf("alice's cursor refused:\n%s", body)
		}
		t = time.Now()
		aliceMid := "/audit?before=" + h.audit.seal("before", "alice", 150000)
		var wg sync.WaitGroup
		for k, c := range []*http.Cookie{admin, alice, admin, alice} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, _ := get(b, srv, []string{"/audit?before=1000", aliceMid}[k%2], c)
				if resp.StatusCode != 200 {
					b.Errorf("concurrent view: %d", resp.StatusCode)
				}
			}()
		}
		wg.Wait()
		views["four-at-once-ms"] = append(views["four-at-once-ms"], float64(time.Since(t).Microseconds())/1000)
		if err := l.Append(audit.Record{Event: audit.Admitted, ScanID: "one-more", Client: "alice"}); err != nil {
			b.Fatal(err)
		}
		if body := view("after-append-ms", "/audit", alice); !strings.Contains(body, `id="verify">verified<`) {
			b.Fatalf("after one append the view is not verified within the view:\n%s", body)
		}
		srv.Close()
	}
	b.StopTimer()
	l.Close()
	for name, v := range views {
		b.ReportMetric(median(v), name)
	}
	b.ReportMetric(median(fullCheck), "full-check-ms")
	b.ReportMetric(float64(peakRSS(b))/(1<<20), "peak-MB")
	b.ReportMetric(0, "ns/op")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// resetPeakRSS resets the process's VmHWM (Linux: clear_refs 5).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset the peak RSS (%v): peak-MB includes the generator", err)
	}
}

// peakRSS is the process's VmHWM in bytes.
func peakRSS(b *testing.B) int64 {
	s, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(s), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
