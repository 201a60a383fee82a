// Package httpapi serves MCP over streamable HTTP for shared and remote
// scanners: named bearer tokens (stored as SHA-256 hashes, compared in
// constant time), an Origin allowlist against DNS rebinding, mcp-go's Host
// check, a bounded request body, /healthz and /metrics, and a drain on
// shutdown. The token's name is the client identity for logs, the audit
// trail and budgets. MCP sessions are bound to their client when minted
// and bounded (sessions.go); connections are bounded per address and kept
// for authenticated work (conns.go).
package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/auth"
	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/web"
)

// Token is a named bearer token as stored: its SHA-256, never the token.
type Token struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
	// Admin lets the client see and control every client's scans.
	Admin bool `yaml:"admin"`
	// Approver lets the token's person approve or deny scans waiting for
	// approval on the web view (admins may too).
	Approver bool `yaml:"approver,omitempty"`
}

// NewToken returns a random token and its stored form.
func NewToken(name string) (secret string, t Token, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Token{}, fmt.Errorf("make token: %w", err)
	}
	secret = "nmcp_" + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, Token{Name: name, SHA256: HashToken(secret)}, nil
}

// HashToken is the stored form of a token.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Config configures the HTTP transport.
type Config struct {
	Addr    string   // e.g. 127.0.0.1:8808
	TLSCert string   // optional certificate file
	TLSKey  string   // and its key
	Origins []string // allowed Origin header values; an absent Origin is allowed
	Tokens  []Token
	MaxBody int64 // bytes; default 1 MiB
	// MaxConnections bounds open connections (default 256); more wait
	// to be accepted.
	MaxConnections int
	// MaxConnectionsPerAddress bounds one source address's (IPv6: /64)
	// open connections that have not carried an authenticated request
	// (default 64, at most MaxConnections).
	MaxConnectionsPerAddress int
	// SessionIdle ends an MCP session after this long with no request
	// (default 30 min).
	SessionIdle time.Duration
	// MaxSessions bounds open MCP sessions (default 1000), and
	// MaxSessionsPerClient one client's (default 64); initialize is
	// refused at either cap.
	MaxSessions          int
	MaxSessionsPerClient int
	// Auth, when set, accepts the lab's identity provider's access tokens
	// beside the static tokens (see oauth.go), and Login signs people in
	// to the web view through the provider.
	Auth  *auth.Verifier
	Login *auth.Login
}

// Server timeouts. Calls to /mcp may stream for as long as a scan runs
// (up to the queue wait plus the scan's wall clock), so once a /mcp
// request's body is read its read and write deadlines are lifted; every
// other request, and every idle keep-alive connection, is bounded.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	// healthTTL is how long a health answer is reused: /healthz needs no
	// token, so it must not cost engine calls per request.
	healthTTL = 2 * time.Second
	// Connection defaults.
	DefaultMaxConnections           = 256
	DefaultMaxConnectionsPerAddress = 64
)

// isLoopback reports whether a listen address is on loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// open reports whether the server knows no one: neither static tokens nor
// an identity provider (allowed on loopback only; every caller is then
// "local").
func (c Config) open() bool { return len(c.Tokens) == 0 && c.Auth == nil }

// Validate refuses a non-loopback address without tokens.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("http address %q: %w", c.Addr, err)
	}
	if !isLoopback(c.Addr) && c.open() {
		return fmt.Errorf("refusing to serve on %s, which is not loopback, without a bearer token or an identity provider: "+
			"make one with `nmap-mcp token add NAME` (it is stored in the config file), configure auth.issuer, or serve on 127.0.0.1", c.Addr)
	}
	for _, t := range c.Tokens {
		if t.Name == "" || len(t.SHA256) != 64 {
			return fmt.Errorf("http.tokens: token %q must have a name and a 64-hex-digit sha256", t.Name)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("http: give both tls_cert and tls_key, or neither")
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"max_connections", c.MaxConnections}, {"max_connections_per_address", c.MaxConnectionsPerAddress},
		{"max_sessions", c.MaxSessions}, {"max_sessions_per_client", c.MaxSessionsPerClient}} {
		if n.v < 0 {
			return fmt.Errorf("http.%s %d: must be 0 (the default) or more", n.key, n.v)
		}
	}
	if c.SessionIdle < 0 {
		return fmt.Errorf("http.session_idle_seconds %s: must be 0 (the default) or more", c.SessionIdle)
	}
	return nil
}

// Deps are what the HTTP server serves.
type Deps struct {
	MCP      *server.MCPServer
	Delivery *mcpserver.Delivery
	// Tasks, when set, answers MCP task requests (task-augmented
	// nmap_scan, tasks/*) before mcp-go sees them.
	Tasks *mcpserver.Tasks
	// Health says why the server cannot scan, or nil.
	Health  func(ctx context.Context) error
	Metrics http.Handler
	// Scans, when set, is served as the web view at / (package web).
	Scans web.Scans
	// AuditPath is the audit trail the web view shows.
	AuditPath string
	// Watches, when set, adds the web view's watches page.
	Watches web.Watches
	// Approvals, when set, adds the web view's approvals page, where
	// tokens with the approver role (or admin) answer.
	Approvals *approval.Store
	// Inventory, when set, adds the web view's inventory pages.
	Inventory *inventory.Inventory
	// Seen, when set, is told of each provider's person whose token was
	// accepted (their standing: see auth.Standing).
	Seen func(auth.Identity)
	// Refused counts refusals by reason (optional).
	Refused func(reason string)
	Log     *slog.Logger
}

// Server is the HTTP front.
type Server struct {
	cfg      Config
	d        Deps
	http     *http.Server
	mcp      *server.StreamableHTTPServer
	draining atomic.Bool

	// sessions binds each MCP session id to the client that minted it.
	sessions *sessionTable
	// conns admits and counts the listener's connections.
	conns *connLimiter
	// bg ends the session sweeper.
	bg     context.Context
	stopBg context.CancelFunc
	bgDone sync.WaitGroup

	// loopback is true when the listener is on a loopback address.
	loopback bool

	healthMu  sync.Mutex
	healthAt  time.Time
	healthErr error
}

// identity is an authenticated caller: a static token's client (read
// and scan, plus its admin and approver flags) or a provider's person
// (the roles their token's scopes or groups give).
type identity struct {
	name     string
	admin    bool
	approver bool
	read     bool
	scan     bool
	// provider marks a person signed by the identity provider.
	provider bool
	// expires is when a provider's token ends (zero for static tokens).
	expires time.Time
}

// has says whether id holds role r.
func (id identity) has(r auth.Role) bool {
	switch {
	case id.admin:
		return true
	case r == auth.Read:
		return id.read || id.scan
	case r == auth.Scan:
		return id.scan
	case r == auth.Approve:
		return id.approver
	}
	return false
}

type clientKey struct{}

// New builds the server; call Serve.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Refused == nil {
		d.Refused = func(string) {}
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxConnectionsPerAddress <= 0 {
		cfg.MaxConnectionsPerAddress = DefaultMaxConnectionsPerAddress
	}
	cfg.MaxConnectionsPerAddress = min(cfg.MaxConnectionsPerAddress, cfg.MaxConnections)
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = DefaultSessionIdle
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.MaxSessionsPerClient <= 0 {
		cfg.MaxSessionsPerClient = DefaultMaxSessionsPerClient
	}
	s := &Server{cfg: cfg, d: d, loopback: isLoopback(cfg.Addr),
		sessions: newSessionTable(cfg.SessionIdle, cfg.MaxSessions, cfg.MaxSessionsPerClient)}
	s.bg, s.stopBg = context.WithCancel(context.Background())
	s.conns = newConnLimiter(cfg.MaxConnections, cfg.MaxConnectionsPerAddress, d.Refused)
	s.mcp = server.NewStreamableHTTPServer(d.MCP,
		server.WithEndpointPath("/mcp"),
		// Session ids are minted bound to the caller's client.
		server.WithSessionIdManagerResolver(s.sessions),
		server.WithHeartbeatInterval(30*time.Second),
		server.WithHTTPContextFunc(func(ctx context.Context, r *http.Request) context.Context {
			id, ok := r.Context().Value(clientKey{}).(identity)
			if !ok {
				return ctx
			}
			ctx = scans.WithClient(ctx, id.name)
			if id.admin {
				ctx = scans.WithAdmin(ctx)
			}
			return ctx
		}))
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", s.healthz)
	if cfg.Auth != nil {
		mux.HandleFunc("GET "+metadataPath, s.protectedResource)
		mux.HandleFunc("GET "+metadataPath+"/mcp", s.protectedResource)
	}
	if d.Metrics != nil {
		mux.Handle("/metrics", s.guard(d.Metrics, false))
	}
	mux.Handle("/mcp", s.guard(s.observe(s.mcp), true))
	if d.Scans != nil {
		view, err := web.New(web.Config{Authenticate: s.tokenIdentity, OriginAllowed: s.originAllowed, Secure: cfg.TLSCert != "",
			AuditPath: d.AuditPath, Log: d.Log, Watches: d.Watches, Approvals: d.Approvals, Approver: s.approver, Inventory: d.Inventory, Login: cfg.Login, Seen: d.Seen}, d.Scans)
		if err != nil {
			return nil, err
		}
		mux.Handle("/", view)
	}
	s.http = &http.Server{Addr: cfg.Addr, Handler: mux, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, ConnState: s.conns.state,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc := tracked(c); tc != nil {
				return context.WithValue(ctx, connKey{}, tc)
			}
			return ctx
		}}
	return s, nil
}

// Handler is the server's HTTP handler (for tests).
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Serve serves on ln until Shutdown, with at most MaxConnections open
// (see conns.go), and ends idle sessions meanwhile. Call it once.
func (s *Server) Serve(ln net.Listener) error {
	ln = s.conns.listen(ln)
	s.bgDone.Add(1)
	go func() {
		defer s.bgDone.Done()
		s.sweeper(s.bg)
	}()
	var err error
	if s.cfg.TLSCert != "" {
		err = s.http.ServeTLS(ln, s.cfg.TLSCert, s.cfg.TLSKey)
	} else {
		err = s.http.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Drain refuses new requests to /mcp with 503 from now on.
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown stops the listener, ends every MCP session (and its stream),
// and waits for requests until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopBg()
	s.bgDone.Wait()
	s.sessions.endAll()
	s.mcp.CloseSessions(ctx)
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	return err
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if err := s.health(r.Context()); err != nil {
		http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

// health runs the health check at most once per healthTTL; concurrent
// requests wait for the one check under way.
func (s *Server) health(ctx context.Context) error {
	if s.d.Health == nil {
		return nil
	}
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if time.Since(s.healthAt) < healthTTL {
		return s.healthErr
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.healthErr = s.d.Health(cctx)
	s.healthAt = time.Now()
	return s.healthErr
}

// originAllowed accepts the configured origins and, on a loopback
// listener, the browser origins of this machine itself (localhost,
// 127.0.0.1, [::1], any port, http or https): a page on this machine may
// reach a loopback server anyway, while a DNS-rebinding page keeps its
// foreign origin and is refused.
func (s *Server) originAllowed(origin string) bool {
	if slices.Contains(s.cfg.Origins, origin) {
		return true
	}
	if !s.loopback {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" && u.Path != "/" {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// guard applies the Origin allowlist, bearer tokens, the drain and (for
// MCP) the body bound, before anything reaches next.
func (s *Server) guard(next http.Handler, mcpEndpoint bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && !s.originAllowed(o) {
			s.d.Refused("origin")
			http.Error(w, fmt.Sprintf("Forbidden: Origin %q is not allowed; add it to http.origins in the config file", o), http.StatusForbidden)
			return
		}
		id, err := s.authenticate(r)
		if err != nil {
			s.refuseAuth(w, r, err)
			return
		}
		if !id.has(auth.Read) {
			s.refuseScope(w, auth.Read)
			return
		}
		s.conns.authenticated(r.Context())
		ctx := context.WithValue(r.Context(), clientKey{}, id)
		if mcpEndpoint {
			if s.draining.Load() {
				http.Error(w, "Service Unavailable: the server is shutting down", http.StatusServiceUnavailable)
				return
			}
			if r.ContentLength > s.cfg.MaxBody {
				s.d.Refused("body_too_large")
				http.Error(w, fmt.Sprintf("Request Entity Too Large: at most %d bytes", s.cfg.MaxBody), http.StatusRequestEntityTooLarge)
				return
			}
			var body []byte
			if r.Body != nil {
				var err error
				body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
				if err != nil {
					s.d.Refused("body_too_large")
					http.Error(w, fmt.Sprintf("Bad Request: could not read the body within %d bytes and %s: %v", s.cfg.MaxBody, readTimeout, err), http.StatusBadRequest)
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			// The body is in: lift the deadlines for a call that streams
			// as long as its scan runs.
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
			// Read is checked above: only a caller without scan (a
			// provider's person) has the body decoded for its role.
			if !id.has(auth.Scan) {
				if need := requiredRole(body); need != auth.Read {
					s.refuseScope(w, need)
					return
				}
			}
			var leave func()
			var ok bool
			if ctx, leave, ok = s.session(ctx, w, r, id.name, body); !ok {
				return
			}
			defer leave()
			if mcpserver.AnswerModernCancel(w, r) {
				return
			}
			if s.d.Tasks != nil && r.Method == http.MethodPost {
				// Task requests are answered from the scans service
				// (mcpserver/tasks.go), not by mcp-go's in-memory tasks.
				tctx := scans.WithClient(ctx, id.name)
				if id.admin {
					tctx = scans.WithAdmin(tctx)
				}
				if s.d.Tasks.AnswerHTTP(tctx, w, r, body) {
					return
				}
			}
		}
		if mcpEndpoint && r.Method == http.MethodGet && !id.expires.IsZero() {
			// A provider person's event stream ends with their token:
			// the client reconnects with a fresh one (a person removed
			// at the provider gets none). Calls are not cut: a scan
			// admitted under a valid token finishes.
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, id.expires)
			defer cancel()
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// session admits a /mcp request to its session: a request naming a
// session id must be its client's (else 404, as for an unknown session);
// GET and DELETE must name one; an initialize (before 2026-07-28) takes
// room for the session that mcp-go will mint (refused at a cap). The
// request is in flight on its session until leave.
func (s *Server) session(ctx context.Context, w http.ResponseWriter, r *http.Request, client string, body []byte) (context.Context, func(), bool) {
	leave := func() {}
	if sid := r.Header.Get(server.HeaderKeySessionID); sid != "" {
		var ok bool
		if leave, ok = s.sessions.enter(sid, client); !ok {
			s.d.Refused("session")
			http.Error(w, "Not Found: no such session; send initialize to start a new one", http.StatusNotFound)
			return nil, nil, false
		}
	} else if r.Method == http.MethodGet || r.Method == http.MethodDelete {
		s.d.Refused("session")
		http.Error(w, fmt.Sprintf("Bad Request: %s /mcp needs the %s header that initialize returned", r.Method, server.HeaderKeySessionID),
			http.StatusBadRequest)
		return nil, nil, false
	}
	if r.Method == http.MethodPost && opensSession(r.Header, body) {
		res, refused := s.sessions.reserve(client)
		if refused != nil {
			leave()
			s.d.Refused("sessions")
			refuseSession(w, body, refused)
			return nil, nil, false
		}
		inner := leave
		leave = func() { res.release(); inner() }
		ctx = context.WithValue(ctx, reservationKey{}, res)
	}
	return ctx, leave, true
}

// authenticate returns the caller's identity: a static token's, or a
// provider's person's. With neither tokens nor a provider configured
// (which Validate allows on loopback only) every caller is "local".
func (s *Server) authenticate(r *http.Request) (identity, error) {
	if s.cfg.open() {
		return identity{name: "local", read: true, scan: true, approver: true}, nil
	}
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	secret = strings.TrimSpace(secret)
	if !ok || secret == "" {
		return identity{}, errNoToken
	}
	if id, ok := s.checkToken(secret); ok {
		return id, nil
	}
	if s.cfg.Auth == nil || strings.Count(secret, ".") != 2 {
		return identity{}, errUnknownToken
	}
	return s.verify(r.Context(), secret)
}

// tokenIdentity names the client of a token, for the web view's sign-in.
func (s *Server) tokenIdentity(secret string) (string, bool, bool) {
	if s.cfg.open() {
		return "local", false, true
	}
	if strings.TrimSpace(secret) == "" {
		return "", false, false
	}
	id, ok := s.checkToken(secret)
	return id.name, id.admin, ok
}

// approver says whether client's token has the approver role (or is an
// admin's); without tokens the one client, local, has.
func (s *Server) approver(client string) bool {
	if s.cfg.open() {
		return client == "local"
	}
	for _, t := range s.cfg.Tokens {
		if t.Name == client && (t.Approver || t.Admin) {
			return true
		}
	}
	return false
}

// checkToken compares a token with every configured one.
func (s *Server) checkToken(secret string) (identity, bool) {
	got := []byte(HashToken(strings.TrimSpace(secret)))
	var id identity
	found := 0
	for _, t := range s.cfg.Tokens {
		// Compare with every token, in constant time, without stopping early.
		if subtle.ConstantTimeCompare(got, []byte(strings.ToLower(t.SHA256))) == 1 {
			id, found = identity{name: t.Name, admin: t.Admin, approver: t.Approver || t.Admin, read: true, scan: true}, found+1
		}
	}
	return id, found > 0
}

// observe lets Delivery see the notifications written to each response,
// so a call's result waits for them (see mcpserver.Delivery).
func (s *Server) observe(next http.Handler) http.Handler {
	if s.d.Delivery == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&observedWriter{ResponseWriter: w, out: s.d.Delivery.Writer(w)}, r)
	})
}

type observedWriter struct {
	http.ResponseWriter
	out interface{ Write([]byte) (int, error) }
}

func (o *observedWriter) Write(p []byte) (int, error) { return o.out.Write(p) }

func (o *observedWriter) Flush() {
	if f, ok := o.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (o *observedWriter) Unwrap() http.ResponseWriter { return o.ResponseWriter }
