package web

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

// pageSize is how many scans or audit records a page lists.
const pageSize = 25

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"secs": func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) },
	"join": strings.Join,
	"add":  func(a, b int) int { return a + b },
	"pct":  func(f float64) string { return strconv.FormatFloat(f, 'f', 0, 64) },
	// splitFirst is the words of s, at least one ("" for none).
	"splitFirst": func(s string) []string {
		if f := strings.Fields(s); len(f) > 0 {
			return f
		}
		return []string{""}
	},
}

// parsePages parses each page with the layout.
func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range []string{"signin", "scans", "scan", "diff", "audit", "running", "watches", "report", "diffreport", "approvals", "signedin"} {
		files := []string{"templates/layout.html", "templates/parts.html", "templates/" + name + ".html"}
		if name == "report" || name == "diffreport" {
			files[0] = "templates/standalone.html"
		}
		t, err := template.New("").Funcs(funcs).ParseFS(assets, files...)
		if err != nil {
			return nil, fmt.Errorf("web: parse page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// page is what every page template gets.
type page struct {
	Title   string
	Client  string
	Admin   bool
	CSRF    string
	Watches bool // the watches page exists
	// Approvals: the approvals page exists.
	Approvals bool
	// Inventory: the inventory pages exist.
	Inventory bool
	Data      any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, name string, sess *session, data any) {
	p := page{Title: name, Data: data}
	if sess != nil {
		p.Client, p.Admin, p.CSRF = sess.client, sess.admin, sess.csrf
	}
	p.Watches = h.cfg.Watches != nil
	p.Approvals = h.cfg.Approvals != nil
	p.Inventory = h.cfg.Inventory != nil
	var b bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&b, "layout", p); err != nil {
		h.cfg.Log.Error("web: render page", "page", name, "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

// fail answers a lookup error: unknown (or another client's) scans are 404.
func (h *Handler) fail(w http.ResponseWriter, err error) {
	var nf *store.NotFoundError
	if errors.As(err, &nf) {
		http.Error(w, "Not Found: "+err.Error(), http.StatusNotFound)
		return
	}
	h.cfg.Log.Error("web: read scans", "err", err)
	http.Error(w, "Internal Server Error: "+err.Error(), http.StatusInternalServerError)
}

type listData struct {
	Target, Status, Client, Since string
	Statuses                      []string
	Records                       []*store.Record
	Page                          int
	Prev, Next                    string
	Chart                         *chart
	Error                         string
}

func (h *Handler) scanList(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	d := listData{Target: q.Get("target"), Status: q.Get("status"), Client: q.Get("client"), Since: q.Get("since"), Statuses: store.Statuses}
	d.Page, _ = strconv.Atoi(q.Get("page"))
	d.Page = max(d.Page, 0)
	f := store.Filter{Target: d.Target, Status: d.Status, Limit: pageSize + 1, Offset: d.Page * pageSize}
	if d.Since != "" {
		t, err := store.ParseSince(d.Since, time.Now())
		if err != nil {
			d.Error = fmt.Sprintf("since %q: give a time such as 2026-01-02T15:04:05Z or a duration such as 24h", d.Since)
		}
		f.Since = t
	}
	if d.Status != "" && !slices.Contains(store.Statuses, d.Status) {
		d.Error = fmt.Sprintf("status %q: must be one of %s", d.Status, strings.Join(store.Statuses, ", "))
		f.Status = ""
	}
	recs, err := h.scans.List(r.Context(), f)
	if err != nil {
		h.fail(w, err)
		return
	}
	if d.Client != "" {
		// The service already keeps a non-admin to its own scans; the
		// filter narrows an admin's view.
		recs = slices.DeleteFunc(recs, func(rec *store.Record) bool { return rec.Client != d.Client })
	}
	if len(recs) > pageSize {
		recs = recs[:pageSize]
		d.Next = pageLink(q, d.Page+1)
	}
	if d.Page > 0 {
		d.Prev = pageLink(q, d.Page-1)
	}
	d.Records = recs
	if d.Target != "" {
		if hist, err := h.scans.List(r.Context(), store.Filter{Target: d.Target, Finished: true, Limit: 60}); err == nil {
			d.Chart = openPortsChart(hist)
		}
	}
	h.render(w, r, "scans", sess, d)
}

func pageLink(q url.Values, page int) string {
	v := url.Values{}
	for k, vs := range q {
		if len(vs) > 0 && vs[0] != "" {
			v[k] = vs
		}
	}
	v.Set("page", strconv.Itoa(page))
	return "/scans?" + v.Encode()
}

// scanView is one scan as the scan page and the report show it.
type scanView struct {
	Rec      *store.Record
	Live     bool
	Percent  float64
	Message  string
	Command  string
	Duration time.Duration
	Hosts    []results.Host
}

func viewOf(rec *store.Record, live bool, percent float64, message string) scanView {
	v := scanView{Rec: rec, Live: live, Percent: percent, Message: message, Command: strings.Join(rec.Argv, " "), Duration: rec.Duration()}
	if rec.Result != nil {
		v.Hosts = rec.Result.Hosts
	}
	return v
}

func (h *Handler) scanPage(w http.ResponseWriter, r *http.Request, sess *session) {
	snap, err := h.scans.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	h.render(w, r, "scan", sess, viewOf(snap.Record, snap.Live, snap.Percent, snap.Message))
}

func (h *Handler) downloadXML(w http.ResponseWriter, r *http.Request, _ *session) {
	id := r.PathValue("id")
	x, err := h.scans.RawXML(r.Context(), id)
	if err != nil {
		h.fail(w, err)
		return
	}
	download(w, "application/xml", "nmap-"+id+".xml", x)
}

func (h *Handler) downloadJSON(w http.ResponseWriter, r *http.Request, _ *session) {
	id := r.PathValue("id")
	snap, err := h.scans.Get(r.Context(), id)
	if err != nil {
		h.fail(w, err)
		return
	}
	b, _ := json.MarshalIndent(snap.Record, "", "  ")
	download(w, "application/json", "scan-"+id+".json", b)
}

func (h *Handler) downloadCSV(w http.ResponseWriter, r *http.Request, _ *session) {
	id := r.PathValue("id")
	snap, err := h.scans.Get(r.Context(), id)
	if err != nil {
		h.fail(w, err)
		return
	}
	var b bytes.Buffer
	if err := WriteCSV(&b, snap.Record); err != nil {
		h.fail(w, err)
		return
	}
	download(w, "text/csv; charset=utf-8", "scan-"+id+".csv", b.Bytes())
}

func download(w http.ResponseWriter, ctype, name string, body []byte) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	_, _ = w.Write(body)
}

// WriteCSV writes one row per listed port: host, hostnames, protocol,
// port, state, service, product, version. A cell a spreadsheet might take
// for a formula gets a leading quote (see formulaLike): the values come
// from scanned machines.
func WriteCSV(w io.Writer, rec *store.Record) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"host", "hostnames", "protocol", "port", "state", "service", "product", "version"})
	if rec.Result != nil {
		for _, h := range rec.Result.Hosts {
			addr := strings.Join(h.Addresses, " ")
			names := strings.Join(h.Hostnames, " ")
			for _, p := range h.Ports {
				row := []string{addr, names, p.Protocol, strconv.Itoa(p.Port), p.State, p.Service, p.Product, p.Version}
				for i, c := range row {
					if formulaLike(c) {
						row[i] = "'" + c
					}
				}
				_ = cw.Write(row)
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// formulaSigns start a formula: the ASCII signs, their full-width forms
// (East Asian input methods type these, and spreadsheets in those locales
// convert them), and their small forms.
const formulaSigns = "=+-@＝＋－＠﹦﹢﹣﹫"

// formulaLike reports a cell a spreadsheet might evaluate: one that starts
// with a control character (tab, CR, line feed: some importers drop them,
// and what follows starts the cell), or whose first character after any
// leading whitespace and control characters (spaces, no-break and
// full-width spaces included: importers that trim, LibreOffice's "trim
// spaces" and Excel's paste among them, then see the sign) is a formula
// sign. Guarding a harmless value costs one visible quote; missing one
// runs the scanned machine's text in the reader's spreadsheet.
func formulaLike(c string) bool {
	if c == "" {
		return false
	}
	if r, _ := utf8.DecodeRuneInString(c); unicode.IsControl(r) {
		return true
	}
	rest := strings.TrimLeftFunc(c, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
	r, _ := utf8.DecodeRuneInString(rest)
	return rest != "" && strings.ContainsRune(formulaSigns, r)
}

type diffData struct {
	A, B, Target string
	Before       *store.Record
	After        *store.Record
	Diff         results.Diff
	Error        string
}

func (h *Handler) diffPage(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	d := diffData{A: q.Get("a"), B: q.Get("b"), Target: q.Get("target")}
	if d.A != "" || d.B != "" || d.Target != "" {
		before, after, err := h.scans.Pair(r.Context(), d.A, d.B, d.Target)
		if err != nil {
			d.Error = err.Error()
		} else {
			d.Before, d.After = before, after
			d.Diff = results.Compare(before.Result, after.Result)
		}
	}
	h.render(w, r, "diff", sess, d)
}

type auditData struct {
	None  bool // the server keeps no trail
	Admin bool
	// For an admin: the file, the verification's report or break.
	Path   string
	Report *audit.Report
	Broken string
	// For everyone: whether the chain is verified, not verified, or being
	// verified now.
	Verified, NotVerified, Checking bool
	Records                         []audit.Record
	Prev, Next                      string
	Error                           string
}

// auditView keeps the audit page's verification: one check at a time,
// run in a goroutine the view starts and that ends when the check does
// (a full check reads the trail once; later ones only what was
// appended), and its result, kept until the trail changes (keyed by the
// file, its size, modification and change times, and the head) and for
// the checker's FullEvery at most. It also seals the non-admins' page
// cursors.
type auditView struct {
	checker *audit.Checker
	// cursors seals a non-admin's page cursors (AES-256-GCM under a key
	// drawn at start, never stored: links end with the process).
	cursors cipher.AEAD
	mu      sync.Mutex
	last    audit.Status
	running bool
	done    chan struct{}
}

// newAuditView returns the view of the trail at path.
func newAuditView(path string) (*auditView, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("audit page cursor key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("audit page cursor key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("audit page cursor key: %w", err)
	}
	return &auditView{checker: audit.NewChecker(path), cursors: aead}, nil
}

// seal returns the opaque cursor that names record seq to client for
// the direction dir ("before" or "after"): a random nonce and the
// number encrypted and authenticated with the client and the direction,
// so it shows neither the number nor whether two cursors name the same
// record, and serves only that client, that way.
func (a *auditView) seal(dir, client string, seq uint64) string {
	nonce := make([]byte, a.cursors.NonceSize(), a.cursors.NonceSize()+8+a.cursors.Overhead())
	_, _ = rand.Read(nonce) // crypto/rand.Read does not fail (Go 1.24)
	out := a.cursors.Seal(nonce, nonce, binary.BigEndian.AppendUint64(nil, seq), []byte(dir+"\x00"+client))
	return base64.RawURLEncoding.EncodeToString(out)
}

// open returns the record a cursor seal made names, or false when it is
// not one (altered, made for another client or direction, or by an
// earlier process).
func (a *auditView) open(dir, client, cursor string) (uint64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) != a.cursors.NonceSize()+8+a.cursors.Overhead() {
		return 0, false
	}
	n := a.cursors.NonceSize()
	plain, err := a.cursors.Open(nil, b[:n], b[n:], []byte(dir+"\x00"+client))
	if err != nil || len(plain) != 8 {
		return 0, false
	}
	seq := binary.BigEndian.Uint64(plain)
	return seq, seq > 0
}

// checkWait is how long a view waits for a check it started before it
// shows the last result and says a check is under way.
const checkWait = 50 * time.Millisecond

// checking reports whether a check is under way.
func (a *auditView) checking() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running
}

// status returns the latest verification and whether a newer one is
// under way, starting one when the trail changed since the last or the
// last full verification is older than the checker's FullEvery.
func (a *auditView) status(path string, now time.Time) (audit.Status, bool) {
	key, kerr := audit.KeyOf(path)
	a.mu.Lock()
	if kerr == nil && !a.running && a.last.Fresh(key, now, a.checker.FullEvery) {
		defer a.mu.Unlock()
		return a.last, false
	}
	if !a.running {
		a.running, a.done = true, make(chan struct{})
		go func(done chan struct{}) {
			st := a.checker.Check(now)
			a.mu.Lock()
			a.last, a.running = st, false
			close(done)
			a.mu.Unlock()
		}(a.done)
	}
	done := a.done
	a.mu.Unlock()
	t := time.NewTimer(checkWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last, a.running
}

// auditPage shows the trail, newest first, a page at a time read from
// the file's end, never whole. An admin sees every line with its
// sequence number, pages by number (?before=N: older than record N;
// ?after=N: newer), and sees the file and the verification's report.
// Anyone else sees only whether the chain is verified, and pages over
// their own lines (filtered before the page is cut) with no sequence
// number anywhere: before and after take opaque cursors (see seal) that
// only the page's own links carry, so the page tells neither the trail's
// size nor the gaps other clients' records leave between theirs.
func (h *Handler) auditPage(w http.ResponseWriter, r *http.Request, sess *session) {
	d := auditData{Admin: sess.admin}
	path := h.cfg.AuditPath
	if path == "" {
		d.None = true
		h.render(w, r, "audit", sess, d)
		return
	}
	q := audit.PageQuery{Limit: pageSize}
	for _, c := range []struct {
		name string
		to   *uint64
	}{{"before", &q.Before}, {"after", &q.After}} {
		v := r.URL.Query().Get(c.name)
		if v == "" {
			continue
		}
		if !sess.admin {
			n, ok := h.audit.open(c.name, sess.client, v)
			if !ok {
				if len(v) > 64 {
					v = v[:64] + "…"
				}
				d.Error = fmt.Sprintf("%s %q: not a link this page gave you (the audit page's links are sealed for the person they were shown to and end when the server restarts); showing your newest records", c.name, v)
				q.Before, q.After = 0, 0
				break
			}
			*c.to = n
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			d.Error = fmt.Sprintf("%s %q: must be a record number (a whole number from 1); showing the newest records", c.name, v)
			q.Before, q.After = 0, 0
			break
		}
		*c.to = n
	}
	if q.Before > 0 && q.After > 0 {
		d.Error = "before and after: give one of them, not both; showing the newest records"
		q.Before, q.After = 0, 0
	}
	if !sess.admin {
		q.Client = sess.client
	}
	st, checking := h.audit.status(path, h.now())
	d.Checking = checking
	done := st.Key.File != nil || st.Err != nil
	d.Verified, d.NotVerified = done && st.Err == nil, st.Err != nil
	if sess.admin {
		d.Path = path
		if d.Verified {
			d.Report = &st.Report
		}
		if st.Err != nil {
			d.Broken = st.Err.Error()
		}
	}
	p, err := audit.ReadPage(path, q)
	if err != nil {
		if sess.admin {
			d.Broken = strings.TrimSpace(d.Broken + "; " + err.Error())
		}
		d.NotVerified, d.Verified = true, false
	}
	d.Records = p.Records
	cursor := func(dir string, seq uint64) string {
		if sess.admin {
			return strconv.FormatUint(seq, 10)
		}
		return h.audit.seal(dir, sess.client, seq)
	}
	if p.Older > 0 {
		d.Next = "/audit?before=" + cursor("before", p.Older)
	}
	if p.Newer > 0 {
		d.Prev = "/audit?after=" + cursor("after", p.Newer)
	}
	h.render(w, r, "audit", sess, d)
}

func (h *Handler) runningPage(w http.ResponseWriter, r *http.Request, sess *session) {
	h.render(w, r, "running", sess, h.scans.Live(r.Context()))
}

// progress is one live scan in the event stream.
type progress struct {
	ID      string  `json:"id"`
	Status  string  `json:"status"`
	Percent float64 `json:"percent"`
	Message string  `json:"message"`
}

// events streams the caller's live scans' progress as server-sent events,
// twice a second, for up to ten minutes (the browser reconnects).
func (h *Handler) events(w http.ResponseWriter, r *http.Request, _ *session) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	end := time.After(10 * time.Minute)
	seen := map[string]bool{}
	for {
		live := h.scans.Live(r.Context())
		now := map[string]bool{}
		var out []progress
		for _, s := range live {
			now[s.Record.ID] = true
			out = append(out, progress{ID: s.Record.ID, Status: s.Record.Status, Percent: s.Percent, Message: s.Message})
		}
		for id := range seen {
			if !now[id] {
				out = append(out, progress{ID: id, Status: "finished", Percent: 100, Message: "finished: reload for the result"})
			}
		}
		seen = now
		b, _ := json.Marshal(out)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-end:
			return
		case <-tick.C:
		}
	}
}

// watchRow is one watch on the watches page.
type watchRow struct {
	W       *store.Watch
	Targets string
	Change  string
}

func (h *Handler) watchesPage(w http.ResponseWriter, r *http.Request, sess *session) {
	if h.cfg.Watches == nil {
		http.NotFound(w, r)
		return
	}
	ws, err := h.cfg.Watches.List(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	rows := make([]watchRow, 0, len(ws))
	for _, wt := range ws {
		rows = append(rows, watchRow{W: wt, Targets: watches.Targets(wt), Change: watches.ChangeText(wt)})
	}
	h.render(w, r, "watches", sess, rows)
}
