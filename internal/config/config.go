// Package config reads nmap-mcp's one YAML configuration file, strictly:
// an unknown key or a value of the wrong type is an error with its line
// number. It holds every setting of the other packages: sandbox limits,
// queue, store, logging, scope, techniques, scripts, budgets and audit.
// Environment variables and flags override the file (see cmd/nmap-mcp).
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Config is the whole configuration.
type Config struct {
	// Runner is where scans run: "docker" (default) or "kubernetes".
	Runner     string     `yaml:"runner"`
	Kubernetes Kubernetes `yaml:"kubernetes"`
	Sandbox    Sandbox    `yaml:"sandbox"`
	Queue      Queue      `yaml:"queue"`
	Store      Store      `yaml:"store"`
	Log        Log        `yaml:"log"`
	Image      Image      `yaml:"image"`
	Scope      Scope      `yaml:"scope"`
	Techniques Techniques `yaml:"techniques"`
	Scripts    Scripts    `yaml:"scripts"`
	Budgets    Budgets    `yaml:"budgets"`
	Sharding   Sharding   `yaml:"sharding"`
	Audit      Audit      `yaml:"audit"`
	HTTP       HTTP       `yaml:"http"`
	Watches    Watches    `yaml:"watches"`
	// Inventory tunes the inventory built from every finished scan.
	Inventory Inventory `yaml:"inventory"`
	// Approval says which scans need a person's yes before they run
	// (see internal/approval); empty: none.
	Approval approval.Config `yaml:"approval"`
	// Auth is the lab's identity provider (MCP authorization); empty
	// issuer: static tokens only.
	Auth Auth `yaml:"auth"`
}

// Kubernetes configures the Kubernetes runner (runner: kubernetes).
type Kubernetes struct {
	// Namespace is where scan Jobs run.
	Namespace string `yaml:"namespace"`
	// Kubeconfig is the cluster's kubeconfig; empty: the in-cluster
	// config, else $KUBECONFIG, else ~/.kube/config.
	Kubeconfig string `yaml:"kubeconfig"`
	// Image is the scanner image pinned by digest (REPO@sha256:…).
	Image string `yaml:"image"`
	// NodeSelector places scan pods on matching nodes.
	NodeSelector map[string]string `yaml:"node_selector"`
	// ServiceAccount is the scan pods' service account (no token mounted).
	ServiceAccount string `yaml:"service_account"`
	// SeccompProfile is the project's seccomp profile as installed on the
	// nodes, relative to the kubelet's seccomp directory; empty: the
	// runtime's default profile.
	SeccompProfile string `yaml:"seccomp_profile"`
	// ShardSpread is the topology key the pods of one sharded scan spread
	// over (soft); empty: kubernetes.io/hostname; "none": no spreading.
	ShardSpread string `yaml:"shard_spread"`
}

// Inventory tunes the inventory (internal/inventory).
type Inventory struct {
	// GoneAfter is how long a host or port may go unseen before it is
	// marked gone ("30d", "720h"; "" for the default, 30 days).
	GoneAfter string `yaml:"gone_after"`
	// ChangesKeep is how long the change log keeps an entry ("365d",
	// "8760h"; "" keeps every entry).
	ChangesKeep string `yaml:"changes_keep"`
}

// Watches configures scheduled rescans.
type Watches struct {
	// MinIntervalSeconds is the shortest interval a watch may have.
	MinIntervalSeconds int `yaml:"min_interval_seconds"`
	// MaxPerClient bounds the watches one client may have.
	MaxPerClient int `yaml:"max_per_client"`
	// WebhookAllow lists the URL prefixes webhooks may post to.
	WebhookAllow []string `yaml:"webhook_allow"`
	// WebhookSecret keys the deliveries' HMAC-SHA256 signatures.
	WebhookSecret string `yaml:"webhook_secret"`
}

// HTTP configures `serve --http`.
type HTTP struct {
	Addr         string   `yaml:"addr"`
	TLSCert      string   `yaml:"tls_cert"`
	TLSKey       string   `yaml:"tls_key"`
	Origins      []string `yaml:"origins"`
	Tokens       []Token  `yaml:"tokens"`
	MaxBody      string   `yaml:"max_body"`
	GraceSeconds int      `yaml:"grace_seconds"`
	// MaxConnections bounds open client connections.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerAddress bounds one source address's (IPv6: /64)
	// open connections that have not carried an authenticated request.
	MaxConnectionsPerAddress int `yaml:"max_connections_per_address"`
	// SessionIdleSeconds ends an MCP session after this long without a
	// request.
	SessionIdleSeconds int `yaml:"session_idle_seconds"`
	// MaxSessions bounds open MCP sessions, MaxSessionsPerClient one
	// client's; initialize is refused at either.
	MaxSessions          int `yaml:"max_sessions"`
	MaxSessionsPerClient int `yaml:"max_sessions_per_client"`
}

// Token is a named bearer token, stored as its SHA-256 (hex).
type Token struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
	// Admin lets the token's client see and control every client's scans;
	// other clients see only their own.
	Admin bool `yaml:"admin,omitempty"`
	// Approver lets the token's person approve or deny scans waiting for
	// approval on the web view (admins may too); a rule with
	// second_person still refuses a client's approval of its own scan.
	Approver bool `yaml:"approver,omitempty"`
}

// Sandbox holds the container limits.
type Sandbox struct {
	Network           string  `yaml:"network"`
	FenceNetwork      string  `yaml:"fence_network"`
	CPUs              float64 `yaml:"cpus"`
	Memory            string  `yaml:"memory"`
	Pids              int64   `yaml:"pids"`
	TimeoutSeconds    int     `yaml:"timeout_seconds"`
	MaxTimeoutSeconds int     `yaml:"max_timeout_seconds"`
}

// Queue bounds concurrent and waiting scans.
type Queue struct {
	MaxConcurrent  int `yaml:"max_concurrent"`
	Size           int `yaml:"size"`
	TimeoutSeconds int `yaml:"timeout_seconds"`
	// PerClient bounds one client's running plus queued scans; 0 means
	// half of max_concurrent + size.
	PerClient int `yaml:"per_client"`
}

// Sharding splits a scan of many addresses into workers, each its own
// container or Job fenced to its own addresses (see package shard). A
// split scan holds one queue place.
type Sharding struct {
	// Threshold: a scan of more addresses than this is split; 0 never
	// splits.
	Threshold uint64 `yaml:"threshold"`
	// Shards is how many workers a split scan uses (2..64); the model may
	// ask for fewer with nmap_scan's shards argument.
	Shards int `yaml:"shards"`
}

// Store locates the scan history and bounds what a scan keeps.
type Store struct {
	Path   string `yaml:"path"`
	MaxXML string `yaml:"max_xml"`
	// MaxHosts and MaxPorts bound the hosts and listed ports a decoded
	// result keeps; MaxScriptOutput the NSE output kept per scan.
	MaxHosts        int    `yaml:"max_hosts"`
	MaxPorts        int    `yaml:"max_ports"`
	MaxScriptOutput string `yaml:"max_script_output"`
	// Keep is the retention rule (store.ParseKeep): "" keeps everything.
	Keep string `yaml:"keep"`
}

// Log says where logs go.
type Log struct {
	File  string `yaml:"file"`
	Level string `yaml:"level"`
}

// Image configures the scanner image build.
type Image struct {
	DebianMirror string `yaml:"debian_mirror"`
}

// Scope lists what may be scanned.
type Scope struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
	// ResolveUnlistedNames lets the server resolve hostnames that no
	// allow rule names (their addresses are still checked).
	ResolveUnlistedNames bool `yaml:"resolve_unlisted_names"`
}

// Techniques switches scan techniques on or off.
type Techniques struct {
	SYN             bool `yaml:"syn"`
	UDP             bool `yaml:"udp"`
	OSDetection     bool `yaml:"os_detection"`
	ServiceVersions bool `yaml:"service_versions"`
}

// Scripts is the NSE allowlist.
type Scripts struct {
	Categories []string `yaml:"categories"`
	Names      []string `yaml:"names"`
}

// Budgets bound what each client may use.
type Budgets struct {
	MaxAddressesPerScan uint64 `yaml:"max_addresses_per_scan"`
	Window              string `yaml:"window"`
	ScansPerClient      int    `yaml:"scans_per_client"`
	AddressesPerClient  uint64 `yaml:"addresses_per_client"`
}

// Audit locates the audit trail.
type Audit struct {
	Path string `yaml:"path"`
}

//go:embed default.yaml
var defaultYAML []byte

// Init is the fully commented default configuration file.
func Init() []byte { return bytes.Clone(defaultYAML) }

// Default returns the built-in defaults (the values in Init).
func Default() Config {
	var c Config
	if err := decode(defaultYAML, &c); err != nil {
		// default.yaml is part of the binary and tested; this cannot happen
		// in a released build.
		return Config{}
	}
	return c
}

// DefaultPath is $XDG_CONFIG_HOME/nmap-mcp/config.yaml, or
// ~/.config/nmap-mcp/config.yaml.
func DefaultPath() string {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "nmap-mcp", "config.yaml")
}

// Load reads path over the defaults. A missing file at the default path
// (required false) gives the defaults; any other problem is an error that
// names the file and, for content errors, the line.
func Load(path string, required bool) (Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !required {
			return c, nil
		}
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	if err := decode(data, &c); err != nil {
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			if line := lineOf(data, ke.Key); line > 0 {
				return Config{}, fmt.Errorf("config file %s, line %d: %w", path, line, err)
			}
		}
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

func decode(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Validate checks every value the YAML types cannot: sizes, ranges,
// durations, names and the policy's lists. A bad value is a *KeyError
// naming its key (the policy's own errors name theirs). It is Resolve
// without the result.
func (c Config) Validate() error {
	_, err := c.Resolve()
	return err
}

// check holds the rules of the values that need no conversion.
// topologyKey is a Kubernetes label key: an optional DNS-subdomain prefix
// and a name of at most 63 characters.
var topologyKey = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

func (c Config) check() error {
	bad := func(key string, v any, rule string) error {
		return &KeyError{Key: key, Value: fmt.Sprint(v), Rule: rule}
	}
	sb := c.Sandbox
	switch {
	case c.Runner != "docker" && c.Runner != "kubernetes":
		return bad("runner", c.Runner, "must be docker or kubernetes")
	case c.Runner == "kubernetes" && c.Kubernetes.Namespace == "":
		return bad("kubernetes.namespace", c.Kubernetes.Namespace, "must name the namespace of scan Jobs when runner is kubernetes")
	case c.Runner == "kubernetes" && !sandbox.PinnedByDigest(c.Kubernetes.Image):
		return bad("kubernetes.image", c.Kubernetes.Image, "must be the scanner image pinned by digest, e.g. registry.example/nmap-mcp/nmap@sha256:<64 hex> (docs/kubernetes.md)")
	case strings.HasPrefix(c.Kubernetes.SeccompProfile, "/") || strings.Contains(c.Kubernetes.SeccompProfile, ".."):
		return bad("kubernetes.seccomp_profile", c.Kubernetes.SeccompProfile, "must be a path relative to the kubelet's seccomp directory, e.g. nmap-mcp.json")
	case c.Kubernetes.ShardSpread != "" && c.Kubernetes.ShardSpread != "none" && !topologyKey.MatchString(c.Kubernetes.ShardSpread):
		return bad("kubernetes.shard_spread", c.Kubernetes.ShardSpread, "must be a node label key such as kubernetes.io/hostname or topology.kubernetes.io/zone, none, or empty")
	case !validNetwork(sb.Network):
		return bad("sandbox.network", sb.Network, "must be fenced, host, none or the name of a Docker network for fenced scans")
	case !validNetwork(sb.FenceNetwork) || sb.FenceNetwork == "host" || sb.FenceNetwork == "none" || sb.FenceNetwork == "fenced":
		return bad("sandbox.fence_network", sb.FenceNetwork, "must name a Docker network (bridge, --internal bridge or macvlan) that fenced scans can use")
	case sb.CPUs <= 0 || sb.CPUs > 64:
		return bad("sandbox.cpus", sb.CPUs, "must be more than 0 and at most 64")
	case sb.Pids < 8:
		return bad("sandbox.pids", sb.Pids, "must be at least 8 (nmap and its launcher need a few processes)")
	case sb.MaxTimeoutSeconds < 1 || sb.MaxTimeoutSeconds > 600:
		return bad("sandbox.max_timeout_seconds", sb.MaxTimeoutSeconds, "must be from 1 to 600")
	case sb.TimeoutSeconds < 1 || sb.TimeoutSeconds > sb.MaxTimeoutSeconds:
		return bad("sandbox.timeout_seconds", sb.TimeoutSeconds, fmt.Sprintf("must be from 1 to sandbox.max_timeout_seconds (%d)", sb.MaxTimeoutSeconds))
	case c.Queue.MaxConcurrent < 0:
		return bad("queue.max_concurrent", c.Queue.MaxConcurrent, "must be 0 (the number of CPUs) or more")
	case c.Queue.Size < 0:
		return bad("queue.size", c.Queue.Size, "must be 0 or more")
	case c.Queue.TimeoutSeconds < 0:
		return bad("queue.timeout_seconds", c.Queue.TimeoutSeconds, "must be 0 (no bound) or more")
	case c.Queue.PerClient < 0:
		return bad("queue.per_client", c.Queue.PerClient, "must be 0 (default) or more")
	case c.Store.MaxHosts < 0:
		return bad("store.max_hosts", c.Store.MaxHosts, "must be 0 (default) or more")
	case c.Store.MaxPorts < 0:
		return bad("store.max_ports", c.Store.MaxPorts, "must be 0 (default) or more")
	case c.Budgets.MaxAddressesPerScan < 1:
		return bad("budgets.max_addresses_per_scan", c.Budgets.MaxAddressesPerScan, "must be at least 1")
	case c.Budgets.ScansPerClient < 0:
		return bad("budgets.scans_per_client", c.Budgets.ScansPerClient, "must be 0 (no bound) or more")
	case c.HTTP.GraceSeconds < 0:
		return bad("http.grace_seconds", c.HTTP.GraceSeconds, "must be 0 or more")
	case c.HTTP.MaxConnections < 0:
		return bad("http.max_connections", c.HTTP.MaxConnections, "must be 0 (default) or more")
	case c.HTTP.MaxConnectionsPerAddress < 1 || c.HTTP.MaxConnections > 0 && c.HTTP.MaxConnectionsPerAddress > c.HTTP.MaxConnections:
		return bad("http.max_connections_per_address", c.HTTP.MaxConnectionsPerAddress,
			"must be from 1 to http.max_connections (behind a reverse proxy, where every client has its address, set it to http.max_connections)")
	case c.HTTP.SessionIdleSeconds < 1 || c.HTTP.SessionIdleSeconds > 86400:
		return bad("http.session_idle_seconds", c.HTTP.SessionIdleSeconds, "must be from 1 to 86400 (a day)")
	case c.HTTP.MaxSessions < 1:
		return bad("http.max_sessions", c.HTTP.MaxSessions, "must be at least 1")
	case c.HTTP.MaxSessionsPerClient < 1 || c.HTTP.MaxSessionsPerClient > c.HTTP.MaxSessions:
		return bad("http.max_sessions_per_client", c.HTTP.MaxSessionsPerClient, "must be from 1 to http.max_sessions")
	}
	return nil
}

// checkWatches holds the rules of the watches section.
func (c Config) checkWatches() error {
	bad := func(key string, v any, rule string) error {
		return &KeyError{Key: key, Value: fmt.Sprint(v), Rule: rule}
	}
	if c.Watches.MinIntervalSeconds < 1 {
		return bad("watches.min_interval_seconds", c.Watches.MinIntervalSeconds, "must be at least 1")
	}
	if c.Watches.MaxPerClient < 1 || c.Watches.MaxPerClient > 10000 {
		return bad("watches.max_per_client", c.Watches.MaxPerClient, "must be from 1 to 10000")
	}
	for _, u := range c.Watches.WebhookAllow {
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return bad("watches.webhook_allow", u, "each entry must be a URL prefix starting with https:// or http://")
		}
	}
	return nil
}

// checkTokens holds the rule of http.tokens.
func (c Config) checkTokens() error {
	for _, t := range c.HTTP.Tokens {
		if t.Name == "" || len(t.SHA256) != 64 {
			return &KeyError{Key: "http.tokens", Value: t.Name, Rule: "each token needs a name and a 64-hex-digit sha256 (make one with nmap-mcp token add NAME)"}
		}
	}
	return nil
}

// Window is budgets.window as a duration.
func (c Config) Window() (time.Duration, error) {
	if c.Budgets.Window == "" {
		return time.Hour, nil
	}
	d, err := time.ParseDuration(c.Budgets.Window)
	if err != nil || d <= 0 {
		return 0, &KeyError{Key: "budgets.window", Value: c.Budgets.Window, Rule: "must be a duration such as 1h or 30m"}
	}
	return d, nil
}

// Policy is the policy part of the configuration.
func (c Config) Policy() policy.Config {
	w, _ := c.Window()
	return policy.Config{
		Allow: c.Scope.Allow, Deny: c.Scope.Deny, ResolveUnlistedNames: c.Scope.ResolveUnlistedNames,
		SYN: c.Techniques.SYN, UDP: c.Techniques.UDP, OSDetection: c.Techniques.OSDetection, ServiceVersions: c.Techniques.ServiceVersions,
		ScriptCategories: c.Scripts.Categories, ScriptNames: c.Scripts.Names,
		Window: w, ScansPerClient: c.Budgets.ScansPerClient, AddressesPerClient: c.Budgets.AddressesPerClient,
	}
}

// YAML renders the effective configuration.
func (c Config) YAML() ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	return b, nil
}

// validNetwork accepts the names Docker accepts for networks.
func validNetwork(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && (r == '_' || r == '.' || r == '-')
		if !ok {
			return false
		}
	}
	return true
}

// Warnings are settings that are valid but weaken the sandbox, one line
// each, for config check and start-up logs.
func (c Config) Warnings() []string {
	var w []string
	if c.Sandbox.Network == "host" {
		w = append(w, "sandbox.network: host — no scan is fenced: nmap and its NSE scripts can send to anything the host can reach and, "+
			"with raw sockets, read the host's traffic; use fenced unless you need the host's own LAN (e.g. ARP discovery)")
	}
	return w
}
