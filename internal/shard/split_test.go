package shard

import (
	"net/netip"
	"slices"
	"testing"
)

func prefixes(t *testing.T, s ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

// every address of blocks, in order.
func expand(blocks []netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for _, p := range blocks {
		for a := p.Masked().Addr(); p.Contains(a); a = a.Next() {
			out = append(out, a)
		}
	}
	return out
}

// Shards are balanced (sizes differ by at most one), contiguous, cover
// exactly the input, and work for IPv4 and IPv6. (Unit test.)
func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in []string
		n  int
	}{
		{[]string{"10.0.0.0/24"}, 4},
		{[]string{"10.0.0.0/24"}, 3},
		{[]string{"10.0.0.0/30", "10.0.1.7/32", "10.0.2.0/29"}, 4},
		{[]string{"fd00::/120", "127.0.0.1/32"}, 8},
		{[]string{"10.0.0.0/16"}, 7},
		{[]string{"10.0.0.1/32", "10.0.0.2/32"}, 8},
	} {
		in := prefixes(t, tc.in...)
		shards, err := Split(in, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		var all []netip.Addr
		min, max := ^uint64(0), uint64(0)
		for _, s := range shards {
			c := Count(s)
			min, max = minU(min, c), maxU(max, c)
			all = append(all, expand(s)...)
		}
		if !slices.Equal(all, expand(in)) {
			t.Errorf("%v into %d: the shards do not cover the input exactly", tc.in, tc.n)
		}
		if max-min > 1 || len(shards) > tc.n {
			t.Errorf("%v into %d: %d shards, sizes %d..%d", tc.in, tc.n, len(shards), min, max)
		}
	}
	if _, err := Split(prefixes(t, "fd00::/48"), 2); err == nil {
		t.Error("a /48 was counted")
	}
	if _, err := Split(prefixes(t, "10.0.0.0/8"), 0); err == nil {
		t.Error("0 shards accepted")
	}
}

func minU(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}
