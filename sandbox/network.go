package sandbox

import (
	"fmt"
	"net/netip"
	"strings"
)

// Values of Options.Network. Any other value names a Docker network that
// fenced scans use instead of the managed one.
const (
	// Fenced (the default): every scan with a non-loopback target gets its
	// own network namespace on a Docker network (FenceNetwork, or the
	// managed one) whose allowlist only lets it reach its vetted targets.
	Fenced = "fenced"
	// Host runs every scan on the host's network, not fenced: an explicit
	// opt-out (for example ARP discovery on the host's own LAN).
	Host = "host"
	// None runs scans with no network at all.
	None = "none"
	// ManagedNetwork is the bridge network nmap-mcp creates, labels and
	// reuses for fenced scans when no other network is configured.
	ManagedNetwork = "nmap-mcp"
)

// Fence confines one scan container's network namespace: traffic may go
// only to and come only from Allow.
type Fence struct {
	// Network is the Docker network the namespace is attached to.
	Network string
	// Allow are the vetted target addresses (after CIDR expansion and
	// name pinning; never hostnames).
	Allow []netip.Prefix
}

// Addresses is how many addresses the fence lets the scan reach.
func (f *Fence) Addresses() uint64 {
	var n uint64
	for _, p := range f.Allow {
		bits := p.Addr().BitLen() - p.Bits()
		if bits >= 64 {
			return ^uint64(0)
		}
		n += 1 << bits
	}
	return n
}

// Placement is where one scan's container sits on the network.
type Placement struct {
	// Network is "host", "none" or the Docker network of the fence.
	Network string
	// Fence is the scan's allowlist; nil when the scan is not fenced.
	Fence *Fence
	// Unfenced says why a scan is not fenced ("" when it is).
	Unfenced string
	// HostFence: the scan runs on the host's network (its targets are all
	// on loopback) inside the host fence, which lets its packets reach
	// loopback only (see package executor/fencer, HostFence). A runner that cannot
	// install that fence must refuse the spec.
	HostFence bool
}

// MixedTargetsError refuses a fenced scan that mixes loopback targets,
// which only the host network reaches, with others, which must be fenced.
type MixedTargetsError struct {
	Loopback, Other string
}

func (e *MixedTargetsError) Error() string {
	return fmt.Sprintf("mixes loopback targets (%s) with other targets (%s): loopback is only reachable from the host network, "+
		"which cannot be fenced, and the other targets must be; split them into two scans", e.Loopback, e.Other)
}

// Place decides where a scan of targets runs under opts: on the host
// network not fenced (sandbox.network: host, the explicit opt-out), on
// the host network fenced to loopback (every target on loopback), with no
// network, or fenced on the configured network. A fenced deployment
// refuses a scan that mixes loopback and other targets with a
// *MixedTargetsError.
func Place(opts Options, targets []netip.Prefix) (Placement, error) {
	switch network := opts.network(); network {
	case Host:
		return Placement{Network: Host, Unfenced: "host network (sandbox.network: host)"}, nil
	case None:
		return Placement{Network: None, Unfenced: "no network"}, nil
	default:
		var loop, other []string
		for _, p := range targets {
			text := p.String()
			if p.IsSingleIP() {
				text = p.Addr().String()
			}
			if p.Addr().IsLoopback() {
				loop = append(loop, text)
			} else {
				other = append(other, text)
			}
		}
		switch {
		case len(other) == 0 && len(loop) > 0:
			return Placement{Network: Host, HostFence: true}, nil
		case len(loop) > 0:
			return Placement{}, &MixedTargetsError{Loopback: clipList(loop), Other: clipList(other)}
		case len(other) == 0:
			return Placement{}, fmt.Errorf("a fenced scan needs at least one target address")
		}
		allow := make([]netip.Prefix, len(targets))
		for i, p := range targets {
			allow[i] = p.Masked()
		}
		return Placement{Network: network, Fence: &Fence{Network: network, Allow: allow}}, nil
	}
}

// network is the network scans are placed on: host, none, or the name
// of the Docker network of fenced scans.
func (o Options) network() string {
	switch o.Network {
	case Host, None:
		return o.Network
	case "", Fenced:
		if o.FenceNetwork != "" {
			return o.FenceNetwork
		}
		return ManagedNetwork
	default:
		return o.Network
	}
}

// FencedNetwork is the Docker network fenced scans use under opts, or ""
// when scans are never fenced (host or none).
func (o Options) FencedNetwork() string {
	if n := o.network(); n != Host && n != None {
		return n
	}
	return ""
}

func clipList(s []string) string {
	if len(s) > 3 {
		return strings.Join(s[:3], " ") + fmt.Sprintf(" and %d more", len(s)-3)
	}
	return strings.Join(s, " ")
}
