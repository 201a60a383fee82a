package kuberunner_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/kuberunner"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/internal/shard/shardtest"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// BenchmarkShardingOnCluster: the latency-bound case of the Docker
// runner's BenchmarkSharding on the test cluster: a -T2 connect scan of 4
// ports (one open) on 64 listener pods, every answer 200 ms late, with 1,
// 2, 4 and 8 shards, each shard its own fenced Job; each sharded result
// must equal the unsharded one. The listeners are pods of the bench's own
// namespace; each answers from its own network namespace through
// shardtest.Listener (the node's kernel has no netem). Needs root on the
// host (the pods' processes are found in /proc and their namespaces
// entered). Run:
//
//	go test -run - -bench ShardingOnCluster -benchtime 1x ./internal/kuberunner/
func BenchmarkShardingOnCluster(b *testing.B) {
	k := testkit.NeedKube(b)
	if os.Geteuid() != 0 {
		b.Fatal("the latency benchmark needs root on the host (to enter its listener pods' network namespaces)")
	}
	ns := k.Namespace(b, nil)
	const port, delay = 8080, 200 * time.Millisecond
	targets, ls := slowPods(b, k, ns, 64, port, delay)
	r, err := kuberunner.New(k.API, k.RunnerConfig(ns, instance), nil)
	if err != nil {
		b.Fatal(err)
	}
	tr := &shardtest.TimingRunner{Inner: r}
	st, trail := testkit.OpenHistory(b)
	lim := sandbox.DefaultLimits()
	lim.Memory, lim.CPUs = 128<<20, 0.2 // 8 shards' requests fit the node's 2 cores
	svc := scans.New(scans.Config{Sandbox: sandbox.Options{Network: sandbox.Fenced, FenceNetwork: "pod", Limits: lim, Instance: instance},
		MaxAddresses: 4096, Concurrency: 1, QueueSize: 2, Sharding: shard.Config{Threshold: 1, Shards: 8}},
		scans.Deps{Runner: tr, Image: images.Info{ID: k.Image, Tag: k.Image}, Store: st, Audit: trail})
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = svc.Close(ctx)
		if err := r.Close(ctx); err != nil {
			b.Errorf("close runner: %v", err)
		}
	})
	var (
		whole []string
		base  time.Duration
		rows  []string
	)
	for _, shards := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				// The queue holds a scan's place until its pods are gone:
				// the clock starts once the previous scan's are.
				b.StopTimer()
				if !testkit.Eventually(2*time.Minute, func() bool {
					left, err := k.Leftovers(context.Background())
					return err == nil && len(left) == 0
				}) {
					b.Fatal("the previous scan's Jobs are still there after 2 minutes")
				}
				b.StartTimer()
				tr.Reset()
				start := time.Now()
				sc, err := svc.Submit(context.Background(), scanargs.Request{Targets: strings.Join(targets, ","), Ports: "8080-8083",
					Timing: "T2", ScanType: "connect", SkipHostDiscovery: true, Shards: &shards}, scans.Options{})
				if err != nil {
					b.Fatal(err)
				}
				rec := sc.Snapshot().Record
				wall := time.Since(start)
				if sc.Err() != nil || rec.Status != store.Done {
					b.Fatalf("%d shards: %v (%s)", shards, sc.Err(), rec.Error)
				}
				var got []string
				open := 0
				for _, h := range rec.Result.Hosts {
					for _, p := range h.Ports {
						got = append(got, fmt.Sprintf("%s %d %s", h.Addresses[0], p.Port, p.State))
						if p.State == "open" {
							open++
						}
					}
				}
				slices.Sort(got)
				if len(got) != 256 || open != 64 {
					b.Fatalf("%d shards: %d ports, %d open; want 256, 64 open (%v)", shards, len(got), open, ls)
				}
				if whole == nil {
					whole = got
				} else if !slices.Equal(got, whole) {
					b.Fatalf("%d shards: the result differs from the unsharded one", shards)
				}
				if base == 0 {
					base = wall
				}
				b.ReportMetric(wall.Seconds(), "wall-s")
				b.ReportMetric(base.Seconds()/wall.Seconds(), "speedup")
				b.Logf("%d shards: wall %v%s", shards, wall.Round(10*time.Millisecond), tr.Report(start))
				rows = append(rows, fmt.Sprintf("| %d | %.1f s | %.2f× |", shards, wall.Seconds(), base.Seconds()/wall.Seconds()))
			}
		})
	}
	b.Logf("results equal the unsharded one; %v\n%s", ls, strings.Join(rows, "\n"))
}

// slowPods starts count listener pods in ns and makes each answer on port
// after delay (shardtest.Listener in the pod's own network namespace);
// it returns their addresses, sorted. The pods go with the namespace.
func slowPods(b testing.TB, k *testkit.Kube, ns string, count, port int, delay time.Duration) ([]string, fmt.Stringer) {
	b.Helper()
	var nonce [2]byte
	_, _ = rand.Read(nonce[:])
	f, tr := false, true
	uid := int64(65532)
	ctx := context.Background()
	// Each pod sleeps for a number of seconds no other process uses, by
	// which its process is found in /proc.
	marker := func(i int) string { return fmt.Sprintf("7%05d%02d", binary.BigEndian.Uint16(nonce[:]), i) }
	names := make([]string, count)
	for i := range count {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "slow-listener-", Labels: map[string]string{testkit.LabelTest: "listener"}},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: &f, EnableServiceLinks: &f,
				TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{
					Name: "sleep", Image: k.Image, ImagePullPolicy: corev1.PullIfNotPresent,
					Command: []string{"sleep", marker(i)},
					SecurityContext: &corev1.SecurityContext{
						RunAsUser: &uid, RunAsNonRoot: &tr, AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &tr,
						Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
				}},
			},
		}
		created, err := k.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			b.Fatalf("create listener pod: %v", err)
		}
		names[i] = created.Name
	}
	ips := make([]string, count)
	if !testkit.Eventually(3*time.Minute, func() bool {
		list, err := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		ready := 0
		for _, p := range list.Items {
			if i := slices.Index(names, p.Name); i >= 0 && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				ips[i] = p.Status.PodIP
				ready++
			}
		}
		return ready == count
	}) {
		b.Fatalf("listener pods not running after 3 minutes: %v", ips)
	}
	pids := map[string]int{}
	if !testkit.Eventually(30*time.Second, func() bool {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			cmd, err := os.ReadFile(p)
			if err != nil || !bytes.HasPrefix(cmd, []byte("sleep\x007")) {
				continue
			}
			pid, _ := strconv.Atoi(strings.Split(p, "/")[2])
			pids[strings.TrimRight(string(cmd[len("sleep\x00"):]), "\x00")] = pid
		}
		for i := range count {
			if pids[marker(i)] == 0 {
				return false
			}
		}
		return true
	}) {
		b.Fatal("listener pods' processes not found in /proc")
	}
	g := &podListeners{}
	b.Cleanup(g.stop)
	var (
		mu   sync.Mutex
		errs []string
		wg   sync.WaitGroup
	)
	for i := range count {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a := netip.MustParseAddr(ips[i])
			l, err := shardtest.Start(pids[marker(i)], "eth0", netip.PrefixFrom(a, 24), port, delay) // the test cluster's pod network is a /24
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err.Error())
				return
			}
			g.ls = append(g.ls, l)
		}(i)
	}
	wg.Wait()
	if len(errs) > 0 {
		b.Fatalf("listeners: %s", strings.Join(errs, "; "))
	}
	slices.SortFunc(ips, func(x, y string) int { return netip.MustParseAddr(x).Compare(netip.MustParseAddr(y)) })
	return ips, g
}

type podListeners struct{ ls []*shardtest.Listener }

func (g *podListeners) stop() {
	for _, l := range g.ls {
		l.Stop()
	}
}

func (g *podListeners) String() string {
	var st shardtest.Stats
	for _, l := range g.ls {
		st = st.Add(l.Stats())
	}
	return fmt.Sprintf("%d listeners: %+v", len(g.ls), st)
}
