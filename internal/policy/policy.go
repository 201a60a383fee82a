// Package policy decides what a deployment lets a scan do: which targets
// are in scope (allow and deny lists of CIDRs and hostnames; deny wins),
// which techniques and NSE scripts may run, and how many scans and
// addresses each client may use per time window. Hostnames are resolved
// here, every address is checked, and the scan is pinned to the vetted
// addresses, so a name that changes its answer after the check (DNS
// rebinding) cannot send the scan elsewhere.
//
// A CIDR target that overlaps a denied range is refused, not trimmed: a
// silent --exclude would scan something other than what was asked for, and
// the refusal names the denied range so the caller can split the request.
package policy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// DefaultAllow is the built-in allow list: loopback, RFC 1918, ULA, and
// scanme.nmap.org, which the Nmap project lets anyone scan; and the name
// localhost (its addresses are still checked).
var DefaultAllow = []string{"localhost", "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "scanme.nmap.org"}

// DefaultDeny is the built-in deny list, which wins over allow: cloud
// metadata addresses, multicast and broadcast.
var DefaultDeny = []string{"169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32", "224.0.0.0/4", "ff00::/8", "255.255.255.255/32"}

// DefaultScriptCategories are the NSE categories allowed by default.
var DefaultScriptCategories = []string{"default", "safe", "discovery", "version"}

// RiskyScriptCategories are refused unless the config allows them by name.
// external scripts send data to third parties; broadcast scripts send to
// the local segment rather than to the targets.
var RiskyScriptCategories = []string{"intrusive", "exploit", "dos", "brute", "vuln", "malware", "external", "broadcast"}

// Config is the policy part of the configuration file.
type Config struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
	// Techniques that may be used; all true by default.
	SYN             bool `yaml:"syn"`
	UDP             bool `yaml:"udp"`
	OSDetection     bool `yaml:"os_detection"`
	ServiceVersions bool `yaml:"service_versions"`
	// ScriptCategories and ScriptNames are the NSE allowlist.
	ScriptCategories []string `yaml:"script_categories"`
	ScriptNames      []string `yaml:"script_names"`
	// HostNetwork is true when every scan shares the host's network
	// (sandbox.network: host): scripts that capture packets are then
	// refused whatever the lists say. Scans of loopback only are on the
	// host network whatever it says.
	HostNetwork bool `yaml:"-"`
	// ResolveUnlistedNames lets the server resolve hostnames no allow
	// rule names (their addresses are still checked). Off by default:
	// a lookup already tells the resolver's owner the name.
	ResolveUnlistedNames bool `yaml:"resolve_unlisted_names"`
	// MaxAddressesPerScan bounds a scan's addresses after CIDR expansion
	// and name resolution; 0 means no bound.
	MaxAddressesPerScan uint64 `yaml:"-"`
	// Budgets per client and window; 0 means no bound.
	Window             time.Duration `yaml:"window"`
	ScansPerClient     int           `yaml:"scans_per_client"`
	AddressesPerClient uint64        `yaml:"addresses_per_client"`
}

// DefaultConfig is the policy with no configuration file.
func DefaultConfig() Config {
	return Config{Allow: slices.Clone(DefaultAllow), Deny: slices.Clone(DefaultDeny), SYN: true, UDP: true,
		OSDetection: true, ServiceVersions: true, ScriptCategories: slices.Clone(DefaultScriptCategories),
		Window: time.Hour, ScansPerClient: 120, AddressesPerClient: 1 << 20, HostNetwork: true, MaxAddressesPerScan: 4096}
}

// Resolver looks names up; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy checks scans against a Config.
type Policy struct {
	cfg      Config
	allow    []rule
	deny     []rule
	resolver Resolver
	scripts  ScriptDB
	now      func() time.Time

	mu   sync.Mutex
	used map[string][]use // per client, within the window
}

type rule struct {
	text   string
	prefix netip.Prefix // valid for CIDR rules
	name   string       // for hostname rules; ".example.com" also matches subdomains
}

type use struct {
	at    time.Time
	addrs uint64
}

// New checks cfg and returns a policy. The error names the bad entry and
// its config key.
func New(cfg Config, resolver Resolver, scripts ScriptDB) (*Policy, error) {
	allow, err := parseRules("scope.allow", cfg.Allow)
	if err != nil {
		return nil, err
	}
	deny, err := parseRules("scope.deny", cfg.Deny)
	if err != nil {
		return nil, err
	}
	deny = append(deny, embeddingRules(deny)...)
	for _, c := range cfg.ScriptCategories {
		if !isName(c) {
			return nil, fmt.Errorf("scripts.categories: %q is not an NSE category name", c)
		}
	}
	for _, c := range cfg.ScriptNames {
		if !isName(c) {
			return nil, fmt.Errorf("scripts.names: %q is not an NSE script name", c)
		}
	}
	if cfg.Window <= 0 {
		cfg.Window = time.Hour
	}
	return &Policy{cfg: cfg, allow: allow, deny: deny, resolver: resolver, scripts: scripts, now: time.Now,
		used: map[string][]use{}}, nil
}

func parseRules(key string, entries []string) ([]rule, error) {
	var out []rule
	for _, e := range entries {
		e = strings.TrimSpace(strings.ToLower(e))
		if p, err := netip.ParsePrefix(e); err == nil {
			out = append(out, rule{text: e, prefix: p.Masked()})
			continue
		}
		if a, err := netip.ParseAddr(e); err == nil {
			out = append(out, rule{text: e, prefix: netip.PrefixFrom(a, a.BitLen())})
			continue
		}
		if isHostRule(e) {
			out = append(out, rule{text: e, name: e})
			continue
		}
		return nil, fmt.Errorf("%s: %q is neither a CIDR block, an address nor a hostname", key, e)
	}
	return out, nil
}

func isHostRule(s string) bool {
	s = strings.TrimPrefix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || !isName(l) {
			return false
		}
	}
	return true
}

func isName(s string) bool { return scanargs.ValidName(s, 63) }

func (r rule) matchesName(name string) bool {
	if r.name == "" {
		return false
	}
	if strings.HasPrefix(r.name, ".") {
		return strings.HasSuffix(name, r.name) || name == r.name[1:]
	}
	return name == r.name
}

// Refusal is a scan the policy does not allow, with the rule it hit and
// the config key that would change that.
type Refusal struct {
	Target string
	Reason string
	Key    string
}

func (e *Refusal) Error() string {
	if e.Target == "" {
		return fmt.Sprintf("refused by policy: %s; to change this, edit %s in the config file", e.Reason, e.Key)
	}
	return fmt.Sprintf("target %s is out of scope: %s; to change this, edit %s in the config file", e.Target, e.Reason, e.Key)
}

// BudgetError is a refusal because a client used its budget.
type BudgetError struct {
	Budget  string
	Limit   string
	FreesAt time.Time
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("refused: the %s budget (%s) is used up; it frees up at %s (in %s); see budgets in the config file",
		e.Budget, e.Limit, e.FreesAt.Format(time.RFC3339), time.Until(e.FreesAt).Round(time.Second))
}
