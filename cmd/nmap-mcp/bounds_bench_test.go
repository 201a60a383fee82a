package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// BenchmarkLargeResult scans one loopback host that answers on 20,000
// ports (listeners this benchmark opens on 127.0.0.1:20000-39999), with the
// default bounds, then reads the scan six times at once (scan://ID, get_scan
// and list_scans with limit 200). It reports the largest response and the
// server's peak RSS (VmHWM). Goal: no response over 16 MB, RSS under 150 MB.
//
//	go test ./cmd/nmap-mcp -run '^$' -bench LargeResult -benchtime 1x
func BenchmarkLargeResult(b *testing.B) {
	testkit.NeedEngine(b)
	// 20,000 listeners pass one process's open-file limit here: two helper
	// processes (this test binary, see listenHelper) hold 10,000 each.
	for _, r := range []string{"20000-29999", "30000-39999"} {
		h := exec.Command(os.Args[0])
		h.Env = append(os.Environ(), listenHelperEnv+"="+r)
		stdin, _ := h.StdinPipe()
		out, _ := h.StdoutPipe()
		if err := h.Start(); err != nil {
			b.Fatal(err)
		}
		line := make([]byte, 64)
		n, _ := out.Read(line)
		b.Logf("helper %s: %s", r, strings.TrimSpace(string(line[:n])))
		b.Cleanup(func() { stdin.Close(); h.Wait() })
	}
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(serverEnv(), "NMAP_MCP_STORE="+b.TempDir()+"/scans.db")
	client := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
	sess, err := client.Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var largest int
	note := func(n int) {
		if n > largest {
			largest = n
		}
	}
	for i := 0; i < b.N; i++ {
		res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "nmap_scan", Arguments: map[string]any{
			"targets": "127.0.0.1", "ports": "20000-39999", "timing": "T5", "skip_host_discovery": true}})
		if err != nil || res.IsError {
			b.Fatalf("scan: %v %+v", err, res)
		}
		raw, _ := json.Marshal(res)
		note(len(raw))
		id := res.StructuredContent.(map[string]any)["scan_id"].(string)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for j := 0; j < 6; j++ {
			wg.Add(3)
			go func() {
				defer wg.Done()
				r, err := sess.ReadResource(ctx, &mcp.ReadResourceParams{URI: "scan://" + id})
				if err == nil {
					mu.Lock()
					note(len(r.Contents[0].Text))
					mu.Unlock()
				}
			}()
			go func() {
				defer wg.Done()
				r, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "get_scan", Arguments: map[string]any{"id": id}})
				if err == nil {
					raw, _ := json.Marshal(r)
					mu.Lock()
					note(len(raw))
					mu.Unlock()
				}
			}()
			go func() {
				defer wg.Done()
				r, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "list_scans", Arguments: map[string]any{"limit": 200}})
				if err == nil {
					raw, _ := json.Marshal(r)
					mu.Lock()
					note(len(raw))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(largest)/(1<<20), "largest-response-MB")
	b.ReportMetric(float64(peakRSS(b, cmd.Process.Pid))/(1<<20), "server-peak-RSS-MB")
	b.ReportMetric(0, "ns/op")
}

// listenHelperEnv names the port range a listener helper holds open.
const listenHelperEnv = "NMAP_MCP_LISTEN_HELPER"

// listenHelper, when the environment asks for it, listens on 127.0.0.1 on
// every free port of the range, prints how many, and holds them until its
// stdin closes. It reports whether it ran.
func listenHelper() bool {
	r := os.Getenv(listenHelperEnv)
	if r == "" {
		return false
	}
	lo, hi, _ := strings.Cut(r, "-")
	a, _ := strconv.Atoi(lo)
	z, _ := strconv.Atoi(hi)
	var lns []net.Listener
	for p := a; p <= z; p++ {
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			lns = append(lns, ln)
		}
	}
	fmt.Printf("listening on %d ports\n", len(lns))
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, ln := range lns {
		ln.Close()
	}
	return true
}

// peakRSS reads a process's VmHWM in bytes.
func peakRSS(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
