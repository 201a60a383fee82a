package scanargs

import (
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Target is one validated target token.
type Target struct {
	// Text is the token as it is passed to nmap.
	Text string
	// Kind is "ip", "cidr" or "hostname".
	Kind string
	// Addresses is how many addresses the token stands for (1 for a
	// hostname, which is resolved inside the sandbox).
	Addresses uint64
	// IPv6 is true for IPv6 addresses and prefixes.
	IPv6 bool
}

// Plan is a validated Request with every default applied. Its fields are
// safe to render into nmap arguments.
type Plan struct {
	Type              Type
	Targets           []Target
	Addresses         uint64
	Ports             string // normalised port list, or empty
	TopPorts          int    // 0 when Ports is set or for ping scans
	ServiceVersions   bool
	SkipHostDiscovery bool
	Timing            int // 0..5, or -1 for nmap's default
	Timeout           time.Duration
	IPv6              bool
	OSDetection       bool
	Scripts           []string // NSE script names or categories; after the policy's check, script names only
	// ScriptsDropped are the scripts a requested category stood for that
	// the policy did not let run, with the reason.
	ScriptsDropped []DroppedScript
	ScriptArgs     []string // key=value pairs
	// Names maps each address that came from a hostname back to it, for
	// the report (see Pin).
	Names map[string][]string
	// NoDNS tells nmap not to resolve names (-n): a fenced scan reaches no
	// resolver, and its names were resolved and pinned by the server.
	NoDNS bool
	// Shards is how many workers the caller asked for (0: the server's
	// choice; 1: never split).
	Shards int
}

// Prefixes returns the targets as address prefixes, or an error naming a
// target that is still a hostname (not pinned).
func (p *Plan) Prefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(p.Targets))
	for _, t := range p.Targets {
		switch t.Kind {
		case "cidr":
			pfx, err := netip.ParsePrefix(t.Text)
			if err != nil {
				return nil, &FieldError{"targets", t.Text, "is not a CIDR block"}
			}
			out = append(out, pfx.Masked())
		case "ip":
			a, err := netip.ParseAddr(t.Text)
			if err != nil {
				return nil, &FieldError{"targets", t.Text, "is not an address"}
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		default:
			return nil, &FieldError{"targets", t.Text, "must be resolved by the server before the scan is placed: a fenced scan reaches no resolver"}
		}
	}
	return out, nil
}

// AllLoopback reports whether every target is on loopback (127.0.0.0/8,
// ::1), which only the host network reaches.
func (p *Plan) AllLoopback() bool {
	for _, t := range p.Targets {
		pfx, err := netip.ParsePrefix(t.Text)
		if err != nil {
			a, aerr := netip.ParseAddr(t.Text)
			if aerr != nil {
				if t.Text != "localhost" {
					return false
				}
				continue
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		if !pfx.Masked().Addr().IsLoopback() {
			return false
		}
	}
	return len(p.Targets) > 0
}

// DroppedScript is an NSE script left out of a scan, and why.
type DroppedScript struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Plan validates r against rules. On failure it returns a *FieldError and no
// plan; nothing else happens.
func (r Request) Plan(rules Rules) (*Plan, error) {
	p := &Plan{Timing: -1}

	var err error
	if p.Type, err = parseType(r.ScanType); err != nil {
		return nil, err
	}
	if p.Targets, p.Addresses, p.IPv6, err = parseTargets(r.Targets, rules.MaxAddresses); err != nil {
		return nil, err
	}

	switch {
	case p.Type == Ping && r.Ports != "":
		return nil, &FieldError{"ports", r.Ports, "is not used by scan_type ping (host discovery only); leave it out"}
	case p.Type == Ping && r.TopPorts != nil:
		return nil, &FieldError{"top_ports", strconv.Itoa(*r.TopPorts), "is not used by scan_type ping (host discovery only); leave it out"}
	case p.Type == Ping && r.ServiceVersions:
		return nil, &FieldError{"service_versions", "true", "needs a port scan; it cannot be used with scan_type ping"}
	case p.Type == Ping && r.SkipHostDiscovery:
		return nil, &FieldError{"skip_host_discovery", "true", "cannot be used with scan_type ping, which is host discovery"}
	case r.Ports != "" && r.TopPorts != nil:
		return nil, &FieldError{"top_ports", strconv.Itoa(*r.TopPorts), fmt.Sprintf(
			"cannot be combined with ports; drop top_ports to scan ports %q, or drop ports to scan the %d most common ports", r.Ports, *r.TopPorts)}
	}
	if p.Type != Ping {
		if r.Ports != "" {
			if p.Ports, err = parsePorts(r.Ports); err != nil {
				return nil, err
			}
		} else {
			p.TopPorts = DefaultTopPorts
			if r.TopPorts != nil {
				if *r.TopPorts < 1 || *r.TopPorts > 65535 {
					return nil, &FieldError{"top_ports", strconv.Itoa(*r.TopPorts), "must be an integer from 1 to 65535"}
				}
				p.TopPorts = *r.TopPorts
			}
		}
	}
	p.ServiceVersions = r.ServiceVersions
	p.SkipHostDiscovery = r.SkipHostDiscovery
	p.OSDetection = r.OSDetection
	if p.Type == Ping && (r.OSDetection || r.Scripts != "" || r.ScriptArgs != "") {
		field, v := "os_detection", "true"
		if r.Scripts != "" {
			field, v = "scripts", r.Scripts
		} else if r.ScriptArgs != "" {
			field, v = "script_args", r.ScriptArgs
		}
		return nil, &FieldError{field, v, "needs a port scan; it cannot be used with scan_type ping"}
	}
	if p.Scripts, err = parseScripts(r.Scripts); err != nil {
		return nil, err
	}
	if p.ScriptArgs, err = parseScriptArgs(r.ScriptArgs); err != nil {
		return nil, err
	}
	if len(p.ScriptArgs) > 0 && len(p.Scripts) == 0 {
		return nil, &FieldError{"script_args", r.ScriptArgs, "needs scripts; give the scripts these arguments are for"}
	}

	if p.Timing, err = parseTiming(r.Timing, r.ExtraTiming); err != nil {
		return nil, err
	}

	p.Timeout = rules.DefaultTimeout
	maxT := min(rules.MaxTimeout, HardMaxTimeout)
	if maxT <= 0 {
		maxT = HardMaxTimeout
	}
	if p.Timeout <= 0 || p.Timeout > maxT {
		p.Timeout = maxT
	}
	if r.TimeoutSeconds != nil {
		s := *r.TimeoutSeconds
		if s < 1 || time.Duration(s)*time.Second > maxT {
			return nil, &FieldError{"timeout_seconds", strconv.Itoa(s),
				fmt.Sprintf("must be an integer from 1 to %d", int(maxT/time.Second))}
		}
		p.Timeout = time.Duration(s) * time.Second
	}
	if r.Shards != nil {
		n := *r.Shards
		switch {
		case n == 1:
		case rules.MaxShards == 0:
			return nil, &FieldError{"shards", strconv.Itoa(n), "this server does not split scans (sharding is off); leave shards out"}
		case n < 1 || n > rules.MaxShards:
			return nil, &FieldError{"shards", strconv.Itoa(n), fmt.Sprintf("must be an integer from 1 to %d", rules.MaxShards)}
		}
		p.Shards = n
	}
	return p, nil
}

func parseType(s string) (Type, error) {
	if s == "" {
		return Connect, nil
	}
	for _, t := range Types {
		if strings.EqualFold(s, string(t)) {
			return t, nil
		}
	}
	return "", &FieldError{"scan_type", s, "must be one of syn, connect, udp, ping"}
}

func parseTiming(timing, alias string) (int, error) {
	field, v := "timing", timing
	if timing == "" {
		field, v = "extra_timing", alias
	} else if alias != "" && !strings.EqualFold(strings.TrimPrefix(strings.ToUpper(timing), "T"), strings.TrimPrefix(strings.ToUpper(alias), "T")) {
		return 0, &FieldError{"extra_timing", alias, fmt.Sprintf("is an alias of timing and disagrees with timing %q; give one of them", timing)}
	}
	if v == "" {
		return -1, nil
	}
	s := strings.TrimPrefix(strings.ToUpper(v), "T")
	if len(s) == 1 && s[0] >= '0' && s[0] <= '5' {
		return int(s[0] - '0'), nil
	}
	return 0, &FieldError{field, v, "must be a timing template T0 to T5 (for example T4)"}
}

// maxTokens bounds how many target tokens one request may list.
const maxTokens = 1024

func parseTargets(s string, maxAddr uint64) ([]Target, uint64, bool, error) {
	if maxAddr == 0 {
		maxAddr = DefaultRules().MaxAddresses
	}
	tokens, err := splitTargets(s)
	if err != nil {
		return nil, 0, false, err
	}
	var (
		out     []Target
		total   uint64
		v4, v6  bool
		seen    = map[string]bool{}
		firstV4 string
		firstV6 string
	)
	for _, tok := range tokens {
		t, err := parseTarget(tok)
		if err != nil {
			return nil, 0, false, err
		}
		if seen[t.Text] {
			continue
		}
		seen[t.Text] = true
		if t.Kind != "hostname" {
			if t.IPv6 {
				v6 = true
				if firstV6 == "" {
					firstV6 = tok
				}
			} else {
				v4 = true
				if firstV4 == "" {
					firstV4 = tok
				}
			}
		}
		sum, carry := bits.Add64(total, t.Addresses, 0)
		if carry != 0 || sum > maxAddr {
			return nil, 0, false, &FieldError{"targets", clip(s), fmt.Sprintf(
				"expands to more than %d addresses (after CIDR expansion, at %q); scan a smaller range", maxAddr, tok)}
		}
		total = sum
		out = append(out, t)
	}
	if v4 && v6 {
		return nil, 0, false, &FieldError{"targets", clip(s), fmt.Sprintf(
			"mixes IPv4 (%s) and IPv6 (%s); nmap scans one address family per run, so split them into two scans", firstV4, firstV6)}
	}
	return out, total, v6, nil
}

// splitTargets splits a targets string on commas and white space, and
// bounds the count.
func splitTargets(s string) ([]string, error) {
	tokens := strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	if len(tokens) == 0 {
		return nil, &FieldError{"targets", s, "is empty; give at least one IP address, CIDR block or hostname, e.g. 127.0.0.1"}
	}
	if len(tokens) > maxTokens {
		return nil, &FieldError{"targets", clip(s), fmt.Sprintf("lists %d targets; at most %d are accepted", len(tokens), maxTokens)}
	}
	return tokens, nil
}

// ParseTargetList validates a targets string token by token, as nmap_scan
// does, without bounds on addresses or families (for a scope check).
func ParseTargetList(s string) ([]Target, error) {
	tokens, err := splitTargets(s)
	if err != nil {
		return nil, err
	}
	out := make([]Target, 0, len(tokens))
	for _, tok := range tokens {
		t, err := parseTarget(tok)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

const targetRule = "must be an IPv4 or IPv6 address, a CIDR block (e.g. 192.168.1.0/24) or a hostname, and may not start with \"-\""

func parseTarget(tok string) (Target, error) {
	if len(tok) > 253 {
		return Target{}, &FieldError{"targets", clip(tok), "is longer than 253 characters; " + targetRule}
	}
	if strings.HasPrefix(tok, "-") {
		return Target{}, &FieldError{"targets", tok, "starts with \"-\": options cannot be passed as targets; give IPv4 or IPv6 addresses, CIDR blocks or hostnames"}
	}
	if strings.Contains(tok, "://") {
		return Target{}, &FieldError{"targets", tok, targetHint(tok)}
	}
	if strings.Contains(tok, "/") {
		pfx, err := netip.ParsePrefix(tok)
		if err != nil {
			return Target{}, &FieldError{"targets", tok, "is not a valid CIDR block; " + targetRule}
		}
		if pfx.Addr().Zone() != "" {
			return Target{}, &FieldError{"targets", tok, "has an IPv6 zone, which is not supported; " + targetRule}
		}
		host := pfx.Addr().BitLen() - pfx.Bits()
		n := uint64(1)
		if host >= 64 {
			n = ^uint64(0)
		} else {
			n <<= uint(host)
		}
		return Target{Text: pfx.String(), Kind: "cidr", Addresses: n, IPv6: pfx.Addr().Is6() && !pfx.Addr().Is4In6()}, nil
	}
	if addr, err := netip.ParseAddr(tok); err == nil {
		if addr.Zone() != "" {
			return Target{}, &FieldError{"targets", tok, "has an IPv6 zone, which is not supported; " + targetRule}
		}
		if addr.Is4In6() {
			addr = addr.Unmap()
		}
		return Target{Text: addr.String(), Kind: "ip", Addresses: 1, IPv6: addr.Is6()}, nil
	}
	if isHostname(tok) {
		return Target{Text: strings.ToLower(strings.TrimSuffix(tok, ".")), Kind: "hostname", Addresses: 1}, nil
	}
	if hint := targetHint(tok); hint != "" {
		return Target{}, &FieldError{"targets", tok, hint}
	}
	return Target{}, &FieldError{"targets", tok, targetRule}
}

// targetHint teaches the fix for the target forms models often send: a
// URL, host:port, or an nmap range.
func targetHint(tok string) string {
	if u, err := url.Parse(tok); err == nil && u.Scheme != "" && u.Host != "" {
		if p := u.Port(); p != "" {
			return fmt.Sprintf("looks like a URL: use targets %q and ports %q", u.Hostname(), p)
		}
		return fmt.Sprintf("looks like a URL: use targets %q (ports go in ports)", u.Hostname())
	}
	if strings.Contains(tok, "://") {
		return "looks like a URL, but has no host: give the host alone in targets"
	}
	if host, port, err := net.SplitHostPort(tok); err == nil && port != "" {
		if _, perr := strconv.Atoi(port); perr == nil {
			return fmt.Sprintf("looks like host:port: use targets %q and ports %q", host, port)
		}
	}
	if strings.ContainsAny(tok, "-*") && strings.Count(tok, ".") == 3 && strings.IndexFunc(tok, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r == '.' || r == '-' || r == '*' || r == ',')
	}) < 0 {
		return "is an nmap address range, which is not accepted: give a CIDR block (e.g. 10.0.0.0/29) or a list of addresses (10.0.0.1, 10.0.0.2)"
	}
	return ""
}

// isHostname accepts RFC 1123 names whose last label holds a letter, so that
// nothing nmap would read as an address range (10.0.0.1-5, 10.0.*.1) passes.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.IndexFunc(last, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }) >= 0
}

// maxPortItems bounds how many comma-separated items a port list may have.
const maxPortItems = 256

func parsePorts(s string) (string, error) {
	const rule = "must be ports 1-65535 separated by commas, with ascending ranges, e.g. 22,80,8000-8100"
	items := strings.Split(s, ",")
	if len(items) > maxPortItems {
		return "", &FieldError{"ports", clip(s), fmt.Sprintf("has %d items; at most %d are accepted", len(items), maxPortItems)}
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		it = strings.TrimSpace(it)
		lo, hi, isRange := strings.Cut(it, "-")
		a, err := parsePort(lo)
		if err != nil {
			return "", &FieldError{"ports", s, rule}
		}
		if !isRange {
			out = append(out, strconv.Itoa(a))
			continue
		}
		b, err := parsePort(hi)
		if err != nil || b < a {
			return "", &FieldError{"ports", s, rule}
		}
		out = append(out, strconv.Itoa(a)+"-"+strconv.Itoa(b))
	}
	return strings.Join(out, ","), nil
}

func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad port %q", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return n, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// maxScripts bounds how many scripts or categories one request may name.
const maxScripts = 32

// parseScripts accepts a comma-separated list of NSE script names or
// categories: lowercase letters, digits and inner hyphens, never a path,
// a glob or an expression.
func parseScripts(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	const rule = "must be NSE script names or categories separated by commas, e.g. default,http-title (letters, digits and hyphens only)"
	items := strings.Split(s, ",")
	if len(items) > maxScripts {
		return nil, &FieldError{"scripts", clip(s), fmt.Sprintf("names %d scripts; at most %d are accepted", len(items), maxScripts)}
	}
	var out []string
	for _, it := range items {
		it = strings.ToLower(strings.TrimSpace(it))
		if !ValidName(it, 64) {
			return nil, &FieldError{"scripts", s, rule}
		}
		out = append(out, it)
	}
	return out, nil
}

// ValidName reports whether s is 1..maxLen lowercase letters, digits and
// inner hyphens: an NSE script or category name, or a hostname label.
func ValidName(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// parseScriptArgs accepts comma-separated key=value pairs with a narrow
// charset: no quotes, braces, slashes or file paths. Arguments that would
// point a script at hosts, networks or interfaces the scope never checked
// are refused (see targetArg).
func parseScriptArgs(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	const rule = "must be key=value pairs separated by commas; keys are letters, digits, dots, hyphens and underscores; values are letters, digits and . _ : - @ (no paths, quotes or braces)"
	items := strings.Split(s, ",")
	if len(items) > maxScripts {
		return nil, &FieldError{"script_args", clip(s), fmt.Sprintf("has %d pairs; at most %d are accepted", len(items), maxScripts)}
	}
	var out []string
	for _, it := range items {
		k, v, ok := strings.Cut(strings.TrimSpace(it), "=")
		if !ok || !charset(k, "._-", 64) || !charset(v, "._:-@", 128) || k[0] == '-' || strings.Contains(v, "..") {
			return nil, &FieldError{"script_args", s, rule}
		}
		if why := targetArg(k, v); why != "" {
			return nil, &FieldError{"script_args", k + "=" + v, why}
		}
		out = append(out, k+"="+v)
	}
	return out, nil
}

// hostArgNames are script-argument names (the part after the last dot)
// that name hosts, networks, interfaces or servers to contact.
var hostArgNames = map[string]bool{
	"host": true, "hosts": true, "target": true, "targets": true, "iface": true, "interface": true, "interfaces": true,
	"ip": true, "ips": true, "address": true, "addresses": true, "addr": true, "network": true, "networks": true,
	"net": true, "cidr": true, "subnet": true, "range": true, "prefix": true, "domain": true, "server": true,
	"servers": true, "dns": true, "nameserver": true, "resolver": true, "proxy": true, "proxies": true,
	"newtargets": true, "max-newtargets": true,
}

// targetArg says why a script argument may not be passed, or "": it
// must not add targets (newtargets), name hosts, networks or interfaces,
// or carry an IP address. Only the scan's vetted targets are scanned.
func targetArg(key, value string) string {
	k := strings.ToLower(key)
	last := k[strings.LastIndexByte(k, '.')+1:]
	switch {
	case strings.HasPrefix(k, "newtargets") || strings.HasPrefix(k, "max-newtargets"):
		return "adds scan targets the scope never checked; it is never passed"
	case strings.HasPrefix(k, "targets-"):
		return "configures a target-discovery script; targets come only from the targets parameter"
	case hostArgNames[last]:
		return fmt.Sprintf("names hosts, networks, interfaces or servers (%q); scripts may only reach the scan's own targets", last)
	}
	if _, err := netip.ParseAddr(value); err == nil {
		return "carries an IP address; scripts may only reach the scan's own targets, given in the targets parameter"
	}
	// user@host, host:port: each part is checked.
	for _, part := range strings.FieldsFunc(value, func(r rune) bool { return r == '@' || r == ':' }) {
		if _, err := netip.ParseAddr(part); err == nil {
			return fmt.Sprintf("carries an IP address (%q); scripts may only reach the scan's own targets, given in the targets parameter", part)
		}
		if numericAddr(part) {
			return fmt.Sprintf("carries an IP address in numeric form (%q, as inet_aton reads it); scripts may only reach the scan's own targets, given in the targets parameter", part)
		}
		if hostName(part) {
			return fmt.Sprintf("carries a host name (%q); scripts may only reach the scan's own targets, given in the targets parameter", part)
		}
	}
	return ""
}

// numericAddr reports whether s is an IPv4 address in one of the forms
// glibc's inet_aton (and so getaddrinfo, even with "hosts: files")
// accepts beyond the dotted quad: 127.1, 10.1.2, 0x7f000001,
// 0300.0250.1.1, 3232235777. A plain decimal number below 2^24 (a count, a
// size, a timeout) is not taken for one: inet_aton would read it as an
// address in 0.0.0.0/8, which no host has.
func numericAddr(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return false
	}
	var n uint64
	for _, p := range parts {
		lower := strings.ToLower(p)
		switch {
		case strings.HasPrefix(lower, "0x"):
			if strings.Trim(lower[2:], "0123456789abcdef") != "" {
				return false
			}
			return true
		case p == "" || strings.Trim(p, "0123456789") != "":
			return false
		case len(p) > 1 && p[0] == '0':
			return true // octal
		}
		n, _ = strconv.ParseUint(p, 10, 64)
	}
	return len(parts) > 1 || n >= 1<<24
}

// hostName reports whether s reads as a DNS name with at least two labels
// whose last is not all digits (scanme.nmap.org, evil.example, x.local):
// a value a script could resolve or connect to. Versions such as 1.2.3
// and single words are not names.
func hostName(s string) bool {
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		// Resolvers take what DNS syntax would refuse (evil-.example):
		// any label of name characters counts.
		if l == "" || !charset(l, "-_", 63) {
			return false
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// charset reports whether s is 1..n characters of letters, digits and extra.
func charset(s, extra string, n int) bool {
	if s == "" || len(s) > n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// Pin returns a copy of the plan whose hostname targets are replaced by the
// addresses resolved for them (in the scan's family), with Names mapping
// each address back to its hostname for the report and Addresses counted
// again. Hostnames missing from resolved stay as they are.
func (p *Plan) Pin(resolved map[string][]netip.Addr) (*Plan, error) {
	out := *p
	out.Targets = nil
	out.Addresses = 0
	out.Names = map[string][]string{}
	seen := map[string]bool{}
	add := func(t Target) {
		if !seen[t.Text] {
			seen[t.Text] = true
			out.Targets = append(out.Targets, t)
			out.Addresses += t.Addresses
		}
	}
	for _, t := range p.Targets {
		addrs, ok := resolved[t.Text]
		if t.Kind != "hostname" || !ok {
			add(t)
			continue
		}
		for _, a := range addrs {
			text := a.Unmap().String()
			out.Names[text] = append(out.Names[text], t.Text)
			add(Target{Text: text, Kind: "ip", Addresses: 1, IPv6: a.Is6() && !a.Is4In6()})
		}
	}
	return &out, nil
}
