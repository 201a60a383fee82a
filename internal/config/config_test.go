package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/policy"
)

func TestDefaultMatchesBuiltins(t *testing.T) {
	c := Default()
	if c.Sandbox.Memory != "512m" || c.Sandbox.Pids != 128 || c.Queue.Size != 32 || c.Budgets.MaxAddressesPerScan != 4096 {
		t.Fatalf("defaults %+v", c)
	}
	if strings.Join(c.Scope.Allow, ",") != strings.Join(policy.DefaultAllow, ",") ||
		strings.Join(c.Scope.Deny, ",") != strings.Join(policy.DefaultDeny, ",") ||
		strings.Join(c.Scripts.Categories, ",") != strings.Join(policy.DefaultScriptCategories, ",") {
		t.Fatalf("default.yaml and the policy defaults disagree: %+v", c.Scope)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, text string) string {
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadOverridesAndStrictness(t *testing.T) {
	c, err := Load(write(t, "sandbox:\n  memory: 1g\nscope:\n  allow: [192.0.2.0/24]\n"), true)
	if err != nil || c.Sandbox.Memory != "1g" || c.Sandbox.Pids != 128 || c.Scope.Allow[0] != "192.0.2.0/24" {
		t.Fatalf("Load: %+v %v", c, err)
	}
	for text, want := range map[string]string{
		"sandbox:\n  memroy: 1g\n":               "line 2: field memroy not found",
		"queue:\n  size: 3\nbogus: 1\n":          "line 3: field bogus not found",
		"sandbox:\n  pids: many\n":               "line 2",
		"budgets:\n  window: soon\n":             "budgets.window",
		"scope:\n  deny:\n    - 10.0.0.0/99\n":   "scope.deny",
		"scripts:\n  categories: [\"not ok\"]\n": "scripts.categories",
	} {
		path := write(t, text)
		_, err := Load(path, true)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: %v; want an error naming the file and %q", text, err, want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), false); err != nil {
		t.Fatalf("missing default file: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), true); err == nil {
		t.Fatal("a missing file that was asked for must be an error")
	}
}

func TestAddTokenKeepsComments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := AddToken(path, Token{Name: "alice", SHA256: strings.Repeat("a", 64)}); err != nil {
		t.Fatal(err)
	}
	if err := AddToken(path, Token{Name: "bob", SHA256: strings.Repeat("b", 64)}); err != nil {
		t.Fatal(err)
	}
	if err := AddToken(path, Token{Name: "bob", SHA256: strings.Repeat("c", 64)}); err == nil {
		t.Fatal("a second token named bob was accepted")
	}
	c, err := Load(path, true)
	if err != nil || len(c.HTTP.Tokens) != 2 || c.HTTP.Tokens[1].Name != "bob" {
		t.Fatalf("Load: %v %+v", err, c.HTTP.Tokens)
	}
	text, _ := os.ReadFile(path)
	if !strings.Contains(string(text), "# Deny wins over allow") {
		t.Fatal("comments were lost")
	}
}

// Regression (scans-service issue): config check rejects bad values with
// the key and its line number.
func TestValidateNamesKeyAndLine(t *testing.T) {
	for text, want := range map[string]string{
		"sandbox:\n  memory: lots\n":            `line 2: sandbox.memory "lots"`,
		"sandbox:\n  cpus: 1\n  pids: 1\n":      `line 3: sandbox.pids "1"`,
		"http:\n  max_body: huge\n":             `line 2: http.max_body "huge"`,
		"sandbox:\n  timeout_seconds: -5\n":     `line 2: sandbox.timeout_seconds "-5"`,
		"queue:\n  timeout_seconds: -1\n":       `line 2: queue.timeout_seconds "-1"`,
		"store:\n  max_xml: 0\n":                `line 2: store.max_xml "0"`,
		"log:\n  level: loud\n":                 `line 2: log.level "loud"`,
		"budgets:\n  max_addresses_per_scan: 0": `line 2: budgets.max_addresses_per_scan "0"`,
	} {
		path := write(t, text)
		_, err := Load(path, true)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want %q", text, err, want)
		}
	}
}

// The environment overrides the file and flags override both; a bad
// value says where it came from.
func TestLayers(t *testing.T) {
	path := write(t, "sandbox:\n  memory: 1g\n  pids: 64\nstore:\n  path: /from/file.db\n")
	t.Setenv("NMAP_MCP_PIDS", "96")
	t.Setenv("NMAP_MCP_STORE", "")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	l, err := Register(fs, []string{"--config", path})
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--config", path, "--memory", "2g"}); err != nil {
		t.Fatal(err)
	}
	c, err := l.Done()
	if err != nil || c.Sandbox.Memory != "2g" || c.Sandbox.Pids != 96 || c.Store.Path != "/from/file.db" {
		t.Fatalf("%v %+v %+v", err, c.Sandbox, c.Store)
	}
	t.Setenv("NMAP_MCP_PIDS", "2")
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	l, _ = Register(fs, []string{"--config", path})
	_ = fs.Parse([]string{"--config", path})
	if _, err := l.Done(); err == nil || !strings.Contains(err.Error(), "NMAP_MCP_PIDS") {
		t.Fatalf("bad env value: %v", err)
	}
	t.Setenv("NMAP_MCP_PIDS", "")
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	l, _ = Register(fs, []string{"--config", path})
	_ = fs.Parse([]string{"--config", path, "--memory", "lots"})
	if _, err := l.Done(); err == nil || !strings.Contains(err.Error(), "--memory") {
		t.Fatalf("bad flag value: %v", err)
	}
}

// Fenced is the default; host mode is valid but warned about; the fence
// network must be a network name.
func TestNetworkSettings(t *testing.T) {
	c := Default()
	if c.Sandbox.Network != "fenced" || c.Sandbox.FenceNetwork != "nmap-mcp" || len(c.Warnings()) != 0 {
		t.Fatalf("defaults: %+v, warnings %v", c.Sandbox, c.Warnings())
	}
	c.Sandbox.Network = "host"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "no scan is fenced") {
		t.Errorf("host mode warnings: %v", w)
	}
	for _, bad := range []string{"host", "none", "fenced", "", "-x", "a b"} {
		c := Default()
		c.Sandbox.FenceNetwork = bad
		var ke *KeyError
		if err := c.Validate(); !errors.As(err, &ke) || ke.Key != "sandbox.fence_network" {
			t.Errorf("fence_network %q: %v", bad, err)
		}
	}
}

// The http: session and connection bounds (issue 20.2, 20.3): defaults as
// documented, and a bad value names its key, line and rule.
func TestHTTPSessionAndConnectionKeys(t *testing.T) {
	h := Default().HTTP
	if h.MaxConnections != 256 || h.MaxConnectionsPerAddress != 64 || h.SessionIdleSeconds != 1800 ||
		h.MaxSessions != 1000 || h.MaxSessionsPerClient != 64 {
		t.Fatalf("http defaults: %+v", h)
	}
	for text, want := range map[string]string{
		"http:\n  max_connections_per_address: 0\n":                       `line 2: http.max_connections_per_address "0": must be from 1 to http.max_connections`,
		"http:\n  max_connections: 16\n  max_connections_per_address: 17": `line 3: http.max_connections_per_address "17"`,
		"http:\n  session_idle_seconds: 0\n":                              `line 2: http.session_idle_seconds "0": must be from 1 to 86400`,
		"http:\n  session_idle_seconds: 86401\n":                          `http.session_idle_seconds "86401"`,
		"http:\n  max_sessions: 0\n":                                      `line 2: http.max_sessions "0": must be at least 1`,
		"http:\n  max_sessions: 10\n  max_sessions_per_client: 11\n":      `line 3: http.max_sessions_per_client "11": must be from 1 to http.max_sessions`,
		"http:\n  max_sessions_per_client: -1\n":                          `http.max_sessions_per_client "-1"`,
		"http:\n  max_session: 5\n":                                       "field max_session not found",
	} {
		path := write(t, text)
		_, err := Load(path, true)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want %q", text, err, want)
		}
	}
	c, err := Load(write(t, "http:\n  max_connections: 512\n  max_connections_per_address: 512\n  session_idle_seconds: 60\n  max_sessions: 10\n  max_sessions_per_client: 10\n"), true)
	if err != nil || c.HTTP.MaxConnectionsPerAddress != 512 || c.HTTP.SessionIdleSeconds != 60 || c.HTTP.MaxSessionsPerClient != 10 {
		t.Fatalf("Load: %v %+v", err, c.HTTP)
	}
}
