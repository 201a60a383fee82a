package mcpserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Long scans as MCP tasks (protocol 2025-11-25): a task-augmented
// nmap_scan call ("params": {"task": {...}}) starts the scan detached and
// answers at once with a task whose id is the scan id; tasks/get,
// tasks/result, tasks/cancel and tasks/list are answered from the scans
// service, so a task outlives the call and the session, and a server
// restart: its status then comes from the history (a scan the restart
// cut short reads failed, "interrupted: ...").
//
// mcp-go keeps tasks in memory under ids of its own, so these requests are
// answered here, before mcp-go sees them: Tasks.Handle takes a raw
// JSON-RPC request and answers the task ones (Stdio wraps a stdio stream;
// the HTTP front calls Handle for each POST). Everything else goes on to
// mcp-go unchanged. `wait: false` with get_scan keeps working for clients
// that know no tasks.
//
// A task-augmented scan a rule asks a person about cannot put the
// question to the client (a task's call has returned): it waits as
// pending-approval for an approver on the web view (status working,
// "waiting for approval"), or is refused where there is none.
//
// The 2026-07-28 tasks extension is in tasks_ext.go, the status
// notifications in tasks_notify.go, tasks/list's pages in tasks_list.go.

// Tasks answers MCP task requests from the scans service.
type Tasks struct {
	h *handlers
	// poll is how often tasks/result and the status notifications look
	// at a live scan.
	poll time.Duration
	// page is how many tasks a tasks/list page holds (taskPage when 0).
	page int
}

// NewTasks returns the task layer over the same dependencies as New.
func NewTasks(d Deps) *Tasks {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Refused == nil {
		d.Refused = func(string) {}
	}
	if d.TextCap <= 0 {
		d.TextCap = scans.DefaultTextCap
	}
	return &Tasks{h: &handlers{Deps: d}, poll: 200 * time.Millisecond}
}

// taskPoll is the pollInterval suggested to clients, in milliseconds.
const taskPoll = 1000

type rpcRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

// Handle answers raw if it is a task request, with the JSON-RPC response;
// ok is false for anything else. Before protocol 2026-07-28 those are a
// task-augmented nmap_scan call and tasks/get, tasks/result, tasks/cancel
// and tasks/list; on 2026-07-28 (the request's _meta names it), an
// nmap_scan call from a client that declares the tasks extension, and
// tasks/get, tasks/update and tasks/cancel (tasks_ext.go). ctx carries the
// caller's client (scans.WithClient, scans.WithAdmin) and, for status
// notifications, its session (WithSession, or the stdio stream's).
// tasks/result blocks until the scan ends or ctx does.
func (t *Tasks) Handle(ctx context.Context, raw []byte) (resp []byte, ok bool) {
	a, ok := t.answer(ctx, raw)
	return a.body, ok
}

// answered is Handle's response, with what an HTTP front needs of it.
type answered struct {
	body []byte
	// code is the JSON-RPC error's code; 0 for a result.
	code int
	// modern: the request was on protocol 2026-07-28 or later.
	modern bool
}

func (t *Tasks) answer(ctx context.Context, raw []byte) (answered, bool) {
	req, p, ok := parseTask(raw)
	if !ok {
		return answered{}, false
	}
	var (
		result any
		rerr   *rpcError
	)
	if p.info != nil {
		result, rerr = t.handleModern(ctx, req.Method, p)
	} else {
		switch req.Method {
		case string(mcp.MethodToolsCall):
			result, rerr = t.create(ctx, p)
		case string(mcp.MethodTasksGet):
			result, rerr = t.get(ctx, p.TaskID)
		case string(mcp.MethodTasksResult):
			result, rerr = t.result(ctx, p.TaskID)
		case string(mcp.MethodTasksCancel):
			result, rerr = t.cancel(ctx, p.TaskID)
		case string(mcp.MethodTasksList):
			result, rerr = t.list(ctx, p.Cursor)
		}
	}
	a := answered{modern: p.info != nil}
	out := map[string]any{"jsonrpc": "2.0", "id": req.ID}
	if rerr != nil {
		out["error"], a.code = rerr, rerr.Code
	} else {
		out["result"] = result
	}
	b, err := json.Marshal(out)
	if err != nil {
		a.code = mcp.INTERNAL_ERROR
		b, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.ID, "error": rpcError{Code: mcp.INTERNAL_ERROR, Message: err.Error()}})
	}
	a.body = b
	return a, true
}

// taskParams are the params of every request the task layer answers.
type taskParams struct {
	Name      string          `json:"name"`
	Arguments map[string]any  `json:"arguments"`
	Task      *mcp.TaskParams `json:"task"`
	TaskID    string          `json:"taskId"`
	Cursor    string          `json:"cursor"`
	Meta      *mcp.Meta       `json:"_meta"`
	mcp.MultiRoundTripParams
	// info is the request's protocol information on 2026-07-28 or later;
	// nil before.
	info *server.RequestProtocolInfo
}

// parseTask decodes raw and reports whether it is a request Handle
// answers.
func parseTask(raw []byte) (rpcRequest, *taskParams, bool) {
	var req rpcRequest
	if !bytes.Contains(raw, []byte("task")) || json.Unmarshal(raw, &req) != nil || len(req.ID) == 0 || req.JSONRPC != "2.0" {
		return req, nil, false
	}
	p := &taskParams{}
	if len(req.Params) > 0 && json.Unmarshal(req.Params, p) != nil {
		return req, nil, false
	}
	p.info = modernInfo(p.Meta)
	switch req.Method {
	case string(mcp.MethodToolsCall):
		if p.Name != "nmap_scan" {
			return req, nil, false
		}
		if p.info != nil {
			// 2026-07-28: the server decides; a scan becomes a task for a
			// client that declared the extension, unless it asked to wait.
			return req, p, extensionDeclared(p.info) && p.Arguments["wait"] != true
		}
		return req, p, p.Task != nil
	case string(mcp.MethodTasksGet), string(mcp.MethodTasksResult), string(mcp.MethodTasksCancel), string(mcp.MethodTasksList):
		return req, p, true
	case methodTasksUpdate:
		return req, p, p.info != nil
	}
	return req, nil, false
}

// create starts the scan detached, through nmap_scan's own argument
// checks, and returns its task (2025-11-25). The task's status changes
// are sent to the caller's session where there is one (tasks_notify.go).
func (t *Tasks) create(ctx context.Context, p *taskParams) (any, *rpcError) {
	res, err := t.callScan(ctx, p)
	if err != nil {
		return nil, &rpcError{Code: mcp.INTERNAL_ERROR, Message: err.Error()}
	}
	out, ok := res.StructuredContent.(scanOutput)
	if res.IsError || !ok || out.ScanID == "" {
		return nil, &rpcError{Code: mcp.INVALID_PARAMS, Message: resultText(res)}
	}
	snap, rerr := t.snapshot(ctx, out.ScanID)
	if rerr != nil {
		return nil, rerr
	}
	task := taskOf(snap)
	t.follow(ctx, snap, task)
	return map[string]any{"task": task}, nil
}

// callScan runs nmap_scan's handler for p with wait: false.
func (t *Tasks) callScan(ctx context.Context, p *taskParams) (*mcp.CallToolResult, error) {
	args := p.Arguments
	if args == nil {
		args = map[string]any{}
	}
	args["wait"] = false
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments, req.Params.Meta = "nmap_scan", args, p.Meta
	req.Params.MultiRoundTripParams = p.MultiRoundTripParams
	maxT := map[string]int{"timeout_seconds": int(t.h.Scans.Rules().MaxTimeout.Seconds())}
	res, err := t.h.checked("nmap_scan", scanArgs{}, maxT, t.h.scan)(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("nmap_scan as a task: %w", err)
	}
	return res, nil
}

func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// snapshot finds the caller's scan for a task id.
func (t *Tasks) snapshot(ctx context.Context, id string) (scans.Snapshot, *rpcError) {
	if id == "" {
		return scans.Snapshot{}, &rpcError{Code: mcp.INVALID_PARAMS, Message: "taskId is required: the scan id nmap_scan's task returned"}
	}
	snap, err := t.h.Scans.Get(ctx, id)
	var nf *store.NotFoundError
	if errors.As(err, &nf) {
		return scans.Snapshot{}, &rpcError{Code: mcp.INVALID_PARAMS, Message: fmt.Sprintf("no task %q: %v", id, err)}
	}
	if err != nil {
		return scans.Snapshot{}, &rpcError{Code: mcp.INTERNAL_ERROR, Message: err.Error()}
	}
	return snap, nil
}

func (t *Tasks) get(ctx context.Context, id string) (any, *rpcError) {
	snap, rerr := t.snapshot(ctx, id)
	if rerr != nil {
		return nil, rerr
	}
	return taskOf(snap), nil
}

// result waits for the scan to end and returns nmap_scan's result for it.
func (t *Tasks) result(ctx context.Context, id string) (any, *rpcError) {
	for {
		snap, rerr := t.snapshot(ctx, id)
		if rerr != nil {
			return nil, rerr
		}
		if !snap.Live {
			rec := snap.Record
			res := t.h.recordResult(rec, rec.Status != store.Done)
			return map[string]any{
				"content": res.Content, "structuredContent": res.StructuredContent, "isError": res.IsError,
				"_meta": map[string]any{mcp.RelatedTaskMetaKey: map[string]any{"taskId": rec.ID}},
			}, nil
		}
		select {
		case <-ctx.Done():
			return nil, &rpcError{Code: mcp.REQUEST_INTERRUPTED, Message: "tasks/result: the request ended before the scan: " + ctx.Err().Error()}
		case <-time.After(t.poll):
		}
	}
}

func (t *Tasks) cancel(ctx context.Context, id string) (any, *rpcError) {
	snap, rerr := t.snapshot(ctx, id)
	if rerr != nil {
		return nil, rerr
	}
	if !snap.Live {
		return nil, &rpcError{Code: mcp.INVALID_PARAMS, Message: fmt.Sprintf("task %s has ended (%s); it cannot be cancelled", id, snap.Record.Status)}
	}
	t.h.Scans.Cancel(ctx, id)
	return t.get(ctx, id)
}

// taskOf is a scan seen as a task.
func taskOf(snap scans.Snapshot) mcp.Task {
	rec := snap.Record
	status, msg := mcp.TaskStatusWorking, rec.Status
	switch rec.Status {
	case store.PendingApproval:
		msg = "waiting for approval"
	case store.Queued, store.Running:
		if snap.Message != "" {
			msg = rec.Status + ": " + snap.Message
		}
	case store.Done:
		status = mcp.TaskStatusCompleted
	case store.Cancelled:
		status = mcp.TaskStatusCancelled
	default: // failed, timed-out, interrupted, denied
		status = mcp.TaskStatusFailed
		if rec.Error != "" {
			msg = rec.Status + ": " + rec.Error
		}
	}
	updated := rec.CreatedAt
	for _, at := range []time.Time{rec.StartedAt, rec.EndedAt} {
		if at.After(updated) {
			updated = at
		}
	}
	if snap.Live {
		updated = time.Now()
	}
	poll := int64(taskPoll)
	return mcp.Task{TaskId: rec.ID, Status: status, StatusMessage: clipText(msg, 500), CreatedAt: rec.CreatedAt.UTC().Format(time.RFC3339Nano),
		LastUpdatedAt: updated.UTC().Format(time.RFC3339Nano), PollInterval: &poll}
}

func clipText(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// Stdio puts the task layer in front of a stdio transport: it returns the
// reader the MCP server reads (in, without the task requests) and the
// writer it writes (out, shared with the task answers line by line).
// Task requests are answered each in its own goroutine (tasks/result
// waits), with ctx (the stdio client's). The reader ends when in does.
func (t *Tasks) Stdio(ctx context.Context, in io.Reader, out io.Writer) (io.Reader, io.Writer) {
	lw := &lineWriter{w: out}
	ctx = withSink(ctx, streamSink(ctx, lw))
	pr, pw := io.Pipe()
	go func() {
		r := bufio.NewReaderSize(in, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				if t.isTask(line) {
					go func(line []byte) {
						resp, _ := t.Handle(ctx, line)
						_, _ = lw.Write(append(resp, '\n'))
					}(line)
				} else if _, werr := pw.Write(line); werr != nil {
					return
				}
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr, lw
}

// isTask reports whether raw is a request Handle answers.
func (t *Tasks) isTask(raw []byte) bool {
	_, _, ok := parseTask(raw)
	return ok
}

// lineWriter serialises whole writes to one stream.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
