package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/scans"
)

// Task status notifications (protocol 2025-11-25): a receiver may send
// notifications/tasks/status when a task's status changes; the spec
// defines no opt-in beyond the task-augmented call itself, and the
// requestor must not rely on them. A task created by a 2025-11-25 call is
// followed while its scan lives, and each change (working with a new scan
// state — pending approval, queued, running — or the end) is sent, as the
// task tasks/get would answer, to the session that created it and to no
// other: the stdio stream the call came on (Tasks.Stdio), or the HTTP
// session WithSession names (sent through mcp-go to that session only).
// A call with neither (no session known) gets no notifications.

// sink sends one notification to the session that created a task; an
// error means the session is gone.
type sink func(method string, params map[string]any) error

// streamed is a stdio stream's sink, with the end of that stream.
type streamed struct {
	send sink
	done <-chan struct{}
}

type sinkKey struct{}

type sessionKey struct{}

// withSink makes s, until ctx ends, where tasks created under the
// returned context send their notifications.
func withSink(ctx context.Context, s sink) context.Context {
	return context.WithValue(ctx, sinkKey{}, streamed{send: s, done: ctx.Done()})
}

// WithSession marks ctx as a request of the MCP session sessionID (the
// Mcp-Session-Id an HTTP request names), so that the task it creates
// tells that session, and only it, of its status changes.
func WithSession(ctx context.Context, sessionID string) context.Context {
	if sessionID == "" {
		return ctx
	}
	return context.WithValue(ctx, sessionKey{}, sessionID)
}

// streamSink writes notifications to a stdio stream until ctx (the
// stream's) ends; the writes go through the transport's writer, as every
// other message (Delivery sees them).
func streamSink(ctx context.Context, w *lineWriter) sink {
	return func(method string, params map[string]any) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("stdio stream ended: %w", err)
		}
		b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params})
		if err != nil {
			return fmt.Errorf("encode %s: %w", method, err)
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write %s: %w", method, err)
		}
		return nil
	}
}

// sinkOf is where ctx's session takes notifications (nil for none), and
// a channel closed when that session ends (nil when only a failed send
// tells).
func (t *Tasks) sinkOf(ctx context.Context) (sink, <-chan struct{}) {
	if s, ok := ctx.Value(sinkKey{}).(streamed); ok {
		return s.send, s.done
	}
	sid, _ := ctx.Value(sessionKey{}).(string)
	if sid == "" || t.h.Subscriptions == nil {
		return nil, nil
	}
	return func(method string, params map[string]any) error {
		t.h.Subscriptions.mu.Lock()
		srv := t.h.Subscriptions.srv
		t.h.Subscriptions.mu.Unlock()
		if srv == nil {
			return fmt.Errorf("no MCP server to send %s through", method)
		}
		if err := srv.SendNotificationToSpecificClient(sid, method, params); err != nil {
			return fmt.Errorf("send %s to session %s: %w", method, sid, err)
		}
		return nil
	}, nil
}

// follow sends the task's status changes to ctx's session until its scan
// ends, the session goes (its stdio stream ends, or a send fails), or the
// scan can no longer be read. It returns at
// once; the following runs in its own goroutine, past ctx's end (an HTTP
// request's) but with its values (the caller's client).
func (t *Tasks) follow(ctx context.Context, snap scans.Snapshot, seen mcp.Task) {
	send, gone := t.sinkOf(ctx)
	if send == nil || !snap.Live {
		return
	}
	ctx = context.WithoutCancel(ctx)
	id, state := snap.Record.ID, snap.Record.Status
	go func() {
		tick := time.NewTicker(t.poll)
		defer tick.Stop()
		for {
			select {
			case <-gone:
				return
			case <-tick.C:
			}
			now, err := t.h.Scans.Get(ctx, id)
			if err != nil {
				t.h.Log.Debug("task status: the scan cannot be read; no more notifications", "task", id, "err", err)
				return
			}
			task := taskOf(now)
			if task.Status == seen.Status && now.Record.Status == state {
				continue
			}
			seen, state = task, now.Record.Status
			if err := send(string(mcp.MethodNotificationTasksStatus), taskParamsOf(task)); err != nil {
				t.h.Log.Debug("task status: the session is gone", "task", id, "err", err)
				return
			}
			if task.Status.IsTerminal() {
				return
			}
		}
	}()
}

// taskParamsOf is a task as notification params.
func taskParamsOf(task mcp.Task) map[string]any {
	var m map[string]any
	b, _ := json.Marshal(task)
	_ = json.Unmarshal(b, &m)
	return m
}
