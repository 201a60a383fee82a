package mcpserver

// The mcp-go v1.2.1 workarounds, in one place:
//
//  1. Delivery (below): a barrier so that every notification of a tool call
//     is written before its result. Remove it when mcp-go writes
//     notifications synchronously before the result (upstream PR #969,
//     "ensure notifications are sent before the response").
//  2. AnswerModernCancel (at the end): answers a protocol 2026-07-28
//     notifications/cancelled with 202 itself. Remove it when mcp-go
//     accepts that notification without a per-request _meta (it rejects it
//     with 400 in v1.2.1, and the official SDK then closes the session).

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// seqKey marks each notification a tool call sends, in its params' _meta,
// as "CALL:N". mcp-go v1.2.1 queues notifications on a channel that another
// goroutine writes, while the handler's result is written directly, so a
// notification sent just before a result can reach the client after it
// (stdio) or be lost (HTTP). Delivery closes that race: it watches what is
// written to the transport, and a handler holds its result until its last
// notification has been written.
const seqKey = "io.nmap-mcp/seq"

// Delivery tracks which marked notifications have been written.
type Delivery struct {
	mu   sync.Mutex
	cond *sync.Cond
	seen map[string]uint64
}

// NewDelivery returns an empty tracker.
func NewDelivery() *Delivery {
	d := &Delivery{seen: map[string]uint64{}}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// Writer wraps the transport's output (stdout for stdio) so that d sees
// every message written. mcp-go writes each message with one Write call.
func (d *Delivery) Writer(w io.Writer) io.Writer { return &trackingWriter{w: w, d: d} }

type trackingWriter struct {
	w io.Writer
	d *Delivery
}

var seqMarker = []byte(`"` + seqKey + `":"`)

func (t *trackingWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if bytes.Contains(p, seqMarker) {
		t.d.observe(p)
	}
	return n, err
}

func (d *Delivery) observe(p []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		i := bytes.Index(p, seqMarker)
		if i < 0 {
			break
		}
		p = p[i+len(seqMarker):]
		end := bytes.IndexByte(p, '"')
		if end < 0 {
			break
		}
		v := p[:end]
		if c := bytes.LastIndexByte(v, ':'); c > 0 {
			if n, err := strconv.ParseUint(string(v[c+1:]), 10, 64); err == nil && n > d.seen[string(v[:c])] {
				d.seen[string(v[:c])] = n
			}
		}
		p = p[end:]
	}
	d.cond.Broadcast()
}

// Wait blocks until notification n of call has been written, or timeout
// passes; it reports whether it was written. A nil Delivery (a transport
// it cannot watch) returns true at once.
func (d *Delivery) Wait(call string, n uint64, timeout time.Duration) bool {
	if d == nil || n == 0 {
		return true
	}
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		d.mu.Lock()
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	defer timer.Stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.seen[call] < n {
		if time.Now().After(deadline) {
			return false
		}
		d.cond.Wait()
	}
	return true
}

// Forget drops a finished call's entry.
func (d *Delivery) Forget(call string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	delete(d.seen, call)
	d.mu.Unlock()
}

// AnswerModernCancel answers a protocol 2026-07-28 notifications/cancelled
// with 202 itself, and reports whether it did. In that version a request
// is cancelled by closing its HTTP request, which mcp-go turns into the
// handler's cancellation; the notification the official Go SDK also sends
// carries no per-request _meta, which mcp-go v1.2.1 rejects with 400, and
// the SDK then closes the whole session. r's body must be in memory.
func AnswerModernCancel(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost || r.Header.Get("MCP-Protocol-Version") < "2026-07-28" || r.Body == nil {
		return false
	}
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return false
	}
	var msg struct {
		ID     any    `json:"id"`
		Method string `json:"method"`
	}
	if json.Unmarshal(body, &msg) != nil || msg.ID != nil || msg.Method != "notifications/cancelled" {
		return false
	}
	w.WriteHeader(http.StatusAccepted)
	return true
}
