package web

import (
	"bytes"
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
	for _, name := range []string{"signin", "scans", "scan", "diff", "audit", "running", "watches", "report", "diffreport"} {
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
	Data    any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, name string, sess *session, data any) {
	p := page{Title: name, Data: data}
	if sess != nil {
		p.Client, p.Admin, p.CSRF = sess.client, sess.admin, sess.csrf
	}
	p.Watches = h.cfg.Watches != nil
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
	Path    string
	Report  *audit.Report
	Broken  string
	Records []audit.Record
	Page    int
	Prev    string
	Next    string
}

func (h *Handler) auditPage(w http.ResponseWriter, r *http.Request, sess *session) {
	d := auditData{Path: h.cfg.AuditPath}
	if d.Path == "" {
		h.render(w, r, "audit", sess, d)
		return
	}
	d.Page, _ = strconv.Atoi(r.URL.Query().Get("page"))
	d.Page = max(d.Page, 0)
	rep, err := audit.Verify(d.Path)
	if err != nil {
		d.Broken = err.Error()
	} else {
		d.Report = &rep
	}
	recs, err := audit.Tail(d.Path, (d.Page+1)*pageSize+1)
	if err != nil {
		d.Broken = strings.TrimSpace(d.Broken + "; " + err.Error())
	}
	slices.Reverse(recs) // newest first
	if len(recs) > (d.Page+1)*pageSize {
		d.Next = fmt.Sprintf("/audit?page=%d", d.Page+1)
		recs = recs[:(d.Page+1)*pageSize]
	}
	if start := d.Page * pageSize; start < len(recs) {
		d.Records = recs[start:]
	}
	if d.Page > 0 {
		d.Prev = fmt.Sprintf("/audit?page=%d", d.Page-1)
	}
	// A non-admin sees the lines of its own scans only.
	if !sess.admin {
		d.Records = slices.DeleteFunc(d.Records, func(rec audit.Record) bool { return rec.Client != sess.client })
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
