package web

import (
	"bytes"
	"context"
	"encoding/csv"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// HTTP-level tests of the view against an in-memory scans source (no
// engine, no browser); browser_e2e_test.go drives real Chromium.

type fakeScans struct{ recs []*store.Record }

func (f *fakeScans) List(_ context.Context, _ store.Filter) ([]*store.Record, error) {
	return f.recs, nil
}
func (f *fakeScans) Get(_ context.Context, id string) (scans.Snapshot, error) {
	for _, r := range f.recs {
		if r.ID == id {
			return scans.Snapshot{Record: r, Percent: 100}, nil
		}
	}
	return scans.Snapshot{}, &store.NotFoundError{ID: id}
}
func (f *fakeScans) RawXML(_ context.Context, id string) ([]byte, error) {
	return []byte("<nmaprun/>"), nil
}
func (f *fakeScans) Pair(_ context.Context, a, b, _ string) (*store.Record, *store.Record, error) {
	return f.recs[0], f.recs[0], nil
}
func (f *fakeScans) Live(context.Context) []scans.Snapshot { return nil }

const hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"

func newTestView(t *testing.T, secure bool) (*Handler, *httptest.Server) {
	t.Helper()
	rec := &store.Record{ID: "abc123", Status: store.Done, Targets: "10.0.0.1", Client: "alice", CreatedAt: time.Now(),
		Result: &results.Result{Hosts: []results.Host{{Addresses: []string{"10.0.0.1"}, State: "up",
			Ports: []results.Port{{Protocol: "tcp", Port: 80, State: "open", Service: "http", Product: hostile, Version: "=cmd|' /C calc'!A0"}}}}}}
	h, err := New(Config{Secure: secure, Authenticate: func(tok string) (string, bool, bool) {
		return "alice", false, tok == "good-token"
	}}, &fakeScans{recs: []*store.Record{rec}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func signIn(t testing.TB, srv *httptest.Server, token, origin string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/signin", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func get(t testing.TB, srv *httptest.Server, path string, cookie *http.Cookie) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp, b.String()
}

// Without a session nothing but the sign-in page and static assets; with
// a cookie this server never issued, the same.
func TestNoSessionNoData(t *testing.T) {
	_, srv := newTestView(t, false)
	forged := &http.Cookie{Name: CookieName, Value: strings.Repeat("ab", 32)}
	for _, c := range []*http.Cookie{nil, forged, {Name: CookieName, Value: "good-token"}} {
		for _, path := range []string{"/", "/scans", "/scans/abc123", "/scans/abc123/csv", "/scans/abc123/xml", "/diff", "/audit", "/running", "/events"} {
			resp, body := get(t, srv, path, c)
			if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "alice") || strings.Contains(body, "10.0.0.1") {
				t.Errorf("%s with cookie %v: %d %q", path, c, resp.StatusCode, body)
			}
		}
	}
	if resp, body := get(t, srv, "/signin", nil); resp.StatusCode != 200 || !strings.Contains(body, `name="token"`) {
		t.Errorf("sign-in page: %d", resp.StatusCode)
	}
	if resp, _ := get(t, srv, "/static/style.css", nil); resp.StatusCode != 200 {
		t.Errorf("static asset: %d", resp.StatusCode)
	}
}

// Every response carries the CSP (no inline script), frame-ancestors
// 'none' and nosniff.
func TestSecurityHeaders(t *testing.T) {
	_, srv := newTestView(t, false)
	for _, path := range []string{"/signin", "/scans", "/static/live.js"} {
		resp, _ := get(t, srv, path, nil)
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, resp.Header)
		}
	}
}

// Sign-in: a wrong token or a cross-site POST is refused; a good one
// sets an HttpOnly, SameSite=Strict cookie that is not the token (Secure
// under TLS); sign-out needs the session's form token.
func TestSignInAndOut(t *testing.T) {
	h, srv := newTestView(t, true)
	if resp := signIn(t, srv, "bad", srv.URL); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bad token: %d", resp.StatusCode)
	}
	if resp := signIn(t, srv, "good-token", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site sign-in: %d", resp.StatusCode)
	}
	if resp := signIn(t, srv, "good-token", ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in without Origin or Sec-Fetch-Site: %d", resp.StatusCode)
	}
	resp := signIn(t, srv, "good-token", srv.URL)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("good sign-in: %d %v", resp.StatusCode, resp.Cookies())
	}
	c := resp.Cookies()[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || !c.Secure || c.Value == "good-token" || len(c.Value) != 64 {
		t.Errorf("cookie %+v", c)
	}
	if r, body := get(t, srv, "/scans", c); r.StatusCode != 200 || !strings.Contains(body, "abc123") || !strings.Contains(body, "alice") {
		t.Fatalf("scans with a session: %d", r.StatusCode)
	}
	// Sign-out without the form token is refused; with it, the session ends.
	form := func(csrf string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/signout", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", srv.URL)
		req.AddCookie(c)
		resp, err := noRedirect().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := form("wrong"); code != http.StatusForbidden {
		t.Errorf("sign-out without the form token: %d", code)
	}
	h.mu.Lock()
	csrf := h.sessions[c.Value].csrf
	h.mu.Unlock()
	if code := form(csrf); code != http.StatusSeeOther {
		t.Errorf("sign-out: %d", code)
	}
	if r, body := get(t, srv, "/scans", c); r.StatusCode != http.StatusSeeOther || strings.Contains(body, "abc123") {
		t.Errorf("after sign-out: %d", r.StatusCode)
	}
}

// Sessions expire.
func TestSessionExpires(t *testing.T) {
	h, srv := newTestView(t, false)
	c := signIn(t, srv, "good-token", srv.URL).Cookies()[0]
	now := time.Now()
	h.now = func() time.Time { return now.Add(9 * time.Hour) }
	if r, _ := get(t, srv, "/scans", c); r.StatusCode != http.StatusSeeOther {
		t.Errorf("expired session: %d", r.StatusCode)
	}
}

// What scanned machines said is escaped in pages and reports, and made
// inert in CSV (a leading quote before a formula).
func TestUntrustedContentIsInert(t *testing.T) {
	_, srv := newTestView(t, false)
	c := signIn(t, srv, "good-token", srv.URL).Cookies()[0]
	_, body := get(t, srv, "/scans/abc123", c)
	if strings.Contains(body, hostile) || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("page does not escape the banner:\n%s", body)
	}
	_, csv := get(t, srv, "/scans/abc123/csv", c)
	if !strings.Contains(csv, "'=cmd") || !strings.Contains(csv, "host,hostnames,protocol,port,state") {
		t.Errorf("csv:\n%s", csv)
	}
	var b bytes.Buffer
	r := &store.Record{ID: "x", Status: store.Done, Result: &results.Result{Hosts: []results.Host{{Addresses: []string{"10.0.0.1"},
		Ports: []results.Port{{Protocol: "tcp", Port: 80, State: "open", Product: hostile}}}}}}
	if err := Report(&b, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), hostile) || strings.Contains(b.String(), "<script") || !strings.Contains(b.String(), "default-src 'none'") {
		t.Errorf("report:\n%s", b.String())
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{"/scans/abc": "/scans/abc", "": "/scans", "//evil.example/x": "/scans",
		"https://evil.example": "/scans", `/\evil.example`: "/scans", "scans": "/scans"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

type fakeWatches []*store.Watch

func (f fakeWatches) List(context.Context) ([]*store.Watch, error) { return f, nil }

// The watches page lists each watch with its last change, escaped.
func TestWatchesPage(t *testing.T) {
	change := `{"scan_id":"b","baseline_scan_id":"a","changes":{"hosts_appeared":["<script>x</script>"],"hosts_disappeared":null,"port_changes":[{"host":"10.0.0.1","protocol":"tcp","port":22,"from":"closed","to":"open"}],"service_changes":null}}`
	h, err := New(Config{Watches: fakeWatches{{Name: "lab", Client: "alice", Request: []byte(`{"targets":"10.0.0.1"}`), Interval: time.Hour,
		LastChange: []byte(change), LastChangeAt: time.Now()}},
		Authenticate: func(tok string) (string, bool, bool) { return "alice", false, tok == "good-token" }}, &fakeScans{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := signIn(t, srv, "good-token", srv.URL).Cookies()[0]
	_, body := get(t, srv, "/watches", c)
	for _, want := range []string{"lab", "10.0.0.1", "22/tcp closed -&gt; open", "&lt;script&gt;x&lt;/script&gt;", `href="/watches"`} {
		if !strings.Contains(body, want) {
			t.Errorf("watches page lacks %q:\n%s", want, body)
		}
	}
}

// Regression (issue 20, item 5): next is cleaned first and then checked,
// so a dot-segment cannot turn it into a backslash authority after the
// check (http.Redirect cleans the path); backslashes and control
// characters, also percent-encoded, are refused.
func TestSafeNextCleansThenChecks(t *testing.T) {
	for in, want := range map[string]string{
		`/./\evil.example/`:                  "/scans",
		`/x/../\evil.example/`:               "/scans",
		`/%5Cevil.example/`:                  "/scans",
		`/%5cevil.example/`:                  "/scans",
		`/x/..%5C%5Cevil.example`:            "/scans",
		`/%255Cevil.example`:                 "/scans",
		"/\t/evil.example":                   "/scans",
		"/%09/evil.example":                  "/scans",
		"/%0A/evil.example":                  "/scans",
		"/scans\x7f":                         "/scans",
		"/./evil.example":                    "/evil.example",
		"/x/..//evil.example":                "/evil.example",
		"/%2F%2Fevil.example":                "/evil.example",
		"/scans/../audit?page=1":             "/audit?page=1",
		"/scans?target=10.0.0.1&status=done": "/scans?target=10.0.0.1&status=done",
		"/scans/abc/":                        "/scans/abc/",
		"/scans#frag":                        "/scans",
		"http:/evil.example":                 "/scans",
	} {
		got := safeNext(in)
		if got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
		// What the browser gets after http.Redirect cleans it once more.
		rr := httptest.NewRecorder()
		http.Redirect(rr, httptest.NewRequest(http.MethodPost, "/signin", nil), got, http.StatusSeeOther)
		if loc := rr.Header().Get("Location"); strings.ContainsAny(loc, `\`) || strings.HasPrefix(loc, "//") || !strings.HasPrefix(loc, "/") {
			t.Errorf("safeNext(%q): Location %q leaves this server", in, loc)
		}
	}
	// Through the sign-in form, end to end.
	_, srv := newTestView(t, false)
	for _, next := range []string{`/./\evil.example/`, `/x/../\evil.example/`} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/signin", strings.NewReader(url.Values{"token": {"good-token"}, "next": {next}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", srv.URL)
		resp, err := noRedirect().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); loc != "/scans" {
			t.Errorf("sign-in with next=%q: Location %q, want /scans", next, loc)
		}
	}
}

// Regression (issue 27, item 5): the formula guard also sees through
// leading whitespace (space, tab, line feed, CR, no-break and
// full-width spaces), catches a cell starting with a line feed, and the
// full-width ＝ ＋ － ＠ that East Asian spreadsheets take as the ASCII
// signs; ordinary values are untouched.
func TestCSVFormulaGuard(t *testing.T) {
	guarded := []string{"=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "\n=1", " =1+1", "  @x", "\u00a0=1", "\u3000=1",
		"＝1+1", "＋1", "－1", "＠SUM(A1)", " ＝1", "\n", "\r", "\t"}
	plain := []string{"http", "OpenSSH 9.2p1", "1.0", "a=b", "x-y", "", "open|filtered"}
	var ports []results.Port
	for _, v := range append(append([]string{}, guarded...), plain...) {
		ports = append(ports, results.Port{Protocol: "tcp", Port: 80, State: "open", Version: v})
	}
	var b bytes.Buffer
	if err := WriteCSV(&b, &store.Record{Result: &results.Result{Hosts: []results.Host{{Addresses: []string{"10.0.0.1"}, Ports: ports}}}}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	rows = rows[1:]
	for i, v := range guarded {
		if got := rows[i][7]; got != "'"+v {
			t.Errorf("cell %q written as %q, want it guarded with a leading quote", v, got)
		}
	}
	for i, v := range plain {
		if got := rows[len(guarded)+i][7]; got != v {
			t.Errorf("cell %q written as %q, want it unchanged", v, got)
		}
	}
}
