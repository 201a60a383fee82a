package kuberunner_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
	k := testkit.NeedKube(t)
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root on the host (to enter its silent listener pod's network namespace)")
	}
	const port, timeout = 8080, 28
	ns := k.Namespace(t, nil)
	// Made in this order, the pods usually get ascending addresses, so
	// that the silent one is the middle shard and the third shard's hosts
	// wait behind it; any order is checked the same way.
	fast := []string{k.Listener(t, ns, port)}
	silent, _ := slowPods(t, k, ns, 1, port, 10*time.Minute)
	slow := silent[0]
	fast = append(fast, k.Listener(t, ns, port))
	targets := append(slices.Clone(fast), slow)
	slices.SortFunc(targets, func(x, y string) int { return netip.MustParseAddr(x).Compare(netip.MustParseAddr(y)) })
	slices.SortFunc(fast, func(x, y string) int { return netip.MustParseAddr(x).Compare(netip.MustParseAddr(y)) })

	r := runner(t, k, ns)
	tr := &shardtest.TimingRunner{Inner: r}
	st, trail := testkit.OpenHistory(t)
	lim := sandbox.DefaultLimits()
	lim.Memory, lim.CPUs = 128<<20, 0.5
	svc := scans.New(scans.Config{Sandbox: sandbox.Options{Network: sandbox.Fenced, FenceNetwork: "pod", Limits: lim, Instance: instance},
		MaxAddresses: 16, Concurrency: 1, QueueSize: 2, Sharding: shard.Config{Threshold: 1, Shards: 3}},
		scans.Deps{Runner: tr, Image: images.Info{ID: k.Image, Tag: k.Image}, Store: st, Audit: trail})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = svc.Close(ctx)
	})

	ctx := context.Background()
	start := time.Now()
	sc, err := svc.Submit(ctx, scanargs.Request{Targets: strings.Join(targets, ","), Ports: fmt.Sprint(port), ScanType: "connect",
		Timing: "T1", SkipHostDiscovery: true, TimeoutSeconds: intp(timeout)}, scans.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	t.Logf("targets %v (silent %s); ended after %v; shards, seconds from the submission:%s", targets, slow, wall.Round(10*time.Millisecond), tr.Report(start))
	var (
		te *executor.TimeoutError
		se *scans.ShardError
	)
	if !errors.As(sc.Err(), &te) || !errors.As(sc.Err(), &se) || se.Of != 3 || se.Shard != slices.Index(targets, slow)+1 {
		t.Fatalf("scan error %v, want shard %d of 3's *executor.TimeoutError", sc.Err(), slices.Index(targets, slow)+1)
	}
	snap, err := svc.Get(ctx, sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	rec := snap.Record
	if rec.Status != store.TimedOut {
		t.Fatalf("status %s (%s), want %s", rec.Status, rec.Error, store.TimedOut)
	}
	missing := slow + "/32"
	if !strings.Contains(rec.Error, "missing blocks: "+missing) || strings.Contains(rec.Error, fast[0]+"/") || strings.Contains(rec.Error, fast[1]+"/") {
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
	want := []string{fmt.Sprintf("%s %d open", fast[0], port), fmt.Sprintf("%s %d open", fast[1], port)}
	if !slices.Equal(open, want) || !rec.Result.Partial || len(rec.Limits.Shards) != 3 {
		t.Errorf("result %v (partial %v), want %v; shards %v", open, rec.Result != nil && rec.Result.Partial, want, rec.Limits.Shards)
	}
	raw, err := svc.RawXML(ctx, sc.ID)
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
	if !slices.Equal(hosts, fast) || !bytes.Contains(raw, []byte(`exit="error"`)) || !bytes.Contains(raw, []byte("missing blocks: "+missing)) {
		t.Errorf("merged XML: hosts %v, want %v, with exit=\"error\" naming %s:\n%s", hosts, fast, missing, raw)
	}
	// The merged run says it ran until it was stopped, not until its
	// last finished shard ended.
	if m := regexp.MustCompile(`<finished [^>]*elapsed="([0-9.]+)"`).FindSubmatch(raw); m == nil {
		t.Errorf("no <finished> in the merged XML")
	} else if elapsed, _ := strconv.ParseFloat(string(m[1]), 64); elapsed < timeout-2 {
		t.Errorf("the merged run says it took %.2f s; it ran until its %d s timeout", elapsed, timeout)
	}

	// Every shard's Job and pod is gone, and the queue is free.
	var ours []string
	if !testkit.Eventually(time.Minute, func() bool {
		left, err := k.Leftovers(ctx)
		ours = ours[:0]
		for _, l := range left {
			if strings.Contains(l, strings.ToLower(sc.ID)) {
				ours = append(ours, l)
			}
		}
		return err == nil && len(ours) == 0
	}) {
		t.Errorf("the timed-out scan's Jobs or pods remain: %v", ours)
	}
	if !testkit.Eventually(30*time.Second, func() bool {
		running, waiting := svc.QueueStats()
		return running == 0 && waiting == 0
	}) {
		running, waiting := svc.QueueStats()
		t.Errorf("queue not freed: %d running, %d waiting", running, waiting)
	}
	if got, want := trailOf(t, trail.Path(), sc.ID), []string{audit.Admitted, audit.Ended + ":" + store.TimedOut}; !slices.Equal(got, want) {
		t.Errorf("audit of %s: %v, want %v", sc.ID, got, want)
	}
	if wall < timeout*time.Second || wall > (timeout+60)*time.Second {
		t.Errorf("the scan ended after %v for a %d s timeout", wall, timeout)
	}
}

func intp(n int) *int { return &n }

// trailOf lists the events ("admitted", "ended:timed-out") of scan id in
// the audit trail at path, in order.
func trailOf(t *testing.T, path, id string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if r.ScanID == id {
			out = append(out, strings.TrimSuffix(r.Event+":"+r.Outcome, ":"))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
