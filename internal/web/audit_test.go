package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/audit"
)

// auditView serves a view over a trail of 40 records of alice's scans
// followed by 100 of local's; "admin-token" signs in an admin,
// "good-token" alice.
func auditViewServer(t *testing.T) (string, *httptest.Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var batch []audit.Record
	for i := 1; i <= 140; i++ {
		c := "alice"
		if i > 40 {
			c = "local"
		}
		batch = append(batch, audit.Record{Event: audit.Admitted, ScanID: fmt.Sprintf("scan%03d", i), Client: c, Targets: "127.0.0.1"})
	}
	if err := l.AppendBatch(batch); err != nil {
		t.Fatal(err)
	}
	l.Close()
	h, err := New(Config{AuditPath: path, Authenticate: func(tok string) (string, bool, bool) {
		switch tok {
		case "admin-token":
			return "root", true, true
		case "good-token":
			return "alice", false, true
		}
		return "", false, false
	}}, &fakeScans{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return path, srv
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
	if got := shownSeqs(body); got != seqRange(40, 16) || strings.Contains(body, `"client">local<`) {
		t.Fatalf("alice's first page: %q", got)
	}
	if !strings.Contains(body, `href="/audit?before=16"`) {
		t.Fatalf("no link to alice's older lines:\n%s", body)
	}
	_, body = get(t, srv, "/audit?before=16", alice)
	if got := shownSeqs(body); got != seqRange(15, 1) {
		t.Fatalf("alice's second page: %q", got)
	}
	admin := signIn(t, srv, "admin-token", srv.URL).Cookies()[0]
	if body = settled(t, srv, "/audit", admin); !strings.Contains(body, "chain verified, 140 records") || !strings.Contains(body, path) {
		t.Errorf("admin's page:\n%s", body)
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
