package policy

import (
	"fmt"
	"net/netip"
)

// IPv6 forms that carry an IPv4 address: a deny rule for an IPv4 address
// must also match it written in these forms, or a broad IPv6 allow rule
// would let the denied host be reached through a translator.
var (
	mappedPrefix  = netip.MustParsePrefix("::ffff:0:0/96")  // IPv4-mapped
	nat64Prefix   = netip.MustParsePrefix("64:ff9b::/96")   // NAT64 well-known prefix (RFC 6052)
	sixToFour     = netip.MustParsePrefix("2002::/16")      // 6to4 (RFC 3056)
	teredoPrefix  = netip.MustParsePrefix("2001::/32")      // Teredo (RFC 4380): client address inverted in the last 32 bits
	localUseNAT64 = netip.MustParsePrefix("64:ff9b:1::/48") // NAT64 local-use prefix (RFC 8215)
)

// embeddingRules returns, for each IPv4 deny rule, the same block as an
// IPv4-mapped, NAT64 (/96) and 6to4 IPv6 prefix, named after the rule.
func embeddingRules(deny []rule) []rule {
	var out []rule
	for _, d := range deny {
		if !d.prefix.IsValid() || !d.prefix.Addr().Is4() {
			continue
		}
		v4 := d.prefix.Addr().As4()
		bits := d.prefix.Bits()
		for _, e := range []struct {
			base   netip.Prefix
			offset int // byte where the IPv4 address starts
			form   string
		}{{mappedPrefix, 12, "IPv4-mapped"}, {nat64Prefix, 12, "NAT64"}, {sixToFour, 2, "6to4"}} {
			a := e.base.Addr().As16()
			copy(a[e.offset:], v4[:])
			p := netip.PrefixFrom(netip.AddrFrom16(a), e.offset*8+bits).Masked()
			out = append(out, rule{text: fmt.Sprintf("%s (as %s)", d.text, e.form), prefix: p})
		}
	}
	return out
}

// embeddedIPv4 returns the IPv4 address that an IPv6 address carries in
// a form the rules above cannot cover by prefix (Teredo, local-use NAT64).
func embeddedIPv4(a netip.Addr) (netip.Addr, string, bool) {
	b := a.As16()
	switch {
	case teredoPrefix.Contains(a):
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), "Teredo", true
	case localUseNAT64.Contains(a):
		// RFC 6052 /48 layout: 16 bits of IPv4 in bytes 6-7, bits 64-71 zero, the rest in bytes 9-10.
		return netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]}), "NAT64", true
	}
	return netip.Addr{}, "", false
}

// checkEmbedded refuses an IPv6 target that carries a denied IPv4 address
// in a Teredo or local-use NAT64 form, and an IPv6 block that overlaps
// those ranges while IPv4 deny rules exist (its embedded addresses cannot
// all be checked).
func (p *Policy) checkEmbedded(target string, pfx netip.Prefix) error {
	if !pfx.Addr().Is6() || pfx.Addr().Is4In6() {
		return nil
	}
	if pfx.IsSingleIP() {
		v4, form, ok := embeddedIPv4(pfx.Addr())
		if !ok {
			return nil
		}
		for _, d := range p.deny {
			if d.prefix.IsValid() && d.prefix.Contains(v4) {
				return &Refusal{Target: target, Reason: fmt.Sprintf("it carries %s (%s form), denied by %s", v4, form, d.text), Key: "scope.deny"}
			}
		}
		return nil
	}
	for _, r := range []netip.Prefix{teredoPrefix, localUseNAT64} {
		if !r.Overlaps(pfx) {
			continue
		}
		for _, d := range p.deny {
			if d.prefix.IsValid() && d.prefix.Addr().Is4() {
				return &Refusal{Target: target, Reason: fmt.Sprintf("it overlaps %s, whose addresses carry IPv4 addresses that deny rules such as %s cover; list single addresses instead", r, d.text), Key: "scope.deny"}
			}
		}
	}
	return nil
}
