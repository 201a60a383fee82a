package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/config"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Removing a token removes it from the config file and pauses its
// client's watches (they would scan as that client), saying why; other
// clients' watches run on. Removing an unknown token changes nothing.
// No engine: it runs under -short.
func TestTokenRmPausesWatches(t *testing.T) {
	dir := t.TempDir()
	cfg, db := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "scans.db")
	for _, name := range []string{"alice", "bob"} {
		if err := config.AddToken(cfg, config.Token{Name: name, SHA256: strings.Repeat("a", 64)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	st, err := store.Open(ctx, db, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, c := range []string{"alice", "bob"} {
		if err := st.CreateWatch(ctx, &store.Watch{Name: "lab", Client: c, Request: []byte(`{}`), Interval: time.Hour, Created: now, NextRun: now}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	var out, errOut bytes.Buffer
	if err := cmdToken([]string{"rm", "carol", "--config", cfg, "--store", db}, &out, &errOut); err == nil || !strings.Contains(err.Error(), `no token named "carol"`) {
		t.Fatalf("rm of an unknown token: %v", err)
	}
	if err := cmdToken([]string{"rm", "alice", "--config", cfg, "--store", db}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "paused 1 of its watches") {
		t.Fatalf("output: %s", out.String())
	}
	c, err := config.Load(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.HTTP.Tokens) != 1 || c.HTTP.Tokens[0].Name != "bob" {
		t.Fatalf("tokens left: %+v", c.HTTP.Tokens)
	}
	st, err = store.Open(ctx, db, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, _ := st.GetWatch(ctx, "lab", "alice")
	b, _ := st.GetWatch(ctx, "lab", "bob")
	if a == nil || !strings.Contains(a.Paused, "token rm") || b == nil || b.Paused != "" {
		t.Fatalf("after token rm alice: alice's %+v, bob's %+v", a, b)
	}
	if due, _ := st.DueWatches(ctx, time.Now()); len(due) != 1 || due[0].Client != "bob" {
		t.Fatalf("due: %+v", due)
	}
}
