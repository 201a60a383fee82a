package web

import (
	"context"
	"encoding/csv"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/export"
	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// The inventory pages at the HTTP level (no engine, no browser): the
// search with find_hosts' filters, a host's timeline, the CSV (read
// back), remote text inert, and tenancy: alice sees her hosts, not bob's;
// an admin sees both; a bad filter says which and why.
func TestInventoryPages(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "scans.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	inv, err := inventory.New(ctx, st, inventory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour)
	for _, sc := range []struct{ id, client, addr, product string }{
		{"a1", "alice", "10.1.0.5", "<script>alert(1)</script>"}, {"b1", "bob", "10.1.0.9", "OpenSSH"}} {
		r := &results.Result{Hosts: []results.Host{{Addresses: []string{sc.addr}, State: "up",
			Ports: []results.Port{{Protocol: "tcp", Port: 22, State: "open", Service: "ssh", Product: sc.product, Version: "8.9p1"}}}}}
		r.Normalize()
		if _, err := inv.Ingest(ctx, inventory.Scan{ID: sc.id, Client: sc.client, At: at, Result: r}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := New(Config{Inventory: inv, Authenticate: func(tok string) (string, bool, bool) {
		switch tok {
		case "alice-token":
			return "alice", false, true
		case "admin-token":
			return "root", true, true
		}
		return "", false, false
	}}, &fakeScans{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	alice := signIn(t, srv, "alice-token", srv.URL).Cookies()[0]
	admin := signIn(t, srv, "admin-token", srv.URL).Cookies()[0]

	resp, body := get(t, srv, "/inventory?address=10.1.0.0%2F16&port=22&state=open", alice)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "10.1.0.5") || strings.Contains(body, "10.1.0.9") ||
		!strings.Contains(body, "&lt;script&gt;") || strings.Contains(body, "<script>alert") || !strings.Contains(body, `href="/inventory"`) {
		t.Fatalf("alice's search (%d):\n%s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `href="/inventory/csv?address=10.1.0.0%2F16&amp;gone=no&amp;port=22&amp;state=open"`) {
		t.Errorf("CSV link keeps the filters:\n%s", body)
	}
	resp, body = get(t, srv, "/inventory/csv?address=10.1.0.0%2F16&port=22", alice)
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || resp.Header.Get("Content-Disposition") == "" || len(rows) != 2 || strings.Join(rows[0], ",") != strings.Join(export.InventoryHeader, ",") || rows[1][1] != "10.1.0.5" {
		t.Fatalf("CSV %v %q", err, rows)
	}
	_, body = get(t, srv, "/inventory?product=openssh&version=%3C9.0", admin)
	if !strings.Contains(body, "10.1.0.9") || strings.Contains(body, "10.1.0.5") || !strings.Contains(body, "bob") {
		t.Fatalf("admin's OpenSSH < 9:\n%s", body)
	}
	_, body = get(t, srv, "/inventory/host/10.1.0.5", alice)
	if !strings.Contains(body, "host_appeared") || !strings.Contains(body, `href="/scans/a1"`) {
		t.Fatalf("timeline:\n%s", body)
	}
	if resp, _ := get(t, srv, "/inventory/host/10.1.0.9", alice); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("alice reads bob's host: %d", resp.StatusCode)
	}
	if resp, body := get(t, srv, "/inventory?port=99999", alice); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid port") {
		t.Fatalf("bad port: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := get(t, srv, "/inventory/csv", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("CSV without a session: %d", resp.StatusCode)
	}
}
