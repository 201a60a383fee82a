package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Sessions over HTTP (protocol versions up to 2025-11-25; from 2026-07-28
// there are no sessions). A session id is minted by sessionTable, through
// mcp-go's SessionIdManager, already bound to the client whose token
// called initialize: there is no moment when an id exists without its
// client. An id with no binding is not found (404), whatever the token,
// and a binding ends only with its session: on DELETE, when it has been
// idle for the idle timeout (no request for that long, none in flight), or
// on shutdown. Nothing evicts a live session; instead a client may hold at
// most maxPerClient sessions and the server at most max, and initialize
// is refused at either cap. When a session ends, mcp-go's per-session
// state goes with it (its cleanup unregisters the session, and the
// OnUnregisterSession hooks, such as mcpserver's subscriptions, forget
// theirs).

// Session defaults (documented in internal/config/default.yaml).
const (
	DefaultSessionIdle          = 30 * time.Minute
	DefaultMaxSessions          = 1000
	DefaultMaxSessionsPerClient = 64
)

// sessionIDPrefix keeps ids recognisable in logs; the rest is 256 random
// bits.
const sessionIDPrefix = "nmcp-s-"

// binding is one session's owner and use.
type binding struct {
	client   string
	last     time.Time // end of the latest request
	inflight int       // requests being served now
}

// capError is an initialize refused at a session cap.
type capError struct {
	status int
	msg    string
}

func (e *capError) Error() string { return e.msg }

// sessionTable owns every binding. Its zero value is not usable: see
// newSessionTable.
type sessionTable struct {
	idle         time.Duration
	max          int
	maxPerClient int

	mu        sync.Mutex
	byID      map[string]*binding
	perClient map[string]int // bindings plus reservations
	reserved  int            // reservations not yet minted
}

func newSessionTable(idle time.Duration, maxTotal, maxPerClient int) *sessionTable {
	return &sessionTable{idle: idle, max: maxTotal, maxPerClient: maxPerClient,
		byID: map[string]*binding{}, perClient: map[string]int{}}
}

// reservation is room for one session, taken before initialize reaches
// mcp-go and turned into a binding when mcp-go mints the id.
type reservation struct {
	t      *sessionTable
	client string
	mu     sync.Mutex
	done   bool // minted or released
}

// reserve takes room for one more session of client, or says which cap
// is reached.
func (t *sessionTable) reserve(client string) (*reservation, *capError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.perClient[client]; n >= t.maxPerClient {
		return nil, &capError{status: http.StatusTooManyRequests, msg: fmt.Sprintf(
			"too many sessions: client %q has %d open sessions, the most http.max_sessions_per_client allows; "+
				"end one (DELETE /mcp with its Mcp-Session-Id) or wait until one has been idle for %s (http.session_idle_seconds)",
			client, n, t.idle)}
	}
	if n := len(t.byID) + t.reserved; n >= t.max {
		return nil, &capError{status: http.StatusServiceUnavailable, msg: fmt.Sprintf(
			"too many sessions: the server holds %d open sessions, the most http.max_sessions allows; "+
				"try again when a session has ended or been idle for %s (http.session_idle_seconds)", n, t.idle)}
	}
	t.perClient[client]++
	t.reserved++
	return &reservation{t: t, client: client}, nil
}

// release gives the room back if no id was minted with it.
func (r *reservation) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	r.done = true
	r.t.mu.Lock()
	r.t.reserved--
	r.t.dropClientLocked(r.client)
	r.t.mu.Unlock()
}

// mint turns the reservation into a bound session id; "" if it was used.
func (r *reservation) mint() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return ""
	}
	r.done = true
	id := newSessionID()
	r.t.mu.Lock()
	r.t.reserved--
	r.t.byID[id] = &binding{client: r.client, last: time.Now()}
	r.t.mu.Unlock()
	return id
}

func newSessionID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return sessionIDPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

func (t *sessionTable) dropClientLocked(client string) {
	if t.perClient[client] <= 1 {
		delete(t.perClient, client)
	} else {
		t.perClient[client]--
	}
}

// enter admits a request of client on session id, which must be bound to
// client; the request is in flight until leave is called.
func (t *sessionTable) enter(id, client string) (leave func(), ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, found := t.byID[id]
	if !found || b.client != client {
		return nil, false
	}
	b.inflight++
	return sync.OnceFunc(func() {
		t.mu.Lock()
		b.inflight--
		b.last = time.Now()
		t.mu.Unlock()
	}), true
}

// owns reports whether id is bound to client.
func (t *sessionTable) owns(id, client string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := t.byID[id]
	return ok && b.client == client
}

// end forgets id's binding; it reports whether there was one.
func (t *sessionTable) end(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.endLocked(id)
}

func (t *sessionTable) endLocked(id string) bool {
	b, ok := t.byID[id]
	if !ok {
		return false
	}
	delete(t.byID, id)
	t.dropClientLocked(b.client)
	return true
}

// expire forgets every session idle since before now-idle with nothing
// in flight, and returns their ids.
func (t *sessionTable) expire(now time.Time) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []string
	for id, b := range t.byID {
		if b.inflight == 0 && now.Sub(b.last) >= t.idle {
			t.endLocked(id)
			gone = append(gone, id)
		}
	}
	return gone
}

// SessionCounts are the session table's counts.
type SessionCounts struct {
	Sessions int            // bound session ids
	Clients  map[string]int // sessions (and reservations) per client
}

func (t *sessionTable) stats() SessionCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := SessionCounts{Sessions: len(t.byID), Clients: make(map[string]int, len(t.perClient))}
	for c, n := range t.perClient {
		st.Clients[c] = n
	}
	return st
}

// --- mcp-go's SessionIdManager, resolved per request ---

type reservationKey struct{}

// ResolveSessionIdManager gives mcp-go a manager that knows the request's
// authenticated client (and its reservation, for initialize); for r nil
// (mcp-go's own maintenance) one that only terminates.
func (t *sessionTable) ResolveSessionIdManager(r *http.Request) server.SessionIdManager {
	m := &boundManager{t: t}
	if r != nil {
		if id, ok := r.Context().Value(clientKey{}).(identity); ok {
			m.client, m.known = id.name, true
		}
		m.res, _ = r.Context().Value(reservationKey{}).(*reservation)
	}
	return m
}

// boundManager is mcp-go's view of the table for one request.
type boundManager struct {
	t      *sessionTable
	client string
	known  bool
	res    *reservation
}

var errNoSession = errors.New("no such session")

// Generate mints an id bound to the request's client, in the room the
// guard reserved for this initialize. Without a reservation it mints
// nothing: mcp-go then answers without a session id.
func (m *boundManager) Generate() string {
	if m.res == nil {
		return ""
	}
	return m.res.mint()
}

// Validate accepts only an id bound to the request's client.
func (m *boundManager) Validate(id string) (bool, error) {
	if !m.known || !m.t.owns(id, m.client) {
		return false, errNoSession
	}
	return false, nil
}

// Terminate forgets the binding: the client's own (DELETE), or any (the
// server's maintenance, with no request).
func (m *boundManager) Terminate(id string) (bool, error) {
	if m.known && !m.t.owns(id, m.client) {
		return false, errNoSession
	}
	m.t.end(id)
	return false, nil
}

// opensSession reports whether a JSON-RPC request is an initialize that
// opens a session: one of a protocol before 2026-07-28. That protocol has
// no sessions and removed initialize (mcp-go answers 404, -32601), so the
// session caps must not answer it first. The era is read as mcp-go reads
// it: 2026-07-28 or later in the Mcp-Protocol-Version header or in the
// body's _meta.
func opensSession(h http.Header, body []byte) bool {
	var msg struct {
		Method string `json:"method"`
		Params struct {
			Meta *mcp.Meta `json:"_meta"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &msg) != nil || msg.Method != "initialize" {
		return false
	}
	return !mcp.IsModernProtocol(h.Get(mcp.HeaderProtocolVersion)) && !mcp.IsModernProtocol(msg.Params.Meta.ProtocolVersion())
}

// refuseSession writes a JSON-RPC error for an initialize refused at a
// session cap.
func refuseSession(w http.ResponseWriter, body []byte, e *capError) {
	var msg struct {
		ID json.RawMessage `json:"id"`
	}
	_ = json.Unmarshal(body, &msg)
	if len(msg.ID) == 0 {
		msg.ID = json.RawMessage("null")
	}
	out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": msg.ID,
		"error": map[string]any{"code": -32000, "message": e.msg}})
	w.Header().Set("Content-Type", "application/json")
	if e.status == http.StatusServiceUnavailable || e.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "60")
	}
	w.WriteHeader(e.status)
	_, _ = w.Write(out)
}

// endSessions ends the given sessions in mcp-go: a DELETE served to it
// in-process, with no client, so its own cleanup runs (the session is
// unregistered, its per-session state dropped, its GET stream closed).
func (s *Server) endSessions(ctx context.Context, ids []string) {
	for _, id := range ids {
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "/mcp", nil)
		if err != nil {
			continue
		}
		req.Header.Set(server.HeaderKeySessionID, id)
		s.mcp.ServeHTTP(discardWriter{h: http.Header{}}, req)
	}
}

// discardWriter is the response of an in-process DELETE.
type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}

// sweepSessions ends the sessions idle since before now-idle.
func (s *Server) sweepSessions(ctx context.Context, now time.Time) int {
	gone := s.sessions.expire(now)
	if len(gone) > 0 {
		s.endSessions(ctx, gone)
		s.d.Log.Debug("sessions idled out", "count", len(gone), "idle", s.sessions.idle)
	}
	return len(gone)
}

// sweeper runs sweepSessions until ctx ends.
func (s *Server) sweeper(ctx context.Context) {
	every := min(max(s.sessions.idle/4, 10*time.Millisecond), time.Minute)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s.sweepSessions(ctx, now)
		}
	}
}

// SessionStats reports the sessions held now.
func (s *Server) SessionStats() SessionCounts { return s.sessions.stats() }

// endAll forgets every binding (shutdown; mcp-go's CloseSessions then
// drops its own state).
func (t *sessionTable) endAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.byID {
		t.endLocked(id)
	}
}
