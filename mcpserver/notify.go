package mcpserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/jobs"
)

// callNotifier sends one tool call's progress and log notifications, each
// marked for Delivery, and counts them.
type callNotifier struct {
	ctx      context.Context
	srv      *server.MCPServer
	token    mcp.ProgressToken // nil: the client asked for no progress
	call     string
	sent     uint64
	delivery *Delivery
}

func newCallNotifier(ctx context.Context, req mcp.CallToolRequest, d *Delivery) *callNotifier {
	var b [6]byte
	_, _ = rand.Read(b[:])
	n := &callNotifier{ctx: ctx, srv: server.ServerFromContext(ctx), call: hex.EncodeToString(b[:]), delivery: d}
	if req.Params.Meta != nil {
		n.token = req.Params.Meta.ProgressToken
	}
	return n
}

// listener adapts the notifier to the job manager.
func (n *callNotifier) listener() jobs.Listener {
	return jobs.Listener{
		Progress: func(percent float64, message string) {
			if n.token == nil {
				return
			}
			n.send("notifications/progress", map[string]any{
				"progressToken": n.token, "progress": percent, "total": 100.0, "message": message,
			})
		},
		Log: func(level, message string) {
			if !n.wantsLog(mcp.LoggingLevel(level)) {
				return
			}
			n.send("notifications/message", map[string]any{"level": level, "logger": "nmap-mcp", "data": message})
		},
	}
}

// wantsLog applies the client's logging level (logging/setLevel, or the
// per-request level of protocol 2026-07-28).
func (n *callNotifier) wantsLog(level mcp.LoggingLevel) bool {
	if info := server.RequestProtocolInfoFromContext(n.ctx); info != nil && info.Modern {
		return info.LogLevel != "" && level.ShouldSendTo(info.LogLevel)
	}
	session, ok := server.ClientSessionFromContext(n.ctx).(server.SessionWithLogging)
	return ok && level.ShouldSendTo(session.GetLogLevel())
}

// send queues one notification, retrying while mcp-go's queue is full, so
// that none is dropped.
func (n *callNotifier) send(method string, params map[string]any) {
	if n.srv == nil {
		return
	}
	seq := n.sent + 1
	params["_meta"] = map[string]any{seqKey: fmt.Sprintf("%s:%d", n.call, seq)}
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := n.srv.SendNotificationToClient(n.ctx, method, params)
		if err == nil {
			n.sent = seq
			return
		}
		if !errors.Is(err, server.ErrNotificationChannelBlocked) || time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// flush waits until every notification sent has been written.
func (n *callNotifier) flush() {
	n.delivery.Wait(n.call, n.sent, 5*time.Second)
	n.delivery.Forget(n.call)
}
