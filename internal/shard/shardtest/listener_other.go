//go:build !linux

package shardtest

import (
	"errors"
	"net/netip"
	"time"
)

// Listener answers for an address after a delay (Linux only).
type Listener struct{}

// Start is Linux only.
func Start(pid int, ifname string, addr netip.Prefix, port int, delay time.Duration) (*Listener, error) {
	return nil, errors.New("shardtest: slow listeners need Linux (raw sockets, network namespaces)")
}

// Stop does nothing.
func (s *Listener) Stop() {}

// Stats is what a Listener saw and answered.
type Stats struct{ Frames, ARPs, SYNs, Sent int64 }

// Stats returns zero counts.
func (s *Listener) Stats() Stats { return Stats{} }

// Add returns the sum of st and o.
func (st Stats) Add(o Stats) Stats {
	return Stats{st.Frames + o.Frames, st.ARPs + o.ARPs, st.SYNs + o.SYNs, st.Sent + o.Sent}
}
