package mcpserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// The 2026-07-28 tasks extension (io.modelcontextprotocol/tasks, SEP-2663)
// as its requests reach Tasks.Handle, which is what the HTTP front calls
// for each POST and what Tasks.Stdio calls for each task line. Raw
// JSON-RPC with the per-request _meta a 2026-07-28 client sends: no client
// library at hand speaks the extension (mcp-go v1.2.1's client parses no
// resultType "task" and has no tasks/update; the TypeScript SDK 1.32 has
// only the 2025-11-25 tasks). Fake runners, no engine (-short).

const extTasks = "io.modelcontextprotocol/tasks"

// modernMeta is a 2026-07-28 request's _meta; ext declares the tasks
// extension, elicit the elicitation capability.
func modernMeta(ext, elicit bool) map[string]any {
	caps := map[string]any{}
	if ext {
		caps["extensions"] = map[string]any{extTasks: map[string]any{}}
	}
	if elicit {
		caps["elicitation"] = map[string]any{"form": map[string]any{}}
	}
	return map[string]any{
		"io.modelcontextprotocol/protocolVersion":    "2026-07-28",
		"io.modelcontextprotocol/clientCapabilities": caps,
		"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "raw-2026", "version": "1"},
	}
}

type handleClient struct {
	t     *testing.T
	tasks *mcpserver.Tasks
	next  int
}

// call sends one request through Handle with ctx (whose client it
// carries) and returns the decoded response; handled false means Handle
// passed it on to mcp-go.
func (c *handleClient) call(ctx context.Context, method string, params map[string]any) (resp map[string]any, handled bool) {
	c.t.Helper()
	c.next++
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": c.next, "method": method, "params": params})
	if err != nil {
		c.t.Fatal(err)
	}
	raw, ok := c.tasks.Handle(ctx, b)
	if !ok {
		return nil, false
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		c.t.Fatalf("%s: %v: %s", method, err, raw)
	}
	return resp, true
}

func (c *handleClient) must(ctx context.Context, method string, params map[string]any) map[string]any {
	c.t.Helper()
	m, ok := c.call(ctx, method, params)
	if !ok {
		c.t.Fatalf("%s was not answered by the task layer", method)
	}
	return result(c.t, m)
}

func errCode(m map[string]any) int {
	e, _ := m["error"].(map[string]any)
	code, _ := e["code"].(float64)
	return int(code)
}

func extService(t *testing.T, st *store.Store, runner executor.Runner, deps scans.Deps) *scans.Service {
	t.Helper()
	deps.Runner, deps.Store = runner, st
	deps.Image = images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"}
	svc := scans.New(scans.Config{Sandbox: sandbox.Options{Limits: sandbox.DefaultLimits()}, MaxAddresses: 4096}, deps)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svc.Close(ctx)
	})
	return svc
}

func TestTasksExtension20260728(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	runner := &gatedRunner{}
	svc := extService(t, st, runner, scans.Deps{})
	c := &handleClient{t: t, tasks: mcpserver.NewTasks(mcpserver.Deps{Scans: svc, Tasks: true})}
	alice := scans.WithClient(context.Background(), "alice")
	bob := scans.WithClient(context.Background(), "bob")
	admin := scans.WithAdmin(scans.WithClient(context.Background(), "root"))

	scan := func(ctx context.Context, ports string, ext bool) (map[string]any, bool) {
		return c.call(ctx, "tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "127.0.0.1", "ports": ports},
			"_meta": modernMeta(ext, false)})
	}
	// Declared: the call answers at once with a CreateTaskResult, flat.
	m, ok := scan(alice, "22", true)
	if !ok {
		t.Fatal("a 2026-07-28 nmap_scan declaring the tasks extension went past the task layer")
	}
	created := result(t, m)
	id, _ := created["taskId"].(string)
	if created["resultType"] != "task" || len(id) != 12 || created["status"] != "working" || created["createdAt"] == nil ||
		created["lastUpdatedAt"] == nil || created["pollIntervalMs"] == nil {
		t.Fatalf("CreateTaskResult: %v", created)
	}
	if ttl, present := created["ttlMs"]; !present || ttl != nil {
		t.Fatalf("ttlMs must be present and null (the history keeps scans): %v", created)
	}
	// Not declared: no task; mcp-go answers the plain call.
	if _, ok := scan(alice, "23", false); ok {
		t.Fatal("a call without the extension was made a task")
	}
	// tasks/get: declared only (-32021), the owner or an admin only (-32602).
	get := func(ctx context.Context, ext bool) map[string]any {
		m, _ := c.call(ctx, "tasks/get", map[string]any{"taskId": id, "_meta": modernMeta(ext, false)})
		return m
	}
	if m := get(alice, false); errCode(m) != -32021 || !strings.Contains(fmt.Sprint(m["error"]), extTasks) {
		t.Fatalf("tasks/get without the extension: %v", m)
	}
	if m := get(bob, true); errCode(m) != -32602 {
		t.Fatalf("bob read alice's task: %v", m)
	}
	if g := result(t, get(admin, true)); g["status"] != "working" {
		t.Fatalf("admin's tasks/get: %v", g)
	}
	g := result(t, get(alice, true))
	if g["resultType"] != "complete" || g["status"] != "working" || g["taskId"] != id || g["result"] != nil {
		t.Fatalf("tasks/get while running: %v", g)
	}
	// tasks/update: acknowledged (nothing is outstanding), owner only.
	upd := map[string]any{"taskId": id, "inputResponses": map[string]any{"nothing": map[string]any{"action": "accept"}}, "_meta": modernMeta(true, false)}
	if u := c.must(alice, "tasks/update", upd); u["resultType"] != "complete" || len(u) != 1 {
		t.Fatalf("tasks/update: %v", u)
	}
	if m, _ := c.call(bob, "tasks/update", upd); errCode(m) != -32602 {
		t.Fatalf("bob updated alice's task: %v", m)
	}
	// The end: completed with nmap_scan's result inline.
	close(runner.gate(id))
	for deadline := time.Now().Add(10 * time.Second); g["status"] == "working" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		g = result(t, get(alice, true))
	}
	res, _ := g["result"].(map[string]any)
	sc, _ := res["structuredContent"].(map[string]any)
	if g["status"] != "completed" || res["isError"] != false || sc["status"] != "done" || sc["scan_id"] != id {
		t.Fatalf("tasks/get after the end: %v", g)
	}
	// tasks/cancel: bob cannot, alice can; an ack, then cancelled.
	second := result(t, first(scan(alice, "80", true)))["taskId"].(string)
	cancel := func(ctx context.Context) map[string]any {
		m, _ := c.call(ctx, "tasks/cancel", map[string]any{"taskId": second, "_meta": modernMeta(true, false)})
		return m
	}
	if m := cancel(bob); errCode(m) != -32602 {
		t.Fatalf("bob cancelled alice's task: %v", m)
	}
	if a := result(t, cancel(alice)); a["resultType"] != "complete" || len(a) != 1 {
		t.Fatalf("tasks/cancel ack: %v", a)
	}
	if g := c.must(alice, "tasks/get", map[string]any{"taskId": second, "_meta": modernMeta(true, false)}); g["status"] != "cancelled" {
		t.Fatalf("after tasks/cancel: %v", g)
	}
	if m, _ := c.call(alice, "tasks/cancel", map[string]any{"taskId": "nope", "_meta": modernMeta(true, false)}); errCode(m) != -32602 {
		t.Fatalf("tasks/cancel of an unknown task: %v", m)
	}
	// No tasks/list nor tasks/result in the extension.
	for _, method := range []string{"tasks/list", "tasks/result"} {
		if m, _ := c.call(alice, method, map[string]any{"taskId": id, "_meta": modernMeta(true, false)}); errCode(m) != -32601 {
			t.Fatalf("%s on 2026-07-28: %v", method, m)
		}
	}
	// Refused arguments: no task, nmap_scan's own isError result.
	m, _ = c.call(alice, "tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "-iL=/etc/passwd"}, "_meta": modernMeta(true, false)})
	if r := result(t, m); r["isError"] != true || r["resultType"] == "task" || !strings.Contains(fmt.Sprint(r["content"]), "targets") {
		t.Fatalf("refused scan: %v", r)
	}
	// A restart: a second task layer on the same history answers; a scan
	// the restart cut short is completed with nmap_scan's isError result,
	// its status message says interrupted (the extension keeps failed for
	// JSON-RPC errors).
	third := result(t, first(scan(alice, "443", true)))["taskId"].(string)
	waitStatus(t, st, third, store.Running)
	rec, err := st.Get(context.Background(), third, "")
	if err != nil {
		t.Fatal(err)
	}
	rec.Status, rec.Error = store.Interrupted, "the server stopped while this scan was queued or running"
	if err := st.Finish(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	svc2 := extService(t, st, &gatedRunner{}, scans.Deps{})
	c2 := &handleClient{t: t, tasks: mcpserver.NewTasks(mcpserver.Deps{Scans: svc2, Tasks: true})}
	g = c2.must(alice, "tasks/get", map[string]any{"taskId": third, "_meta": modernMeta(true, false)})
	if res, _ := g["result"].(map[string]any); g["status"] != "completed" || res["isError"] != true || !strings.HasPrefix(fmt.Sprint(g["statusMessage"]), "interrupted") {
		t.Fatalf("tasks/get after a restart: %v", g)
	}
}

func first(m map[string]any, _ bool) map[string]any { return m }

func waitStatus(t *testing.T, st *store.Store, id, status string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rec, err := st.Get(context.Background(), id, "")
		if err == nil && rec.Status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("scan %s never reached %s (%v, %v)", id, status, rec, err)
		}
	}
}

// A scan a rule asks a person about, called as a task on 2026-07-28 by a
// client that can elicit: the question is put first through input_required
// on the tools/call itself (the extension: resolve multi round-trip
// exchanges before the task exists), and the retry carrying the yes gets
// the task. Fake runner, -short.
func TestTasksExtensionAsksBeforeTheTask(t *testing.T) {
	rules, err := approval.Compile(approval.Config{Rules: []approval.Rule{{Name: "two-ports", MinPorts: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := testkit.OpenHistory(t)
	runner := &instantRunner{}
	svc := extService(t, st, runner, scans.Deps{ApprovalRules: rules, Approvals: approval.NewStore(rules.Limits(), nil)})
	c := &handleClient{t: t, tasks: mcpserver.NewTasks(mcpserver.Deps{Scans: svc, Tasks: true})}
	alice := scans.WithClient(context.Background(), "alice")
	params := map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "127.0.0.1", "ports": "22,80"}, "_meta": modernMeta(true, true)}
	asked := c.must(alice, "tools/call", params)
	reqs, _ := asked["inputRequests"].(map[string]any)
	state, _ := asked["requestState"].(string)
	if asked["resultType"] != "input_required" || len(reqs) != 1 || state == "" || runner.count() != 0 {
		t.Fatalf("first answer: %v (runs %d)", asked, runner.count())
	}
	var key string
	for k := range reqs {
		key = k
	}
	params["requestState"] = state
	params["inputResponses"] = map[string]any{key: map[string]any{"action": "accept", "content": map[string]any{"decision": "approve", "reason": "ok"}}}
	created := c.must(alice, "tools/call", params)
	id, _ := created["taskId"].(string)
	if created["resultType"] != "task" || id == "" {
		t.Fatalf("retry with the yes: %v", created)
	}
	waitStatus(t, st, id, store.Done)
	g := c.must(alice, "tasks/get", map[string]any{"taskId": id, "_meta": modernMeta(true, false)})
	res, _ := g["result"].(map[string]any)
	sc, _ := res["structuredContent"].(map[string]any)
	appr, _ := sc["approval"].(map[string]any)
	if g["status"] != "completed" || appr["outcome"] != "approved" || runner.count() != 1 {
		t.Fatalf("approved task: %v (runs %d)", g, runner.count())
	}
}
