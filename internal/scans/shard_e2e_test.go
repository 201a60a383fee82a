package scans_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/executor/fencer"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// newShardedService (no container may outlive the test: testkit.Main
// checks that every managed container is gone) runs scans on the real engine, fenced on network n
// (or loopback inside the host fence when n is nil), splitting scans of
// more than threshold addresses into shards.
func newShardedService(t testing.TB, n *testkit.Network, cfg shard.Config) *scans.Service {
	t.Helper()
	svc, _ := newShardedServiceWith(t, n, cfg, shardedOptions{})
	return svc
}

// shardedOptions vary newShardedServiceWith's service.
type shardedOptions struct {
	// Wrap, when set, wraps the service's runner (e.g. to time each shard).
	Wrap func(executor.Runner) executor.Runner
	// Warm fencers are kept started ahead of need on n, refilled as a
	// server does (0: each scan or shard starts its own).
	Warm int
	// Trail, when set, receives the path of the service's audit trail.
	Trail *string
}

// newShardedServiceWith is newShardedService shaped by o; it also returns
// the fencer pool (nil when n is nil).
func newShardedServiceWith(t testing.TB, n *testkit.Network, cfg shard.Config, o shardedOptions) (*scans.Service, *fencer.Pool) {
	t.Helper()
	st, trail := testkit.OpenHistory(t)
	if o.Trail != nil {
		*o.Trail = trail.Path()
	}
	ex := executor.New(env.Client, nil)
	ex.SetHostFence(fencer.NewHostFence(env.Client, fencer.HostConfig{Image: env.Image.ID, Labels: sandbox.OwnerLabels(env.Instance)}, nil))
	opts := sandbox.Options{Limits: sandbox.DefaultLimits(), Instance: env.Instance}
	var (
		pol  scans.Checker
		pool *fencer.Pool
	)
	if n != nil {
		pool = fencer.NewPool(env.Client, fencer.Config{Image: env.Image.ID, Network: n.Name, Warm: o.Warm, Refill: o.Warm > 0,
			Labels: sandbox.OwnerLabels(env.Instance)}, nil)
		ex.SetFencer(pool)
		pool.Start()
		opts.Network = n.Name
		pc := policy.DefaultConfig()
		pc.HostNetwork = false
		p, err := policy.New(pc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		pol = p
	}
	var runner executor.Runner = ex
	if o.Wrap != nil {
		runner = o.Wrap(ex)
	}
	svc := scans.New(scans.Config{Sandbox: opts, MaxAddresses: 4096, Concurrency: 1, QueueSize: 2, Sharding: cfg},
		scans.Deps{Runner: runner, Image: env.Image, Store: st, Audit: trail, Policy: pol})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Error(err)
		}
		if err := ex.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return svc, pool
}

// portStates lists "address port/proto state" of a result, sorted.
func portStates(rec *store.Record) []string {
	var out []string
	if rec.Result == nil {
		return nil
	}
	for _, h := range rec.Result.Hosts {
		for _, p := range h.Ports {
			out = append(out, fmt.Sprintf("%s %d/%s %s", h.Addresses[0], p.Port, p.Protocol, p.State))
		}
	}
	slices.Sort(out)
	return out
}

// A sharded loopback scan, each shard its own container inside the host
// fence, finds exactly what one unsharded nmap finds: the same hosts,
// ports and states, and the merged XML reads as one run. (Real engine;
// targets: listeners the test opens on 127.0.0.0/29.)
func TestShardedEqualsWhole(t *testing.T) {
	testkit.NeedEngine(t)
	port := testkit.TCPListener(t)
	listenOn(t, port, "127.0.0.2", "127.0.0.5", "127.0.0.7")
	svc := newShardedService(t, nil, shard.Config{Threshold: 4, Shards: 4})
	req := scanargs.Request{Targets: "127.0.0.0/29", Ports: fmt.Sprint(port), SkipHostDiscovery: true}
	whole := req
	whole.Shards = intp(1)
	recW, err := runScan(t, svc, whole)
	if err != nil {
		t.Fatalf("unsharded: %v", err)
	}
	recS, err := runScan(t, svc, req)
	if err != nil {
		t.Fatalf("sharded: %v", err)
	}
	if len(recS.Limits.Shards) != 4 || len(recW.Limits.Shards) != 0 {
		t.Fatalf("shards: sharded %v, whole %v", recS.Limits.Shards, recW.Limits.Shards)
	}
	w, s := portStates(recW), portStates(recS)
	if !slices.Equal(w, s) || len(s) != 8 {
		t.Fatalf("sharded %v\nunsharded %v", s, w)
	}
	open := 0
	for _, x := range s {
		if strings.HasSuffix(x, " open") {
			open++
		}
	}
	if open != 4 {
		t.Errorf("%d open, want 4 (127.0.0.1, .2, .5, .7): %v", open, s)
	}
}

// Shards of a fenced scan are each fenced to their own addresses and
// still reach them; cancelling a sharded scan ends every shard and
// leaves no container. (Real engine; targets: containers the test
// started on an --internal network it created.)
func TestShardedFencedAndCancelled(t *testing.T) {
	testkit.NeedEngine(t)
	n := env.Network(t, testkit.NetworkOptions{})
	a := env.Target(t, n, 8080)
	b := env.Target(t, n, 8080)
	svc := newShardedService(t, n, shard.Config{Threshold: 1, Shards: 2})
	rec, err := runScan(t, svc, scanargs.Request{Targets: a.IPv4.String() + "," + b.IPv4.String(), Ports: "8080"})
	if err != nil {
		t.Fatalf("sharded fenced scan: %v", err)
	}
	got := portStates(rec)
	if len(rec.Limits.Shards) != 2 || len(got) != 2 || !strings.HasSuffix(got[0], "open") || !strings.HasSuffix(got[1], "open") {
		t.Fatalf("shards %v, ports %v", rec.Limits.Shards, got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	sc, err := svc.Submit(ctx, scanargs.Request{Targets: a.IPv4.String() + "," + b.IPv4.String(), Ports: "1-65535", Timing: "T0"}, scans.Options{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if !svc.Cancel(context.Background(), sc.ID) {
		t.Fatal("cancel: the scan was not found")
	}
	cancel()
	select {
	case <-sc.Done():
	case <-time.After(time.Minute):
		t.Fatal("the cancelled sharded scan did not end")
	}
	if st := sc.Snapshot().Record.Status; st != store.Cancelled {
		t.Errorf("status %s, want cancelled", st)
	}
}

// listenOn accepts (and closes) connections to port on each loopback
// address until the test ends.
func listenOn(t *testing.T, port int, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		testkit.ListenAt(t, a, port)
	}
}
