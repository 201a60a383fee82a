package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/executor/fencer"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// ourContainers lists this test process's scan containers: not the host
// fence's warden, which lives as long as a server that scanned loopback.
func ourContainers(t *testing.T) []container.Summary {
	list, err := env.Client.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", sandbox.LabelInstance+"="+env.Instance))})
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(list, func(c container.Summary) bool { return c.Labels[fencer.LabelRole] == fencer.RoleHostFence })
}

// slowArgs is a scan slowed with the polite timing template.
func slowArgs(port int) map[string]any {
	return map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprintf("1-60,%d", port), "timing": "T2"}
}

// Cancelling the call kills the container within 1 s and the record says
// cancelled, keeping what nmap printed.
func TestCancelMidScan(t *testing.T) {
	testkit.NeedEngine(t)
	s, _, plog := connectObserved(t)
	port := testkit.TCPListener(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := callWithToken(ctx, s, "cancel-me", slowArgs(port)); done <- err }()
	// Wait until nmap reports progress, so the scan is mid-way.
	plog.waitFor("cancel-me", 3, 30*time.Second)
	running := ourContainers(t)
	if len(running) != 1 {
		t.Fatalf("%d containers before the cancel", len(running))
	}
	cancel()
	cancelled := time.Now()
	gone := testkit.Eventually(5*time.Second, func() bool { return env.ContainerGone(context.Background(), running[0].ID) })
	elapsed := time.Since(cancelled)
	if !gone || elapsed > time.Second {
		t.Fatalf("container gone %v, %v after the cancel; want within 1 s", gone, elapsed)
	}
	t.Logf("cancel to container gone: %v", elapsed)
	<-done
	var status string
	testkit.Eventually(5*time.Second, func() bool {
		res, text := call(t, s, "list_scans", map[string]any{"limit": 1})
		status = fmt.Sprint(res.StructuredContent.(map[string]any)["scans"].([]any)[0].(map[string]any)["status"])
		_ = text
		return status == "cancelled"
	})
	if status != "cancelled" {
		t.Fatalf("status %s, want cancelled", status)
	}
}

// 16 concurrent calls with a limit of 2 all succeed, never more than 2 of
// our containers exist at once, and none is left.
func TestConcurrencyLimit(t *testing.T) {
	testkit.NeedEngine(t)
	s, _, _ := connectObserved(t, "NMAP_MCP_MAX_CONCURRENT=2")
	port := testkit.TCPListener(t)
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if n := int64(len(ourContainers(t))); n > peak.Load() {
				peak.Store(n)
			}
		}
	}()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "nmap_scan",
				Arguments: map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)}})
			if err != nil || res.IsError {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	if failed.Load() > 0 {
		t.Fatalf("%d of 16 calls failed", failed.Load())
	}
	if peak.Load() > 2 || peak.Load() == 0 {
		t.Fatalf("peak of %d containers at once; want 1 or 2", peak.Load())
	}
	t.Logf("peak containers at once: %d", peak.Load())
	if !testkit.Eventually(5*time.Second, func() bool { return len(ourContainers(t)) == 0 }) {
		t.Fatalf("containers left: %d", len(ourContainers(t)))
	}
}

// With one slot and a queue of one, a third scan is refused at once; a
// background scan is polled with get_scan; cancel_scan stops another.
func TestQueueFullWaitFalseAndCancelScan(t *testing.T) {
	testkit.NeedEngine(t)
	s, _, _ := connectObserved(t, "NMAP_MCP_MAX_CONCURRENT=1", "NMAP_MCP_QUEUE_SIZE=1")
	port := testkit.TCPListener(t)
	start := func(args map[string]any) string {
		args["wait"] = false
		res, text := call(t, s, "nmap_scan", args)
		if res.IsError {
			t.Fatalf("wait:false: %s", text)
		}
		out := res.StructuredContent.(map[string]any)
		if st := out["status"]; st != "queued" && st != "running" {
			t.Fatalf("background scan status %v", st)
		}
		return out["scan_id"].(string)
	}
	slow := start(slowArgs(port))
	quick := start(map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)})

	began := time.Now()
	res, text := call(t, s, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)})
	if !res.IsError || !strings.Contains(text, "queue is full") || time.Since(began) > 5*time.Second {
		t.Fatalf("third scan: isError %v after %v: %s", res.IsError, time.Since(began), text)
	}
	_, text = call(t, s, "get_scan", map[string]any{"id": quick})
	if !strings.Contains(text, "queued") {
		t.Fatalf("quick scan should wait behind the slow one: %s", text)
	}
	// Cancel the slow scan; the quick one then runs and finishes.
	res, text = call(t, s, "cancel_scan", map[string]any{"id": slow})
	if res.IsError || !strings.Contains(text, "cancelled") {
		t.Fatalf("cancel_scan: %s", text)
	}
	var last map[string]any
	if !testkit.Eventually(30*time.Second, func() bool {
		res, _ := call(t, s, "get_scan", map[string]any{"id": quick})
		last = res.StructuredContent.(map[string]any)
		return last["status"] == "done"
	}) {
		t.Fatalf("quick scan never finished: %v", last)
	}
	if last["progress_percent"].(float64) != 100 || !strings.Contains(fmt.Sprint(last["result"]), "open") {
		t.Fatalf("finished scan: %v", last)
	}
	res, text = call(t, s, "cancel_scan", map[string]any{"id": quick})
	if !res.IsError || !strings.Contains(text, "not running") {
		t.Fatalf("cancel of a finished scan: %s", text)
	}
	res, _ = call(t, s, "get_scan", map[string]any{"id": slow})
	if st := res.StructuredContent.(map[string]any)["status"]; st != "cancelled" {
		t.Fatalf("slow scan status %v", st)
	}
}

// Regression (security review 5): a call refused because the queue is full
// spends no budget. With 1 slot, no queue and 2 scans per hour, the refused
// second call leaves room for a third after the first has ended.
func TestQueueRefusalSpendsNoBudget(t *testing.T) {
	testkit.NeedEngine(t)
	cfg := writeConfig(t, "budgets:\n  scans_per_client: 2\n")
	s, _, _ := connectObserved(t, "NMAP_MCP_CONFIG="+cfg, "NMAP_MCP_MAX_CONCURRENT=1", "NMAP_MCP_QUEUE_SIZE=0")
	port := testkit.TCPListener(t)
	args := slowArgs(port)
	args["wait"] = false
	res, text := call(t, s, "nmap_scan", args)
	if res.IsError {
		t.Fatalf("first scan: %s", text)
	}
	first := res.StructuredContent.(map[string]any)["scan_id"].(string)
	res, text = call(t, s, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)})
	if !res.IsError || !strings.Contains(text, "queue is full") {
		t.Fatalf("second scan: %s", text)
	}
	if res, text := call(t, s, "cancel_scan", map[string]any{"id": first}); res.IsError {
		t.Fatalf("cancel: %s", text)
	}
	if !testkit.Eventually(20*time.Second, func() bool { return len(ourContainers(t)) == 0 }) {
		t.Fatal("first scan's container still there")
	}
	res, text = call(t, s, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)})
	if res.IsError {
		t.Fatalf("third scan after a refused second: %s", text)
	}
}
