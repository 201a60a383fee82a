package policy

import (
	"context"
	"errors"
	"net/netip"

	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// Decision is the scope's answer for one target, found without scanning:
// whether it may be scanned, the rule that decides, the config key that
// would change it, and what a hostname resolves to.
type Decision struct {
	Target    string   `json:"target" desc:"the target as given"`
	Allowed   bool     `json:"allowed" desc:"true when a scan of it would pass the scope"`
	Rule      string   `json:"rule" desc:"the rule that decides, e.g. allow 127.0.0.0/8 or deny 169.254.169.254/32"`
	Key       string   `json:"config_key" desc:"the config key that would change the decision"`
	Reason    string   `json:"reason" desc:"why it is refused; empty when allowed"`
	Addresses []string `json:"addresses" desc:"what a hostname resolves to (checked); empty for addresses and blocks"`
	// Network says where a scan of the target would run: fenced to its
	// addresses, or on the host network, not fenced (and why).
	Network string `json:"network" desc:"where a scan of it would run, e.g. fenced on network nmap-mcp, or host network, not fenced (loopback)"`
}

// Explain decides each target as Check would, target by target, without
// spending a budget or scanning. Only names an allow rule names are
// resolved (see resolveName).
func (p *Policy) Explain(ctx context.Context, targets []scanargs.Target) []Decision {
	out := make([]Decision, 0, len(targets))
	for _, t := range targets {
		d := Decision{Target: t.Text, Addresses: []string{}}
		var err error
		switch t.Kind {
		case "hostname":
			var addrs []netip.Addr
			var namedBy string
			if addrs, namedBy, err = p.resolveName(ctx, t.Text); err == nil {
				for _, a := range addrs {
					d.Addresses = append(d.Addresses, a.String())
				}
				d.Rule = "allow " + namedBy
				if namedBy == "" {
					d.Rule = "each address is covered by an allow rule (scope.resolve_unlisted_names is on)"
				}
			}
		default:
			pfx, perr := netip.ParsePrefix(t.Text)
			if perr != nil {
				a, _ := netip.ParseAddr(t.Text)
				pfx = netip.PrefixFrom(a, a.BitLen())
			}
			if err = p.checkPrefix(t.Text, pfx.Masked()); err == nil {
				d.Rule = "allow " + p.allowing(pfx.Masked())
			}
		}
		d.Allowed, d.Key = err == nil, "scope.allow"
		var r *Refusal
		if errors.As(err, &r) {
			d.Reason, d.Key, d.Rule = r.Reason, r.Key, ruleOf(r)
		}
		out = append(out, d)
	}
	return out
}

// allowing names the allow rule that covers pfx, or "".
func (p *Policy) allowing(pfx netip.Prefix) string {
	for _, a := range p.allow {
		if a.prefix.IsValid() && a.prefix.Bits() <= pfx.Bits() && a.prefix.Contains(pfx.Addr()) {
			return a.text
		}
	}
	return ""
}

func ruleOf(r *Refusal) string {
	switch r.Key {
	case "scope.deny":
		return "deny"
	case "scope.allow":
		return "no allow rule"
	}
	return "name resolution"
}
