package app

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/config"
)

func resolved(t *testing.T, c config.Config) config.Resolved {
	t.Helper()
	r, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The http: session and connection settings reach the HTTP front (issue
// 20.2, 20.3). No engine needed.
func TestHTTPConfigCarriesBounds(t *testing.T) {
	c := config.Default()
	c.HTTP.MaxConnectionsPerAddress = 7
	c.HTTP.SessionIdleSeconds = 90
	c.HTTP.MaxSessions = 11
	c.HTTP.MaxSessionsPerClient = 3
	c.HTTP.MaxBody = "2m"
	o, err := FromConfig(&c, resolved(t, c), "config.yaml", HTTP)
	if err != nil {
		t.Fatal(err)
	}
	cfg := o.HTTP
	if cfg.MaxConnections != 256 || cfg.MaxConnectionsPerAddress != 7 || cfg.SessionIdle != 90*time.Second ||
		cfg.MaxSessions != 11 || cfg.MaxSessionsPerClient != 3 || cfg.MaxBody != 2<<20 {
		t.Fatalf("httpapi config: %+v", cfg)
	}
}

// The options carry the configuration's typed values, and the queue
// bounds depend on the mode as serve's did: one client (stdio, or HTTP
// without tokens) has no per-client share; a CLI command runs one scan.
func TestFromConfigModes(t *testing.T) {
	c := config.Default()
	c.Sandbox.Memory = "1g"
	c.Sandbox.TimeoutSeconds = 30
	c.Queue.TimeoutSeconds = 7
	c.Store.Keep = "90d"
	r := resolved(t, c)
	o, err := FromConfig(&c, r, "p", Stdio)
	if err != nil {
		t.Fatal(err)
	}
	if o.Sandbox.Limits.Memory != 1<<30 || o.Sandbox.Limits.Timeout != 30*time.Second || o.Queue.MaxQueueWait != 7*time.Second ||
		o.Queue.PerClient != math.MaxInt32 || o.Keep.Age != 90*24*time.Hour || o.Policy.HostNetwork {
		t.Fatalf("stdio options: %+v", o)
	}
	if o, _ = FromConfig(&c, r, "p", HTTP); o.Queue.PerClient != math.MaxInt32 {
		t.Fatalf("HTTP without tokens: per client %d", o.Queue.PerClient)
	}
	c.HTTP.Tokens = []config.Token{{Name: "alice", SHA256: strings.Repeat("a", 64)}}
	if o, _ = FromConfig(&c, r, "p", HTTP); o.Queue.PerClient != 0 || len(o.HTTP.Tokens) != 1 || !o.Watches.ClientExists("alice") ||
		!o.Watches.ClientExists("local") || o.Watches.ClientExists("bob") {
		t.Fatalf("HTTP with tokens: %+v", o)
	}
	if o, _ = FromConfig(&c, r, "p", OneShot); o.Queue.Concurrency != 1 || o.Queue.QueueSize != 0 {
		t.Fatalf("one-shot queue: %+v", o.Queue)
	}
}

// With the identity provider and no static tokens, the server has many
// clients (each person keeps a share of the queue); a person may not take
// a static token's name or local's; the audience and the web's callback
// left empty are derived from the --http address (refused for 0.0.0.0).
func TestFromConfigAuth(t *testing.T) {
	c := config.Default()
	c.Auth.Issuer = "https://idp.lab/realms/lab"
	c.Auth.Web.ClientID = "nmap-mcp-web"
	r := resolved(t, c)
	o, err := FromConfig(&c, r, "p", HTTP)
	if err != nil {
		t.Fatal(err)
	}
	if o.Auth == nil || o.Login == nil || o.Standing != 24*time.Hour || o.Queue.PerClient == math.MaxInt32 {
		t.Fatalf("auth options: %+v %+v %v per client %d", o.Auth, o.Login, o.Standing, o.Queue.PerClient)
	}
	if !o.Auth.Reserved("local") || o.Auth.Reserved("alice") {
		t.Fatal("reserved names")
	}
	a := &App{opts: o}
	v, l, err := a.provider("127.0.0.1:9000")
	if err != nil || v.Audience() != "http://127.0.0.1:9000/mcp" || l == nil {
		t.Fatalf("derived audience: %v %v", v, err)
	}
	if _, _, err := a.provider("0.0.0.0:9000"); err == nil || !strings.Contains(err.Error(), "auth.audience") {
		t.Fatalf("0.0.0.0 without an audience: %v", err)
	}
	c.HTTP.Tokens = []config.Token{{Name: "alice", SHA256: strings.Repeat("a", 64)}}
	if o, _ = FromConfig(&c, resolved(t, c), "p", HTTP); !o.Auth.Reserved("alice") {
		t.Fatal("a static token's name is not reserved")
	}
	for key, mod := range map[string]func(*config.Config){
		"auth.audience":               func(c *config.Config) { c.Auth.Audience = "https://scanner.lab/api" },
		"auth.issuer":                 func(c *config.Config) { c.Auth.Issuer = "" },
		"auth.standing_hours":         func(c *config.Config) { c.Auth.StandingHours = -1 },
		"auth.algorithms":             func(c *config.Config) { c.Auth.Algorithms = []string{"HS256"} },
		"auth.web.client_secret_file": func(c *config.Config) { c.Auth.Web.ClientSecretFile = "/nonexistent/secret" },
	} {
		bad := config.Default()
		bad.Auth.Issuer = "https://idp.lab"
		bad.Auth.Web.ClientID = "web"
		mod(&bad)
		if _, err := bad.Resolve(); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v", key, err)
		}
	}
}

// Fix-it advice is added at the edge: the runner's typed errors say what
// happened; the app says which argument, key, flag or variable to change.
func TestAdvice(t *testing.T) {
	for err, want := range map[error]string{
		&executor.OOMError{Limit: 512 << 20}:       "sandbox.memory in the config file, --memory or NMAP_MCP_MEMORY",
		&executor.PidsError{Limit: 8}:              "--pids or NMAP_MCP_PIDS",
		&executor.TimeoutError{After: time.Second}: "raise timeout_seconds",
		&executor.ImageError{Image: "x"}:           "nmap-mcp image build",
	} {
		if got := adviceFor("docker", err); !strings.Contains(got, want) {
			t.Errorf("%T: %q, want %q", err, got, want)
		}
	}
}
