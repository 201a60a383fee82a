package mcpserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Tasks over stdio, raw JSON-RPC as a 2025-11-25 client sends it, against
// a fake runner (no engine, -short): the task id is the scan id; get,
// result, cancel and list come from the scans service; a second server on
// the same history answers for a task of the first (a restart).

// gatedRunner holds each scan until released (or cancelled).
type gatedRunner struct {
	mu    sync.Mutex
	gates map[string]chan struct{}
}

func (g *gatedRunner) gate(id string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gates == nil {
		g.gates = map[string]chan struct{}{}
	}
	if g.gates[id] == nil {
		g.gates[id] = make(chan struct{})
	}
	return g.gates[id]
}

func (g *gatedRunner) Run(ctx context.Context, job executorJob) (*executorResult, error) {
	return runGated(ctx, g, job)
}

func (g *gatedRunner) Close(context.Context) error { return nil }

type rpcClient struct {
	t    *testing.T
	w    io.Writer
	mu   sync.Mutex
	next int
	wait map[int]chan map[string]any
	// notes gets the notifications the server sends (dropped when full).
	notes chan map[string]any
}

func (c *rpcClient) call(method string, params any) map[string]any {
	c.t.Helper()
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan map[string]any, 1)
	c.wait[id] = ch
	c.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if _, err := c.w.Write(append(b, '\n')); err != nil {
		c.t.Fatal(err)
	}
	select {
	case m := <-ch:
		return m
	case <-time.After(20 * time.Second):
		c.t.Fatalf("%s: no answer", method)
		return nil
	}
}

// taskServer serves st over stdio with the task layer in front and
// returns an initialized raw client.
func taskServer(t *testing.T, st *store.Store, runner *gatedRunner) *rpcClient {
	t.Helper()
	svc := scans.New(scans.Config{Sandbox: sandbox.Options{Limits: sandbox.DefaultLimits()}, MaxAddresses: 4096},
		scans.Deps{Runner: runner, Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"}, Store: st})
	deps := mcpserver.Deps{Scans: svc, Tasks: true}
	srv := mcpserver.New(deps)
	tasks := mcpserver.NewTasks(deps)
	ctx, cancel := context.WithCancel(context.Background())
	cr, cw := io.Pipe()
	sr, sw := io.Pipe()
	in, out := tasks.Stdio(ctx, cr, sw)
	done := make(chan struct{})
	go func() { defer close(done); _ = server.NewStdioServer(srv).Listen(ctx, in, out) }()
	c := &rpcClient{t: t, w: cw, wait: map[int]chan map[string]any{}, notes: make(chan map[string]any, 64)}
	go func() {
		r := bufio.NewReader(sr)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(line, &m) != nil {
				continue
			}
			id, ok := m["id"].(float64)
			if !ok {
				if _, note := m["method"]; note {
					select {
					case c.notes <- m:
					default:
					}
				}
				continue
			}
			c.mu.Lock()
			ch := c.wait[int(id)]
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		cw.Close()
		sw.Close()
		<-done
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		_ = svc.Close(cctx)
	})
	init := c.call("initialize", map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "raw", "version": "1"}})
	caps, _ := init["result"].(map[string]any)["capabilities"].(map[string]any)
	if caps["tasks"] == nil {
		t.Fatalf("no tasks capability: %v", init)
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})
	_, _ = cw.Write(append(b, '\n'))
	return c
}

func result(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	r, ok := m["result"].(map[string]any)
	if !ok {
		t.Fatalf("no result: %v", m)
	}
	return r
}

func TestScanAsTask(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	runner := &gatedRunner{}
	c := taskServer(t, st, runner)
	created := result(t, c.call("tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "127.0.0.1", "ports": "22"},
		"task": map[string]any{"ttl": 60000}}))
	task := created["task"].(map[string]any)
	id, _ := task["taskId"].(string)
	if len(id) != 12 || task["status"] != "working" {
		t.Fatalf("created: %v", created)
	}
	// The task id is the scan id: get_scan knows it.
	got := result(t, c.call("tools/call", map[string]any{"name": "get_scan", "arguments": map[string]any{"id": id}}))
	if sc := got["structuredContent"].(map[string]any); sc["scan_id"] != id {
		t.Fatalf("get_scan of the task: %v", got)
	}
	if g := result(t, c.call("tasks/get", map[string]any{"taskId": id})); g["status"] != "working" || g["taskId"] != id {
		t.Fatalf("tasks/get while running: %v", g)
	}
	// tasks/result waits for the end.
	resC := make(chan map[string]any, 1)
	go func() { resC <- c.call("tasks/result", map[string]any{"taskId": id}) }()
	time.Sleep(200 * time.Millisecond)
	close(runner.gate(id))
	res := result(t, <-resC)
	if res["isError"] == true || res["structuredContent"].(map[string]any)["status"] != "done" ||
		res["_meta"].(map[string]any)["io.modelcontextprotocol/related-task"].(map[string]any)["taskId"] != id {
		t.Fatalf("tasks/result: %v", res)
	}
	if g := result(t, c.call("tasks/get", map[string]any{"taskId": id})); g["status"] != "completed" {
		t.Fatalf("tasks/get after the end: %v", g)
	}
	// Cancel a second one.
	second := result(t, c.call("tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "127.0.0.1", "ports": "80"},
		"task": map[string]any{}}))["task"].(map[string]any)["taskId"].(string)
	if g := result(t, c.call("tasks/cancel", map[string]any{"taskId": second})); g["status"] != "cancelled" {
		t.Fatalf("tasks/cancel: %v", g)
	}
	list := result(t, c.call("tasks/list", map[string]any{}))["tasks"].([]any)
	if len(list) != 2 {
		t.Fatalf("tasks/list: %v", list)
	}
	// Refused arguments: an error, no task.
	if m := c.call("tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "-iL=/etc/passwd"}, "task": map[string]any{}}); m["error"] == nil ||
		!strings.Contains(fmt.Sprint(m["error"]), "targets") {
		t.Fatalf("refused task: %v", m)
	}
	// An unknown task.
	if m := c.call("tasks/get", map[string]any{"taskId": "nope"}); m["error"] == nil {
		t.Fatalf("unknown task: %v", m)
	}
	// A plain call still works beside tasks.
	if m := c.call("tools/list", map[string]any{}); m["result"] == nil {
		t.Fatalf("tools/list: %v", m)
	}
}

// A task outlives its server: a running scan's server stops, and the next
// server on the same history answers tasks/get and tasks/result for it.
func TestTaskSurvivesRestart(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	first := taskServer(t, st, &gatedRunner{})
	id := result(t, first.call("tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "127.0.0.1", "ports": "22"},
		"task": map[string]any{}}))["task"].(map[string]any)["taskId"].(string)
	// The restart: the history marks what was running interrupted, as
	// store.Open does for a dead server's scans.
	var rec *store.Record
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if rec, err = st.Get(context.Background(), id, ""); err != nil {
			t.Fatal(err)
		}
		if rec.Status == store.Running || time.Now().After(deadline) {
			break
		}
	}
	rec.Status, rec.Error = store.Interrupted, "the server stopped while this scan was queued or running"
	if err := st.Finish(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	second := taskServer(t, st, &gatedRunner{})
	g := result(t, second.call("tasks/get", map[string]any{"taskId": id}))
	if g["status"] != "failed" || !strings.HasPrefix(fmt.Sprint(g["statusMessage"]), "interrupted") {
		t.Fatalf("tasks/get after a restart: %v", g)
	}
	if r := result(t, second.call("tasks/result", map[string]any{"taskId": id})); r["isError"] != true {
		t.Fatalf("tasks/result after a restart: %v", r)
	}
}

type (
	executorJob    = executor.Job
	executorResult = executor.Result
)

func runGated(ctx context.Context, g *gatedRunner, job executor.Job) (*executor.Result, error) {
	id := job.Spec.Labels[sandbox.LabelScanID]
	emit := func(step executor.Step) {
		if job.OnEvent != nil {
			job.OnEvent(executor.Event{Step: step, ContainerID: "c-" + id, At: time.Now()})
		}
	}
	defer emit("removed")
	emit("started")
	select {
	case <-g.gate(id):
	case <-ctx.Done():
		return &executor.Result{Canceled: true, ContainerID: "c-" + id}, fmt.Errorf("cancelled: %w", context.Cause(ctx))
	}
	xml := `<?xml version="1.0"?><nmaprun scanner="nmap" args="nmap" version="7.93"><runstats><finished elapsed="1" exit="success"/><hosts up="0" down="0" total="0"/></runstats></nmaprun>`
	if job.Stdout != nil {
		_, _ = io.WriteString(job.Stdout, xml)
	}
	emit("exited")
	return &executor.Result{ContainerID: "c-" + id, Stdout: []byte(xml)}, nil
}
