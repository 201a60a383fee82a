// Package shardtest holds what the sharding benchmarks of the Docker and
// Kubernetes runners share: a listener that answers after a fixed delay,
// as one behind a link with that latency would, from inside another
// network namespace (a test's own container or pod). The test machines'
// kernel has no netem, so a responder on a raw socket takes the place of
// the kernel for the listener's address: ARP at once, SYN-ACK (its port)
// or RST (other ports) after the delay. Linux only; for tests and
// benchmarks, never the server.
package shardtest
