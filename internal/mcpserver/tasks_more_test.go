package mcpserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

// Status notifications, tasks/list pages and the 2026-07-28 requests over
// stdio, with fake runners (no engine, -short).

// A 2025-11-25 task tells the stdio session that created it of its status
// changes: running, then completed, each as tasks/get would answer.
func TestTaskStatusNotifications(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	runner := &gatedRunner{}
	c := taskServer(t, st, runner)
	created := result(t, c.call("tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "127.0.0.1", "ports": "22"},
		"task": map[string]any{}}))["task"].(map[string]any)
	id := created["taskId"].(string)
	released := false
	release := func() {
		if !released {
			released = true
			close(runner.gate(id))
		}
	}
	if strings.HasPrefix(fmt.Sprint(created["statusMessage"]), "running") {
		// The scan was running when the task was made (a loaded machine
		// lets the runner start first): no "running" change will come.
		release()
	}
	next := func() map[string]any {
		t.Helper()
		select {
		case m := <-c.notes:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no task status notification")
			return nil
		}
	}
	var seen []string
	for {
		m := next()
		if m["method"] != "notifications/tasks/status" {
			continue
		}
		p := m["params"].(map[string]any)
		if p["taskId"] != id || p["createdAt"] == nil || p["lastUpdatedAt"] == nil {
			t.Fatalf("notification: %v", m)
		}
		seen = append(seen, fmt.Sprint(p["status"], " ", p["statusMessage"]))
		if p["status"] == "working" && strings.HasPrefix(fmt.Sprint(p["statusMessage"]), "running") {
			release()
		}
		if p["status"] == "completed" {
			break
		}
	}
	// A "working running" change comes first unless the task was made
	// running already; "completed" comes last either way.
	if len(seen) == 0 || !strings.HasPrefix(seen[len(seen)-1], "completed") ||
		len(seen) == 1 && !strings.HasPrefix(fmt.Sprint(created["statusMessage"]), "running") ||
		len(seen) > 1 && !strings.HasPrefix(seen[0], "working running") {
		t.Fatalf("notifications: %q (created %v)", seen, created["statusMessage"])
	}
	if g := result(t, c.call("tasks/get", map[string]any{"taskId": id})); g["status"] != "completed" {
		t.Fatalf("tasks/get: %v", g)
	}
}

// tasks/list pages: bounded, every scan once even when scans start between
// two pages, another client's scans never, an admin's every one, and a
// cursor it did not hand out refused.
func TestTaskListPages(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	svc := extService(t, st, &instantRunner{}, scans.Deps{})
	tasks := mcpserver.NewTasks(mcpserver.Deps{Scans: svc, Tasks: true})
	mcpserver.SetTaskPage(tasks, 3)
	c := &handleClient{t: t, tasks: tasks}
	alice := scans.WithClient(context.Background(), "alice")
	bob := scans.WithClient(context.Background(), "bob")
	admin := scans.WithAdmin(scans.WithClient(context.Background(), "root"))
	start := func(ctx context.Context, port int) string {
		t.Helper()
		task := c.must(ctx, "tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)},
			"task": map[string]any{}})["task"].(map[string]any)
		id := task["taskId"].(string)
		waitStatus(t, st, id, store.Done) // one scan at a time per client
		return id
	}
	want := map[string]bool{}
	for p := 1; p <= 7; p++ {
		want[start(alice, p)] = true
	}
	bobs := start(bob, 99)
	// A stored record waiting for approval (not live here: another
	// server's) is no task of the list and counts in no page's offsets.
	pend := &store.Record{ID: "pending1", Client: "alice", Status: store.PendingApproval, Targets: "127.0.0.1", ScanType: "connect", CreatedAt: time.Now().UTC()}
	if err := st.Begin(context.Background(), pend); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	cursor, pages := "", 0
	for {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		r := c.must(alice, "tasks/list", params)
		list := r["tasks"].([]any)
		if len(list) > 3 {
			t.Fatalf("page of %d tasks, want at most 3", len(list))
		}
		for _, x := range list {
			got[x.(map[string]any)["taskId"].(string)]++
		}
		pages++
		if pages == 1 {
			// Two new scans between pages push the rest down.
			want[start(alice, 100)] = false
			want[start(alice, 101)] = false
		}
		next, ok := r["nextCursor"].(string)
		if !ok {
			break
		}
		cursor = next
	}
	for id, old := range want {
		if old && got[id] != 1 {
			t.Errorf("task %s listed %d times, want once (%v)", id, got[id], got)
		}
		if !old && got[id] != 0 {
			t.Errorf("task %s, started after the first page, listed", id)
		}
	}
	if got[bobs] != 0 || pages != 3 {
		t.Fatalf("pages %d, bob's listed %d times", pages, got[bobs])
	}
	all := 0
	for cursor = ""; ; {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		r := c.must(admin, "tasks/list", params)
		all += len(r["tasks"].([]any))
		next, ok := r["nextCursor"].(string)
		if !ok {
			break
		}
		cursor = next
	}
	if all != 10 {
		t.Fatalf("admin listed %d tasks, want 10", all)
	}
	if m, _ := c.call(alice, "tasks/list", map[string]any{"cursor": "not-a-cursor"}); errCode(m) != -32602 || !strings.Contains(fmt.Sprint(m["error"]), "cursor") {
		t.Fatalf("bad cursor: %v", m)
	}
}

// The 2026-07-28 requests over stdio reach the task layer (tasks/update
// included), and server/discover advertises the extension.
func TestTasksExtensionOverStdio(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	runner := &gatedRunner{}
	c := taskServer(t, st, runner)
	disc := c.call("server/discover", map[string]any{"_meta": modernMeta(true, false)})
	caps, _ := result(t, disc)["capabilities"].(map[string]any)
	ext, _ := caps["extensions"].(map[string]any)
	if _, ok := ext["io.modelcontextprotocol/tasks"]; !ok {
		t.Fatalf("server/discover: %v", disc)
	}
	created := result(t, c.call("tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "127.0.0.1", "ports": "22"},
		"_meta": modernMeta(true, false)}))
	id, _ := created["taskId"].(string)
	if created["resultType"] != "task" || id == "" {
		t.Fatalf("created: %v", created)
	}
	if u := result(t, c.call("tasks/update", map[string]any{"taskId": id, "inputResponses": map[string]any{}, "_meta": modernMeta(true, false)})); u["resultType"] != "complete" {
		t.Fatalf("tasks/update: %v", u)
	}
	if a := result(t, c.call("tasks/cancel", map[string]any{"taskId": id, "_meta": modernMeta(true, false)})); a["resultType"] != "complete" {
		t.Fatalf("tasks/cancel: %v", a)
	}
	if g := result(t, c.call("tasks/get", map[string]any{"taskId": id, "_meta": modernMeta(true, false)})); g["status"] != "cancelled" {
		t.Fatalf("tasks/get: %v", g)
	}
}

// fakeSession is an HTTP session as mcp-go keeps it: notifications go to
// its channel.
type fakeSession struct {
	id    string
	notes chan mcp.JSONRPCNotification
}

func (f *fakeSession) Initialize()                                         {}
func (f *fakeSession) Initialized() bool                                   { return true }
func (f *fakeSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return f.notes }
func (f *fakeSession) SessionID() string                                   { return f.id }

// Over HTTP the status notifications go through mcp-go to the session the
// creating call named (WithSession) and to no other session, even of the
// same client. Registered fake sessions, fake runner (-short).
func TestTaskStatusNotificationsOwnSession(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	runner := &gatedRunner{}
	svc := extService(t, st, runner, scans.Deps{})
	deps := mcpserver.Deps{Scans: svc, Tasks: true, Watches: watches.New(st, svc, watches.Config{MinInterval: time.Second}, nil),
		Subscriptions: mcpserver.NewSubscriptions()}
	srv := mcpserver.New(deps)
	own, other := &fakeSession{id: "s-own", notes: make(chan mcp.JSONRPCNotification, 16)}, &fakeSession{id: "s-other", notes: make(chan mcp.JSONRPCNotification, 16)}
	for _, s := range []*fakeSession{own, other} {
		if err := srv.RegisterSession(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	c := &handleClient{t: t, tasks: mcpserver.NewTasks(deps)}
	alice := mcpserver.WithSession(scans.WithClient(context.Background(), "alice"), own.id)
	id := c.must(alice, "tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "127.0.0.1", "ports": "22"},
		"task": map[string]any{}})["task"].(map[string]any)["taskId"].(string)
	waitStatus(t, st, id, store.Running)
	close(runner.gate(id))
	for {
		select {
		case n := <-own.notes:
			if n.Method != "notifications/tasks/status" || n.Params.AdditionalFields["taskId"] != id {
				t.Fatalf("notification: %+v", n)
			}
			if n.Params.AdditionalFields["status"] != "completed" {
				continue
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the owning session got no completed notification")
		}
		break
	}
	select {
	case n := <-other.notes:
		t.Fatalf("another session got %+v", n)
	case <-time.After(300 * time.Millisecond):
	}
}

// AnswerHTTP, what the HTTP front calls: task requests answered with the
// status 2026-07-28 gives their errors, the session header kept for the
// notifications, anything else left to mcp-go. Fake runner, -short.
func TestTasksAnswerHTTP(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	runner := &gatedRunner{}
	svc := extService(t, st, runner, scans.Deps{})
	tasks := mcpserver.NewTasks(mcpserver.Deps{Scans: svc, Tasks: true})
	alice := scans.WithClient(context.Background(), "alice")
	post := func(body map[string]any) (*httptest.ResponseRecorder, bool) {
		b, _ := json.Marshal(body)
		r := httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewReader(b))
		w := httptest.NewRecorder()
		return w, tasks.AnswerHTTP(alice, w, r, b)
	}
	rpc := func(id int, method string, params map[string]any) map[string]any {
		return map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params}
	}
	w, ok := post(rpc(1, "tools/call", map[string]any{"name": "nmap_scan", "arguments": map[string]any{"targets": "127.0.0.1", "ports": "22"}, "_meta": modernMeta(true, false)}))
	var created struct{ Result map[string]any }
	if !ok || w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &created) != nil || created.Result["resultType"] != "task" ||
		w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("create: %v %d %s", ok, w.Code, w.Body)
	}
	id := created.Result["taskId"].(string)
	for _, c := range []struct {
		body map[string]any
		code int
	}{
		{rpc(2, "tasks/get", map[string]any{"taskId": id, "_meta": modernMeta(false, false)}), http.StatusBadRequest},
		{rpc(3, "tasks/get", map[string]any{"taskId": "nope", "_meta": modernMeta(true, false)}), http.StatusBadRequest},
		{rpc(4, "tasks/list", map[string]any{"_meta": modernMeta(true, false)}), http.StatusNotFound},
		{rpc(5, "tasks/get", map[string]any{"taskId": id, "_meta": modernMeta(true, false)}), http.StatusOK},
		{rpc(6, "tasks/get", map[string]any{"taskId": "nope"}), http.StatusOK}, // 2025-11-25: errors ride 200
	} {
		if w, ok := post(c.body); !ok || w.Code != c.code {
			t.Errorf("%v: handled %v, status %d, want %d: %s", c.body, ok, w.Code, c.code, w.Body)
		}
	}
	if _, ok := post(rpc(7, "tools/list", map[string]any{})); ok {
		t.Error("tools/list was answered by the task layer")
	}
	close(runner.gate(id))
}
