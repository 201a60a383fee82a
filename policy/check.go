package policy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/scan"
)

// Check decides whether client may run plan. On success it returns the
// plan pinned to the vetted addresses (hostnames resolved here) and counts
// it against the client's budgets. Refusals are *Refusal or *BudgetError.
func (p *Policy) Check(ctx context.Context, plan *scan.Plan, client string) (*scan.Plan, error) {
	if err := p.checkTechniques(plan); err != nil {
		return nil, err
	}
	if err := p.checkScripts(ctx, plan); err != nil {
		return nil, err
	}
	resolved := map[string][]netip.Addr{}
	for _, t := range plan.Targets {
		switch t.Kind {
		case "hostname":
			addrs, err := p.checkName(ctx, t.Text, plan.IPv6)
			if err != nil {
				return nil, err
			}
			resolved[t.Text] = addrs
		case "cidr":
			pfx, err := netip.ParsePrefix(t.Text)
			if err != nil {
				return nil, &Refusal{Target: t.Text, Reason: "not a CIDR block", Key: "scope"}
			}
			if err := p.checkPrefix(t.Text, pfx.Masked()); err != nil {
				return nil, err
			}
		default:
			a, err := netip.ParseAddr(t.Text)
			if err != nil {
				return nil, &Refusal{Target: t.Text, Reason: "not an address", Key: "scope"}
			}
			if err := p.checkPrefix(t.Text, netip.PrefixFrom(a, a.BitLen())); err != nil {
				return nil, err
			}
		}
	}
	pinned, err := plan.Pin(resolved)
	if err != nil {
		return nil, err
	}
	if err := p.spend(client, pinned.Addresses); err != nil {
		return nil, err
	}
	return pinned, nil
}

func (p *Policy) checkTechniques(plan *scan.Plan) error {
	switch {
	case plan.Type == scan.SYN && !p.cfg.SYN:
		return &Refusal{Reason: "SYN scans are switched off in this deployment", Key: "techniques.syn"}
	case plan.Type == scan.UDP && !p.cfg.UDP:
		return &Refusal{Reason: "UDP scans are switched off in this deployment", Key: "techniques.udp"}
	case plan.OSDetection && !p.cfg.OSDetection:
		return &Refusal{Reason: "OS detection is switched off in this deployment", Key: "techniques.os_detection"}
	case plan.ServiceVersions && !p.cfg.ServiceVersions:
		return &Refusal{Reason: "service version detection is switched off in this deployment", Key: "techniques.service_versions"}
	}
	return nil
}

// checkScripts allows a category when it is on the category allowlist, and
// a script when it is on the name allowlist or all its categories are
// allowed. Risky categories are refused unless listed by name.
func (p *Policy) checkScripts(ctx context.Context, plan *scan.Plan) error {
	if len(plan.Scripts) == 0 {
		return nil
	}
	var db map[string][]string
	for _, s := range plan.Scripts {
		if slices.Contains(p.cfg.ScriptCategories, s) || slices.Contains(p.cfg.ScriptNames, s) {
			continue
		}
		if slices.Contains(RiskyScriptCategories, s) {
			return &Refusal{Reason: fmt.Sprintf("NSE category %q is refused unless the config allows it", s), Key: "scripts.categories"}
		}
		if db == nil {
			if p.scripts == nil {
				return &Refusal{Reason: fmt.Sprintf("NSE script %q is not on the allowlist", s), Key: "scripts.names"}
			}
			var err error
			if db, err = p.scripts(ctx); err != nil {
				return fmt.Errorf("read the NSE script list from the scanner image: %w", err)
			}
		}
		cats, ok := db[s]
		if !ok {
			return &Refusal{Reason: fmt.Sprintf("%q is neither an allowed NSE category nor a script in the image", s), Key: "scripts.categories"}
		}
		for _, c := range cats {
			if !slices.Contains(p.cfg.ScriptCategories, c) {
				return &Refusal{Reason: fmt.Sprintf("NSE script %q is in category %q, which is not allowed", s, c), Key: "scripts.categories (or scripts.names)"}
			}
		}
	}
	return nil
}

// checkPrefix allows an address or block wholly inside an allowed prefix
// and overlapping no denied one.
func (p *Policy) checkPrefix(target string, pfx netip.Prefix) error {
	for _, d := range p.deny {
		if d.prefix.IsValid() && d.prefix.Overlaps(pfx) {
			what := "it is"
			if pfx.Bits() < pfx.Addr().BitLen() {
				what = "it overlaps"
			}
			return &Refusal{Target: target, Reason: fmt.Sprintf("%s denied by %s", what, d.text), Key: "scope.deny"}
		}
	}
	for _, a := range p.allow {
		if a.prefix.IsValid() && a.prefix.Bits() <= pfx.Bits() && a.prefix.Contains(pfx.Addr()) {
			return nil
		}
	}
	return &Refusal{Target: target, Reason: "no allow rule covers it", Key: "scope.allow"}
}

// checkName resolves name, checks every address, and returns those of the
// scan's address family.
func (p *Policy) checkName(ctx context.Context, name string, ipv6 bool) ([]netip.Addr, error) {
	for _, d := range p.deny {
		if d.matchesName(name) {
			return nil, &Refusal{Target: name, Reason: "it is denied by " + d.text, Key: "scope.deny"}
		}
	}
	byName := false
	for _, a := range p.allow {
		if a.matchesName(name) {
			byName = true
		}
	}
	if p.resolver == nil {
		return nil, &Refusal{Target: name, Reason: "hostnames cannot be resolved here", Key: "scope"}
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := p.resolver.LookupNetIP(rctx, "ip", name)
	if err != nil || len(addrs) == 0 {
		return nil, &Refusal{Target: name, Reason: fmt.Sprintf("it does not resolve (%v)", err), Key: "scope"}
	}
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if err := p.checkResolved(name, a, byName); err != nil {
			return nil, err
		}
		if a.Is6() == ipv6 {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		fam := "IPv4"
		if ipv6 {
			fam = "IPv6"
		}
		return nil, &Refusal{Target: name, Reason: "it has no " + fam + " address", Key: "scope"}
	}
	return out, nil
}

func (p *Policy) checkResolved(name string, a netip.Addr, byName bool) error {
	pfx := netip.PrefixFrom(a, a.BitLen())
	for _, d := range p.deny {
		if d.prefix.IsValid() && d.prefix.Contains(a) {
			return &Refusal{Target: name, Reason: fmt.Sprintf("it resolves to %s, denied by %s", a, d.text), Key: "scope.deny"}
		}
	}
	if byName {
		return nil
	}
	if err := p.checkPrefix(a.String(), pfx); err != nil {
		return &Refusal{Target: name, Reason: fmt.Sprintf("it resolves to %s, which no allow rule covers", a), Key: "scope.allow"}
	}
	return nil
}

// spend counts a scan of n addresses against client's budgets, or refuses.
func (p *Policy) spend(client string, n uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	cut := now.Add(-p.cfg.Window)
	uses := p.used[client]
	for len(uses) > 0 && !uses[0].at.After(cut) {
		uses = uses[1:]
	}
	if p.cfg.ScansPerClient > 0 && len(uses) >= p.cfg.ScansPerClient {
		return &BudgetError{Budget: "scans per client", Limit: fmt.Sprintf("%d per %s", p.cfg.ScansPerClient, p.cfg.Window),
			FreesAt: uses[0].at.Add(p.cfg.Window)}
	}
	if p.cfg.AddressesPerClient > 0 {
		var total uint64
		for _, u := range uses {
			total += u.addrs
		}
		if total+n > p.cfg.AddressesPerClient {
			frees := now.Add(p.cfg.Window)
			var freed uint64
			for _, u := range uses {
				freed += u.addrs
				if total-freed+n <= p.cfg.AddressesPerClient {
					frees = u.at.Add(p.cfg.Window)
					break
				}
			}
			return &BudgetError{Budget: "addresses per client", Limit: fmt.Sprintf("%d per %s", p.cfg.AddressesPerClient, p.cfg.Window),
				FreesAt: frees}
		}
	}
	p.used[client] = append(uses, use{at: now, addrs: n})
	return nil
}

// Describe summarises the policy for `config check`.
func (p *Policy) Describe() string {
	var b strings.Builder
	texts := func(rs []rule) string {
		var s []string
		for _, r := range rs {
			s = append(s, r.text)
		}
		return strings.Join(s, ", ")
	}
	fmt.Fprintf(&b, "scope.allow: %s\nscope.deny: %s\n", texts(p.allow), texts(p.deny))
	fmt.Fprintf(&b, "techniques: syn=%v udp=%v os_detection=%v service_versions=%v\n", p.cfg.SYN, p.cfg.UDP, p.cfg.OSDetection, p.cfg.ServiceVersions)
	fmt.Fprintf(&b, "scripts: categories=%s names=%s\n", strings.Join(p.cfg.ScriptCategories, ","), strings.Join(p.cfg.ScriptNames, ","))
	fmt.Fprintf(&b, "budgets: window=%s scans_per_client=%d addresses_per_client=%d\n", p.cfg.Window, p.cfg.ScansPerClient, p.cfg.AddressesPerClient)
	return b.String()
}
