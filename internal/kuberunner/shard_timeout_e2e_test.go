package kuberunner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/internal/shard/shardtest"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// A sharded scan on the cluster that reaches its timeout_seconds while
// one shard's Job still runs ends timed-out: the finished shards' hosts
// are in the record and the merged XML, the record's error and the XML's
// runstats name the missing block, every shard's Job and pod is gone, the
// queue is free and the audit trail has one admission and one end. Three
// listener pods, three shards of one address each: two pods answer at
// once, the third answers ARP but drops every SYN (shardtest.Listener
// with a ten-minute delay), so at -T1 (one probe, sent after nmap's 15 s
// scan delay) the fast shards end after about 16 s and the slow one
// cannot end before 30 s. (Real test cluster; needs root on the host to
// enter the silent pod's network namespace; targets: pods in the test's
// own namespace.)
func TestShardedTimeoutOnCluster(t *testing.T) {
	const timeout = 28
	f := newOneSlowShard(t)
	start := time.Now()
	sc, err := f.svc.Submit(context.Background(), f.request(timeout), scans.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	t.Logf("targets %v (silent %s); ended after %v; shards, seconds from the submission:%s", f.targets, f.slow, wall.Round(10*time.Millisecond), f.tr.Report(start))
	var te *executor.TimeoutError
	if !errors.As(sc.Err(), &te) {
		t.Fatalf("scan error %v, want a shard's *executor.TimeoutError", sc.Err())
	}
	raw := f.ended(t, sc, store.TimedOut)
	// The merged run says it ran until it was stopped, not until its
	// last finished shard ended.
	if m := regexp.MustCompile(`<finished [^>]*elapsed="([0-9.]+)"`).FindSubmatch(raw); m == nil {
		t.Errorf("no <finished> in the merged XML")
	} else if elapsed, _ := strconv.ParseFloat(string(m[1]), 64); elapsed < timeout-2 {
		t.Errorf("the merged run says it took %.2f s; it ran until its %d s timeout", elapsed, timeout)
	}
	if wall < timeout*time.Second || wall > (timeout+60)*time.Second {
		t.Errorf("the scan ended after %v for a %d s timeout", wall, timeout)
	}
}

// A shard whose pod is deleted while it runs (as an eviction would) ends
// the scan failed, with the other shards' hosts kept
// and its block named, every Job and pod gone, the queue free and one
// admission and one end in the audit trail. (Real test cluster, as
// above.)
func TestShardedPodDeletedOnCluster(t *testing.T) {
	f := newOneSlowShard(t)
	ctx := context.Background()
	start := time.Now()
	sc, err := f.svc.Submit(ctx, f.request(180), scans.Options{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	slowShard := fmt.Sprintf("%d-of-3", slices.Index(f.targets, f.slow)+1)
	sel := metav1.ListOptions{LabelSelector: sandbox.LabelScanID + "=" + sc.ID}
	var victim string
	seen := map[string]bool{}
	for end := time.Now().Add(2 * time.Minute); victim == ""; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the fast shards did not finish while the slow one ran")
		}
		pods, err := f.k.Client.CoreV1().Pods(f.ns).List(ctx, sel)
		if err != nil {
			continue
		}
		running, others := "", 0
		for _, p := range pods.Items {
			seen[p.Labels[shard.LabelShard]] = true
			switch {
			case p.Labels[shard.LabelShard] == slowShard && p.Status.Phase == corev1.PodRunning:
				running = p.Name
			case p.Labels[shard.LabelShard] != slowShard && p.Status.Phase != corev1.PodSucceeded:
				others++
			}
		}
		// Every shard's pod was seen (a pod not made yet is not a
		// finished shard), and the fast ones have succeeded or gone.
		if running != "" && others == 0 && len(seen) == 3 {
			victim = running
		}
	}
	zero := int64(0)
	if err := f.k.Client.CoreV1().Pods(f.ns).Delete(ctx, victim, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("delete shard %s's pod: %v", slowShard, err)
	}
	select {
	case <-sc.Done():
	case <-time.After(2 * time.Minute):
		t.Fatal("the scan did not end after its shard's pod was deleted")
	}
	t.Logf("targets %v (silent %s); %v; shards, seconds from the submission:%s", f.targets, f.slow, sc.Err(), f.tr.Report(start))
	// The deleted pod's nmap got SIGTERM: exit 143, failed.
	f.ended(t, sc, store.Failed)
}

// oneSlow is a sharding service on the test cluster and three listener
// pods: two answer at once, one (slow) answers ARP but drops every SYN
// (shardtest.Listener with a ten-minute delay).
type oneSlow struct {
	k             *testkit.Kube
	ns            string
	targets, fast []string // sorted
	slow          string
	svc           *scans.Service
	trail         string
	tr            *shardtest.TimingRunner
}

const slowPort = 8080

func newOneSlowShard(t *testing.T) *oneSlow {
	t.Helper()
	k := testkit.NeedKube(t)
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root on the host (to enter its silent listener pod's network namespace)")
	}
	f := &oneSlow{k: k, ns: k.Namespace(t, nil)}
	// Made in this order, the pods usually get ascending addresses, so
	// that the silent one is the middle shard and the third shard's hosts
	// wait behind it; any order is checked the same way.
	f.fast = []string{k.Listener(t, f.ns, slowPort)}
	silent, _ := slowPods(t, k, f.ns, 1, slowPort, 10*time.Minute)
	f.slow = silent[0]
	f.fast = append(f.fast, k.Listener(t, f.ns, slowPort))
	byAddr := func(x, y string) int { return netip.MustParseAddr(x).Compare(netip.MustParseAddr(y)) }
	f.targets = append(slices.Clone(f.fast), f.slow)
	slices.SortFunc(f.targets, byAddr)
	slices.SortFunc(f.fast, byAddr)

	f.tr = &shardtest.TimingRunner{Inner: runner(t, k, f.ns)}
	st, trail := testkit.OpenHistory(t)
	f.trail = trail.Path()
	lim := sandbox.DefaultLimits()
	lim.Memory, lim.CPUs = 128<<20, 0.5
	f.svc = scans.New(scans.Config{Sandbox: sandbox.Options{Network: sandbox.Fenced, FenceNetwork: "pod", Limits: lim, Instance: instance},
		MaxAddresses: 16, Concurrency: 1, QueueSize: 2, Sharding: shard.Config{Threshold: 1, Shards: 3}},
		scans.Deps{Runner: f.tr, Image: images.Info{ID: k.Image, Tag: k.Image}, Store: st, Audit: trail})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = f.svc.Close(ctx)
	})
	return f
}

// request is a -T1 connect scan of the three pods: one probe each, sent
// after nmap's 15 s scan delay, so the fast shards end after about 16 s
// and the slow one cannot end before 30 s.
func (f *oneSlow) request(timeout int) scanargs.Request {
	return scanargs.Request{Targets: strings.Join(f.targets, ","), Ports: fmt.Sprint(slowPort), ScanType: "connect",
		Timing: "T1", SkipHostDiscovery: true, TimeoutSeconds: intp(timeout)}
}

// ended checks a scan that ended with the slow shard unfinished: its
// status, the slow shard named as the failing one, the fast shards'
// hosts open in the record and in the merged XML (returned), the
// missing block named in the record's error and the XML's runstats,
// every shard's Job and pod gone, the queue free and one admission and
// one end in the audit trail.
func (f *oneSlow) ended(t *testing.T, sc *scans.Scan, status string) []byte {
	t.Helper()
	ctx := context.Background()
	var se *scans.ShardError
	if !errors.As(sc.Err(), &se) || se.Of != 3 || se.Shard != slices.Index(f.targets, f.slow)+1 {
		t.Errorf("scan error %v, want shard %d of 3's", sc.Err(), slices.Index(f.targets, f.slow)+1)
	}
	snap, err := f.svc.Get(ctx, sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	rec := snap.Record
	if rec.Status != status {
		t.Fatalf("status %s (%s), want %s", rec.Status, rec.Error, status)
	}
	missing := f.slow + "/32"
	if !strings.Contains(rec.Error, "missing blocks: "+missing) || strings.Contains(rec.Error, f.fast[0]+"/") || strings.Contains(rec.Error, f.fast[1]+"/") {
		t.Errorf("the record's error does not name exactly the missing block %s: %s", missing, rec.Error)
	}
	var open []string
	if rec.Result != nil {
		for _, h := range rec.Result.Hosts {
			for _, p := range h.Ports {
				open = append(open, fmt.Sprintf("%s %d %s", h.Addresses[0], p.Port, p.State))
			}
		}
	}
	want := []string{fmt.Sprintf("%s %d open", f.fast[0], slowPort), fmt.Sprintf("%s %d open", f.fast[1], slowPort)}
	if !slices.Equal(open, want) || rec.Result == nil || !rec.Result.Partial || len(rec.Limits.Shards) != 3 {
		t.Errorf("result %v (partial %v), want %v; shards %v", open, rec.Result != nil && rec.Result.Partial, want, rec.Limits.Shards)
	}
	raw, err := f.svc.RawXML(ctx, sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := results.Decode(bytes.NewReader(raw), results.Handlers{})
	if err != nil {
		t.Fatalf("the merged XML does not decode: %v\n%s", err, raw)
	}
	var hosts []string
	for _, h := range dec.Hosts {
		hosts = append(hosts, h.Addresses[0])
	}
	if !slices.Equal(hosts, f.fast) || !bytes.Contains(raw, []byte(`exit="error"`)) || !bytes.Contains(raw, []byte("missing blocks: "+missing)) {
		t.Errorf("merged XML: hosts %v, want %v, with exit=\"error\" naming %s:\n%s", hosts, f.fast, missing, raw)
	}

	// Every shard's Job and pod is gone, and the queue is free.
	var ours []string
	if !testkit.Eventually(time.Minute, func() bool {
		left, err := f.k.Leftovers(ctx)
		ours = ours[:0]
		for _, l := range left {
			if strings.Contains(l, strings.ToLower(sc.ID)) {
				ours = append(ours, l)
			}
		}
		return err == nil && len(ours) == 0
	}) {
		t.Errorf("the scan's Jobs or pods remain: %v", ours)
	}
	if !testkit.Eventually(30*time.Second, func() bool {
		running, waiting := f.svc.QueueStats()
		return running == 0 && waiting == 0
	}) {
		running, waiting := f.svc.QueueStats()
		t.Errorf("queue not freed: %d running, %d waiting", running, waiting)
	}
	if got, want := testkit.AuditEvents(t, f.trail, sc.ID), []string{audit.Admitted, audit.Ended + ":" + status}; !slices.Equal(got, want) {
		t.Errorf("audit of %s: %v, want %v", sc.ID, got, want)
	}
	return raw
}

func intp(n int) *int { return &n }
