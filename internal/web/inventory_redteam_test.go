package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Red-team regression tests of the inventory pages, at the HTTP level
// (no engine, no browser: a store file in a temporary folder).

// inventoryServer serves the pages over an inventory with one host of
// alice's (and more); it returns the server and alice's session cookie.
func inventoryServer(t *testing.T, more ...results.Host) (*httptest.Server, *http.Cookie) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "scans.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	inv, err := inventory.New(ctx, st, inventory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r := &results.Result{Hosts: append([]results.Host{{Addresses: []string{"10.1.0.5"}, State: "up",
		Ports: []results.Port{{Protocol: "tcp", Port: 22, State: "open", Service: "ssh", Product: "OpenSSH", Version: "8.9p1"}}}}, more...)}
	r.Normalize()
	if _, err := inv.Ingest(ctx, inventory.Scan{ID: "a1", Client: "alice", At: time.Now().Add(-time.Hour), Result: r}); err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Inventory: inv, Authenticate: func(tok string) (string, bool, bool) {
		if tok == "alice-token" {
			return "alice", false, true
		}
		return "", false, false
	}}, &fakeScans{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, signIn(t, srv, "alice-token", srv.URL).Cookies()[0]
}

// TestInventoryVersionFilterBounded: a signed-in client's version filter
// of 2,000 comparisons made SQLite fail, and the page showed its error,
// which names the server's store file; it is refused as a bad field.
func TestInventoryVersionFilterBounded(t *testing.T) {
	srv, alice := inventoryServer(t)
	v := url.QueryEscape(strings.Repeat("<1,", 2000) + "<1")
	for _, path := range []string{"/inventory?version=" + v, "/inventory/csv?version=" + v} {
		resp, body := get(t, srv, path, alice)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid version") || strings.Contains(body, "scans.db") || strings.Contains(body, "SQL") {
			t.Errorf("%s: %d\n%.600s", path[:20], resp.StatusCode, body)
		}
	}
}

// TestInventoryOffsetChecked: a bad offset ("abc", -5) was read as 0
// without a word (the page showed the first hosts as if asked for them);
// it is refused naming the field, the value and the rule, as a bad port.
func TestInventoryOffsetChecked(t *testing.T) {
	srv, alice := inventoryServer(t)
	for _, off := range []string{"abc", "-5", "1e3"} {
		for _, path := range []string{"/inventory?offset=", "/inventory/csv?offset="} {
			resp, body := get(t, srv, path+url.QueryEscape(off), alice)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid offset") || !strings.Contains(body, off) {
				t.Errorf("%s%s: %d\n%.400s", path, off, resp.StatusCode, body)
			}
		}
	}
	if resp, body := get(t, srv, "/inventory?offset=0", alice); resp.StatusCode != http.StatusOK || !strings.Contains(body, "10.1.0.5") {
		t.Fatalf("offset 0: %d", resp.StatusCode)
	}
}

// TestInventoryPagesSayOmittedPorts: the answers list at most
// inventory.MaxPortsPerHost ports of a host (MaxTimelinePorts on its
// page); the pages say how many more there are instead of hiding them.
func TestInventoryPagesSayOmittedPorts(t *testing.T) {
	srv, alice := inventoryServer(t, tarpitHost("10.1.0.7", inventory.MaxTimelinePorts+20))
	if _, body := get(t, srv, "/inventory?address=10.1.0.7&state=open", alice); !strings.Contains(body, fmt.Sprintf("… %d more ports", inventory.MaxTimelinePorts+20-inventory.MaxPortsPerHost)) {
		t.Errorf("search does not say what it left out:\n%.2000s", body[len(body)-2000:])
	}
	if _, body := get(t, srv, "/inventory/host/10.1.0.7", alice); !strings.Contains(body, "… 20 more ports") {
		t.Errorf("host page does not say what it left out")
	}
}

func tarpitHost(addr string, n int) results.Host {
	h := results.Host{Addresses: []string{addr}, State: "up"}
	for p := 1; p <= n; p++ {
		h.Ports = append(h.Ports, results.Port{Protocol: "tcp", Port: p, State: "open"})
	}
	return h
}
