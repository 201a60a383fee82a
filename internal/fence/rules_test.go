package fence

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

// The ruleset drops by default in every chain, allows IP only to the
// targets, resolution only of targets and gateways, and one egress hook
// per interface. (Unit test: the same text is installed by the real
// fencer in the engine tests.)
func TestRuleset(t *testing.T) {
	r := Rules{
		Allow:      []netip.Prefix{netip.MustParsePrefix("172.18.0.2/32"), netip.MustParsePrefix("10.0.0.0/30"), netip.MustParsePrefix("fd00:1::5/128"), netip.MustParsePrefix("2001:db8::/33")},
		Neighbours: []netip.Addr{netip.MustParseAddr("172.18.0.1"), netip.MustParseAddr("fd00:1::1")},
		Devices:    []string{"eth0", "eth1"},
	}
	s, err := r.Ruleset()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"table inet nmap_mcp {",
		"elements = { 172.18.0.2/32, 10.0.0.0/30 }",
		"elements = { fd00:1::5/128, 2001:db8::/33 }",
		"elements = { 172.18.0.2/32, 10.0.0.0/30, 172.18.0.1 }",
		"type filter hook output priority 0; policy drop;",
		"type filter hook input priority 0; policy drop;",
		`oifname "lo" ip daddr 127.0.0.1 accept`,
		"ip daddr @allow4 accept",
		"ip saddr @allow4 accept",
		"table netdev nmap_mcp_dev0 {",
		`type filter hook egress device "eth0" priority 0; policy drop;`,
		`type filter hook egress device "eth1" priority 0; policy drop;`,
		"arp daddr ip != @nbr4 drop",
		"arp operation request ether daddr ff:ff:ff:ff:ff:ff accept",
		// A neighbour solicitation's target: fd00:1::5 in full, 2001:db8::/33 as its first 33 bits.
		"@th,64,128 0xfd000001000000000000000000000005 accept",
		"@th,64,33 0x40021b70 accept",
		"@th,64,128 0xfd000001000000000000000000000001 accept",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "policy drop;") != 4 || strings.Contains(s, "policy accept") || strings.Contains(s, "\treturn") {
		t.Errorf("every chain must drop by default:\n%s", s)
	}
	// The gateway is only resolved, never an IP destination.
	if strings.Contains(s, "ip daddr 172.18.0.1") || strings.Contains(s, `oifname "lo" accept`) {
		t.Errorf("gateway or all of loopback allowed:\n%s", s)
	}
}

func TestRulesetRefuses(t *testing.T) {
	ok := []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}
	for name, r := range map[string]Rules{
		"no targets":    {Devices: []string{"eth0"}},
		"no interfaces": {Allow: ok},
		"bad name":      {Allow: ok, Devices: []string{`eth0" accept; #`}},
		"loopback":      {Allow: ok, Devices: []string{"lo"}},
	} {
		if _, err := r.Ruleset(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// An IPv4 target given in its IPv4-mapped IPv6 form is fenced as IPv4.
func TestRulesetUnmaps(t *testing.T) {
	s, err := Rules{Allow: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/120")}, Devices: []string{"eth0"}}.Ruleset()
	if err != nil || !strings.Contains(s, "elements = { 10.0.0.0/24 }") {
		t.Fatalf("%v\n%s", err, s)
	}
}

// The allowlist replaces the fencer's closed tables in the same
// transaction: the deletions come first, then the new tables.
func TestReplacing(t *testing.T) {
	s, err := Rules{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}, Devices: []string{"eth0", "eth1"}}.Replacing()
	if err != nil {
		t.Fatal(err)
	}
	want := "delete table inet nmap_mcp\ndelete table netdev nmap_mcp_dev0\ndelete table netdev nmap_mcp_dev1\ntable inet nmap_mcp {"
	if !strings.HasPrefix(s, want) {
		t.Fatalf("starts %q", s[:min(len(s), 120)])
	}
}

// A neighbour solicitation leaves only for the solicited-node group of an
// allowed address or a gateway (or a gateway itself), framed to that
// group's Ethernet address, shaped as the kernel and nmap shape one: the
// rule that matched only its target let one go to any address with any
// options (issue 27.1). (Unit test; TestFenceNeighbourSolicitations
// installs it and sends them.)
func TestRulesetSolicitations(t *testing.T) {
	r := Rules{
		Allow: []netip.Prefix{
			netip.MustParsePrefix("fd00:1::5/128"), netip.MustParsePrefix("fd00:2::1:200/120"),
			netip.MustParsePrefix("2001:db8::/33"), netip.MustParsePrefix("fd00:1::abcd:5/128"),
		},
		Neighbours: []netip.Addr{netip.MustParseAddr("fd00:1::1")},
		Devices:    []string{"eth0"},
		MACs:       []net.HardwareAddr{mustMAC(t, "02:42:ac:12:00:07")},
		Own:        []netip.Addr{netip.MustParseAddr("fd00:1::7"), netip.MustParseAddr("fe80::42:acff:fe12:7")},
	}
	s, err := r.Ruleset()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"elements = { fd00:1::7, fe80::42:acff:fe12:7 }",
		"ip6 saddr != @own6 drop",
		"ip6 length 24 meta length 78 @th,64,128 0xfd000001000000000000000000000007 accept",
		// The /33 reaches every solicited-node group: the other groups are in it.
		"elements = { fd00:1::1, ff02::1:ff00:0/104 }",
		"elements = { ff02::1:ff00:0/104 . 33:33:ff:00:00:00-33:33:ff:ff:ff:ff }",
		"ip6 nexthdr != 58 drop",
		"ip6 hoplimit != 255 drop",
		"ip6 length != 32 drop",
		"@th,192,16 != 0x0101 drop",
		"@th,208,48 != 0x0242ac120007 drop",
		"ip6 daddr != @ndd6 drop",
		"ip6 daddr . ether daddr @snl2 return",
		"ip6 daddr ff00::/8 drop",
		"icmpv6 type nd-neighbor-solicit jump nd_solicit",
		"ip6 length 32 meta length 86 @th,192,16 0x0201 @th,208,48 0x0242ac120007 @th,64,128 0xfe800000000000000042acfffe120007 accept",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "icmpv6 type nd-neighbor-solicit @th") || strings.Contains(s, "daddr @nbr6 icmpv6 type") {
		t.Errorf("a solicitation is accepted by its target alone:\n%s", s)
	}
	// Without the /33: the groups of each address, a /120 as the
	// range of its low 24 bits.
	r.Allow = r.Allow[:2]
	r.Allow = append(r.Allow, netip.MustParsePrefix("fd00:1::abcd:5/128"))
	s, err = r.Ruleset()
	if err != nil {
		t.Fatal(err)
	}
	want := "elements = { ff02::1:ff01:200/120 . 33:33:ff:01:02:00-33:33:ff:01:02:ff, ff02::1:ff00:1/128 . 33:33:ff:00:00:01, ff02::1:ff00:5/128 . 33:33:ff:00:00:05, ff02::1:ffcd:5/128 . 33:33:ff:cd:00:05 }"
	if !strings.Contains(s, want) {
		t.Errorf("ruleset lacks %q:\n%s", want, s)
	}
}

// IP frames and ARP leave only for the Ethernet address their destination
// is pinned to, or a pinned gateway's; a frame for an address that is not
// pinned never goes to one that is, nor to a group address; on a closed
// segment, nowhere else (issue 20.7). (Unit test; TestFenceEthernetDestination
// installs it against a target that lies about its address.)
func TestRulesetEthernet(t *testing.T) {
	r := Rules{
		Allow:      []netip.Prefix{netip.MustParsePrefix("172.18.0.2/32"), netip.MustParsePrefix("10.9.0.0/24")},
		Neighbours: []netip.Addr{netip.MustParseAddr("172.18.0.1")},
		Devices:    []string{"eth0"},
		MACs:       []net.HardwareAddr{mustMAC(t, "02:42:ac:12:00:07")},
		Links: map[netip.Addr]net.HardwareAddr{
			netip.MustParseAddr("172.18.0.2"): mustMAC(t, "02:42:ac:12:00:02"),
			netip.MustParseAddr("172.18.0.3"): mustMAC(t, "02:42:ac:12:00:03"),
			netip.MustParseAddr("172.18.0.1"): mustMAC(t, "aa:bb:cc:00:00:01"),
		},
	}
	s, err := r.Ruleset()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"elements = { 172.18.0.1 . aa:bb:cc:00:00:01, 172.18.0.2 . 02:42:ac:12:00:02, 172.18.0.3 . 02:42:ac:12:00:03 }",
		"elements = { 02:42:ac:12:00:02, 02:42:ac:12:00:03, aa:bb:cc:00:00:01 }",
		"ip daddr . ether daddr @pin4 return\n\t\tether daddr @gwmac return\n\t\tip daddr @pinned4 drop\n\t\tether daddr @known drop\n\t\t@ll,7,1 1 drop\n\t}",
		"arp saddr ether != 02:42:ac:12:00:07 drop",
		"arp daddr ip . ether daddr @pin4 accept",
		"ether type ip jump out4",
		"meta protocol != ip drop\n\t\tjump l2_4\n",
		"meta protocol != arp drop",
		"ether type arp jump arp_out",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, s)
		}
	}
	r.Closed = true
	if s, _ = r.Ruleset(); !strings.Contains(s, "@ll,7,1 1 drop\n\t\tdrop\n\t}") {
		t.Errorf("a closed segment lets frames go to unknown addresses:\n%s", s)
	}
	r.Links[netip.MustParseAddr("172.18.0.9")] = mustMAC(t, "ff:ff:ff:ff:ff:ff")
	if _, err := r.Ruleset(); err == nil {
		t.Error("a broadcast address was pinned")
	}
}

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ARP leaves only from the namespace's own addresses, asking with a zero
// target hardware address or answering with the target's pinned one, and
// neither ARP nor neighbour discovery carries bytes after its packet
// (issue F2: arp_out checked the sender hardware address and the target
// address only; ip6 length does not see a frame's trailer). (Unit test;
// TestFenceShapesARPAndTrailers sends each lie from a fenced namespace.)
func TestRulesetShapesARP(t *testing.T) {
	r := Rules{
		Allow:      []netip.Prefix{netip.MustParsePrefix("172.18.0.2/32"), netip.MustParsePrefix("fd00:1::5/128")},
		Neighbours: []netip.Addr{netip.MustParseAddr("172.18.0.1")},
		Devices:    []string{"eth0"},
		MACs:       []net.HardwareAddr{mustMAC(t, "02:42:ac:12:00:07")},
		Own:        []netip.Addr{netip.MustParseAddr("fd00:1::7")},
		Own4:       []netip.Addr{netip.MustParseAddr("172.18.0.7"), netip.MustParseAddr("::ffff:172.18.0.7")},
		Links:      map[netip.Addr]net.HardwareAddr{netip.MustParseAddr("172.18.0.2"): mustMAC(t, "02:42:ac:12:00:02")},
	}
	s, err := r.Ruleset()
	if err != nil {
		t.Fatal(err)
	}
	arp := s[strings.Index(s, "chain arp_out {"):]
	arp = arp[:strings.Index(arp, "\t}\n")]
	for _, want := range []string{
		"set own4 {\n\t\ttype ipv4_addr;\n\t\telements = { 172.18.0.7 }\n\t}",
		"arp saddr ether != 02:42:ac:12:00:07 drop\n\t\tarp saddr ip != @own4 drop\n\t\tarp daddr ip != @nbr4 drop\n" +
			"\t\tmeta length != { 42, 60 } drop\n\t\tmeta length 60 @nh,224,72 != 0 drop\n\t\tmeta length 60 @nh,296,72 != 0 drop\n" +
			"\t\tarp operation request arp daddr ether != 00:00:00:00:00:00 drop\n\t\tarp operation request ether daddr ff:ff:ff:ff:ff:ff accept\n",
		"arp operation reply arp daddr ip @pinned4 arp daddr ip . arp daddr ether != @pin4 drop",
		"arp operation reply arp daddr ip != @pinned4 arp daddr ether @known drop",
		"arp operation reply @nh,151,1 1 drop",
		// Every frame, not only ARP, from the device's own address.
		"policy drop;\n\t\tether saddr != 02:42:ac:12:00:07 drop\n\t\tether type arp jump arp_out",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, arp)
		}
	}
	// The broadcast request is accepted only after every check of its
	// sender, its length and its target hardware address.
	if i, j := strings.Index(arp, "ether daddr ff:ff:ff:ff:ff:ff accept"), strings.Index(arp, "arp daddr ether != 00:00:00:00:00:00 drop"); i < 0 || j < 0 || i < j || strings.Index(arp, "@own4") > i || strings.Index(arp, "meta length") > i {
		t.Errorf("a broadcast request is accepted before it is shaped:\n%s", arp)
	}
	// Neighbour discovery: 14 bytes of Ethernet header at the egress
	// hook, none in the inet table.
	inet, dev := s[:strings.Index(s, "table netdev")], s[strings.Index(s, "table netdev"):]
	for _, c := range []struct{ part, want string }{
		{inet, "ip6 length != 32 drop\n\t\tmeta length != 72 drop"},
		{inet, "ip6 length 24 meta length 64 @th,64,128 0xfd000001000000000000000000000007 accept"},
		{inet, "ip6 length 32 meta length 72 @th,192,16 0x0201 @th,64,128"},
		{dev, "ip6 length != 32 drop\n\t\tmeta length != 86 drop"},
		{dev, "ip6 length 24 meta length 78 @th,64,128 0xfd000001000000000000000000000007 accept"},
		{dev, "ip6 length 32 meta length 86 @th,192,16 0x0201 @th,208,48 0x0242ac120007 @th,64,128"},
	} {
		if !strings.Contains(c.part, c.want) {
			t.Errorf("ruleset lacks %q:\n%s", c.want, c.part)
		}
	}
	if strings.Contains(s, "ip6 length 24 accept") || strings.Contains(s, "ip6 length 24 @th") {
		t.Errorf("an advertisement's length is not bounded:\n%s", s)
	}
	// No own address known: no ARP leaves (the set is empty).
	r.Own4 = nil
	if s, _ = r.Ruleset(); !strings.Contains(s, "set own4 {\n\t\ttype ipv4_addr;\n\t}") || !strings.Contains(s, "arp saddr ip != @own4 drop") {
		t.Errorf("without own addresses ARP may leave:\n%s", s)
	}
	for _, bad := range []string{"fd00:1::7", "0.0.0.0", "224.0.0.1", "255.255.255.255"} {
		r.Own4 = []netip.Addr{netip.MustParseAddr(bad)}
		if _, err := r.Ruleset(); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("own IPv4 address %s: %v", bad, err)
		}
	}
}
