package inventory

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// TestCatchUp: the inventory follows the history: finished scans are
// ingested once, a running scan when it has finished, a scan without a
// result is passed over, and retention deleting scans loses nothing of
// the inventory. (A real store file; no engine.)
func TestCatchUp(t *testing.T) {
	ctx := context.Background()
	inv, st := newInv(t, Config{})
	res := func(addr string, port int) *results.Result {
		r := &results.Result{Hosts: []results.Host{host(addr, tcp(port, "open", "http", "", ""))}}
		r.Normalize()
		return r
	}
	begin := func(id, client string, at time.Time) *store.Record {
		r := &store.Record{ID: id, Client: client, Targets: "127.0.0.1", ScanType: "connect", CreatedAt: at, StartedAt: at}
		if err := st.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	finish := func(r *store.Record, result *results.Result) {
		r.Status, r.Result, r.EndedAt = store.Done, result, r.CreatedAt.Add(time.Minute)
		if err := st.Finish(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	a := begin("a", "alice", t0)
	finish(a, res("127.0.0.1", 80))
	b := begin("b", "alice", t0.Add(time.Second)) // still running
	c := begin("c", "bob", t0.Add(2*time.Second))
	finish(c, res("127.0.0.2", 22))
	f := begin("f", "bob", t0.Add(3*time.Second))
	f.Status, f.EndedAt = store.Failed, t0.Add(4*time.Second)
	if err := st.Finish(ctx, f); err != nil {
		t.Fatal(err)
	}
	if n, err := inv.CatchUp(ctx, 0); err != nil || n != 2 {
		t.Fatalf("first catch-up: %d, %v; want 2 (a and c)", n, err)
	}
	if n, err := inv.CatchUp(ctx, 0); err != nil || n != 0 {
		t.Fatalf("second catch-up: %d, %v; want 0", n, err)
	}
	finish(b, res("127.0.0.1", 443))
	if n, err := inv.CatchUp(ctx, 0); err != nil || n != 1 {
		t.Fatalf("after b finished: %d, %v; want 1", n, err)
	}
	found, err := inv.Find(ctx, Query{Client: "alice"})
	if err != nil || found.Total != 1 || len(found.Hosts[0].Ports) != 2 || found.Hosts[0].LastScan != "b" {
		t.Fatalf("alice's inventory %+v %v", found, err)
	}
	// Retention deletes every scan: the inventory stays.
	if _, err := st.Prune(ctx, store.Keep{Count: 1}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Prune(ctx, store.Keep{Age: time.Hour}, nil, time.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if left, _ := st.List(ctx, store.Filter{}); len(left) != 0 {
		t.Fatalf("retention left %d scans", len(left))
	}
	found, err = inv.Find(ctx, Query{})
	if err != nil || found.Total != 2 {
		t.Fatalf("after retention %+v %v", found, err)
	}
	// A bounded catch-up ingests at most max scans.
	for i, id := range []string{"d1", "d2", "d3"} {
		finish(begin(id, "alice", t0.Add(time.Duration(10+i)*time.Second)), res("127.0.0.3", 1000+i))
	}
	if n, _ := inv.CatchUp(ctx, 2); n != 2 {
		t.Fatalf("bounded catch-up ingested %d, want 2", n)
	}
	if n, _ := inv.CatchUp(ctx, 0); n != 1 {
		t.Fatalf("rest: %d, want 1", n)
	}
}

// One catch-up at a time, and a caller waits for its turn only as long as
// its context allows: an answer is not held by another catch-up ingesting
// a big scan. No engine.
func TestCatchUpWaitsOnlyAsLongAsItsContext(t *testing.T) {
	inv, _ := newInv(t, Config{})
	inv.following <- struct{}{} // another catch-up holds the turn
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := inv.CatchUp(ctx, 20); err == nil || !strings.Contains(err.Error(), "another catch-up is under way") {
		t.Fatalf("catch-up while another holds the turn: %v", err)
	}
	<-inv.following
	if _, err := inv.CatchUp(context.Background(), 20); err != nil {
		t.Fatalf("catch-up after the turn is free: %v", err)
	}
}
