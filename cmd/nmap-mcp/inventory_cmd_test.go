package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/export"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// historyOfOneScan writes a history file with one finished scan, s1 of
// alice, that found port on 10.1.0.5 (targets as given), ended ago; it
// returns the file's path.
func historyOfOneScan(t *testing.T, targets string, port results.Port, ago time.Duration) string {
	t.Helper()
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "scans.db")
	st, err := store.Open(ctx, db, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := time.Now().Add(-ago).UTC()
	r := &store.Record{ID: "s1", Client: "alice", Targets: targets, ScanType: "connect", CreatedAt: at, StartedAt: at}
	if err := st.Begin(ctx, r); err != nil {
		t.Fatal(err)
	}
	res := &results.Result{Hosts: []results.Host{{Addresses: []string{"10.1.0.5"}, State: "up", Ports: []results.Port{port}}}}
	res.Normalize()
	r.Status, r.Result, r.EndedAt = store.Done, res, at.Add(time.Second)
	if err := st.Finish(ctx, r); err != nil {
		t.Fatal(err)
	}
	return db
}

// "nmap-mcp inventory" ingests the finished scans of the history file and
// answers from them: find as text and as CSV (read back), changes, host.
// No engine: the scans are records written to a store file.
func TestInventoryCommand(t *testing.T) {
	ctx := context.Background()
	db := historyOfOneScan(t, "10.1.0.0/24", results.Port{Protocol: "tcp", Port: 3389, State: "open", Service: "ms-wbt-server"}, time.Hour)

	var out, errb bytes.Buffer
	if err := run(ctx, []string{"inventory", "find", "--store", db, "--address", "10.1.0.0/16", "--port", "3389"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "10.1.0.5") || !strings.Contains(out.String(), "by s1") || !strings.Contains(errb.String(), "ingested 1 finished scans") {
		t.Fatalf("find:\n%s\n%s", out.String(), errb.String())
	}
	out.Reset()
	if err := run(ctx, []string{"inventory", "find", "--store", db, "--state", "open", "--csv"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil || len(rows) != 2 || strings.Join(rows[0], ",") != strings.Join(export.InventoryHeader, ",") || rows[1][1] != "10.1.0.5" {
		t.Fatalf("CSV %v %q", err, rows)
	}
	out.Reset()
	if err := run(ctx, []string{"inventory", "changes", "--store", db, "--since", "2h"}, &out, &errb); err != nil || !strings.Contains(out.String(), "host_appeared") {
		t.Fatalf("changes %v:\n%s", err, out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"inventory", "host", "--store", db, "--client", "bob", "10.1.0.5"}, &out, &errb); err == nil {
		t.Fatal("bob's inventory holds alice's host")
	}
	if err := run(ctx, []string{"inventory", "find", "--store", db, "--version", "<"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("bad version: %v", err)
	}
}
