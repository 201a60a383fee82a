// Package shard plans how one large scan is split and merged: Config.Plan
// decides whether a scan's targets are split and into which balanced,
// contiguous address blocks (Split), one per worker (a container on
// Docker, a Job on Kubernetes); Stream merges the workers' nmap XML live
// into one document, as if one nmap had run: hosts in the targets' order,
// host counts summed, progress the mean over shards, the run's times
// spanning every shard, and a shard that did not finish named in the
// run's error message with its finished hosts kept. It runs nothing: the
// scans service runs the shards through its runner (internal/scans,
// shards.go).
package shard

import (
	"errors"
	"fmt"
	"net/netip"
)

// maxHostBits bounds the prefixes Split can count: a block of more than
// 2^62 addresses is not one any scan policy admits.
const maxHostBits = 62

// Split divides the addresses of prefixes, in order, into at most n
// contiguous shards of nearly equal size (they differ by at most one
// address), each a list of CIDR blocks. Fewer than n shards come back when
// there are fewer addresses than n. The blocks of all shards together are
// exactly the input's addresses.
func Split(prefixes []netip.Prefix, n int) ([][]netip.Prefix, error) {
	if n < 1 {
		return nil, fmt.Errorf("shards %d: must be at least 1", n)
	}
	var total uint64
	for _, p := range prefixes {
		size, err := Size(p)
		if err != nil {
			return nil, err
		}
		if total+size < total {
			return nil, fmt.Errorf("prefixes: more than 2^64 addresses in all; too many to split")
		}
		total += size
	}
	if total == 0 {
		return nil, errors.New("no addresses to split")
	}
	if uint64(n) > total {
		n = int(total)
	}
	shards := make([][]netip.Prefix, n)
	// Shard i gets base addresses, and the first rem shards one more.
	base, rem := total/uint64(n), total%uint64(n)
	want := func(i int) uint64 {
		if uint64(i) < rem {
			return base + 1
		}
		return base
	}
	i, need := 0, want(0)
	queue := append([]netip.Prefix(nil), prefixes...)
	for len(queue) > 0 && i < n {
		p := queue[0].Masked()
		queue = queue[1:]
		size, _ := Size(p)
		switch {
		case size <= need:
			shards[i] = append(shards[i], p)
			need -= size
		default:
			// Too big for what this shard still needs: take its halves
			// in turn.
			lo, hi := halves(p)
			queue = append([]netip.Prefix{lo, hi}, queue...)
			continue
		}
		if need == 0 {
			i++
			if i < n {
				need = want(i)
			}
		}
	}
	return shards, nil
}

// Size is the number of addresses in p.
func Size(p netip.Prefix) (uint64, error) {
	if !p.IsValid() {
		return 0, fmt.Errorf("prefix %v: not a valid address block", p)
	}
	hostBits := p.Addr().BitLen() - p.Bits()
	if hostBits > maxHostBits {
		return 0, fmt.Errorf("prefix %v: %d host bits, more than the %d a shard plan counts", p, hostBits, maxHostBits)
	}
	return uint64(1) << hostBits, nil
}

// halves splits p (at least two addresses) into its lower and upper half.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	bits := p.Bits() + 1
	lo := netip.PrefixFrom(p.Addr(), bits)
	b := p.Addr().As16()
	off := 0
	if p.Addr().Is4() {
		off = 12
	}
	pos := off*8 + p.Bits() // the bit that tells the halves apart
	b[pos/8] |= 0x80 >> (pos % 8)
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return lo, netip.PrefixFrom(a, bits)
}

// Count is the number of addresses in blocks.
func Count(blocks []netip.Prefix) uint64 {
	var n uint64
	for _, p := range blocks {
		s, _ := Size(p)
		n += s
	}
	return n
}
