package fence

import (
	"fmt"
	"math/big"
	"net/netip"
	"regexp"
	"strings"
)

// Rules are the inputs of one fence's nftables ruleset.
type Rules struct {
	// Allow are the only addresses the namespace may exchange traffic with.
	Allow []netip.Prefix
	// Neighbours may be resolved (ARP, IPv6 neighbour solicitation) but
	// get no other traffic: the network's gateways, so that targets
	// behind a router can be reached. An address in Allow too gets both.
	Neighbours []netip.Addr
	// Devices are the namespace's interfaces other than lo; each gets its
	// own egress hook.
	Devices []string
}

// TableInet and TablePrefix name the tables the ruleset installs: one inet
// table, and one netdev table per device (TablePrefix + its index).
const (
	TableInet   = "nmap_mcp"
	TablePrefix = "nmap_mcp_dev"
)

var deviceName = regexp.MustCompile(`^[A-Za-z0-9_.@:-]{1,15}$`)

// Ruleset renders the nftables ruleset (for `nft -f -`):
//
//   - an inet table whose output and input chains drop everything but
//     127.0.0.1 and ::1 on loopback (not Docker's embedded resolver on
//     127.0.0.11), traffic to and from Allow, and neighbour discovery for
//     Allow and Neighbours (ICMPv6 types 135/136);
//   - per device, a netdev table with an egress hook that drops every frame
//     but IPv4/IPv6 to Allow, ARP requests for Allow and Neighbours, ARP
//     replies to Allow and Neighbours, and neighbour solicitations for
//     them, so that raw Ethernet sends (AF_PACKET: ARP ping, --send-eth,
//     NSE ethernet sends) cannot pass either.
//
// Every chain's policy is drop. It refuses an empty Allow and device names
// the kernel could not have made.
func (r Rules) Ruleset() (string, error) {
	if len(r.Allow) == 0 {
		return "", fmt.Errorf("a fence needs at least one allowed address")
	}
	if len(r.Devices) == 0 {
		return "", fmt.Errorf("the namespace reports no network interface to fence")
	}
	var a4, a6 []string
	var p4, p6 []netip.Prefix
	for _, p := range r.Allow {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())).Masked()
		if !p.IsValid() {
			return "", fmt.Errorf("allowed prefix %s is not valid", p)
		}
		if p.Addr().Is4() {
			a4, p4 = append(a4, p.String()), append(p4, p)
		} else {
			a6, p6 = append(a6, p.String()), append(p6, p)
		}
	}
	n4, n6 := append([]string(nil), a4...), append([]string(nil), a6...)
	nd6 := append([]netip.Prefix(nil), p6...)
	for _, n := range r.Neighbours {
		n = n.Unmap()
		if n.Is4() {
			n4 = append(n4, n.String())
		} else if n.IsValid() {
			n6 = append(n6, n.String())
			nd6 = append(nd6, netip.PrefixFrom(n, 128))
		}
	}

	var b strings.Builder
	sets := func(indent string) {
		set(&b, indent, "allow4", "ipv4_addr", a4)
		set(&b, indent, "allow6", "ipv6_addr", a6)
		set(&b, indent, "nbr4", "ipv4_addr", n4)
		set(&b, indent, "nbr6", "ipv6_addr", n6)
	}
	solicit := ndTargets(nd6)
	// outbound is what may leave, in both the inet output chain and each
	// device's egress chain: IP to the targets, then (arp, for a device)
	// and neighbour discovery for targets and gateways.
	outbound := func(arp bool) {
		b.WriteString("\t\tip daddr @allow4 accept\n\t\tip6 daddr @allow6 accept\n")
		if arp {
			b.WriteString("\t\tarp operation request arp daddr ip @nbr4 accept\n")
			b.WriteString("\t\tarp operation reply arp daddr ip @nbr4 accept\n")
		}
		for _, m := range solicit {
			fmt.Fprintf(&b, "\t\ticmpv6 type nd-neighbor-solicit %s accept\n", m)
		}
		b.WriteString("\t\tip6 daddr @nbr6 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n")
		b.WriteString("\t}\n")
	}

	fmt.Fprintf(&b, "table inet %s {\n", TableInet)
	sets("\t")
	b.WriteString("\tchain output {\n\t\ttype filter hook output priority 0; policy drop;\n")
	// Loopback only to itself: Docker's embedded resolver listens on
	// 127.0.0.11 in the namespace and would forward names out.
	b.WriteString("\t\toifname \"lo\" ip daddr 127.0.0.1 accept\n\t\toifname \"lo\" ip6 daddr ::1 accept\n")
	outbound(false)
	b.WriteString("\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n")
	b.WriteString("\t\tiifname \"lo\" ip saddr 127.0.0.1 accept\n\t\tiifname \"lo\" ip6 saddr ::1 accept\n")
	b.WriteString("\t\tip saddr @allow4 accept\n\t\tip6 saddr @allow6 accept\n")
	b.WriteString("\t\tip6 saddr @nbr6 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n")
	b.WriteString("\t}\n}\n")

	for i, dev := range r.Devices {
		if !deviceName.MatchString(dev) || dev == "lo" {
			return "", fmt.Errorf("interface name %q: not one to fence", dev)
		}
		fmt.Fprintf(&b, "table netdev %s%d {\n", TablePrefix, i)
		sets("\t")
		fmt.Fprintf(&b, "\tchain egress {\n\t\ttype filter hook egress device %q priority 0; policy drop;\n", dev)
		outbound(true)
		b.WriteString("}\n")
	}
	return b.String(), nil
}

// Replacing is the ruleset preceded by the deletion of the tables it
// defines, so that `nft -f -` swaps a closed namespace's drop-everything
// tables for the allowlist in one transaction: no moment without a fence.
func (r Rules) Replacing() (string, error) {
	rules, err := r.Ruleset()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "delete table inet %s\n", TableInet)
	for i := range r.Devices {
		fmt.Fprintf(&b, "delete table netdev %s%d\n", TablePrefix, i)
	}
	return b.String() + rules, nil
}

func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// set writes a named interval set; an empty one gets no elements line.
func set(b *strings.Builder, indent, name, typ string, elems []string) {
	fmt.Fprintf(b, "%sset %s {\n%s\ttype %s; flags interval;\n", indent, name, indent, typ)
	if len(elems) > 0 {
		fmt.Fprintf(b, "%s\tauto-merge\n%s\telements = { %s }\n", indent, indent, strings.Join(elems, ", "))
	}
	fmt.Fprintf(b, "%s}\n", indent)
}

// ndTargets matches the target address of an ICMPv6 neighbour
// solicitation (bits 64.. of the ICMPv6 header) against each prefix:
// nftables 1.0.6 has no expression for it, so the raw payload's first
// Bits() bits are compared with the prefix's. A solicitation goes to a
// multicast group, so the destination address cannot tell the target.
func ndTargets(prefixes []netip.Prefix) []string {
	out := make([]string, 0, len(prefixes))
	seen := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		p = p.Masked()
		if seen[p] || p.Bits() == 0 {
			continue
		}
		seen[p] = true
		a := p.Addr().As16()
		v := new(big.Int).SetBytes(a[:])
		v.Rsh(v, uint(128-p.Bits()))
		out = append(out, fmt.Sprintf("@th,64,%d 0x%s", p.Bits(), v.Text(16)))
	}
	return out
}
