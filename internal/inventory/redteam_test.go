package inventory

import (
	"context"
	"fmt"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// Red-team regression tests (no engine: results are built in Go and
// ingested into a store file in a temporary folder).

// tarpit is a host that answers on ports 1..n (a tarpit, or a firewall
// that accepts every SYN).
func tarpit(addr string, n int) results.Host {
	ports := make([]results.Port, 0, n)
	for p := 1; p <= n; p++ {
		ports = append(ports, tcp(p, "open", "unknown", "", ""))
	}
	return host(addr, ports...)
}

// TestTarpitPortsBounded: hosts that answer on thousands of ports do not
// put all of them in an answer. A port filter (state=open) listed every
// matching port of every host of the page: 20 tarpits of 1,500 ports made
// one find_hosts answer of 30,000 ports (a page of 200 hosts of 10,000
// ports each, the decoder's per-scan bound, 2,000,000), and a host's
// timeline listed every port it ever had (65,535 per protocol: 20 MB of
// JSON for one host:// read).
func TestTarpitPortsBounded(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t, Config{})
	var hosts []results.Host
	for i := range 20 {
		hosts = append(hosts, tarpit(fmt.Sprintf("10.9.0.%d", i+1), MaxTimelinePorts+500))
	}
	mustIngest(t, inv, scan("s1", "alice", t0, hosts...))
	for _, q := range []Query{{Client: "alice"}, {Client: "alice", State: "open"}, {Client: "alice", Protocol: "tcp", Address: "10.9.0.0/24"}} {
		f, err := inv.Find(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Hosts) != 20 {
			t.Fatalf("%+v: %d hosts", q, len(f.Hosts))
		}
		for _, h := range f.Hosts {
			if len(h.Ports) != MaxPortsPerHost || h.PortsOmitted != MaxTimelinePorts+500-MaxPortsPerHost {
				t.Fatalf("%+v: host %s lists %d ports, %d omitted; want %d and %d", q, h.Address, len(h.Ports), h.PortsOmitted,
					MaxPortsPerHost, MaxTimelinePorts+500-MaxPortsPerHost)
			}
		}
	}
	tl, err := inv.Host(ctx, "alice", "10.9.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Hosts) != 1 || len(tl.Hosts[0].Ports) != MaxTimelinePorts || tl.Hosts[0].PortsOmitted != 500 {
		t.Fatalf("timeline lists %d ports, %d omitted; want %d and 500", len(tl.Hosts[0].Ports), tl.Hosts[0].PortsOmitted, MaxTimelinePorts)
	}
}
