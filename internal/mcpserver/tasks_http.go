package mcpserver

import (
	"context"
	"net/http"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// AnswerHTTP answers an HTTP POST to /mcp whose body (already read) is a
// task request, and reports whether it did; anything else is left to
// mcp-go. The response is JSON with the status protocol 2026-07-28 maps
// its error onto, as mcp-go does for its own answers (400 for invalid
// params or a missing client capability, 404 for an unknown method; 200
// for a result, and always before 2026-07-28). The request's
// Mcp-Session-Id names the session that gets the task's status
// notifications (WithSession). ctx carries the caller's client
// (scans.WithClient, scans.WithAdmin).
func (t *Tasks) AnswerHTTP(ctx context.Context, w http.ResponseWriter, r *http.Request, body []byte) bool {
	if r.Method != http.MethodPost {
		return false
	}
	a, ok := t.answer(WithSession(ctx, r.Header.Get(server.HeaderKeySessionID)), body)
	if !ok {
		return false
	}
	status := http.StatusOK
	if a.modern {
		switch a.code {
		case mcp.METHOD_NOT_FOUND:
			status = http.StatusNotFound
		case mcp.INVALID_PARAMS, mcp.INVALID_REQUEST, mcp.MISSING_REQUIRED_CLIENT_CAPABILITY:
			status = http.StatusBadRequest
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(a.body)
	return true
}
