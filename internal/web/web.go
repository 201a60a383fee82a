// Package web is the read-only web view for people: the scans, one scan's
// hosts and ports, diffs, the audit trail and live progress, served by
// `serve --http` at / beside /mcp, and standalone HTML reports for the CLI.
//
// Sign-in takes one of the server's named tokens and gives an HttpOnly,
// SameSite=Strict cookie (Secure under TLS) that carries a random session
// id kept in memory, never the token; sessions expire. Without a session
// only the sign-in page and the static assets are served. Sign-in and
// sign-out are POSTs that must come from the page's own origin (and
// sign-out carries the session's form token). Each person sees what their
// token's client may see: its own scans, or every client's for an admin.
//
// Everything shown is escaped by html/template — banners, script output
// and hostnames come from scanned machines — and every response carries a
// Content-Security-Policy without inline script, frame-ancestors 'none',
// and no external asset: the pages work air-gapped.
package web

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/auth"
	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Scans is what the view reads of the scans service; *scans.Service
// satisfies it. Every call is made with the signed-in client in ctx
// (scans.WithClient, scans.WithAdmin).
type Scans interface {
	List(ctx context.Context, f store.Filter) ([]*store.Record, error)
	Get(ctx context.Context, id string) (scans.Snapshot, error)
	RawXML(ctx context.Context, id string) ([]byte, error)
	Pair(ctx context.Context, idA, idB, target string) (*store.Record, *store.Record, error)
	Live(ctx context.Context) []scans.Snapshot
}

// Watches is what the view reads of the watches service; nil hides the
// watches page.
type Watches interface {
	List(ctx context.Context) ([]*store.Watch, error)
}

// Config shapes the view.
type Config struct {
	// Watches, when set, adds the watches page.
	Watches Watches
	// Authenticate checks a token and names its client; admin clients see
	// every client's scans.
	Authenticate func(token string) (client string, admin bool, ok bool)
	// OriginAllowed accepts an Origin header value besides the page's own.
	OriginAllowed func(origin string) bool
	// Secure marks cookies Secure (the server speaks TLS).
	Secure bool
	// SessionTTL is how long a sign-in lasts (default 8 h).
	SessionTTL time.Duration
	// Approvals, when set, adds the page of scans waiting for approval
	// (approvals.go); Approver says whether a client's token has the
	// approver role (admins always may answer).
	Approvals *approval.Store
	Approver  func(client string) bool
	// Inventory, when set, adds the inventory pages (inventory.go).
	Inventory *inventory.Inventory
	// Login, when set, signs people in through the lab's identity
	// provider (login.go) beside the token sign-in; Seen is told of each
	// person signed in that way.
	Login *auth.Login
	Seen  func(auth.Identity)
	// AuditPath is the audit trail shown on the audit page ("" for none).
	AuditPath string
	Log       *slog.Logger
}

// CookieName is the session cookie.
const CookieName = "nmap_mcp_session"

// maxSessions bounds the sessions kept; the oldest go first.
const maxSessions = 10000

// Handler serves the view.
type Handler struct {
	cfg   Config
	scans Scans
	pages map[string]*template.Template
	mux   *http.ServeMux
	now   func() time.Time

	audit *auditView

	mu       sync.Mutex
	sessions map[string]*session
	// loginSeal seals the provider sign-ins under way into their cookies
	// (login.go).
	loginSeal cipher.AEAD
}

type session struct {
	id     string
	client string
	admin  bool
	// approver: the person's provider roles let them answer approvals
	// (a static token's role is Config.Approver's to say).
	approver bool
	// read: the person may see scans (every static token may; a
	// provider's person needs the read or scan role, else only the
	// approvals page is theirs).
	read    bool
	csrf    string
	expires time.Time
}

// person is who a session is for.
type person struct {
	client                string
	admin, approver, read bool
}

// New returns the view's handler.
func New(cfg Config, sc Scans) (*Handler, error) {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.OriginAllowed == nil {
		cfg.OriginAllowed = func(string) bool { return false }
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, scans: sc, pages: pages, now: time.Now, sessions: map[string]*session{}}
	if h.loginSeal, err = newLoginSealer(); err != nil {
		return nil, err
	}
	if cfg.AuditPath != "" {
		if h.audit, err = newAuditView(cfg.AuditPath); err != nil {
			return nil, err
		}
	}
	static, _ := fs.Sub(assets, "static")
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /signin", h.signinPage)
	mux.HandleFunc("POST /signin", h.signin)
	mux.HandleFunc("POST /signout", h.signed(h.signout))
	if cfg.Login != nil {
		mux.HandleFunc("GET /auth/login", h.providerLogin)
		mux.HandleFunc("GET /auth/callback", h.providerCallback)
	}
	mux.HandleFunc("GET /{$}", h.signed(func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, "/scans", http.StatusSeeOther)
	}))
	mux.HandleFunc("GET /scans", h.signed(h.scanList))
	mux.HandleFunc("GET /scans/{id}", h.signed(h.scanPage))
	mux.HandleFunc("GET /scans/{id}/xml", h.signed(h.downloadXML))
	mux.HandleFunc("GET /scans/{id}/json", h.signed(h.downloadJSON))
	mux.HandleFunc("GET /scans/{id}/csv", h.signed(h.downloadCSV))
	mux.HandleFunc("GET /diff", h.signed(h.diffPage))
	mux.HandleFunc("GET /audit", h.signed(h.auditPage))
	mux.HandleFunc("GET /running", h.signed(h.runningPage))
	mux.HandleFunc("GET /watches", h.signed(h.watchesPage))
	mux.HandleFunc("GET /events", h.signed(h.events))
	mux.HandleFunc("GET /approvals", h.signed(h.approvalsPage))
	mux.HandleFunc("POST /approvals/{id}", h.signed(h.answer))
	if err := h.addInventory(mux); err != nil {
		return nil, err
	}
	h.mux = mux
	return h, nil
}

// ServeHTTP sets the security headers and routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: under no-referrer browsers send
	// "Origin: null" with the page's own form posts.
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// signed runs next with the request's session, or sends a request without
// one to the sign-in page (pages) or answers 401 (everything else).
func (h *Handler) signed(next func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := h.session(r)
		if sess == nil {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" && !isDownload(r.URL.Path) {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "Unauthorized: sign in at /signin", http.StatusUnauthorized)
			return
		}
		if !sess.read && r.URL.Path != "/approvals" && !strings.HasPrefix(r.URL.Path, "/approvals/") && r.URL.Path != "/signout" {
			http.Error(w, "Forbidden: your account has the approve role only; the approvals page is at /approvals", http.StatusForbidden)
			return
		}
		ctx := scans.WithClient(r.Context(), sess.client)
		if sess.admin {
			ctx = scans.WithAdmin(ctx)
		}
		next(w, r.WithContext(ctx), sess)
	}
}

func isDownload(path string) bool {
	return strings.HasSuffix(path, "/xml") || strings.HasSuffix(path, "/json") || strings.HasSuffix(path, "/csv") || path == "/events"
}

// session returns the request's live session, or nil.
func (h *Handler) session(r *http.Request) *session {
	c, err := r.Cookie(CookieName)
	if err != nil || len(c.Value) != 64 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sessions[c.Value]
	if !ok || subtle.ConstantTimeCompare([]byte(s.id), []byte(c.Value)) != 1 {
		return nil
	}
	if h.now().After(s.expires) {
		delete(h.sessions, s.id)
		return nil
	}
	return s
}

// newSession stores a session for a static token's client and returns it.
func (h *Handler) newSession(client string, admin bool) (*session, error) {
	return h.newSessionFor(person{client: client, admin: admin, read: true}, h.now().Add(h.cfg.SessionTTL))
}

// newSessionFor stores a session for p until expires and returns it.
func (h *Handler) newSessionFor(p person, expires time.Time) (*session, error) {
	id, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	csrf, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	s := &session{id: id, client: p.client, admin: p.admin, approver: p.approver, read: p.read, csrf: csrf, expires: expires}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if len(h.sessions) >= maxSessions {
		var oldest *session
		for _, o := range h.sessions {
			if now.After(o.expires) {
				delete(h.sessions, o.id)
			} else if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		if len(h.sessions) >= maxSessions && oldest != nil {
			delete(h.sessions, oldest.id)
		}
	}
	h.sessions[id] = s
	return s, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random session id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// sameOrigin accepts a POST only from the page's own origin (or one the
// server allows): the Origin header, else Sec-Fetch-Site, must say so.
func (h *Handler) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return origin == scheme+"://"+r.Host || h.cfg.OriginAllowed(origin)
}

func (h *Handler) signinPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, "signin", nil, h.signinData(safeNext(r.URL.Query().Get("next")), ""))
}

func (h *Handler) signin(w http.ResponseWriter, r *http.Request) {
	if !h.sameOrigin(r) {
		http.Error(w, "Forbidden: sign-in must come from this server's own page", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "Bad Request: "+err.Error(), http.StatusBadRequest)
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	client, admin, ok := h.cfg.Authenticate(r.PostForm.Get("token"))
	if !ok {
		h.cfg.Log.Info("web sign-in refused", "remote", r.RemoteAddr)
		w.WriteHeader(http.StatusUnauthorized)
		h.render(w, r, "signin", nil, h.signinData(next, "That token is not one of this server's tokens."))
		return
	}
	sess, err := h.newSession(client, admin)
	if err != nil {
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	h.cfg.Log.Info("web sign-in", "client", client, "remote", r.RemoteAddr)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: sess.id, Path: "/", HttpOnly: true, Secure: h.cfg.Secure,
		SameSite: http.SameSiteStrictMode, Expires: sess.expires})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) signout(w http.ResponseWriter, r *http.Request, sess *session) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if !h.sameOrigin(r) || r.ParseForm() != nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(sess.csrf)) != 1 {
		http.Error(w, "Forbidden: sign-out must come from this server's own page", http.StatusForbidden)
		return
	}
	h.mu.Lock()
	delete(h.sessions, sess.id)
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: h.cfg.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// safeNext keeps a redirect target on this server. It cleans first and
// checks what it will send (http.Redirect cleans a relative path once
// more, so a check before cleaning is undone by a dot-segment:
// "/./\evil.example/" became "/\evil.example/", another site to a
// browser). A backslash or a control character anywhere — raw or
// percent-encoded, at any depth of encoding — refuses the whole target:
// browsers read "\" as "/" and drop tabs and line feeds from URLs. The
// fragment is dropped. Anything refused becomes "/scans".
func safeNext(next string) string {
	const home = "/scans"
	if next == "" || next[0] != '/' || unsafeInURL(next) {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return home
	}
	clean := path.Clean(u.Path)
	if strings.HasSuffix(u.Path, "/") && clean != "/" {
		clean += "/"
	}
	out := (&url.URL{Path: clean, RawQuery: u.RawQuery}).String()
	// Checked again as sent: one leading slash, nothing a browser would
	// read as an authority.
	if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || unsafeInURL(out) {
		return home
	}
	return out
}

// unsafeInURL reports a backslash or a control character in s or in any
// percent-decoding of it (bounded: a string that still decodes after
// four rounds is refused too).
func unsafeInURL(s string) bool {
	for range 4 {
		if strings.ContainsFunc(s, func(r rune) bool { return r == '\\' || r < 0x20 || r == 0x7f || unicode.IsControl(r) }) {
			return true
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return true
		}
		if d == s {
			return false
		}
		s = d
	}
	return true
}
