package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/audit"
)

// auditViewServer serves a view over a trail of 40 records of alice's
// scans followed by 100 of local's; "admin-token" signs in an admin,
// "good-token" alice, "bob-token" bob.
func auditViewServer(t *testing.T) (string, *httptest.Server) {
	t.Helper()
	var batch []audit.Record
	for i := 1; i <= 140; i++ {
		c := "alice"
		if i > 40 {
			c = "local"
		}
		batch = append(batch, audit.Record{Event: audit.Admitted, ScanID: fmt.Sprintf("scan%03d", i), Client: c, Targets: "127.0.0.1"})
	}
	path, _, srv := auditServer(t, batch, nil)
	return path, srv
}

// auditServer serves a view over a trail of recs; now, when not nil, is
// the view's clock.
func auditServer(t *testing.T, recs []audit.Record, now func() time.Time) (string, *Handler, *httptest.Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AppendBatch(recs); err != nil {
		t.Fatal(err)
	}
	l.Close()
	h, err := New(Config{AuditPath: path, Authenticate: func(tok string) (string, bool, bool) {
		switch tok {
		case "admin-token":
			return "root", true, true
		case "good-token":
			return "alice", false, true
		case "bob-token":
			return "bob", false, true
		}
		return "", false, false
	}}, &fakeScans{})
	if err != nil {
		t.Fatal(err)
	}
	if now != nil {
		h.now = now
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return path, h, srv
}

// settled gets path until the page no longer says a verification is
// under way (the first one runs beside the view: slower under -race).
func settled(t *testing.T, srv *httptest.Server, path string, c *http.Cookie) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := get(t, srv, path, c)
		if !strings.Contains(body, `id="checking"`) || time.Now().After(deadline) {
			return body
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var seqCell = regexp.MustCompile(`<tr><td>(\d+)</td>`)

func shownSeqs(body string) string {
	var out []string
	for _, m := range seqCell.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return strings.Join(out, " ")
}

func seqRange(from, to int) string {
	var out []string
	for i := from; i >= to; i-- {
		out = append(out, fmt.Sprint(i))
	}
	return strings.Join(out, " ")
}

var scanCell = regexp.MustCompile(`<a href="/scans/([^"]+)">`)

func shownScans(body string) []string {
	var out []string
	for _, m := range scanCell.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

var auditLink = regexp.MustCompile(`href="(/audit\?(?:before|after)=[^"]*)">([^<]*)<`)

// links returns the page's newer and older links ("" when none).
func links(body string) (newer, older string) {
	for _, m := range auditLink.FindAllStringSubmatch(body, -1) {
		u := strings.ReplaceAll(m[1], "&amp;", "&")
		if strings.Contains(m[2], "newer") {
			newer = u
		} else {
			older = u
		}
	}
	return newer, older
}

// Regression (issue 20, item 5): a non-admin sees only whether the chain
// is verified — not the trail's record count, notes or file — and pages
// over their own lines: their records are filtered before the page is
// cut, so older lines of theirs behind other clients' newer ones show.
func TestAuditPageNonAdmin(t *testing.T) {
	path, srv := auditViewServer(t)
	alice := signIn(t, srv, "good-token", srv.URL).Cookies()[0]
	body := settled(t, srv, "/audit", alice)
	if strings.Contains(body, "140") || strings.Contains(body, "records</span>") || strings.Contains(body, path) || !strings.Contains(body, `id="verify">verified<`) {
		t.Errorf("non-admin's audit page shows the trail's size or file, or not its verification:\n%s", body)
	}
	if got := strings.Join(shownScans(body), " "); got != scanRange(40, 16) || strings.Contains(body, `"client">local<`) {
		t.Fatalf("alice's first page: %q", got)
	}
	_, older := links(body)
	if older == "" {
		t.Fatalf("no link to alice's older lines:\n%s", body)
	}
	_, body = get(t, srv, older, alice)
	if got := strings.Join(shownScans(body), " "); got != scanRange(15, 1) {
		t.Fatalf("alice's second page: %q", got)
	}
	admin := signIn(t, srv, "admin-token", srv.URL).Cookies()[0]
	if body = settled(t, srv, "/audit", admin); !strings.Contains(body, "chain verified, 140 records") || !strings.Contains(body, path) {
		t.Errorf("admin's page:\n%s", body)
	}
}

func scanRange(from, to int) string {
	var out []string
	for i := from; i >= to; i-- {
		out = append(out, fmt.Sprintf("scan%03d", i))
	}
	return strings.Join(out, " ")
}

// Regression (review F5): a non-admin's page and its links carry no
// global sequence number — no Seq column, and opaque cursors — so they
// learn neither the trail's size nor the gaps other clients' records
// make between theirs; paging still works both ways; a number or a
// cursor made for someone else is refused with a clear error; an admin
// keeps numbers.
func TestAuditPageNonAdminNoSequence(t *testing.T) {
	var recs []audit.Record
	var alices []string
	for i := 1; i <= 10400; i++ {
		c := "local"
		switch {
		case i > 10000 && (i%7 == 0 || i%11 == 0):
			c = "alice"
		case i > 10000 && i%3 == 0:
			c = "bob"
		}
		id := fmt.Sprint("other-", i)
		if c == "alice" {
			id = fmt.Sprintf("alice-k%d", len(alices))
			alices = append(alices, id)
		}
		recs = append(recs, audit.Record{Event: audit.Admitted, ScanID: id, Client: c, Targets: "127.0.0.1"})
	}
	slices.Reverse(alices) // newest first
	_, _, srv := auditServer(t, recs, nil)
	alice := signIn(t, srv, "good-token", srv.URL).Cookies()[0]
	number := regexp.MustCompile(`\d+`)
	noSeq := func(where, body string) {
		t.Helper()
		if strings.Contains(body, "<th>Seq</th>") {
			t.Fatalf("%s: a Seq column:\n%s", where, body)
		}
		for _, n := range number.FindAllString(body, -1) {
			if v, err := strconv.Atoi(n); err == nil && v >= 10000 && v <= 10401 {
				t.Fatalf("%s: the global sequence number %d shows:\n%s", where, v, body)
			}
		}
	}
	// Older, to the oldest page.
	var got, back []string
	var pages []string
	page := "/audit"
	for n := 0; page != ""; n++ {
		body := settled(t, srv, page, alice)
		noSeq(page, body)
		got = append(got, shownScans(body)...)
		pages = append(pages, page)
		_, page = links(body)
		if n > 10 {
			t.Fatal("older links do not end")
		}
	}
	if strings.Join(got, " ") != strings.Join(alices, " ") || len(pages) < 3 {
		t.Fatalf("older pages (%d) show %v, want %v", len(pages), got, alices)
	}
	// Newer, from the oldest page back to the newest.
	_, body := get(t, srv, pages[len(pages)-1], alice)
	back = shownScans(body)
	page, _ = links(body)
	for n := 0; page != ""; n++ {
		_, body = get(t, srv, page, alice)
		noSeq(page, body)
		back = append(shownScans(body), back...)
		page, _ = links(body)
		if n > 10 {
			t.Fatal("newer links do not end")
		}
	}
	if strings.Join(back, " ") != strings.Join(alices, " ") {
		t.Fatalf("newer pages show %v, want %v", back, alices)
	}
	// A number is refused (it would let her probe the trail), and so is
	// a cursor made for bob.
	_, body = get(t, srv, "/audit?before=10390", alice)
	if !strings.Contains(body, `before &#34;10390&#34;: not a link this page gave you`) || strings.Join(shownScans(body)[:3], " ") != strings.Join(alices[:3], " ") {
		t.Fatalf("a number as a non-admin's cursor:\n%s", body)
	}
	noSeq("a number", strings.Replace(body, "&#34;10390&#34;", "", 1)) // her own input echoed, nothing more
	// A cursor altered, or used the other way, is refused too.
	flip := "A"
	if strings.HasSuffix(pages[1], "A") {
		flip = "B"
	}
	for _, bad := range []string{strings.Replace(pages[1], "before=", "after=", 1), pages[1][:len(pages[1])-1] + flip} {
		if _, body = get(t, srv, bad, alice); !strings.Contains(body, "not a link this page gave you") {
			t.Fatalf("%s accepted:\n%s", bad, body)
		}
	}
	bob := signIn(t, srv, "bob-token", srv.URL).Cookies()[0]
	_, body = get(t, srv, pages[1], bob)
	if !strings.Contains(body, "not a link this page gave you") {
		t.Fatalf("alice's cursor taken from bob:\n%s", body)
	}
	// An admin keeps numbers.
	admin := signIn(t, srv, "admin-token", srv.URL).Cookies()[0]
	_, body = get(t, srv, "/audit?before=10390", admin)
	if !strings.Contains(body, "<th>Seq</th>") || shownSeqs(body) != seqRange(10389, 10365) || !strings.Contains(body, `href="/audit?before=10365"`) {
		t.Fatalf("admin's page:\n%s", body)
	}
}

// Regression (review F4): a same-size edit of a middle record with the
// file's time set back is shown as not verified at the next view (the
// kept verification's key holds the change time), and a kept
// verification is trusted for the checker's FullEvery at most: after it,
// the view checks again in the background even when the key is the same.
func TestAuditPageSameSizeEdit(t *testing.T) {
	var recs []audit.Record
	for i := 1; i <= 140; i++ {
		recs = append(recs, audit.Record{Event: audit.Admitted, ScanID: fmt.Sprintf("scan%03d", i), Client: "alice", Targets: "127.0.0.1"})
	}
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	for _, keyMoves := range []bool{true, false} {
		path, h, srv := auditServer(t, recs, now)
		admin := signIn(t, srv, "admin-token", srv.URL).Cookies()[0]
		if body := settled(t, srv, "/audit", admin); !strings.Contains(body, "chain verified, 140 records") {
			t.Fatalf("before the edit:\n%s", body)
		}
		before, _ := os.Stat(path)
		time.Sleep(20 * time.Millisecond)
		b, _ := os.ReadFile(path)
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte(strings.Replace(string(b), `"scan070"`, `"scan071"`, 1)), 0)
		f.Close()
		os.Chtimes(path, before.ModTime(), before.ModTime())
		if !keyMoves {
			// As on a filesystem whose change time did not move: the view's
			// kept key is the edited file's.
			key, err := audit.KeyOf(path)
			if err != nil {
				t.Fatal(err)
			}
			h.audit.mu.Lock()
			h.audit.last.Key = key
			h.audit.mu.Unlock()
			if body := settled(t, srv, "/audit", admin); !strings.Contains(body, "chain verified, 140 records") {
				t.Fatalf("within FullEvery an unchanged key is checked again:\n%s", body)
			}
			mu.Lock()
			clock = clock.Add(h.audit.checker.FullEvery)
			mu.Unlock()
		}
		if body := settled(t, srv, "/audit", admin); !strings.Contains(body, `class="error" id="verify"`) {
			t.Fatalf("key moves %v: a same-size edit with its time set back still shows as verified:\n%s", keyMoves, body)
		}
	}
}

// Regression (issue 27, item 4): the page is addressed by sequence
// number and read from there (before/after), not by counting every
// record up to a page number; a bad cursor is named; a change to the
// trail is seen at the next view (the kept verification is keyed by the
// trail's state).
func TestAuditPageBySequence(t *testing.T) {
	path, srv := auditViewServer(t)
	admin := signIn(t, srv, "admin-token", srv.URL).Cookies()[0]
	_, body := get(t, srv, "/audit?before=100", admin)
	if got := shownSeqs(body); got != seqRange(99, 75) || !strings.Contains(body, `href="/audit?before=75"`) || !strings.Contains(body, `href="/audit?after=99"`) {
		t.Fatalf("page before 100: %q\n%s", got, body)
	}
	_, body = get(t, srv, "/audit?after=99", admin)
	if got := shownSeqs(body); got != seqRange(124, 100) {
		t.Fatalf("page after 99: %q", got)
	}
	_, body = get(t, srv, "/audit?before=x1", admin)
	if !strings.Contains(body, `before &#34;x1&#34;: must be a record number`) || shownSeqs(body) != seqRange(140, 116) {
		t.Fatalf("bad cursor:\n%s", body)
	}
	// A record appended by someone else is seen at the next view.
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	forged := strings.Replace(lines[len(lines)-1], `"seq":140`, `"seq":141`, 1)
	os.WriteFile(path, []byte(strings.Join(append(lines, forged), "\n")+"\n"), 0o600)
	if body = settled(t, srv, "/audit", admin); !strings.Contains(body, `class="error" id="verify"`) {
		t.Fatalf("a changed trail still shows as verified:\n%s", body)
	}
	alice := signIn(t, srv, "good-token", srv.URL).Cookies()[0]
	if body = settled(t, srv, "/audit", alice); !strings.Contains(body, `id="verify">not verified<`) {
		t.Fatalf("alice is not told:\n%s", body)
	}
}
