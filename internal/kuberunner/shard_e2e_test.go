package kuberunner_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// A sharded scan on the cluster: each shard is its own Job, fenced to its
// own listener pod, carrying the scan's id and its shard number; the
// merged result has both listeners' open ports; cancelling a sharded scan
// ends every shard's Job. (Real test cluster; targets: listener pods in
// the test's own namespace.)
func TestShardedScanAsJobs(t *testing.T) {
	k, ns, ip1, r := setup(t)
	ip2 := k.Listener(t, ns, 8080)
	st, trail := testkit.OpenHistory(t)
	lim := sandbox.DefaultLimits()
	lim.Memory, lim.CPUs = 128<<20, 0.5
	svc := scans.New(scans.Config{Sandbox: sandbox.Options{Network: sandbox.Fenced, FenceNetwork: "pod", Limits: lim, Instance: instance},
		MaxAddresses: 16, Concurrency: 1, QueueSize: 2, Sharding: shard.Config{Threshold: 1, Shards: 2}},
		scans.Deps{Runner: r, Image: images.Info{ID: k.Image, Tag: k.Image}, Store: st, Audit: trail})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = svc.Close(ctx)
	})

	sc, err := svc.Submit(context.Background(), scanargs.Request{Targets: ip1 + "," + ip2, Ports: "8080", SkipHostDiscovery: true}, scans.Options{})
	if err != nil {
		t.Fatalf("sharded scan: %v", err)
	}
	rec := sc.Snapshot().Record
	if sc.Err() != nil || rec.Status != store.Done {
		t.Fatalf("sharded scan: %v (%s)", sc.Err(), rec.Error)
	}
	var open []string
	for _, h := range rec.Result.Hosts {
		for _, p := range h.Ports {
			if p.State == "open" {
				open = append(open, h.Addresses[0])
			}
		}
	}
	slices.Sort(open)
	want := []string{ip1, ip2}
	slices.Sort(want)
	if !slices.Equal(open, want) || len(rec.Limits.Shards) != 2 {
		t.Fatalf("open on %v, want %v; shards %v", open, want, rec.Limits.Shards)
	}

	// Cancel: every shard's Job goes.
	ctx, cancel := context.WithCancel(context.Background())
	sc2, err := svc.Submit(ctx, scanargs.Request{Targets: ip1 + "," + ip2, Ports: "1-65535", Timing: "T1", SkipHostDiscovery: true}, scans.Options{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second)
	if !svc.Cancel(context.Background(), sc2.ID) {
		t.Fatal("cancel: scan not found")
	}
	cancel()
	select {
	case <-sc2.Done():
	case <-time.After(2 * time.Minute):
		t.Fatal("the cancelled sharded scan did not end")
	}
	if st := sc2.Snapshot().Record.Status; st != store.Cancelled {
		t.Errorf("status %s, want cancelled", st)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		left, err := k.Leftovers(context.Background())
		var ours []string
		for _, l := range left {
			if strings.Contains(l, sc2.ID) {
				ours = append(ours, l)
			}
		}
		if err == nil && len(ours) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cancelled scan's Jobs or pods remain: %v (%v)", ours, err)
		}
		time.Sleep(time.Second)
	}
}
