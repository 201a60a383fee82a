package fence

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"math/big"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Rules are the inputs of one fence's nftables ruleset.
type Rules struct {
	// Allow are the only addresses the namespace may exchange traffic with.
	Allow []netip.Prefix
	// Neighbours may be resolved (ARP, IPv6 neighbour solicitation) but
	// get no other traffic: the network's gateways, so that targets
	// behind a router can be reached. An address in Allow too gets both.
	// A neighbour pinned in Links is a router: IP frames for any allowed
	// address may go to its Ethernet address.
	Neighbours []netip.Addr
	// Devices are the namespace's interfaces other than lo; each gets its
	// own egress hook.
	Devices []string
	// MACs are the devices' own Ethernet addresses, in Devices' order (nil
	// or shorter when unknown): the only sender hardware address an ARP
	// packet or a neighbour solicitation or advertisement may carry.
	MACs []net.HardwareAddr
	// Own are the namespace's own IPv6 addresses (nil: unknown, not
	// checked): the only source of a neighbour solicitation or
	// advertisement, and the only target an advertisement may name.
	Own []netip.Addr
	// Own4 are the namespace's own IPv4 addresses: the only sender
	// protocol address an ARP packet may carry. None: no ARP leaves (the
	// netdev tables' own4 set may be filled after rendering, as the
	// Kubernetes init container does).
	Own4 []netip.Addr
	// Links pins addresses to the Ethernet address each resolves to, as
	// an authority knows it (Docker's endpoint list; the host's own bridge
	// for a gateway): an IP frame or ARP packet for a pinned address may
	// go only to that Ethernet address (or a pinned router's), and no
	// frame for an address that is not pinned may go to an Ethernet
	// address that Links names.
	Links map[netip.Addr]net.HardwareAddr
	// Closed says Links names every host on the segment (a Docker bridge
	// whose gateway is pinned): a frame to any other Ethernet address is
	// dropped. Otherwise a frame for an allowed address that is not pinned
	// may go to any unicast Ethernet address Links does not name.
	Closed bool
}

// TableInet and TablePrefix name the tables the ruleset installs: one inet
// table, and one netdev table per device (TablePrefix + its index).
const (
	TableInet   = "nmap_mcp"
	TablePrefix = "nmap_mcp_dev"
)

// Verify is the shell every runner's fence installer runs after its
// `nft -f -`: it checks that the inet table is in place and that every
// interface named in $devs has an egress hook, and exits 3 naming the
// first that has none (the installer then fails, and nmap never starts).
const Verify = `nft list table inet ` + TableInet + ` >/dev/null
hooks=$(nft list ruleset)
for d in $devs; do
  case "$hooks" in *"hook egress device \"$d\""*) ;; *) echo "fence: interface $d has no egress fence" >&2; exit 3 ;; esac
done`

// TableHost is the inet table the host fence installs in the host's
// network namespace (HostRuleset).
const TableHost = "nmap_mcp_host"

var deviceName = regexp.MustCompile(`^[A-Za-z0-9_.@:-]{1,15}$`)

// Ruleset renders the nftables ruleset (for `nft -f -`):
//
//   - an inet table whose output and input chains drop everything but
//     127.0.0.1 and ::1 on loopback (not Docker's embedded resolver on
//     127.0.0.11), traffic to and from Allow, and neighbour discovery for
//     Allow and Neighbours;
//   - per device, a netdev table with an egress hook that drops every frame
//     but IPv4/IPv6 to Allow, ARP for Allow and Neighbours, and neighbour
//     discovery for them, so that raw Ethernet sends (AF_PACKET: ARP ping,
//     --send-eth, NSE ethernet sends) cannot pass either; and that checks
//     each frame's Ethernet destination against its IP destination (see
//     Links and Closed).
//
// A neighbour solicitation leaves only as the kernel and nmap send one:
// no extension header, hop limit 255, code 0, one source link-layer
// address option (the device's own address, when MACs knows it), 32 bytes
// in all, a target in Allow or Neighbours, and an IPv6 destination that is
// the solicited-node multicast address of an allowed address or a
// neighbour (at the egress hook, framed to that group's Ethernet address)
// or a neighbour itself, from one of Own. Advertisements go only to Allow
// and Neighbours, shaped the same way, naming one of Own. Everything else to the solicited-node groups, and
// every other multicast, is dropped. No frame of neighbour discovery is
// longer than its IPv6 packet (meta length), so no trailer carries bytes.
//
// ARP leaves only as the kernel and nmap send it: from the device's own
// Ethernet address (frame and sender hardware address), from one of Own4
// (the own4 set of each netdev table), about an address in Allow or
// Neighbours, 42 bytes or 60 with zero padding; a request with a zero
// target hardware address, a reply naming the target's pinned Ethernet
// address (or, not pinned, one that is neither pinned nor a group's).
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
	var p6 []netip.Prefix
	for _, p := range r.Allow {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())).Masked()
		if !p.IsValid() {
			return "", fmt.Errorf("allowed prefix %s is not valid", p)
		}
		if p.Addr().Is4() {
			a4 = append(a4, p.String())
		} else {
			a6, p6 = append(a6, p.String()), append(p6, p)
		}
	}
	links := map[netip.Addr]net.HardwareAddr{}
	for a, mac := range r.Links {
		if !a.IsValid() || !UnicastMAC(mac) {
			return "", fmt.Errorf("link %s → %s: not an address and a unicast Ethernet address", a, mac)
		}
		links[a.Unmap()] = mac
	}
	n4, n6 := append([]string(nil), a4...), append([]string(nil), a6...)
	nd6 := append([]netip.Prefix(nil), p6...)
	var gw6 []string // the neighbours' own IPv6 addresses: unicast solicitations
	gwmac := map[string]bool{}
	for _, n := range r.Neighbours {
		n = n.Unmap()
		if n.Is4() {
			n4 = append(n4, n.String())
		} else if n.IsValid() {
			n6 = append(n6, n.String())
			gw6 = append(gw6, n.String())
			nd6 = append(nd6, netip.PrefixFrom(n, 128))
		}
		if mac, ok := links[n]; ok {
			gwmac[mac.String()] = true
		}
	}
	// Pinned addresses, their pairs, and every Ethernet address pinned.
	var pin4, pin6, pinned4, pinned6 []string
	known := map[string]bool{}
	for _, a := range slices.SortedFunc(maps.Keys(links), netip.Addr.Compare) {
		mac := links[a]
		known[mac.String()] = true
		if a.Is4() {
			pin4, pinned4 = append(pin4, a.String()+" . "+mac.String()), append(pinned4, a.String())
		} else {
			pin6, pinned6 = append(pin6, a.String()+" . "+mac.String()), append(pinned6, a.String())
		}
	}
	var own4 []string
	for _, a := range r.Own4 {
		if a = a.Unmap(); !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return "", fmt.Errorf("own IPv4 address %s: not a unicast IPv4 address", a)
		}
		if !slices.Contains(own4, a.String()) {
			own4 = append(own4, a.String())
		}
	}
	var own []netip.Addr
	var ownS []string
	for _, a := range r.Own {
		if a = a.Unmap(); a.Is6() && !slices.Contains(own, a) {
			own, ownS = append(own, a), append(ownS, a.String())
		}
	}
	sn, snl2 := solicitedNodes(nd6)
	ndd6 := append(gw6, sn...)

	var b strings.Builder
	ipSets := func() {
		set(&b, "allow4", "ipv4_addr", a4)
		set(&b, "allow6", "ipv6_addr", a6)
		set(&b, "nbr4", "ipv4_addr", n4)
		set(&b, "nbr6", "ipv6_addr", n6)
		set(&b, "ndd6", "ipv6_addr", ndd6)
		exact(&b, "own6", "ipv6_addr", ownS)
	}
	solicit := ndTargets(nd6)
	// ipOut is what may leave at the IP level, in both the inet output
	// chain and each device's egress chain: IP to the targets, then
	// neighbour discovery for targets and gateways.
	ipOut := func() {
		b.WriteString("\t\tip daddr @allow4 accept\n\t\tip6 daddr @allow6 accept\n")
		b.WriteString("\t\ticmpv6 type nd-neighbor-solicit jump nd_solicit\n")
		b.WriteString("\t\ticmpv6 type nd-neighbor-advert jump nd_advert\n")
		b.WriteString("\t}\n")
	}
	// ndChains shape the neighbour discovery that may leave; mac is the
	// device's own address (nil: unknown, or the inet table).
	// l2 is the length of the link-layer header meta length counts (14 at
	// the egress hook, 0 in the inet table): a frame is no longer than
	// its IPv6 packet, so no trailer can carry bytes.
	ndChains := func(mac net.HardwareAddr, l2 int) {
		shape := "\t\tip6 nexthdr != 58 drop\n\t\tip6 hoplimit != 255 drop\n\t\ticmpv6 code != 0 drop\n"
		b.WriteString("\tchain nd_solicit {\n" + shape)
		fmt.Fprintf(&b, "\t\tip6 length != 32 drop\n\t\tmeta length != %d drop\n\t\t@th,32,32 != 0 drop\n\t\t@th,192,16 != 0x0101 drop\n", l2+72)
		if mac != nil {
			fmt.Fprintf(&b, "\t\t@th,208,48 != 0x%s drop\n", hex.EncodeToString(mac))
		}
		b.WriteString("\t\tip6 daddr != @ndd6 drop\n")
		if len(own) > 0 {
			b.WriteString("\t\tip6 saddr != @own6 drop\n")
		}
		for _, m := range solicit {
			fmt.Fprintf(&b, "\t\t%s accept\n", m)
		}
		b.WriteString("\t\tdrop\n\t}\n")
		b.WriteString("\tchain nd_advert {\n" + shape)
		b.WriteString("\t\t@th,35,29 != 0 drop\n\t\tip6 daddr != @nbr6 drop\n")
		tlla := fmt.Sprintf("ip6 length 32 meta length %d @th,192,16 0x0201", l2+72)
		bare := fmt.Sprintf("ip6 length 24 meta length %d", l2+64)
		if mac != nil {
			tlla += " @th,208,48 0x" + hex.EncodeToString(mac)
		}
		if len(own) == 0 {
			b.WriteString("\t\t" + bare + " accept\n\t\t" + tlla + " accept\n")
		} else {
			// An advertisement names one of the namespace's own
			// addresses, from one of them.
			b.WriteString("\t\tip6 saddr != @own6 drop\n")
			for _, o := range own {
				t := fmt.Sprintf("@th,64,128 0x%x", o.AsSlice())
				b.WriteString("\t\t" + bare + " " + t + " accept\n\t\t" + tlla + " " + t + " accept\n")
			}
		}
		b.WriteString("\t\tdrop\n\t}\n")
	}

	fmt.Fprintf(&b, "table inet %s {\n", TableInet)
	ipSets()
	ndChains(nil, 0)
	b.WriteString("\tchain output {\n\t\ttype filter hook output priority 0; policy drop;\n")
	// Loopback only to itself: Docker's embedded resolver listens on
	// 127.0.0.11 in the namespace and would forward names out.
	b.WriteString("\t\toifname \"lo\" ip daddr 127.0.0.1 accept\n\t\toifname \"lo\" ip6 daddr ::1 accept\n")
	ipOut()
	b.WriteString("\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n")
	b.WriteString("\t\tiifname \"lo\" ip saddr 127.0.0.1 accept\n\t\tiifname \"lo\" ip6 saddr ::1 accept\n")
	b.WriteString("\t\tip saddr @allow4 accept\n\t\tip6 saddr @allow6 accept\n")
	b.WriteString("\t\tip6 saddr @nbr6 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n")
	b.WriteString("\t}\n}\n")

	// unknown ends an Ethernet-destination chain: a frame for an address
	// that is not pinned may not go to an address that is, nor to a group
	// address, nor (Closed) anywhere else.
	unknown := "\t\tether daddr @known drop\n\t\t@ll,7,1 1 drop\n"
	if r.Closed {
		unknown += "\t\tdrop\n"
	}
	for i, dev := range r.Devices {
		if !deviceName.MatchString(dev) || dev == "lo" {
			return "", fmt.Errorf("interface name %q: not one to fence", dev)
		}
		var mac net.HardwareAddr
		if i < len(r.MACs) && len(r.MACs[i]) > 0 {
			if !UnicastMAC(r.MACs[i]) {
				return "", fmt.Errorf("interface %s: own address %s is not a unicast Ethernet address", dev, r.MACs[i])
			}
			mac = r.MACs[i]
		}
		fmt.Fprintf(&b, "table netdev %s%d {\n", TablePrefix, i)
		ipSets()
		set(&b, "pinned4", "ipv4_addr", pinned4)
		set(&b, "pinned6", "ipv6_addr", pinned6)
		exact(&b, "pin4", "ipv4_addr . ether_addr", pin4)
		exact(&b, "pin6", "ipv6_addr . ether_addr", pin6)
		exact(&b, "known", "ether_addr", slices.Sorted(maps.Keys(known)))
		exact(&b, "gwmac", "ether_addr", slices.Sorted(maps.Keys(gwmac)))
		exact(&b, "own4", "ipv4_addr", own4)
		// The solicited-node groups' pairs of IPv6 and Ethernet address.
		fmt.Fprintf(&b, "\tset snl2 {\n\t\ttype ipv6_addr . ether_addr; flags interval;\n")
		if len(snl2) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(snl2, ", "))
		}
		b.WriteString("\t}\n")
		ndChains(mac, 14)
		// Ethernet destinations: IPv4 and IPv6 return when the frame's
		// Ethernet destination fits its IP destination; ARP decides.
		b.WriteString("\tchain l2_4 {\n\t\tip daddr . ether daddr @pin4 return\n\t\tether daddr @gwmac return\n\t\tip daddr @pinned4 drop\n" + unknown + "\t}\n")
		b.WriteString("\tchain l2_6 {\n\t\tip6 daddr . ether daddr @snl2 return\n\t\tip6 daddr ff00::/8 drop\n")
		b.WriteString("\t\tip6 daddr . ether daddr @pin6 return\n\t\tether daddr @gwmac return\n\t\tip6 daddr @pinned6 drop\n" + unknown + "\t}\n")
		b.WriteString("\tchain arp_out {\n\t\tmeta protocol != arp drop\n\t\tarp htype != 1 drop\n\t\tarp ptype != 0x0800 drop\n\t\tarp hlen != 6 drop\n\t\tarp plen != 4 drop\n")
		b.WriteString("\t\tarp operation != { request, reply } drop\n")
		if mac != nil {
			fmt.Fprintf(&b, "\t\tarp saddr ether != %s drop\n", mac)
		}
		// From one of our own addresses, about a target or a gateway, and
		// nothing after the 28 bytes of ARP but the zero padding of a
		// minimum frame (42 bytes as the kernel and nmap send it, 60
		// padded).
		b.WriteString("\t\tarp saddr ip != @own4 drop\n\t\tarp daddr ip != @nbr4 drop\n")
		b.WriteString("\t\tmeta length != { 42, 60 } drop\n\t\tmeta length 60 @nh,224,72 != 0 drop\n\t\tmeta length 60 @nh,296,72 != 0 drop\n")
		// A request asks: its target hardware address is zero. A reply
		// names the target's pinned address, or (not pinned) an address
		// that is neither pinned to another nor a group's.
		b.WriteString("\t\tarp operation request arp daddr ether != 00:00:00:00:00:00 drop\n")
		b.WriteString("\t\tarp operation request ether daddr ff:ff:ff:ff:ff:ff accept\n")
		b.WriteString("\t\tarp operation reply arp daddr ip @pinned4 arp daddr ip . arp daddr ether != @pin4 drop\n")
		b.WriteString("\t\tarp operation reply arp daddr ip != @pinned4 arp daddr ether @known drop\n")
		b.WriteString("\t\tarp operation reply @nh,151,1 1 drop\n")
		b.WriteString("\t\tarp daddr ip . ether daddr @pin4 accept\n\t\tarp daddr ip @pinned4 drop\n" + unknown)
		if !r.Closed {
			b.WriteString("\t\taccept\n")
		}
		b.WriteString("\t}\n")
		// Each family's chain first checks that the frame's own type and
		// the type its sender declared (skb->protocol, which a packet
		// socket chooses, and which the ip, ip6 and arp expressions of a
		// netdev table depend on) agree: otherwise a frame of another
		// type could pass as IP, and negated matches would not apply.
		b.WriteString("\tchain out4 {\n\t\tmeta protocol != ip drop\n\t\tjump l2_4\n\t\tip daddr @allow4 accept\n\t\tdrop\n\t}\n")
		b.WriteString("\tchain out6 {\n\t\tmeta protocol != ip6 drop\n\t\tjump l2_6\n\t\tip6 daddr @allow6 accept\n")
		b.WriteString("\t\ticmpv6 type nd-neighbor-solicit jump nd_solicit\n\t\ticmpv6 type nd-neighbor-advert jump nd_advert\n\t\tdrop\n\t}\n")
		fmt.Fprintf(&b, "\tchain egress {\n\t\ttype filter hook egress device %q priority 0; policy drop;\n", dev)
		if mac != nil {
			// Every frame from the device's own address: another's
			// would move it in the bridge's forwarding table to us.
			fmt.Fprintf(&b, "\t\tether saddr != %s drop\n", mac)
		}
		b.WriteString("\t\tether type arp jump arp_out\n\t\tether type ip jump out4\n\t\tether type ip6 jump out6\n\t}\n")
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

// UnicastMAC says whether m is a 6-byte unicast Ethernet address other than
// all zeros.
func UnicastMAC(m net.HardwareAddr) bool {
	return len(m) == 6 && m[0]&1 == 0 && !bytes.Equal(m, make([]byte, 6))
}

// set writes a named interval set; an empty one gets no elements line.
func set(b *strings.Builder, name, typ string, elems []string) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s; flags interval;\n", name, typ)
	if len(elems) > 0 {
		fmt.Fprintf(b, "\t\tauto-merge\n\t\telements = { %s }\n", strings.Join(elems, ", "))
	}
	b.WriteString("\t}\n")
}

// exact writes a named set of single elements.
func exact(b *strings.Builder, name, typ string, elems []string) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s;\n", name, typ)
	if len(elems) > 0 {
		fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
	}
	b.WriteString("\t}\n")
}

// solicitedNodes returns the solicited-node multicast addresses
// (ff02::1:ff00:0/104 plus an address's low 24 bits) of every address in
// prefixes, as prefixes, and the same as nft pairs of IPv6 group and its
// Ethernet group address (33:33 and the group's low 32 bits). A prefix of
// /104 or longer maps to the prefix of its low 24 bits; a shorter one
// reaches every solicited-node address, ff02::1:ff00:0/104 (the check of
// the solicitation's target still applies).
func solicitedNodes(prefixes []netip.Prefix) (addrs, pairs []string) {
	var sn []netip.Prefix
	for _, p := range prefixes {
		a := p.Masked().Addr().As16()
		g := [16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff}
		copy(g[13:], a[13:])
		sn = append(sn, netip.PrefixFrom(netip.AddrFrom16(g), max(p.Bits(), 104)).Masked())
	}
	// Keep the widest of overlapping prefixes (prefixes overlap only by
	// containment): an interval set refuses overlaps.
	slices.SortFunc(sn, func(x, y netip.Prefix) int {
		if x.Bits() != y.Bits() {
			return x.Bits() - y.Bits()
		}
		return x.Addr().Compare(y.Addr())
	})
	var keep []netip.Prefix
	for _, p := range sn {
		if !slices.ContainsFunc(keep, func(k netip.Prefix) bool { return k.Contains(p.Addr()) }) {
			keep = append(keep, p)
		}
	}
	for _, p := range keep {
		g := p.Addr().As16()
		lo := net.HardwareAddr{0x33, 0x33, g[12], g[13], g[14], g[15]}
		hi := slices.Clone(lo)
		for bit := p.Bits(); bit < 128; bit++ {
			hi[2+(bit-96)/8] |= 0x80 >> ((bit - 96) % 8)
		}
		addrs = append(addrs, p.String())
		l2 := lo.String()
		if p.Bits() < 128 {
			l2 += "-" + hi.String()
		}
		pairs = append(pairs, p.String()+" . "+l2)
	}
	return addrs, pairs
}

// ndTargets matches the target address of an ICMPv6 neighbour
// solicitation (bits 64.. of the ICMPv6 header) against each prefix:
// nftables 1.0.6 has no expression for it, so the raw payload's first
// Bits() bits are compared with the prefix's.
func ndTargets(prefixes []netip.Prefix) []string {
	out := make([]string, 0, len(prefixes))
	seen := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		p = p.Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		if p.Bits() == 0 {
			out = append(out, "meta l4proto 58")
			continue
		}
		a := p.Addr().As16()
		v := new(big.Int).SetBytes(a[:])
		v.Rsh(v, uint(128-p.Bits()))
		out = append(out, fmt.Sprintf("@th,64,%d 0x%s", p.Bits(), v.Text(16)))
	}
	return out
}

// Error says that a scan's fence could not be installed; nmap was not
// started.
type Error struct {
	Err error
}

func (e *Error) Error() string {
	return "the network fence could not be installed, so nmap was not started: " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// HostRuleset renders the host fence's table for the cgroup at path
// (relative to the cgroup mount root, as nft resolves it; level is its
// depth in the v2 hierarchy): sockets of that tree may send only to
// loopback. It is preceded by the table's deletion, so that `nft -f -`
// replaces it in one transaction.
func HostRuleset(path string, level int) (string, error) {
	if path == "" || strings.ContainsAny(path, "\"\n\\") || level < 1 {
		return "", fmt.Errorf("cgroup path %q (level %d): not one the host fence can name", path, level)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "add table inet %s\ndelete table inet %s\n", TableHost, TableHost)
	fmt.Fprintf(&b, "table inet %s {\n", TableHost)
	b.WriteString("\tchain output {\n\t\ttype filter hook output priority -10; policy accept;\n")
	fmt.Fprintf(&b, "\t\tsocket cgroupv2 level %d %q jump scans\n\t}\n", level, path)
	b.WriteString("\tchain scans {\n")
	b.WriteString("\t\toifname != \"lo\" drop\n")
	b.WriteString("\t\tmeta nfproto ipv4 ip daddr != 127.0.0.0/8 drop\n")
	b.WriteString("\t\tmeta nfproto ipv6 ip6 daddr != ::1 drop\n")
	b.WriteString("\t}\n}\n")
	return b.String(), nil
}
