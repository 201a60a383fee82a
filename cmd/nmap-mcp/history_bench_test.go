package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// BenchmarkHistoryScale starts `serve` (stdio) on an empty history and on
// one of 100,000 finished scans with 200,000 audit records (made by a
// generator, not by running scans), interleaved, and reports the medians
// of the time from exec to the tools/list answer and the server's peak RSS
// at that moment. Goal: within 300 ms and at most 40 MB with the full
// history. The generator takes a minute or two.
//
//	go test ./cmd/nmap-mcp -run '^$' -bench HistoryScale -benchtime 5x
func BenchmarkHistoryScale(b *testing.B) {
	testkit.NeedEngine(b)
	empty, full := b.TempDir(), b.TempDir()
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("NMAP_MCP_BENCH_SCANS")); err == nil && v > 0 {
		n = v
	}
	start := time.Now()
	fillHistory(b, full, n)
	b.Logf("generated %d scans and %d audit records in %s", n, 2*n, time.Since(start).Round(time.Second))
	var emptyMS, fullMS, emptyRSS, fullRSS, emptyCLI, fullCLI []float64
	port := testkit.TCPListener(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ms, rss := startToToolsList(b, empty)
		emptyMS, emptyRSS = append(emptyMS, ms), append(emptyRSS, rss)
		ms, rss = startToToolsList(b, full)
		fullMS, fullRSS = append(fullMS, ms), append(fullRSS, rss)
		emptyCLI = append(emptyCLI, cliScan(b, empty, port))
		fullCLI = append(fullCLI, cliScan(b, full, port))
	}
	b.StopTimer()
	b.ReportMetric(medianOf(emptyMS), "empty-ms")
	b.ReportMetric(medianOf(fullMS), "full-ms")
	b.ReportMetric(medianOf(emptyRSS), "empty-MB")
	b.ReportMetric(medianOf(fullRSS), "full-MB")
	b.ReportMetric(medianOf(emptyCLI), "cli-scan-empty-ms")
	b.ReportMetric(medianOf(fullCLI), "cli-scan-full-ms")
	b.ReportMetric(0, "ns/op")
}

// fillHistory writes n finished scans (one host, three ports, 2 KB of raw
// XML each) and 2n audit records into dir.
func fillHistory(b *testing.B, dir string, n int) {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "scans.db"), 0)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	trail, _, err := audit.Open(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer trail.Close()
	xml := []byte(strings.Repeat("<!-- nmap raw xml -->", 100))
	t0 := time.Now().Add(-time.Duration(n) * time.Minute)
	const batch = 5000
	for i := 0; i < n; i += batch {
		var recs []*store.Record
		var lines []audit.Record
		for j := i; j < min(i+batch, n); j++ {
			id := fmt.Sprintf("%012x", j)
			at := t0.Add(time.Duration(j) * time.Minute)
			target := fmt.Sprintf("10.%d.%d.%d", j>>16&255, j>>8&255, j&255)
			res := &results.Result{Hosts: []results.Host{{Addresses: []string{target}, State: "up", Ports: []results.Port{
				{Protocol: "tcp", Port: 22, State: "open", Service: "ssh"}, {Protocol: "tcp", Port: 80, State: "closed"},
				{Protocol: "tcp", Port: 443, State: "open", Service: "https"}}}}, Stats: results.Stats{HostsUp: 1, HostsTotal: 1}}
			recs = append(recs, &store.Record{ID: id, Status: store.Done, Targets: target, ScanType: "connect", Client: "local",
				Argv: []string{"nmap", "-sT", "--", target}, CreatedAt: at, StartedAt: at, EndedAt: at.Add(2 * time.Second), RawXML: xml, Result: res})
			lines = append(lines, audit.Record{Event: audit.Admitted, ScanID: id, Client: "local", Targets: target, Time: at,
				Argv: []string{"nmap", "-sT", "--", target}}, audit.Record{Event: audit.Ended, ScanID: id, Client: "local", Outcome: store.Done, Time: at})
		}
		if err := st.Import(ctx, recs); err != nil {
			b.Fatal(err)
		}
		if err := trail.AppendBatch(lines); err != nil {
			b.Fatal(err)
		}
	}
}

// cliScan times `nmap-mcp scan` of a loopback port on the history in dir.
func cliScan(b *testing.B, dir string, port int) float64 {
	b.Helper()
	testkit.Eventually(10*time.Second, func() bool { left, err := env.Leftovers(context.Background()); return err == nil && len(left) == 0 })
	cmd := exec.Command(binary, "scan", "--ports", fmt.Sprint(port), "127.0.0.1")
	cmd.Env = serverEnv("NMAP_MCP_STORE="+filepath.Join(dir, "scans.db"), "NMAP_MCP_AUDIT="+filepath.Join(dir, "audit.jsonl"), "NMAP_MCP_LOG_LEVEL=warn")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("scan: %v\n%s", err, out)
	}
	return float64(time.Since(start).Microseconds()) / 1000
}

// startToToolsList execs `serve` on the history in dir and returns the
// milliseconds to the tools/list answer and the peak RSS in MB then.
func startToToolsList(b *testing.B, dir string) (float64, float64) {
	b.Helper()
	cmd := exec.Command(binary, "serve")
	cmd.Env = serverEnv("NMAP_MCP_STORE="+filepath.Join(dir, "scans.db"), "NMAP_MCP_AUDIT="+filepath.Join(dir, "audit.jsonl"),
		"NMAP_MCP_LOG_LEVEL=warn")
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = io.Discard
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { in.Close(); _ = cmd.Wait() }()
	fmt.Fprintln(in, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`)
	fmt.Fprintln(in, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	fmt.Fprintln(in, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var msg struct {
			ID int `json:"id"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) == nil && msg.ID == 2 {
			ms := float64(time.Since(start).Microseconds()) / 1000
			return ms, float64(peakRSS(b, cmd.Process.Pid)) / (1 << 20)
		}
	}
	b.Fatalf("no tools/list answer: %v", sc.Err())
	return 0, 0
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
