// Package fence renders the network fence's nftables rulesets, the same
// for every runner: Rules.Ruleset for a scan's own network namespace (an
// inet table for IP, a netdev egress hook per interface for ARP, IPv6
// neighbour discovery and raw Ethernet), Rules.Replacing to swap it in,
// and HostRuleset for the host fence of loopback scans. Nothing here
// touches an engine or a cluster: the Docker runner installs the rulesets
// through package executor/fencer, the Kubernetes runner through its
// fence init container. A fence that cannot be installed is an *Error,
// and the scan does not start (fail closed).
package fence
