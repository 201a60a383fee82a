// Package fencer applies the network fence (the rulesets of package
// internal/fence) to scans on Docker, keeping each scan inside its
// approved targets at the kernel level: each fenced scan gets its own
// network namespace on a Docker network, and before nmap starts an
// nftables allowlist in that namespace lets traffic go only to, and come
// only from, the vetted target addresses — at the IP level (an inet table, output and input) and at the
// device level (a netdev egress hook on every interface, so raw Ethernet
// sends, ARP and IPv6 neighbour discovery are fenced too).
//
// # Neighbours and Ethernet addresses
//
// Neighbour solicitations leave only for the solicited-node groups of the
// targets and gateways (or a gateway itself), shaped as the kernel and
// nmap send them (see Rules.Ruleset). At the egress hook each IP frame's
// and ARP packet's Ethernet destination must fit its IP destination: the
// address Docker's endpoint list gives a target, the gateway's (the host's
// bridge, when this process sees it), and for an address nobody pinned
// any unicast address nobody pinned — or nothing, on a bridge whose
// gateway is pinned (Rules.Closed). The pins are read from the engine when
// each fence is made (one NetworkInspect, ~2.5 ms here), never from ARP,
// which any host on the segment can answer. Gateways are the network's
// IPAM gateways plus the fencer's default routes (a network created
// without a gateway lists none).
//
// # Who holds NET_ADMIN
//
// A separate short-lived fencer container owns the namespace: it starts
// on the network with NET_ADMIN as its only capability, reports its
// interfaces, reads the ruleset on stdin, installs it with `nft -f -`
// (nothing is written to disk), checks that the inet table and an egress
// hook for every interface are in place, says so, and sleeps. Only then is
// the scan container created, joining that namespace
// (NetworkMode "container:ID"). We chose this over an entrypoint that
// installs the rules and then drops NET_ADMIN because the scan container
// then never holds NET_ADMIN at any moment, in any set: there is no
// capability-dropping code whose mistake would leave nmap able to flush
// the fence, and the same shape carries over to Kubernetes as an init
// container. If any rule cannot be installed the fencer exits with nft's
// error, no scan container is ever created, and the caller gets an
// *Error (fail closed).
//
// # Keeping it off the critical path
//
// Creating a namespace on a bridge costs far more than the rules
// (~180 ms against ~11 ms on these machines), so a Pool keeps a few
// fencers started and waiting for their ruleset; a scan takes one, sends
// the rules and starts at once, and the pool starts a replacement in the
// background.
//
// # Limits
//
// A broadcast ARP request for an allowed address reaches every host on the
// segment, as on any Ethernet. Hosts Docker does not list (a macvlan lab
// segment) cannot be pinned: a hostile target can name such a host's
// Ethernet address for itself. Neighbours are not pinned in the kernel: a
// target that lies about its address gets no frames. A fencer
// that is just starting answers ARP for its own address (and, on IPv6
// networks, its kernel sends MLD reports) for the few milliseconds before
// it closes its namespace; no scan is attached to it yet. Input
// rules drop ICMP errors from routers on the path (connect scans see more
// "filtered"; traceroute stops at the first hop). Scans of the host's
// loopback run on the host's network inside the host fence (host.go);
// scans in host mode are not fenced (see package sandbox).
package fencer
