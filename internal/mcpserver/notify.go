package mcpserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/scans"
)

// callNotifier sends one tool call's progress and log notifications, each
// marked for Delivery, and counts them.
type callNotifier struct {
	ctx      context.Context
	token    mcp.ProgressToken // nil: the client asked for no progress
	call     string
	sent     uint64
	delivery *Delivery
}

func newCallNotifier(ctx context.Context, req mcp.CallToolRequest, d *Delivery) *callNotifier {
	var b [6]byte
	_, _ = rand.Read(b[:])
	n := &callNotifier{ctx: ctx, call: hex.EncodeToString(b[:]), delivery: d}
	if req.Params.Meta != nil {
		n.token = req.Params.Meta.ProgressToken
	}
	return n
}

// event turns one scan event into a notification: a log event into
// notifications/message (at the client's level), every other one into
// notifications/progress (when the call carries a progress token).
func (n *callNotifier) event(ev scans.Event) {
	if ev.Kind == scans.Log {
		if n.wantsLog(mcp.LoggingLevel(ev.Level)) {
			n.send("notifications/message", map[string]any{"level": ev.Level, "logger": "nmap-mcp", "data": ev.Message})
		}
		return
	}
	if n.token == nil {
		return
	}
	n.send("notifications/progress", map[string]any{
		"progressToken": n.token, "progress": ev.Percent, "total": 100.0, "message": ev.Message,
	})
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

// send queues one notification on the session, with its Delivery mark in
// params._meta (mcp-go's SendNotificationToClient drops _meta). It waits
// up to 2 s for room in mcp-go's queue rather than dropping it.
func (n *callNotifier) send(method string, params map[string]any) {
	session := server.ClientSessionFromContext(n.ctx)
	if session == nil || !session.Initialized() {
		return
	}
	if up, ok := session.(server.SessionWithStreamableHTTPConfig); ok {
		up.UpgradeToSSEWhenReceiveNotification()
	}
	seq := n.sent + 1
	note := mcp.JSONRPCNotification{
		JSONRPC: mcp.JSONRPC_VERSION,
		Notification: mcp.Notification{Method: method, Params: mcp.NotificationParams{
			Meta:             map[string]any{seqKey: fmt.Sprintf("%s:%d", n.call, seq)},
			AdditionalFields: params,
		}},
	}
	timer := time.NewTimer(2 * time.Second)
	defer timer.Stop()
	select {
	case session.NotificationChannel() <- note:
		n.sent = seq
	case <-timer.C:
	}
}

// flush waits until every notification sent has been written; it reports
// false when that was not seen within 5 s.
func (n *callNotifier) flush() bool {
	ok := n.delivery.Wait(n.call, n.sent, 5*time.Second)
	n.delivery.Forget(n.call)
	return ok
}
