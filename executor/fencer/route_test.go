package fencer

import (
	"strings"
	"testing"
)

// A fencer's default routes name the gateways Docker does not list
// (/proc/net/route and ipv6_route lines as this engine's containers show
// them).
func TestDefaultRoute(t *testing.T) {
	for line, want := range map[string]string{
		"route4 eth0	00000000	014D1DAC	0003	0	0	0	00000000	0	0	0":                                                                                                      "172.29.77.1",
		"route4 eth0	004D1DAC	00000000	0001	0	0	0	00FFFFFF	0	0	0":                                                                                                      "",
		"route4 Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT":                                                                              "",
		"route6 00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000077000000000000000000000001 00000400 00000001 00000000 00000003     eth0": "fd00:77::1",
		"route6 fd000077000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0": "",
		"route6 00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo": "",
	} {
		got, ok := defaultRoute(strings.Fields(line))
		if (want == "") == ok || (ok && got.String() != want) {
			t.Errorf("%q: got %v %v, want %q", line, got, ok, want)
		}
	}
}
