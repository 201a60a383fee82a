package scans_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/internal/shard/shardtest"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// BenchmarkSharding: a latency-bound scan with 1, 2, 4 and 8 shards, each
// shard its own fenced container on the real engine. The scan is the
// issue's case: a -T2 connect scan (nmap's polite template: one probe in
// flight at a time, max_parallelism 1) of 64 listening addresses, no host
// discovery, every answer delayed (see latencyTargets), so one nmap needs
// about probes × delay and n shards about probes/n × delay plus their
// containers' start. Cases: "1port-100ms" (64 probes, 100 ms each) and
// "4ports-200ms" (256 probes: one open port and three closed per host,
// 200 ms each); fencers "cold" (each shard starts its own fencer) or
// "warm" (8 started ahead, refilled, as a server keeps some). Each sharded
// result must equal the unsharded one (same hosts, ports, states). Run:
//
//	go test -run - -bench 'Sharding$' -benchtime 1x ./internal/scans/
//
// BENCH_SHARDING=1port-100ms/warm (a sub-benchmark prefix) picks one case.
// Targets: 64 listener containers on an internal network the benchmark
// creates; needs root on the host (nsenter, setns).
func BenchmarkSharding(b *testing.B) {
	testkit.NeedEngine(b)
	const port = 8080
	for _, c := range []struct {
		name  string
		ports string
		delay time.Duration
	}{{"1port-100ms", "8080", 100 * time.Millisecond}, {"4ports-200ms", "8080-8083", 200 * time.Millisecond}} {
		for _, fencers := range []string{"cold", "warm"} {
			name := c.name + "/" + fencers
			if want := os.Getenv("BENCH_SHARDING"); want != "" && !strings.HasPrefix(name, want) {
				continue
			}
			b.Run(name, func(b *testing.B) {
				n, block, sl := latencyTargets(b, port, 64, c.delay)
				warm := 0
				if fencers == "warm" {
					warm = 8
				}
				tr := &shardtest.TimingRunner{}
				svc, pool := newShardedServiceWith(b, n, shard.Config{Threshold: 1, Shards: 8}, shardedOptions{Warm: warm,
					Wrap: func(r executor.Runner) executor.Runner { tr.Inner = r; return tr }})
				var (
					whole []string
					base  time.Duration
					rows  []string
				)
				for _, shards := range []int{1, 2, 4, 8} {
					b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
						for i := 0; i < b.N; i++ {
							b.StopTimer()
							if !testkit.Eventually(time.Minute, pool.Ready) {
								b.Fatal("the fencer pool did not warm up")
							}
							tr.Reset()
							b.StartTimer()
							start := time.Now()
							rec, err := runScan(b, svc, scanargs.Request{Targets: block.String(), Ports: c.ports, Timing: "T2",
								ScanType: "connect", SkipHostDiscovery: true, Shards: intp(shards)})
							wall := time.Since(start)
							if err != nil {
								b.Fatal(err)
							}
							got := portStates(rec)
							if want := 64 * portCount(c.ports); len(got) != want || len(notOpen(got)) != want-64 {
								b.Fatalf("%d ports in the result, want %d with 64 open; not open: %v (%v)", len(got), want, notOpen(got), sl)
							}
							if whole == nil {
								whole = got
							} else if !slices.Equal(got, whole) {
								b.Fatalf("%d shards: result differs from the unsharded one:\n%v\nwant %v", shards, got, whole)
							}
							if shards == 1 && base == 0 {
								base = wall
							}
							b.ReportMetric(wall.Seconds(), "wall-s")
							b.ReportMetric(base.Seconds()/wall.Seconds(), "speedup")
							b.Logf("%s, %d shards: wall %v%s", name, shards, wall.Round(10*time.Millisecond), tr.Report(start))
							rows = append(rows, fmt.Sprintf("| %s | %d | %.1f s | %.2f× |", name, shards, wall.Seconds(), base.Seconds()/wall.Seconds()))
						}
					})
				}
				b.Logf("results equal the unsharded one; %v\n%s", sl, strings.Join(rows, "\n"))
			})
		}
	}
}

// portCount counts the ports of "a" or "a-b".
func portCount(ports string) int {
	var lo, hi int
	if n, _ := fmt.Sscanf(ports, "%d-%d", &lo, &hi); n == 2 {
		return hi - lo + 1
	}
	return 1
}

// BenchmarkShardingBelowThreshold: the overhead of sharding for a scan
// below the threshold (8 addresses, threshold 16): it runs as one
// container whether the server shards or not, so both take the same
// time. Targets as in BenchmarkSharding (100 ms). Run:
//
//	go test -run - -bench ShardingBelowThreshold -benchtime 5x ./internal/scans/
func BenchmarkShardingBelowThreshold(b *testing.B) {
	testkit.NeedEngine(b)
	const port = 8080
	n, block, _ := latencyTargets(b, port, 64, 100*time.Millisecond)
	small := netip.PrefixFrom(block.Addr(), 29)
	for _, c := range []struct {
		name string
		cfg  shard.Config
	}{{"sharding=off", shard.Config{}}, {"sharding=on", shard.Config{Threshold: 16, Shards: 4}}} {
		b.Run(c.name, func(b *testing.B) {
			tr := &shardtest.TimingRunner{}
			svc, _ := newShardedServiceWith(b, n, c.cfg, shardedOptions{
				Wrap: func(r executor.Runner) executor.Runner { tr.Inner = r; return tr }})
			for i := 0; i < b.N; i++ {
				tr.Reset()
				start := time.Now()
				rec, err := runScan(b, svc, scanargs.Request{Targets: small.String(), Ports: fmt.Sprint(port), Timing: "T2",
					ScanType: "connect", SkipHostDiscovery: true})
				wall := time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if got := portStates(rec); len(got) != 8 || !allOpen(got) || len(rec.Limits.Shards) != 0 {
					b.Fatalf("result %v, shards %v: want 8 open ports, one container", got, rec.Limits.Shards)
				}
				if runs := tr.Runs(); runs != 1 {
					b.Fatalf("%d containers for a scan below the threshold, want 1", runs)
				}
				b.ReportMetric(wall.Seconds(), "wall-s")
				b.Logf("%s: wall %v%s", c.name, wall.Round(10*time.Millisecond), tr.Report(start))
			}
		})
	}
}

func allOpen(states []string) bool { return len(notOpen(states)) == 0 }

func notOpen(states []string) []string {
	var out []string
	for _, s := range states {
		if !strings.HasSuffix(s, " open") {
			out = append(out, s)
		}
	}
	return out
}

// latencyTargets makes an internal Docker network for this benchmark
// (subnet 172.29.X.0/24, Docker assigning addresses from its lower half
// only) and count listener containers on it with the static addresses
// 172.29.X.128 on, and makes each answer with a delay: in each
// container's own network namespace only, its address is taken off its
// interface (so its kernel answers nothing for it) and a responder on a
// raw socket of that interface (shardtest.Listener) answers ARP for it at once
// and each TCP SYN to port with a SYN-ACK (other ports: RST) after delay,
// as a listener behind a link with that latency would. Docker still lists
// each address with the container's Ethernet address, so the scans' fences
// pin them as they pin any target (a fence drops frames to Ethernet
// addresses Docker does not list). The kernel here has no netem (tc:
// "Specified qdisc kind is unknown"), hence the responder in user space.
// It returns the network, the block of those addresses (the scans'
// targets are exactly that block) and the responders; everything is
// removed when b ends. Needs root on the host (nsenter, setns) and ip.
func latencyTargets(b testing.TB, port, count int, delay time.Duration) (*testkit.Network, netip.Prefix, *listenerGroup) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Fatal("the latency benchmark needs root on the host (to enter its listener containers' network namespaces)")
	}
	for _, tool := range []string{"nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("the latency benchmark needs %s on the host (Debian: util-linux, iproute2): %v", tool, err)
		}
	}
	if count < 1 || count > 64 || count&(count-1) != 0 {
		b.Fatalf("count %d: must be a power of two in 1..64", count)
	}
	ctx := context.Background()
	var (
		n      *testkit.Network
		subnet netip.Prefix
		err    error
	)
	for try := 0; try < 5 && n == nil; try++ {
		var x [1]byte
		_, _ = rand.Read(x[:])
		subnet = netip.MustParsePrefix(fmt.Sprintf("172.29.%d.0/24", x[0]))
		name := fmt.Sprintf("nmap-mcp-test-bench-%d", x[0])
		var created network.CreateResponse
		created, err = env.Client.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Internal: true,
			Labels: map[string]string{testkit.LabelTest: env.Instance},
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet.String(),
				IPRange: netip.PrefixFrom(subnet.Addr(), 25).String(), Gateway: subnet.Addr().Next().String()}}}})
		if err != nil {
			continue
		}
		id := created.ID
		b.Cleanup(func() {
			if err := env.Client.NetworkRemove(context.Background(), id); err != nil {
				b.Errorf("remove benchmark network %s: %v", name, err)
			}
		})
		n = &testkit.Network{Name: name, ID: id, Gateways: []netip.Addr{subnet.Addr().Next()}, Subnets: []netip.Prefix{subnet}}
	}
	if n == nil {
		b.Fatalf("create the benchmark network: %v", err)
	}
	a4 := subnet.Addr().As4()
	a4[3] = 128
	block := netip.PrefixFrom(netip.AddrFrom4(a4), 32-bitsFor(count))
	g := &listenerGroup{}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 8)
	)
	addr := block.Addr()
	for i := 0; i < count; i++ {
		wg.Add(1)
		go func(addr netip.Addr) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			sl, id, err := slowListener(ctx, n, addr, port, delay)
			mu.Lock()
			defer mu.Unlock()
			if id != "" {
				g.ids = append(g.ids, id)
			}
			if sl != nil {
				g.ls = append(g.ls, sl)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}(addr)
		addr = addr.Next()
	}
	wg.Wait()
	b.Cleanup(g.stop)
	if len(errs) > 0 {
		b.Fatalf("listeners: %v", errors.Join(errs...))
	}
	return n, block, g
}

// slowListener starts one listener container on n with address addr
// and its responder; it returns the container's ID even on error, for
// the caller to remove.
func slowListener(ctx context.Context, n *testkit.Network, addr netip.Addr, port int, delay time.Duration) (*shardtest.Listener, string, error) {
	created, err := env.Client.ContainerCreate(ctx,
		&container.Config{Image: env.Image.ID, Entrypoint: []string{"sleep", "infinity"}, User: "65532:65532",
			Labels: map[string]string{testkit.LabelTest: env.Instance, sandbox.LabelManaged: "true", sandbox.LabelInstance: env.Instance}},
		&container.HostConfig{NetworkMode: container.NetworkMode(n.Name), CapDrop: []string{"ALL"}, ReadonlyRootfs: true},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			n.Name: {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: addr.String()}}}}, nil, "")
	if err != nil {
		return nil, "", fmt.Errorf("create listener %s: %w", addr, err)
	}
	if err := env.Client.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return nil, created.ID, fmt.Errorf("start listener %s: %w", addr, err)
	}
	info, err := env.Client.ContainerInspect(ctx, created.ID)
	if err != nil || info.State == nil || info.State.Pid == 0 {
		return nil, created.ID, fmt.Errorf("inspect listener %s: %v", addr, err)
	}
	sl, err := shardtest.Start(info.State.Pid, "eth0", netip.PrefixFrom(addr, n.Subnets[0].Bits()), port, delay)
	if err != nil {
		return nil, created.ID, fmt.Errorf("listener %s: %w", addr, err)
	}
	return sl, created.ID, nil
}

// listenerGroup is latencyTargets' listeners: their responders and
// containers.
type listenerGroup struct {
	ls  []*shardtest.Listener
	ids []string
}

func (g *listenerGroup) stop() {
	for _, l := range g.ls {
		l.Stop()
	}
	for _, id := range g.ids {
		_ = env.Client.ContainerRemove(context.Background(), id, container.RemoveOptions{Force: true})
	}
}

func (g *listenerGroup) String() string {
	var st shardtest.Stats
	for _, l := range g.ls {
		st = st.Add(l.Stats())
	}
	return fmt.Sprintf("%d listeners: %+v", len(g.ls), st)
}

// bitsFor is the host bits of the smallest block holding count addresses
// (count a power of two).
func bitsFor(count int) int {
	bits := 0
	for 1<<bits < count {
		bits++
	}
	return bits
}
