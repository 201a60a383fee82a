package web_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/internal/web"
)

// TestInventoryInBrowser drives Chromium through the inventory pages: the
// search form (address and port), a hostile product shown as text, one
// host's timeline, and the CSV link fetched with the session. The
// inventory is filled from results written in Go (no engine); skipped
// under -short like the other browser tests.
func TestInventoryInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("drives Chromium; runs without -short (scripts/test.sh)")
	}
	browser := chromium(t)
	ctx := context.Background()
	st, _ := testkit.OpenHistory(t)
	inv, err := inventory.New(ctx, st, inventory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour)
	for i, v := range []string{"8.9p1", "9.6p1"} {
		r := &results.Result{Hosts: []results.Host{{Addresses: []string{"10.1.0.5"}, State: "up", Ports: []results.Port{
			{Protocol: "tcp", Port: 22, State: "open", Service: "ssh", Product: "OpenSSH", Version: v},
			{Protocol: "tcp", Port: 80, State: "open", Service: "http", Product: hostileBanner}}}}}
		r.Normalize()
		if _, err := inv.Ingest(ctx, inventory.Scan{ID: []string{"s1", "s2"}[i], Client: "alice", At: at.Add(time.Duration(i) * time.Minute), Result: r}); err != nil {
			t.Fatal(err)
		}
	}
	view, err := web.New(web.Config{Inventory: inv, Authenticate: func(tok string) (string, bool, bool) {
		return "alice", false, tok == "alice-token"
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(view)
	t.Cleanup(srv.Close)
	sess := newSession(t, browser, time.Minute)
	bctx := sess.ctx
	do, text := sess.do, sess.text
	do("sign in", chromedp.Navigate(srv.URL+"/inventory"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), "alice-token"), chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#inventory-form")))
	do("search", chromedp.SendKeys(chromedp.CSS(`input[name=address]`), "10.1.0.0/16"), chromedp.SendKeys(chromedp.CSS(`input[name=port]`), "80"),
		chromedp.Submit(chromedp.CSS("#inventory-form")), chromedp.WaitVisible(chromedp.CSS("#inventory")))
	table := text("#inventory")
	if !strings.Contains(table, "10.1.0.5") || !strings.Contains(table, "<script>window.pwned=1</script>") || strings.Contains(table, "22/tcp") {
		t.Errorf("search result:\n%s", table)
	}
	pwned, err := chromedp.Run(bctx, chromedp.Evaluate[string](`String(window.pwned)`))
	if err != nil || pwned != "undefined" {
		t.Errorf("script from a scanned machine ran: %s %v", pwned, err)
	}
	csv, err := chromedp.Run(bctx, chromedp.Evaluate[string](`fetch(document.querySelector('#inventory-csv').href).then(r => r.text())`, chromedp.EvalAwaitPromise))
	if err != nil || !strings.HasPrefix(csv, strings.Join(inventoryHeader(), ",")) || !strings.Contains(csv, "10.1.0.5") {
		t.Errorf("CSV via the link (%v):\n%s", err, csv)
	}
	do("open the host", chromedp.Click(chromedp.CSS("a.host")), chromedp.WaitVisible(chromedp.CSS("#timeline")))
	tl := text("#timeline")
	if !strings.Contains(tl, "version") || !strings.Contains(tl, "8.9p1") || !strings.Contains(tl, "9.6p1") || !strings.Contains(tl, "host_appeared") {
		t.Errorf("timeline:\n%s", tl)
	}
}

func inventoryHeader() []string {
	return []string{"client", "address", "hostnames"}
}
