package main

import (
	"bytes"
	"context"
	"errors"
	"os"
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

// The token command's arguments are parsed as flags and one name, in
// either order: --help prints the usage and creates nothing, --config
// before or after the name names the file that gets the token, and no
// token is ever named after a flag. A name starting with "-" is refused
// with an error naming the field, the value and the rule. No engine: it
// runs under -short.
func TestTokenArgs(t *testing.T) {
	dir := t.TempDir()
	// The default config file must never be touched: point it into the
	// test's folder and check that nothing appears there.
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "xdg"))
	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv("NMAP_MCP_CONFIG", "")
	defaultCfg := config.DefaultPath()
	if !strings.HasPrefix(defaultCfg, dir) {
		t.Fatalf("default config %s is outside the test's folder", defaultCfg)
	}
	tokens := func(path string) []string {
		t.Helper()
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		c, err := config.Load(path, true)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tok := range c.HTTP.Tokens {
			names = append(names, tok.Name)
		}
		return names
	}
	run := func(args ...string) (stdout, stderr string, err error) {
		var out, errOut bytes.Buffer
		err = cmdToken(args, &out, &errOut)
		return out.String(), errOut.String(), err
	}

	for _, args := range [][]string{
		{"add", "--help"}, {"add", "-h"}, {"add", "-help"}, {"add", "alice", "--help"},
		{"rm", "--help"}, {"rm", "-h"}, {"--help"}, {"-h"}, {"help"},
	} {
		out, errOut, err := run(args...)
		if err != nil {
			t.Errorf("token %s: %v", strings.Join(args, " "), err)
		}
		if !strings.Contains(errOut, "nmap-mcp token add NAME") || out != "" {
			t.Errorf("token %s printed no usage (stdout %q, stderr %q)", strings.Join(args, " "), out, errOut)
		}
	}
	if got := tokens(defaultCfg); got != nil {
		t.Fatalf("--help created tokens %v in %s", got, defaultCfg)
	}

	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	for _, args := range [][]string{
		{"add", "--config", a, "alice"},
		{"add", "bob", "--config", a},
		{"add", "--config=" + b, "carol"},
		{"add", "dave", "-config=" + b},
	} {
		out, errOut, err := run(args...)
		if err != nil {
			t.Fatalf("token %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		if !strings.HasPrefix(out, "nmcp_") {
			t.Errorf("token %s printed %q, not the token", strings.Join(args, " "), out)
		}
	}
	if got := strings.Join(tokens(a), ","); got != "alice,bob" {
		t.Errorf("%s holds tokens %q, want alice,bob", a, got)
	}
	if got := strings.Join(tokens(b), ","); got != "carol,dave" {
		t.Errorf("%s holds tokens %q, want carol,dave", b, got)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "--config", a, "--", "-mallory"}, `token name "-mallory": must not start with "-"`},
		{[]string{"add", "--config", a, "--", "--config"}, `token name "--config": must not start with "-"`},
		{[]string{"rm", "--config", a, "--", "-mallory"}, `token name "-mallory": must not start with "-"`},
		{[]string{"add", "--config", a, "bad/name"}, `token name "bad/name": use 1-64 letters`},
		{[]string{"add", "--config", a}, "token add takes one NAME"},
		{[]string{"add", "--config", a, "erin", "frank"}, "token add takes one NAME"},
		{[]string{"add", "--bogus", "erin"}, "-bogus"},
		{[]string{"frob", "alice"}, `"frob"`},
	} {
		_, errOut, err := run(tc.args...)
		if err == nil {
			t.Errorf("token %s: no error", strings.Join(tc.args, " "))
			continue
		}
		if msg := err.Error() + " " + errOut; !strings.Contains(msg, tc.want) {
			t.Errorf("token %s: %q, want it to say %q", strings.Join(tc.args, " "), msg, tc.want)
		}
	}
	if got := strings.Join(tokens(a), ","); got != "alice,bob" {
		t.Errorf("after the refusals %s holds tokens %q, want alice,bob", a, got)
	}
	// rm takes its flags before the name too.
	if _, errOut, err := run("rm", "--config", a, "--store", filepath.Join(dir, "scans.db"), "bob"); err != nil {
		t.Fatalf("token rm --config %s --store … bob: %v\n%s", a, err, errOut)
	}
	if got := strings.Join(tokens(a), ","); got != "alice" {
		t.Errorf("after token rm bob %s holds tokens %q, want alice", a, got)
	}
	if got := tokens(defaultCfg); got != nil {
		t.Fatalf("the default config %s got tokens %v", defaultCfg, got)
	}
}
