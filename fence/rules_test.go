package fence

import (
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
		"arp operation request arp daddr ip @nbr4 accept",
		"arp operation reply arp daddr ip @nbr4 accept",
		// A neighbour solicitation's target: fd00:1::5 in full, 2001:db8::/33 as its first 33 bits.
		"icmpv6 type nd-neighbor-solicit @th,64,128 0xfd000001000000000000000000000005 accept",
		"icmpv6 type nd-neighbor-solicit @th,64,33 0x40021b70 accept",
		"icmpv6 type nd-neighbor-solicit @th,64,128 0xfd000001000000000000000000000001 accept",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "policy drop;") != 4 || strings.Contains(s, "policy accept") {
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
