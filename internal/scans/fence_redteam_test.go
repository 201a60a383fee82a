package scans

import (
	"context"
	"net/netip"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/shard"
)

// Red-team regression test of runShards (fake runner, no engine: -short).

// Each shard's fence is exactly its own blocks, inside the scan's fence,
// and the shards' fences together are the scan's (IPv4 and IPv6): no
// shard reaches an address outside its blocks. Holds today.
func TestRedteamShardFencesPartitionTheScan(t *testing.T) {
	for _, targets := range [][]string{
		{"10.9.0.0/27", "10.9.0.0/27", "10.9.1.7/32", "10.9.0.16/28"}, // duplicates and overlaps
		{"2001:db8::/120", "2001:db8:1::5/128"},
	} {
		j, _, _ := shardJob(t, targets...)
		blocks, err := shard.Config{Threshold: 1, Shards: 7}.Plan(j.Spec, 0)
		if err != nil || len(blocks) < 2 {
			t.Fatalf("%v: plan %v %v", targets, blocks, err)
		}
		f := &shardFake{}
		if _, err := runShards(context.Background(), f, j, blocks, 0); err != nil {
			t.Fatal(err)
		}
		if len(f.specs) != len(blocks) {
			t.Fatalf("%d shards run, %d planned", len(f.specs), len(blocks))
		}
		var union uint64
		for _, s := range f.specs {
			if s.Fence == nil || len(s.Fence.Allow) == 0 {
				t.Fatalf("shard %s unfenced", s.Name)
			}
			_, argv, _ := shard.SplitCommand(s.Command)
			if len(argv) != len(s.Fence.Allow) {
				t.Errorf("shard %s: targets %v, fence %v", s.Name, argv, s.Fence.Allow)
			}
			for _, a := range s.Fence.Allow {
				in := false
				for _, p := range j.Spec.Fence.Allow {
					if p.Contains(a.Addr()) && p.Bits() <= a.Bits() {
						in = true
					}
				}
				if !in {
					t.Errorf("shard %s may reach %v, outside the scan's fence %v", s.Name, a, j.Spec.Fence.Allow)
				}
			}
			union += shard.Count(s.Fence.Allow)
		}
		if want := shard.Count(maskedAll(j.Spec.Fence.Allow)); union != want {
			t.Errorf("%v: shards' fences hold %d addresses, the scan's %d", targets, union, want)
		}
	}
}

func maskedAll(in []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(in))
	for i, p := range in {
		out[i] = p.Masked()
	}
	return out
}
