package mcpserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// tasks/list (protocol 2025-11-25) pages through the caller's scans (every
// client's for an admin), newest first, taskPage at a time, with an opaque
// nextCursor while more remain: every scan tasks/get answers for the
// caller is listed. The cursor carries the position reached and the last
// scan listed, so that scans started between two pages (which push the
// rest down) neither repeat nor hide one: the next page starts after that
// scan wherever it now is. Scans waiting for approval (live, not yet in
// the history) lead the first page only.

// taskPage is how many tasks one tasks/list page holds at most.
const taskPage = 50

// listCursor is what a nextCursor encodes (base64url of its JSON).
type listCursor struct {
	// Offset is how many stored scans the pages so far covered.
	Offset int `json:"o"`
	// Last is the last scan listed.
	Last string `json:"l"`
	// At is its creation time (store.Millis).
	At int64 `json:"t"`
}

func (c listCursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (listCursor, error) {
	var c listCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err == nil && (c.Offset < 0 || c.Last == "") {
		err = fmt.Errorf("offset %d, last %q", c.Offset, c.Last)
	}
	if err != nil {
		return c, fmt.Errorf("cursor %q is not one tasks/list returned (pass nextCursor as is, or none for the first page): %w", clipText(s, 60), err)
	}
	return c, nil
}

func (t *Tasks) list(ctx context.Context, cursor string) (any, *rpcError) {
	page := t.page
	if page <= 0 {
		page = taskPage
	}
	start, pending := 0, true
	if cursor != "" {
		c, err := decodeCursor(cursor)
		if err != nil {
			return nil, &rpcError{Code: mcp.INVALID_PARAMS, Message: err.Error()}
		}
		if start, err = t.after(ctx, c); err != nil {
			return nil, &rpcError{Code: mcp.INTERNAL_ERROR, Message: err.Error()}
		}
		pending = false
	}
	recs, err := t.stored(ctx, start, page+1)
	if err != nil {
		return nil, &rpcError{Code: mcp.INTERNAL_ERROR, Message: err.Error()}
	}
	more := len(recs) > page
	if more {
		recs = recs[:page]
	}
	tasks := make([]mcp.Task, 0, len(recs))
	if pending {
		for _, snap := range t.h.Scans.Live(ctx) {
			if snap.Record.Status == store.PendingApproval {
				tasks = append(tasks, taskOf(snap))
			}
		}
	}
	for _, r := range recs {
		tasks = append(tasks, taskOf(scans.Snapshot{Record: r, Live: !store.Finished(r.Status)}))
	}
	out := map[string]any{"tasks": tasks}
	if more {
		last := recs[len(recs)-1]
		out["nextCursor"] = listCursor{Offset: start + len(recs), Last: last.ID, At: store.Millis(last.CreatedAt)}.encode()
	}
	return out, nil
}

// stored lists the caller's scans in the history, newest first, without
// those waiting for approval (listed first, live, on the first page): the
// store leaves them out, so that offsets and limits count only these.
func (t *Tasks) stored(ctx context.Context, offset, limit int) ([]*store.Record, error) {
	recs, err := t.h.Scans.List(ctx, store.Filter{Offset: offset, Limit: limit, NoPending: true})
	if err != nil {
		return nil, fmt.Errorf("tasks/list: %w", err)
	}
	return recs, nil
}

// after finds the position just after the cursor's last scan: at its old
// place or further down (newer scans came in), or, were it deleted, before
// the first older scan.
func (t *Tasks) after(ctx context.Context, c listCursor) (int, error) {
	const window = 64
	off := max(c.Offset-1, 0)
	for range 16 {
		recs, err := t.stored(ctx, off, window)
		if err != nil {
			return 0, err
		}
		for i, r := range recs {
			if r.ID == c.Last {
				return off + i + 1, nil
			}
			if store.Millis(r.CreatedAt) < c.At {
				return off + i, nil
			}
		}
		if len(recs) < window {
			return off + len(recs), nil
		}
		off += len(recs)
	}
	return c.Offset, nil
}
