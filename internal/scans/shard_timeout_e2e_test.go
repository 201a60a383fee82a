package scans_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/nmap-mcp/nmap-mcp/executor"
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

// oneSlowShard makes three listeners on an internal network of the
// test's own (see latencyTargets): the first and the third answer SYNs
// on port at once, the second never does (it answers ARP, then drops
// every SYN for ten minutes), so a scan of the three split in three
// shards has its first and third shard finish in seconds and its second
// run until it is stopped. It returns the network and the three
// addresses (fast, slow, fast); everything is removed when t ends.
func oneSlowShard(t *testing.T, port int) (*testkit.Network, [3]netip.Addr) {
	t.Helper()
	n, block, _ := latencyTargets(t, port, 1, 0)
	fast1 := block.Addr()
	slow, fast2 := fast1.Next(), fast1.Next().Next()
	g := &listenerGroup{}
	t.Cleanup(g.stop)
	for _, l := range []struct {
		addr  netip.Addr
		delay time.Duration
	}{{slow, 10 * time.Minute}, {fast2, 0}} {
		sl, id, err := slowListener(context.Background(), n, l.addr, port, l.delay)
		if id != "" {
			g.ids = append(g.ids, id)
		}
		if sl != nil {
			g.ls = append(g.ls, sl)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return n, [3]netip.Addr{fast1, slow, fast2}
}

// newTrailedShardService is a service on the real engine fenced to
// network n, splitting every scan of more than one address into up to
// three shards (no warm fencers: each shard starts its own); it returns
// the service, its audit trail's path and the runner's record of each
// shard's steps.
func newTrailedShardService(t *testing.T, n *testkit.Network) (*scans.Service, string, *shardtest.TimingRunner) {
	t.Helper()
	tr := &shardtest.TimingRunner{}
	var trail string
	svc, _ := newShardedServiceWith(t, n, shard.Config{Threshold: 1, Shards: 3}, shardedOptions{Trail: &trail,
		Wrap: func(r executor.Runner) executor.Runner { tr.Inner = r; return tr }})
	return svc, trail, tr
}

// submitSlowTrio submits a connect scan of port on the three addresses
// of oneSlowShard (one shard each) with timeout seconds, detached or not.
func submitSlowTrio(t *testing.T, svc *scans.Service, addrs [3]netip.Addr, port, timeout int, detach bool) *scans.Scan {
	t.Helper()
	sc, err := svc.Submit(context.Background(), scanargs.Request{Targets: addrs[0].String() + "," + addrs[1].String() + "," + addrs[2].String(),
		Ports: fmt.Sprint(port), ScanType: "connect", Timing: "T1", SkipHostDiscovery: true, TimeoutSeconds: intp(timeout)}, scans.Options{Detach: detach})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// scanContainers lists the containers (any state) labelled with scan id:
// its shards' scan containers and their fencers.
func scanContainers(ctx context.Context, id string) ([]string, error) {
	list, err := env.Client.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", sandbox.LabelScanID+"="+id))})
	if err != nil {
		return nil, fmt.Errorf("list scan %s's containers: %w", id, err)
	}
	var out []string
	for _, c := range list {
		out = append(out, strings.Join(c.Names, ",")+" "+c.State)
	}
	return out, nil
}

// endedSharded checks what every sharded scan that ended early must
// show: status, the finished shards' hosts (fast) open in the record and
// in the merged XML, the missing block named in the record's error and
// the XML's runstats, no container of the scan left, the queue free and
// one admission and one end in the audit trail.
func endedSharded(t *testing.T, svc *scans.Service, trail string, sc *scans.Scan, status string, port int, fast []netip.Addr, missing netip.Addr) *store.Record {
	t.Helper()
	ctx := context.Background()
	snap, err := svc.Get(ctx, sc.ID)
	if err != nil {
		t.Fatalf("get %s: %v", sc.ID, err)
	}
	rec := snap.Record
	if rec.Status != status {
		t.Fatalf("status %s (%s), want %s", rec.Status, rec.Error, status)
	}
	block := netip.PrefixFrom(missing, 32).String()
	if !strings.Contains(rec.Error, "missing blocks: "+block) || strings.Contains(rec.Error, fast[0].String()) {
		t.Errorf("the record's error does not name exactly the missing block %s: %s", block, rec.Error)
	}
	if len(rec.Limits.Shards) != 3 {
		t.Errorf("limits.shards %v, want 3", rec.Limits.Shards)
	}
	want := make([]string, len(fast))
	for i, a := range fast {
		want[i] = fmt.Sprintf("%s %d/tcp open", a, port)
	}
	if got := portStates(rec); !slices.Equal(got, want) {
		t.Errorf("result ports %v, want the finished shards' %v", got, want)
	}
	if rec.Result == nil || !rec.Result.Partial {
		t.Errorf("result not marked partial: %+v", rec.Result)
	}
	raw, err := svc.RawXML(ctx, sc.ID)
	if err != nil {
		t.Fatalf("scan://%s/xml: %v", sc.ID, err)
	}
	dec, err := results.Decode(bytes.NewReader(raw), results.Handlers{})
	if err != nil {
		t.Fatalf("the merged XML does not decode: %v\n%s", err, raw)
	}
	var hosts []string
	for _, h := range dec.Hosts {
		hosts = append(hosts, h.Addresses[0])
	}
	wantHosts := []string{fast[0].String(), fast[1].String()}
	if !slices.Equal(hosts, wantHosts) {
		t.Errorf("merged XML hosts %v, want %v", hosts, wantHosts)
	}
	for _, w := range []string{`exit="error"`, "missing blocks: " + block} {
		if !bytes.Contains(raw, []byte(w)) {
			t.Errorf("merged XML lacks %q:\n%s", w, raw)
		}
	}
	if bytes.Contains(raw, []byte(`addr="`+missing.String()+`"`)) {
		t.Errorf("the unfinished shard's host is in the merged XML:\n%s", raw)
	}
	leftNothing(t, svc, trail, sc.ID, status)
	return rec
}

// leftNothing checks that scan id, ended with status, left no container,
// freed its queue place and has one admission and one end in the audit
// trail.
func leftNothing(t *testing.T, svc *scans.Service, trail, id, status string) {
	t.Helper()
	var (
		left []string
		err  error
	)
	if !testkit.Eventually(30*time.Second, func() bool {
		left, err = scanContainers(context.Background(), id)
		return err == nil && len(left) == 0
	}) {
		t.Errorf("the scan's containers remain: %v (%v)", left, err)
	}
	if !testkit.Eventually(30*time.Second, func() bool {
		running, waiting := svc.QueueStats()
		return running == 0 && waiting == 0
	}) {
		running, waiting := svc.QueueStats()
		t.Errorf("queue not freed: %d running, %d waiting", running, waiting)
	}
	if got, want := testkit.AuditEvents(t, trail, id), []string{audit.Admitted, audit.Ended + ":" + status}; !slices.Equal(got, want) {
		t.Errorf("audit of %s: %v, want %v", id, got, want)
	}
}

// slowShardAlone waits until the fast shards of scan id have finished
// and only the slow one (2-of-3) runs, and returns its container. All
// three containers must have been seen first: under load they are made
// one after another, and one container alone at first is not the end of
// the others.
func slowShardAlone(t *testing.T, id string) container.Summary {
	t.Helper()
	seen := map[string]bool{}
	for end := time.Now().Add(90 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		list, _ := env.Client.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", sandbox.LabelScanID+"="+id), filters.Arg("label", shard.LabelShard))})
		for _, c := range list {
			seen[c.Labels[shard.LabelShard]] = true
		}
		if len(seen) == 3 && len(list) == 1 && list[0].Labels[shard.LabelShard] == "2-of-3" && list[0].State == "running" {
			return list[0]
		}
		if time.Now().After(end) {
			t.Fatalf("the fast shards did not finish while the slow one ran: %+v", list)
		}
	}
}

// A sharded scan that reaches its timeout_seconds while one shard still
// runs ends timed-out with the finished shards' hosts kept (the third
// shard's too, although its hosts waited behind the slow second one),
// the missing block named, every shard's container gone, the queue free
// and one admission and one end in the audit trail. (Real engine, needs
// root for the silent listener; targets: containers the test started on
// an internal network it created.)
func TestShardedTimeoutKeepsFinishedShards(t *testing.T) {
	testkit.NeedEngine(t)
	const port, timeout = 8080, 28
	n, addrs := oneSlowShard(t, port)
	svc, trail, tr := newTrailedShardService(t, n)
	start := time.Now()
	sc := submitSlowTrio(t, svc, addrs, port, timeout, false)
	wall := time.Since(start)
	var te *executor.TimeoutError
	var se *scans.ShardError
	if !errors.As(sc.Err(), &te) || !errors.As(sc.Err(), &se) || se.Shard != 2 || se.Of != 3 {
		t.Fatalf("scan error %v, want shard 2 of 3's *executor.TimeoutError", sc.Err())
	}
	endedSharded(t, svc, trail, sc, store.TimedOut, port, []netip.Addr{addrs[0], addrs[2]}, addrs[1])
	// The merged run's statistics say it ran until it was stopped, not
	// until its last finished shard ended (about 16 s).
	raw, err := svc.RawXML(context.Background(), sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<finished [^>]*elapsed="([0-9.]+)"`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("no <finished> in the merged XML:\n%s", raw)
	}
	if elapsed, _ := strconv.ParseFloat(string(m[1]), 64); elapsed < timeout-2 {
		t.Errorf("the merged run says it took %.2f s; it ran until its %d s timeout", elapsed, timeout)
	}
	if wall < timeout*time.Second || wall > (timeout+40)*time.Second {
		t.Errorf("the scan ended after %v for a %d s timeout", wall, timeout)
	}
	t.Logf("timed out after %v (timeout %d s); shards, seconds from the submission:%s", wall.Round(10*time.Millisecond), timeout, tr.Report(start))
}

// A shard whose container is killed from outside (as an operator or the
// engine would) ends the scan interrupted, as it ends an unsharded scan
// (*executor.LostError), with the other shards' hosts kept and its block
// named; nothing is left. (Real engine, as above.)
func TestShardedKilledShardKeepsFinishedShards(t *testing.T) {
	testkit.NeedEngine(t)
	const port = 8080
	n, addrs := oneSlowShard(t, port)
	svc, trail, tr := newTrailedShardService(t, n)
	start := time.Now()
	sc := submitSlowTrio(t, svc, addrs, port, 180, true)
	// Once the first and third shards' scan containers are gone, kill
	// the second's.
	if err := env.Client.ContainerKill(context.Background(), slowShardAlone(t, sc.ID).ID, "KILL"); err != nil {
		t.Fatalf("kill shard 2: %v", err)
	}
	select {
	case <-sc.Done():
	case <-time.After(time.Minute):
		t.Fatal("the scan did not end after its shard was killed")
	}
	var se *scans.ShardError
	var lost *executor.LostError
	if !errors.As(sc.Err(), &se) || se.Shard != 2 || !errors.As(sc.Err(), &lost) {
		t.Fatalf("scan error %v, want shard 2's *executor.LostError", sc.Err())
	}
	endedSharded(t, svc, trail, sc, store.Interrupted, port, []netip.Addr{addrs[0], addrs[2]}, addrs[1])
	t.Logf("shards, seconds from the submission:%s", tr.Report(start))
}

// Cancelling a sharded scan after some shards finished ends it
// cancelled with those shards' hosts kept in the record and the merged
// XML (whose runstats name the blocks that did not finish), no container
// left, the queue free and one admission and one end. (Real engine, as
// above.)
func TestShardedCancelKeepsFinishedShards(t *testing.T) {
	testkit.NeedEngine(t)
	const port = 8080
	n, addrs := oneSlowShard(t, port)
	svc, trail, _ := newTrailedShardService(t, n)
	ctx := context.Background()
	sc := submitSlowTrio(t, svc, addrs, port, 180, true)
	slowShardAlone(t, sc.ID)
	if !svc.Cancel(ctx, sc.ID) {
		t.Fatal("cancel: the scan was not found")
	}
	select {
	case <-sc.Done():
	case <-time.After(time.Minute):
		t.Fatal("the cancelled scan did not end")
	}
	snap, err := svc.Get(ctx, sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	rec := snap.Record
	if rec.Status != store.Cancelled {
		t.Fatalf("status %s (%s), want cancelled", rec.Status, rec.Error)
	}
	want := []string{fmt.Sprintf("%s %d/tcp open", addrs[0], port), fmt.Sprintf("%s %d/tcp open", addrs[2], port)}
	if got := portStates(rec); !slices.Equal(got, want) || !rec.Result.Partial {
		t.Errorf("result ports %v (partial %v), want the finished shards' %v", got, rec.Result.Partial, want)
	}
	raw, err := svc.RawXML(ctx, sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := results.Decode(bytes.NewReader(raw), results.Handlers{})
	if err != nil || len(dec.Hosts) != 2 || !bytes.Contains(raw, []byte("missing blocks: "+netip.PrefixFrom(addrs[1], 32).String())) {
		t.Errorf("merged XML (decode error %v):\n%s", err, raw)
	}
	leftNothing(t, svc, trail, sc.ID, store.Cancelled)
	t.Logf("record error: %s", rec.Error)
}
