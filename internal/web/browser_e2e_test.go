package web_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/internal/web"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// These tests drive Debian's Chromium (headless) against the view served
// on loopback, with real scans on the real engine of listeners the test
// opens on 127.0.0.1. Screenshots go to $NMAP_MCP_ARTIFACTS (default
// artifacts/web at the repository's top, which git ignores).

var env *testkit.Env

func TestMain(m *testing.M) {
	os.Exit(testkit.Main(m, "web", func(e *testkit.Env) { env = e }))
}

// chromium finds the browser: in CI its absence is a failure, elsewhere a
// skip that says how to get it.
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; scripts/test.sh installs it (apt-get install chromium)")
		}
		t.Skip("needs Debian's chromium: run scripts/test.sh, which installs it, or apt-get install chromium")
	}
	return path
}

// bannerListener answers every connection on 127.0.0.1 with banner.
func bannerListener(t *testing.T, port int, banner string) int {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(banner))
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).Port
}

func artifacts(t *testing.T) string {
	dir := os.Getenv("NMAP_MCP_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts")
	}
	dir = filepath.Join(dir, "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

const hostileBanner = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\"> \x1b[31mred\x1b[0m <b>bold</b>\r\n"

func TestBrowser(t *testing.T) {
	testkit.NeedEngine(t)
	browser := chromium(t)

	// A service on the real engine, with its history and audit trail.
	st, trail := testkit.OpenHistory(t)
	ex := executor.New(env.Client, nil)
	lim := sandbox.DefaultLimits()
	svc := scans.New(scans.Config{Sandbox: env.Options(lim), MaxAddresses: 16, Concurrency: 2, QueueSize: 2},
		scans.Deps{Runner: ex, Image: env.Image, Store: st, Audit: trail})
	t.Cleanup(func() {
		_ = svc.Close(context.Background())
		_ = ex.Close(context.Background())
	})
	ctx := scans.WithClient(context.Background(), "alice")
	run := func(req scanargs.Request) *store.Record {
		t.Helper()
		sc, err := svc.Submit(ctx, req, scans.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("scan: %v", err)
		}
		return sc.Snapshot().Record
	}

	// Scan A: a listener with a hostile banner, and a closed port; scan
	// B: the closed port now answers.
	p1 := bannerListener(t, 0, hostileBanner)
	p2 := testkit.ClosedTCPPort(t)
	ports := fmt.Sprintf("%d,%d", p1, p2)
	a := run(scanargs.Request{Targets: "127.0.0.1", Ports: ports, Scripts: "banner"})
	bannerListener(t, p2, "SSH-2.0-OpenSSH_9.2p1\r\n")
	b := run(scanargs.Request{Targets: "127.0.0.1", Ports: ports})
	// A slow scan (polite timing: 0.4 s between probes) whose progress
	// the running page shows; cancelled when the test ends.
	slow, err := svc.Submit(ctx, scanargs.Request{Targets: "127.0.0.1", Ports: "1-300", Timing: "T2", TimeoutSeconds: intp(200)}, scans.Options{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Cancel(scans.WithAdmin(context.Background()), slow.ID) })

	view, err := web.New(web.Config{AuditPath: trail.Path(), Authenticate: func(tok string) (string, bool, bool) {
		return "alice", false, tok == "alice-token"
	}}, svc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(view)
	t.Cleanup(srv.Close)

	sess := newSession(t, browser, 2*time.Minute)
	bctx := sess.ctx
	do, text, eval := sess.do, sess.text, sess.eval
	// A dialog opened by anything on the page counts as script that ran.
	var dialogs atomic.Int32
	if err := chromedp.Do(bctx); err != nil { // start the browser
		t.Fatalf("start chromium: %v", err)
	}
	opened := chromedp.Events(bctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range opened {
			if err != nil {
				return
			}
			dialogs.Add(1)
			_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	shots := artifacts(t)
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	location := func() string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	// Signed out, the scans page sends the browser to sign in.
	do("open the scans page signed out", chromedp.Navigate(srv.URL+"/scans"), chromedp.WaitVisible(chromedp.CSS("#token")))
	if loc := location(); !strings.Contains(loc, "/signin") {
		t.Fatalf("signed out, /scans went to %s", loc)
	}
	do("sign in", chromedp.SendKeys(chromedp.CSS("#token"), "alice-token"), chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#scans")))
	list := text("#scans")
	shot("scans")
	for _, want := range []string{a.ID, b.ID, "alice"} {
		if !strings.Contains(list, want) {
			t.Errorf("scans page lacks %q:\n%s", want, list)
		}
	}

	// One scan: the open port, and the banner shown as text, inert.
	do("open scan A", chromedp.Navigate(srv.URL+"/scans/"+a.ID), chromedp.WaitVisible(chromedp.CSS("#scan-id")), chromedp.Sleep(300*time.Millisecond))
	portRow, scriptText := text(fmt.Sprintf("#port-tcp-%d", p1)), text("tr.script pre")
	pwned := eval(`String(window.pwned)`)
	shot("scan")
	if !strings.Contains(portRow, "open") {
		t.Errorf("port %d row: %q", p1, portRow)
	}
	if !strings.Contains(scriptText, "<script>window.pwned=1</script>") || !strings.Contains(scriptText, "<b>bold</b>") {
		t.Errorf("the banner is not shown as text: %q", scriptText)
	}
	if pwned != "undefined" || dialogs.Load() != 0 {
		t.Errorf("script from a scanned machine ran: window.pwned=%s, dialogs %d", pwned, dialogs.Load())
	}

	// The diff of A and B shows the newly opened port.
	row := fmt.Sprintf("#change-tcp-%d", p2)
	do("open the diff", chromedp.Navigate(srv.URL+"/diff?a="+a.ID+"&b="+b.ID), chromedp.WaitVisible(chromedp.CSS(row)))
	cls, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(row), "class"))
	shot("diff")
	if err != nil || cls.Value != "opened" {
		t.Errorf("port %d in the diff has class %q (%v), want opened", p2, cls.Value, err)
	}

	// A running scan's progress moves without a reload.
	sel := fmt.Sprintf(`progress[data-scan=%q]`, slow.ID)
	state := fmt.Sprintf(`document.querySelector('.msg[data-scan=%q]').textContent + " " + document.querySelector(%q).value`, slow.ID, sel)
	do("open running scans", chromedp.Navigate(srv.URL+"/running"), chromedp.WaitVisible(chromedp.CSS(sel)))
	first, later := eval(state), ""
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		do("wait", chromedp.Sleep(time.Second))
		if later = eval(state); later != first {
			break
		}
	}
	shot("running")
	if later == first {
		t.Errorf("progress did not move in 30 s: %q", first)
	}

	// The CSV download, with the session.
	do("open scan B", chromedp.Navigate(srv.URL+"/scans/"+b.ID), chromedp.WaitVisible(chromedp.CSS("#dl-csv")))
	csv := eval(`fetch(document.querySelector('#dl-csv').href).then(r => r.text())`, chromedp.EvalAwaitPromise)
	if !strings.Contains(csv, "host,hostnames,protocol,port") || !strings.Contains(csv, fmt.Sprintf("tcp,%d,open", p2)) {
		t.Errorf("csv:\n%s", csv)
	}

	// Signed out, nothing is shown any more.
	do("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.Navigate(srv.URL+"/scans/"+a.ID), chromedp.WaitVisible(chromedp.CSS("#token")))
	body := text("body")
	shot("signed-out")
	if loc := location(); !strings.Contains(loc, "/signin") || strings.Contains(body, "127.0.0.1") {
		t.Errorf("after sign-out: %s\n%s", loc, body)
	}
}

func intp(n int) *int { return &n }
