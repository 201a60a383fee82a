package policy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// Check decides whether plan may run. On success it returns the plan
// pinned to the vetted addresses (hostnames resolved here), with its NSE
// scripts expanded to the explicit list that may run. It spends no budget:
// Spend does, once the scan has its place in the queue. Refusals are
// *Refusal.
func (p *Policy) Check(ctx context.Context, plan *scanargs.Plan) (*scanargs.Plan, error) {
	if err := p.checkTechniques(plan); err != nil {
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
	if max := p.cfg.MaxAddressesPerScan; max > 0 && pinned.Addresses > max {
		return nil, &Refusal{Reason: fmt.Sprintf("the targets stand for %d addresses after CIDR expansion and name resolution; at most %d are allowed per scan",
			pinned.Addresses, max), Key: "budgets.max_addresses_per_scan"}
	}
	// Scripts are expanded for the pinned targets: whether the scan runs
	// on the host network depends on the addresses its names stand for.
	if len(plan.Scripts) > 0 {
		scripts, dropped, err := p.expandScripts(ctx, pinned)
		if err != nil {
			return nil, err
		}
		pinned.Scripts, pinned.ScriptsDropped = scripts, dropped
	}
	return pinned, nil
}

func (p *Policy) checkTechniques(plan *scanargs.Plan) error {
	switch {
	case plan.Type == scanargs.SYN && !p.cfg.SYN:
		return &Refusal{Reason: "SYN scans are switched off in this deployment", Key: "techniques.syn"}
	case plan.Type == scanargs.UDP && !p.cfg.UDP:
		return &Refusal{Reason: "UDP scans are switched off in this deployment", Key: "techniques.udp"}
	case plan.OSDetection && !p.cfg.OSDetection:
		return &Refusal{Reason: "OS detection is switched off in this deployment", Key: "techniques.os_detection"}
	case plan.ServiceVersions && !p.cfg.ServiceVersions:
		return &Refusal{Reason: "service version detection is switched off in this deployment", Key: "techniques.service_versions"}
	}
	return nil
}

// checkPrefix allows an address or block wholly inside an allowed prefix
// and overlapping no denied one.
func (p *Policy) checkPrefix(target string, pfx netip.Prefix) error {
	if err := p.checkEmbedded(target, pfx); err != nil {
		return err
	}
	for _, d := range p.deny {
		if d.prefix.IsValid() && d.prefix.Overlaps(pfx) {
			what := "it is"
			if pfx.Bits() < pfx.Addr().BitLen() {
				what = "it overlaps"
			}
			return &Refusal{Target: target, Reason: fmt.Sprintf("%s denied by %s", what, d.text), Key: "scope.deny"}
		}
	}
	if p.allowing(pfx) != "" {
		return nil
	}
	return &Refusal{Target: target, Reason: "no allow rule covers it", Key: "scope.allow"}
}

// checkName resolves name, checks every address, and returns those of the
// scan's address family.
func (p *Policy) checkName(ctx context.Context, name string, ipv6 bool) ([]netip.Addr, error) {
	addrs, _, err := p.resolveName(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
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

// resolveName checks a hostname against the name rules, resolves it (only
// when an allow rule names it, unless the deployment opts in) and checks
// every address. It returns the addresses and the allow rule that names
// the host ("" when its addresses were checked one by one).
func (p *Policy) resolveName(ctx context.Context, name string) ([]netip.Addr, string, error) {
	for _, d := range p.deny {
		if d.matchesName(name) {
			return nil, "", &Refusal{Target: name, Reason: "it is denied by " + d.text, Key: "scope.deny"}
		}
	}
	namedBy := ""
	for _, a := range p.allow {
		if a.matchesName(name) {
			namedBy = a.text
		}
	}
	// A name no allow rule names is refused before any DNS query, unless
	// the deployment opts in: a lookup of an out-of-scope name already
	// leaks it (and whatever a prompt put in it) to the resolver's owner.
	if namedBy == "" && !p.cfg.ResolveUnlistedNames {
		return nil, "", &Refusal{Target: name, Reason: "no allow rule names this host, and names are only resolved when an allow rule names them " +
			"(add the name to scope.allow, give its address, or set scope.resolve_unlisted_names: true)", Key: "scope.allow"}
	}
	if p.resolver == nil {
		return nil, "", &Refusal{Target: name, Reason: "hostnames cannot be resolved here", Key: "scope"}
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := p.resolver.LookupNetIP(rctx, "ip", name)
	if err != nil || len(addrs) == 0 {
		return nil, "", &Refusal{Target: name, Reason: "it does not resolve (" + lookupReason(err) + ")", Key: "scope"}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if err := p.checkResolved(name, a, namedBy != ""); err != nil {
			return nil, "", err
		}
		out = append(out, a)
	}
	return out, namedBy, nil
}

func (p *Policy) checkResolved(name string, a netip.Addr, byName bool) error {
	pfx := netip.PrefixFrom(a, a.BitLen())
	if err := p.checkEmbedded(name, pfx); err != nil {
		return err
	}
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

// Spend counts a scan of n addresses against client's budgets, or refuses
// with a *BudgetError and counts nothing.
func (p *Policy) Spend(client string, n uint64) error {
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

// lookupReason says why a lookup failed without naming the resolver: a
// *net.DNSError's text carries the resolver's address, which is internal.
func lookupReason(err error) string {
	var de *net.DNSError
	switch {
	case err == nil:
		return "no address"
	case errors.As(err, &de) && de.IsNotFound:
		return "no such host"
	case errors.As(err, &de) && de.IsTimeout, errors.Is(err, context.DeadlineExceeded):
		return "the DNS lookup timed out"
	default:
		return "the DNS lookup failed"
	}
}
