package scans_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// BenchmarkSharding: a latency-bound scan (-T2 connect, no host
// discovery, one port) of 64 loopback listeners (127.0.1.0/26) with 1, 2,
// 4 and 8 shards, each shard its own container on the real engine. Run:
//
//	go test -run - -bench Sharding -benchtime 1x ./internal/scans/
func BenchmarkSharding(b *testing.B) {
	testkit.NeedEngine(b)
	port := 0
	for a := netip.MustParseAddr("127.0.1.0"); a.Compare(netip.MustParseAddr("127.0.1.63")) <= 0; a = a.Next() {
		ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", a, port))
		if err != nil {
			b.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		b.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	for _, n := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) {
			svc := newShardedService(b, nil, shard.Config{Threshold: 1, Shards: 8})
			for i := 0; i < b.N; i++ {
				rec, err := runScan(b, svc, scanargs.Request{Targets: "127.0.1.0/26", Ports: fmt.Sprint(port), Timing: "T2",
					SkipHostDiscovery: true, Shards: intp(n)})
				if err != nil {
					b.Fatal(err)
				}
				if got := len(portStates(rec)); got != 64 {
					b.Fatalf("%d ports in the result, want 64", got)
				}
			}
		})
	}
}
