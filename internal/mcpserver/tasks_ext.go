package mcpserver

import (
	"context"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// The tasks extension of protocol 2026-07-28 (io.modelcontextprotocol/tasks,
// SEP-2663; modelcontextprotocol/ext-tasks, specification/2026-07-28/
// tasks.md), over the same scans service as the 2025-11-25 tasks:
//
//   - A client declares the extension per request, in
//     _meta["io.modelcontextprotocol/clientCapabilities"].extensions; the
//     server advertises it in server/discover (Deps.Tasks, server.go).
//   - The server decides which calls become tasks (there is no "task"
//     param): an nmap_scan call from a declaring client does, unless its
//     arguments say wait: true. The answer is a CreateTaskResult, the task
//     flat in the result with resultType "task"; ttlMs is null (the
//     history keeps the scan), pollIntervalMs is suggested.
//   - A scan a rule asks a person about is asked first, through
//     input_required on the tools/call itself (the extension: resolve
//     multi round-trip exchanges before the task exists); the retry with
//     the yes gets the task. No task of this server is ever input_required,
//     so tasks/update has nothing outstanding: it acknowledges, and ignores
//     the responses, as the extension says for keys not outstanding.
//   - tasks/get answers the task with its outcome inline: completed with
//     nmap_scan's result (a scan that failed, timed out, was denied or cut
//     short by a restart is completed with nmap_scan's isError result, its
//     status message naming the state: the extension keeps failed for
//     JSON-RPC errors), or cancelled.
//   - tasks/cancel cancels the scan and answers an empty acknowledgement.
//   - tasks/get, tasks/update and tasks/cancel need the declaration
//     (-32021 otherwise) and the caller's own task, or an admin (-32602,
//     as for an unknown task). The extension has no tasks/list nor
//     tasks/result (-32601).
//
// Not done: notifications/tasks through subscriptions/listen (optional;
// mcp-go v1.2.1 owns that stream).

// TasksExtension is the 2026-07-28 tasks extension's identifier.
const TasksExtension = "io.modelcontextprotocol/tasks"

// methodTasksUpdate is the extension's request that delivers input.
const methodTasksUpdate = "tasks/update"

// modernInfo is the protocol information of a 2026-07-28 request's _meta;
// nil for an earlier version.
func modernInfo(meta *mcp.Meta) *server.RequestProtocolInfo {
	v := meta.ProtocolVersion()
	if !mcp.IsModernProtocol(v) {
		return nil
	}
	return &server.RequestProtocolInfo{Modern: true, ProtocolVersion: v, ClientInfo: meta.ClientInfo(),
		ClientCapabilities: meta.ClientCapabilities(), LogLevel: meta.LogLevel()}
}

func extensionDeclared(info *server.RequestProtocolInfo) bool {
	if info == nil || info.ClientCapabilities == nil {
		return false
	}
	_, ok := info.ClientCapabilities.Extensions[TasksExtension]
	return ok
}

// handleModern answers a 2026-07-28 task request.
func (t *Tasks) handleModern(ctx context.Context, method string, p *taskParams) (any, *rpcError) {
	if method == string(mcp.MethodTasksList) || method == string(mcp.MethodTasksResult) {
		return nil, &rpcError{Code: mcp.METHOD_NOT_FOUND, Message: method + " is not part of protocol 2026-07-28's tasks extension: poll tasks/get, whose answer carries the result"}
	}
	if p.info.ClientCapabilities == nil {
		return nil, &rpcError{Code: mcp.INVALID_PARAMS, Message: "missing or invalid _meta " + mcp.MetaKeyClientCapabilities + ": protocol 2026-07-28 requires it on every request ({} for none)"}
	}
	if !extensionDeclared(p.info) {
		return nil, &rpcError{Code: mcp.MISSING_REQUIRED_CLIENT_CAPABILITY,
			Message: fmt.Sprintf("Missing required client capability: %s needs the %s extension in the request's client capabilities", method, TasksExtension),
			Data:    map[string]any{"requiredCapabilities": map[string]any{"extensions": map[string]any{TasksExtension: map[string]any{}}}}}
	}
	ctx = server.WithRequestProtocolInfo(ctx, p.info)
	switch method {
	case string(mcp.MethodToolsCall):
		return t.createModern(ctx, p)
	case string(mcp.MethodTasksGet):
		snap, rerr := t.snapshot(ctx, p.TaskID)
		if rerr != nil {
			return nil, rerr
		}
		return t.detailed(snap, "complete"), nil
	case methodTasksUpdate:
		if _, rerr := t.snapshot(ctx, p.TaskID); rerr != nil {
			return nil, rerr
		}
		return ack(), nil
	case string(mcp.MethodTasksCancel):
		snap, rerr := t.snapshot(ctx, p.TaskID)
		if rerr != nil {
			return nil, rerr
		}
		if snap.Live {
			t.h.Scans.Cancel(ctx, p.TaskID)
		}
		return ack(), nil
	}
	return nil, &rpcError{Code: mcp.METHOD_NOT_FOUND, Message: "unknown task method " + method}
}

func ack() map[string]any { return map[string]any{"resultType": "complete"} }

// createModern starts the scan as a task, or answers as nmap_scan would
// have: input_required while a person is asked, an isError result for a
// refused scan.
func (t *Tasks) createModern(ctx context.Context, p *taskParams) (any, *rpcError) {
	res, err := t.callScan(ctx, p)
	if err != nil {
		return nil, &rpcError{Code: mcp.INTERNAL_ERROR, Message: err.Error()}
	}
	if res.ResultType == mcp.ResultTypeInputRequired {
		return res, nil
	}
	out, ok := res.StructuredContent.(scanOutput)
	if res.IsError || !ok || out.ScanID == "" {
		return toolResult(res), nil
	}
	snap, rerr := t.snapshot(ctx, out.ScanID)
	if rerr != nil {
		return nil, rerr
	}
	return t.detailed(snap, "task"), nil
}

// toolResult is a CallToolResult as 2026-07-28 shapes it.
func toolResult(res *mcp.CallToolResult) map[string]any {
	m := map[string]any{"resultType": "complete", "content": res.Content, "isError": res.IsError}
	if res.StructuredContent != nil {
		m["structuredContent"] = res.StructuredContent
	}
	if res.Meta != nil {
		m["_meta"] = res.Meta
	}
	return m
}

// detailed is a scan as the extension's task (DetailedTask), with
// resultType rt: its outcome inline once it has ended.
func (t *Tasks) detailed(snap scans.Snapshot, rt string) map[string]any {
	legacy := taskOf(snap)
	status := string(legacy.Status)
	if !snap.Live && snap.Record.Status != store.Cancelled {
		status = string(mcp.TaskStatusCompleted)
	}
	m := map[string]any{"resultType": rt, "taskId": legacy.TaskId, "status": status, "createdAt": legacy.CreatedAt,
		"lastUpdatedAt": legacy.LastUpdatedAt, "ttlMs": nil, "pollIntervalMs": taskPoll}
	if legacy.StatusMessage != "" {
		m["statusMessage"] = legacy.StatusMessage
	}
	if status == string(mcp.TaskStatusCompleted) {
		rec := snap.Record
		m["result"] = toolResult(t.h.recordResult(rec, rec.Status != store.Done))
	}
	return m
}
