// Package approval decides which scans need a person's yes before they are
// admitted, describes such a scan in plain words, binds an answer to a
// hash of the scan's exact arguments, and keeps the questions waiting for
// an answer in a bounded store.
//
// The configuration section `approval:` lists rules. A rule's conditions
// (scan types, address count, port count, timing templates, NSE script
// categories or names, OS detection, service versions, time of day,
// clients) must all hold for it to ask; the first rule that matches, in
// the order written, asks. With no rules (the default) nothing needs
// approval and scans run as before.
//
// An answer is bound to the SHA-256 of the canonical JSON of the validated
// request (Hash): a changed argument is a different hash and needs a new
// yes, and one yes admits exactly one scan (Store.Take removes it). No
// answer within the configured time is a denial. A rule with
// second_person: true needs an approver other than the requesting client.
//
// The package knows nothing of MCP, HTTP or the scans service: the MCP
// layer asks the client's user (elicitation or input_required), the web
// view asks an approver, and the scans service refuses a scan a rule asks
// for unless the store hands it an approval for exactly its arguments.
package approval

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// Defaults and bounds of the approval section.
const (
	// DefaultTimeout is how long a question waits for an answer.
	DefaultTimeout = 5 * time.Minute
	// MaxTimeout is the longest a question may wait.
	MaxTimeout = 24 * time.Hour
	// DefaultMaxPending bounds the questions waiting at once.
	DefaultMaxPending = 64
	// DefaultMaxPendingPerClient bounds one client's waiting questions.
	DefaultMaxPendingPerClient = 4
	// maxRules bounds the rules of one configuration.
	maxRules = 64
)

// Categories are nmap's NSE script categories, the values a rule's
// script_categories may name.
var Categories = []string{"auth", "broadcast", "brute", "default", "discovery", "dos", "exploit",
	"external", "fuzzer", "intrusive", "malware", "safe", "version", "vuln"}

// Config is the `approval:` section of the configuration file. Its zero
// value asks for nothing.
type Config struct {
	// TimeoutSeconds is how long a question waits for an answer; no
	// answer by then is a denial. 0: 300.
	TimeoutSeconds int `yaml:"timeout_seconds"`
	// MaxPending bounds the questions waiting at once; 0: 64.
	MaxPending int `yaml:"max_pending"`
	// MaxPendingPerClient bounds one client's waiting questions; 0: 4.
	MaxPendingPerClient int `yaml:"max_pending_per_client"`
	// TimeZone is the IANA zone the rules' hours are read in; empty: the
	// server's local time.
	TimeZone string `yaml:"time_zone"`
	// Rules are tried in order; the first that matches asks.
	Rules []Rule `yaml:"rules"`
}

// Rule says which scans need approval. Every condition given must hold;
// a condition left out holds for every scan. A rule must give at least
// one condition.
type Rule struct {
	// Name names the rule in questions, records and the audit trail.
	Name string `yaml:"name"`
	// ScanTypes: the scan's type is one of these (connect, syn, udp, ping).
	ScanTypes []string `yaml:"scan_types"`
	// MinAddresses: the scan stands for at least this many addresses
	// after CIDR expansion and name resolution.
	MinAddresses uint64 `yaml:"min_addresses"`
	// MinPorts: the scan probes at least this many ports per host
	// (top_ports N counts N).
	MinPorts int `yaml:"min_ports"`
	// Timing: the scan's timing template is one of these (T0..T5; a scan
	// that gives none runs nmap's default, T3).
	Timing []string `yaml:"timing"`
	// ScriptCategories: a script the scan runs (or a category it asks
	// for) is in one of these NSE categories.
	ScriptCategories []string `yaml:"script_categories"`
	// Scripts: the scan runs one of these NSE scripts.
	Scripts []string `yaml:"scripts"`
	// OSDetection: true holds for scans with OS detection.
	OSDetection bool `yaml:"os_detection"`
	// ServiceVersions: true holds for scans with version detection.
	ServiceVersions bool `yaml:"service_versions"`
	// Hours: the scan is asked for between these times of day,
	// "HH:MM-HH:MM" (the end excluded; "22:00-06:00" spans midnight).
	Hours string `yaml:"hours"`
	// Clients: the scan's client is one of these.
	Clients []string `yaml:"clients"`
	// SecondPerson: the approver must not be the requesting client (so
	// the client's own user cannot approve through elicitation).
	SecondPerson bool `yaml:"second_person"`
}

// Limits bound the store of waiting questions.
type Limits struct {
	Timeout      time.Duration
	MaxPending   int
	MaxPerClient int
}

// Rules are a checked Config, ready to decide scans.
type Rules struct {
	limits Limits
	loc    *time.Location
	rules  []compiled
}

type compiled struct {
	Rule
	types      map[scanargs.Type]bool
	timing     map[int]bool
	from, to   int // minutes of the day; from == to == -1: no hours
	categories map[string]bool
	scripts    map[string]bool
	clients    map[string]bool
}

// Error is a refused approval setting: the key, the value given and the
// rule it broke.
type Error struct {
	Key   string
	Value string
	Rule  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("approval: %s %q: %s", e.Key, e.Value, e.Rule)
}

// Compile checks cfg strictly and returns the rules. The error is an
// *Error naming the key, the value and the rule it broke.
func Compile(cfg Config) (*Rules, error) {
	r := &Rules{loc: time.Local}
	switch {
	case cfg.TimeoutSeconds == 0:
		r.limits.Timeout = DefaultTimeout
	case cfg.TimeoutSeconds < 1 || time.Duration(cfg.TimeoutSeconds)*time.Second > MaxTimeout:
		return nil, &Error{"timeout_seconds", strconv.Itoa(cfg.TimeoutSeconds), fmt.Sprintf("must be from 1 to %d (0: %d)", int(MaxTimeout.Seconds()), int(DefaultTimeout.Seconds()))}
	default:
		r.limits.Timeout = time.Duration(cfg.TimeoutSeconds) * time.Second
	}
	r.limits.MaxPending = cfg.MaxPending
	if cfg.MaxPending == 0 {
		r.limits.MaxPending = DefaultMaxPending
	} else if cfg.MaxPending < 1 || cfg.MaxPending > 10000 {
		return nil, &Error{"max_pending", strconv.Itoa(cfg.MaxPending), "must be from 1 to 10000 (0: 64)"}
	}
	r.limits.MaxPerClient = cfg.MaxPendingPerClient
	if cfg.MaxPendingPerClient == 0 {
		r.limits.MaxPerClient = min(DefaultMaxPendingPerClient, r.limits.MaxPending)
	} else if cfg.MaxPendingPerClient < 1 || cfg.MaxPendingPerClient > r.limits.MaxPending {
		return nil, &Error{"max_pending_per_client", strconv.Itoa(cfg.MaxPendingPerClient), fmt.Sprintf("must be from 1 to max_pending (%d)", r.limits.MaxPending)}
	}
	if cfg.TimeZone != "" {
		loc, err := time.LoadLocation(cfg.TimeZone)
		if err != nil {
			return nil, &Error{"time_zone", cfg.TimeZone, "must be an IANA time zone such as Europe/Berlin or UTC: " + err.Error()}
		}
		r.loc = loc
	}
	if len(cfg.Rules) > maxRules {
		return nil, &Error{"rules", strconv.Itoa(len(cfg.Rules)) + " rules", fmt.Sprintf("at most %d rules are accepted", maxRules)}
	}
	seen := map[string]bool{}
	for i, rule := range cfg.Rules {
		c, err := compile(i, rule)
		if err != nil {
			return nil, err
		}
		if seen[rule.Name] {
			return nil, &Error{fmt.Sprintf("rules[%d].name", i), rule.Name, "is used by an earlier rule; names must be unique"}
		}
		seen[rule.Name] = true
		r.rules = append(r.rules, c)
	}
	return r, nil
}

func compile(i int, rule Rule) (compiled, error) {
	key := func(k string) string { return fmt.Sprintf("rules[%d].%s", i, k) }
	c := compiled{Rule: rule, from: -1, to: -1}
	if !scanargs.ValidName(rule.Name, 63) {
		return c, &Error{key("name"), rule.Name, "must be 1-63 lowercase letters, digits and inner hyphens, e.g. big-udp (it names the rule in questions and records)"}
	}
	conditions := 0
	if len(rule.ScanTypes) > 0 {
		conditions++
		c.types = map[scanargs.Type]bool{}
		for _, t := range rule.ScanTypes {
			if !slices.Contains(scanargs.Types, scanargs.Type(t)) {
				return c, &Error{key("scan_types"), t, "must be one of connect, syn, udp, ping"}
			}
			c.types[scanargs.Type(t)] = true
		}
	}
	if rule.MinAddresses > 0 {
		conditions++
	}
	if rule.MinPorts < 0 || rule.MinPorts > 65535 {
		return c, &Error{key("min_ports"), strconv.Itoa(rule.MinPorts), "must be from 1 to 65535 (0: any)"}
	} else if rule.MinPorts > 0 {
		conditions++
	}
	if len(rule.Timing) > 0 {
		conditions++
		c.timing = map[int]bool{}
		for _, t := range rule.Timing {
			if len(t) != 2 || (t[0] != 'T' && t[0] != 't') || t[1] < '0' || t[1] > '5' {
				return c, &Error{key("timing"), t, "must be a timing template T0 to T5"}
			}
			c.timing[int(t[1]-'0')] = true
		}
	}
	if len(rule.ScriptCategories) > 0 {
		conditions++
		c.categories = map[string]bool{}
		for _, cat := range rule.ScriptCategories {
			if !slices.Contains(Categories, cat) {
				return c, &Error{key("script_categories"), cat, "must be an NSE category: " + strings.Join(Categories, ", ")}
			}
			c.categories[cat] = true
		}
	}
	if len(rule.Scripts) > 0 {
		conditions++
		c.scripts = map[string]bool{}
		for _, s := range rule.Scripts {
			if !scanargs.ValidName(s, 63) || slices.Contains(Categories, s) {
				return c, &Error{key("scripts"), s, "must be an NSE script name such as http-title (categories go in script_categories)"}
			}
			c.scripts[s] = true
		}
	}
	if rule.OSDetection {
		conditions++
	}
	if rule.ServiceVersions {
		conditions++
	}
	if rule.Hours != "" {
		conditions++
		from, to, err := parseHours(rule.Hours)
		if err != nil {
			return c, &Error{key("hours"), rule.Hours, err.Error()}
		}
		c.from, c.to = from, to
	}
	if len(rule.Clients) > 0 {
		conditions++
		c.clients = map[string]bool{}
		for _, cl := range rule.Clients {
			if strings.TrimSpace(cl) == "" || len(cl) > 128 {
				return c, &Error{key("clients"), cl, "must be a client name (a token's name, or local for stdio and the CLI), 1-128 characters"}
			}
			c.clients[cl] = true
		}
	}
	if conditions == 0 {
		return c, &Error{key("name"), rule.Name, "gives no condition; give at least one of scan_types, min_addresses, min_ports, timing, script_categories, scripts, os_detection, service_versions, hours, clients (to ask for every scan: scan_types: [connect, syn, udp, ping])"}
	}
	return c, nil
}

// parseHours reads "HH:MM-HH:MM" into minutes of the day.
func parseHours(s string) (int, int, error) {
	const rule = `must be "HH:MM-HH:MM" in 24-hour time, e.g. "22:00-06:00", with different start and end`
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%s", rule)
	}
	from, err1 := parseClock(a)
	to, err2 := parseClock(b)
	if err1 != nil || err2 != nil || from == to {
		return 0, 0, fmt.Errorf("%s", rule)
	}
	return from, to, nil
}

func parseClock(s string) (int, error) {
	s = strings.TrimSpace(s)
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, fmt.Errorf("bad clock %q", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, fmt.Errorf("bad clock %q", s)
	}
	return hh*60 + mm, nil
}

// Limits are the store's bounds from the configuration.
func (r *Rules) Limits() Limits {
	if r == nil {
		return Limits{Timeout: DefaultTimeout, MaxPending: DefaultMaxPending, MaxPerClient: DefaultMaxPendingPerClient}
	}
	return r.limits
}

// Empty reports whether no rule asks for anything.
func (r *Rules) Empty() bool { return r == nil || len(r.rules) == 0 }

// Describe lists the rules for `config check`.
func (r *Rules) Describe() string {
	if r.Empty() {
		return "approval: no rules; no scan needs approval"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "approval: %d rules; no answer in %s is a denial; at most %d questions waiting (%d per client)",
		len(r.rules), r.limits.Timeout, r.limits.MaxPending, r.limits.MaxPerClient)
	for _, c := range r.rules {
		fmt.Fprintf(&b, "\n  %s: %s", c.Name, c.conditions())
	}
	return b.String()
}

// conditions says in words what the rule asks for.
func (c compiled) conditions() string {
	var parts []string
	if len(c.ScanTypes) > 0 {
		parts = append(parts, "scan type "+strings.Join(c.ScanTypes, " or "))
	}
	if c.MinAddresses > 0 {
		parts = append(parts, fmt.Sprintf("at least %d addresses", c.MinAddresses))
	}
	if c.MinPorts > 0 {
		parts = append(parts, fmt.Sprintf("at least %d ports per host", c.MinPorts))
	}
	if len(c.Timing) > 0 {
		parts = append(parts, "timing "+strings.Join(c.Timing, " or "))
	}
	if len(c.ScriptCategories) > 0 {
		parts = append(parts, "a script in category "+strings.Join(c.ScriptCategories, " or "))
	}
	if len(c.Scripts) > 0 {
		parts = append(parts, "script "+strings.Join(c.Scripts, " or "))
	}
	if c.OSDetection {
		parts = append(parts, "OS detection")
	}
	if c.ServiceVersions {
		parts = append(parts, "version detection")
	}
	if c.Hours != "" {
		parts = append(parts, "asked for between "+c.Hours)
	}
	if len(c.Clients) > 0 {
		parts = append(parts, "client "+strings.Join(c.Clients, " or "))
	}
	s := strings.Join(parts, ", and ")
	if c.SecondPerson {
		s += "; a second person must approve"
	}
	return s
}
