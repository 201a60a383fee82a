package inventory

import (
	"fmt"
	"net/netip"
	"strings"
)

// key is an address's 16-byte index key (IPv4 mapped into IPv6).
func key(a netip.Addr) []byte {
	b := a.Unmap().WithZone("").As16()
	if a.Unmap().Is4() {
		b = netip.AddrFrom4(a.Unmap().As4()).As16() // ::ffff:a.b.c.d
	}
	return b[:]
}

// parseHost reads a host's address as nmap wrote it.
func parseHost(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// Range reads an address or CIDR into the inclusive range of keys it
// covers. The empty string is no range (ok false, no error).
func Range(s string) (lo, hi []byte, ok bool, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil, false, nil
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, nil, false, fmt.Errorf("invalid address %q: must be an IP address (10.0.0.5, 2001:db8::1) or a CIDR (10.1.0.0/16)", s)
		}
		k := key(a)
		return k, k, true, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, nil, false, fmt.Errorf("invalid address %q: must be an IP address (10.0.0.5, 2001:db8::1) or a CIDR (10.1.0.0/16)", s)
	}
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	lo = key(p.Addr())
	hi = append([]byte(nil), lo...)
	for i := bits; i < 128; i++ {
		hi[i/8] |= 1 << (7 - uint(i%8))
	}
	return lo, hi, true, nil
}
