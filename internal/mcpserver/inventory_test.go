package mcpserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// inventorySession serves MCP over stdio pipes to the Go SDK's client, as
// the client named client (admin: every client's inventory), over st's
// inventory. No engine: the scans are records written to the store.
func inventorySession(t *testing.T, st *store.Store, inv *inventory.Inventory, client string, admin bool) *sdk.ClientSession {
	t.Helper()
	svc := scans.New(scans.Config{}, scans.Deps{Store: st})
	srv := mcpserver.New(mcpserver.Deps{Scans: svc, Inventory: inv})
	ctx, cancel := context.WithCancel(context.Background())
	cr, cw := io.Pipe()
	sr, sw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		stdio := server.NewStdioServer(srv)
		stdio.SetContextFunc(func(ctx context.Context) context.Context {
			ctx = scans.WithClient(ctx, client)
			if admin {
				ctx = scans.WithAdmin(ctx)
			}
			return ctx
		})
		_ = stdio.Listen(ctx, cr, sw)
	}()
	sess, err := sdk.NewClient(&sdk.Implementation{Name: "inventory-test", Version: "1"}, nil).
		Connect(ctx, &sdk.IOTransport{Reader: sr, Writer: cw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sess.Close()
		cancel()
		cw.Close()
		sw.Close()
		<-done
		_ = svc.Close(context.Background())
	})
	return sess
}

// record writes a finished scan of client to the history, as the scans
// service does.
func invRecord(t *testing.T, st *store.Store, id, client string, at time.Time, hosts ...results.Host) {
	t.Helper()
	r := &store.Record{ID: id, Client: client, Targets: "127.0.0.1", ScanType: "connect", CreatedAt: at, StartedAt: at}
	if err := st.Begin(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	res := &results.Result{Hosts: hosts}
	res.Normalize()
	r.Status, r.Result, r.EndedAt = store.Done, res, at.Add(time.Second)
	if err := st.Finish(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func invUp(addr string, ports ...results.Port) results.Host {
	return results.Host{Addresses: []string{addr}, State: "up", Ports: ports}
}

func invCall(t *testing.T, sess *sdk.ClientSession, tool string, args map[string]any, out any) string {
	t.Helper()
	res, err := sess.CallTool(context.Background(), &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	if res.IsError {
		t.Fatalf("%s %v: error %s", tool, args, b.String())
	}
	if out != nil {
		raw, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s: structuredContent %s: %v", tool, raw, err)
		}
	}
	return b.String()
}

// TestInventoryOverMCP: find_hosts, inventory_changes and host:// over a
// real client; a scan recorded after the server started is in the next
// answer (the inventory follows the history); alice sees only her
// inventory, bob his, an admin both; the tools' schemas are client-safe
// and marked read-only.
func TestInventoryOverMCP(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	inv, err := inventory.New(context.Background(), st, inventory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	ssh := results.Port{Protocol: "tcp", Port: 22, State: "open", Service: "ssh", Product: "OpenSSH", Version: "8.9p1"}
	rdp := results.Port{Protocol: "tcp", Port: 3389, State: "open", Service: "ms-wbt-server"}
	invRecord(t, st, "a1", "alice", t0, invUp("10.1.0.5", ssh, rdp), invUp("10.2.0.5", rdp))
	alice := inventorySession(t, st, inv, "alice", false)
	bob := inventorySession(t, st, inv, "bob", false)
	admin := inventorySession(t, st, inv, "root", true)

	tools, err := alice.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, tool := range tools.Tools {
		if tool.Name != "find_hosts" && tool.Name != "inventory_changes" {
			continue
		}
		seen++
		if tool.Annotations == nil || !tool.Annotations.ReadOnlyHint {
			t.Errorf("%s: not marked read-only: %+v", tool.Name, tool.Annotations)
		}
		raw, _ := json.Marshal(tool.OutputSchema)
		if !strings.HasPrefix(string(raw), "{") || strings.Contains(string(raw), "$ref") || strings.Contains(string(raw), "$defs") || !strings.Contains(string(raw), `"type":"object"`) {
			t.Errorf("%s: output schema %s", tool.Name, raw)
		}
	}
	if seen != 2 {
		t.Fatalf("inventory tools listed: %d", seen)
	}

	var f inventory.Found
	text := invCall(t, alice, "find_hosts", map[string]any{"address": "10.1.0.0/16", "port": 3389, "state": "open"}, &f)
	if f.Total != 1 || f.Hosts[0].Address != "10.1.0.5" || f.Hosts[0].Ports[0].LastScan != "a1" || !strings.Contains(text, "by a1") {
		t.Fatalf("alice's RDP in 10.1/16: %+v\n%s", f, text)
	}
	invCall(t, alice, "find_hosts", map[string]any{"product": "openssh", "version": "<9.0"}, &f)
	if f.Total != 1 || f.Hosts[0].Ports[0].Version != "8.9p1" {
		t.Fatalf("OpenSSH < 9: %+v", f)
	}
	// A scan recorded now is in the next answer.
	ssh96 := ssh
	ssh96.Version = "9.6p1"
	invRecord(t, st, "a2", "alice", t0.Add(time.Minute), invUp("10.1.0.5", ssh96, rdp))
	invRecord(t, st, "b1", "bob", t0.Add(2*time.Minute), invUp("10.1.0.7", rdp))
	invCall(t, alice, "find_hosts", map[string]any{"product": "OpenSSH", "version": "<9.0"}, &f)
	if f.Total != 0 {
		t.Fatalf("after the upgrade, OpenSSH < 9: %+v", f)
	}
	var c inventory.Changes
	text = invCall(t, alice, "inventory_changes", map[string]any{"address": "10.1.0.0/16", "since": "2h"}, &c)
	if c.Total != 2 || c.Changes[0].Kind != "version" || c.Changes[0].Scan != "a2" || c.Changes[0].To != "9.6p1" || !strings.Contains(text, "scan a2") {
		t.Fatalf("alice's changes: %+v\n%s", c, text)
	}
	// Tenancy.
	invCall(t, bob, "find_hosts", map[string]any{"port": 3389}, &f)
	if f.Total != 1 || f.Hosts[0].Address != "10.1.0.7" || f.Hosts[0].Client != "bob" {
		t.Fatalf("bob sees %+v", f)
	}
	invCall(t, admin, "find_hosts", map[string]any{"port": 3389}, &f)
	if f.Total != 3 {
		t.Fatalf("admin sees %d hosts with 3389, want 3", f.Total)
	}
	if _, err := bob.ReadResource(context.Background(), &sdk.ReadResourceParams{URI: "host://10.1.0.5"}); err == nil {
		t.Fatal("bob reads alice's host://10.1.0.5")
	}
	res, err := alice.ReadResource(context.Background(), &sdk.ReadResourceParams{URI: "host://10.1.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	var tl inventory.Timeline
	if err := json.Unmarshal([]byte(res.Contents[0].Text), &tl); err != nil || len(tl.Hosts) != 1 || len(tl.Changes) != 2 {
		t.Fatalf("host://10.1.0.5: %v %s", err, res.Contents[0].Text)
	}
	// Bad arguments name the field and the rule.
	res2, err := alice.CallTool(context.Background(), &sdk.CallToolParams{Name: "find_hosts", Arguments: map[string]any{"address": "10.0.0.0/99"}})
	if err != nil || !res2.IsError {
		t.Fatalf("bad CIDR: %v %+v", err, res2)
	}
}

// An answer says when finished scans were left to ingest (catching_up, and
// a line of its text): more than an answer ingests first (20) finished
// since the inventory last looked. Asked again, it has them. No engine.
func TestInventoryAnswerSaysItIsCatchingUp(t *testing.T) {
	st, _ := testkit.OpenHistory(t)
	inv, err := inventory.New(context.Background(), st, inventory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UTC()
	for i := range 25 {
		invRecord(t, st, fmt.Sprintf("s%02d", i), "alice", at.Add(time.Duration(i)*time.Second),
			invUp(fmt.Sprintf("10.4.0.%d", i+1), results.Port{Protocol: "tcp", Port: 22, State: "open", Service: "ssh"}))
	}
	sess := inventorySession(t, st, inv, "alice", false)
	var f inventory.Found
	text := invCall(t, sess, "find_hosts", map[string]any{"port": 22}, &f)
	if !f.CatchingUp || f.Total != 20 || !strings.Contains(text, "still being ingested") {
		t.Fatalf("first answer: catching_up %v, %d hosts; text %q", f.CatchingUp, f.Total, text)
	}
	text = invCall(t, sess, "find_hosts", map[string]any{"port": 22}, &f)
	if f.CatchingUp || f.Total != 25 || strings.Contains(text, "still being ingested") {
		t.Fatalf("second answer: catching_up %v, %d hosts; text %q", f.CatchingUp, f.Total, text)
	}
}
