package scans_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// lineRunner writes nmap's XML line layout for each target address (one
// up host with port 22 open), as nmap -oX - does. Fake runner: no engine.
type lineRunner struct {
	mu    sync.Mutex
	specs []sandbox.Spec
}

func (f *lineRunner) Run(_ context.Context, job executor.Job) (*executor.Result, error) {
	f.mu.Lock()
	f.specs = append(f.specs, job.Spec)
	f.mu.Unlock()
	if job.OnEvent != nil {
		job.OnEvent(executor.Event{Step: executor.StepStarted, At: time.Now()})
		defer job.OnEvent(executor.Event{Step: executor.StepRemoved, At: time.Now()})
	}
	i := slices.Index(job.Spec.Command, "--")
	fmt.Fprintf(job.Stdout, "<?xml version=\"1.0\"?>\n<nmaprun scanner=\"nmap\" args=\"nmap\" start=\"100\" version=\"7.93\" xmloutputversion=\"1.05\">\n<verbose level=\"0\"/>\n")
	n := 0
	for _, t := range job.Spec.Command[i+1:] {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			a := netip.MustParseAddr(t)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		for a := p.Addr(); p.Contains(a); a = a.Next() {
			fmt.Fprintf(job.Stdout, "<taskprogress task=\"Connect Scan\" time=\"101\" percent=\"%d.00\" remaining=\"1\" etc=\"102\"/>\n", 10*(n+1))
			fmt.Fprintf(job.Stdout, "<host><status state=\"up\" reason=\"syn-ack\" reason_ttl=\"0\"/>\n<address addr=\"%s\" addrtype=\"ipv4\"/>\n<ports><port protocol=\"tcp\" portid=\"22\"><state state=\"open\" reason=\"syn-ack\" reason_ttl=\"0\"/><service name=\"ssh\"/></port>\n</ports>\n</host>\n", a)
			n++
		}
	}
	fmt.Fprintf(job.Stdout, "<runstats><finished time=\"110\" timestr=\"x\" elapsed=\"10\" exit=\"success\"/><hosts up=\"%d\" down=\"0\" total=\"%d\"/>\n</runstats>\n</nmaprun>\n", n, n)
	_, _ = io.WriteString(job.Stderr, "")
	return &executor.Result{ContainerID: job.Spec.Name}, nil
}

func (f *lineRunner) Close(context.Context) error { return nil }

// A scan above the sharding threshold runs as shards: one spec per
// shard, one record listing the shards, one merged result with every
// host, progress that never falls; a scan below it runs whole. The tool's
// shards argument asks for fewer. (Fake runner, real store and audit.)
func TestShardedScan(t *testing.T) {
	st, trail := testkit.OpenHistory(t)
	f := &lineRunner{}
	cfg := scans.Config{Sandbox: sandbox.Options{Limits: sandbox.DefaultLimits()}, MaxAddresses: 4096,
		Sharding: shard.Config{Threshold: 4, Shards: 4}}
	svc := scans.New(cfg, scans.Deps{Runner: f, Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"}, Store: st, Audit: trail})
	t.Cleanup(func() { _ = svc.Close(context.Background()) })

	var mu sync.Mutex
	var percents []float64
	sc, err := svc.Submit(context.Background(), scanargs.Request{Targets: "127.0.0.0/29", Ports: "22"}, scans.Options{Events: func(ev scans.Event) {
		mu.Lock()
		if ev.Kind == scans.Progress {
			percents = append(percents, ev.Percent)
		}
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	<-sc.Done()
	snap := sc.Snapshot()
	if snap.Record.Status != store.Done || snap.Record.Result == nil || len(snap.Record.Result.Hosts) != 8 {
		t.Fatalf("record %+v, err %v", snap.Record, sc.Err())
	}
	if len(f.specs) != 4 || len(snap.Record.Limits.Shards) != 4 || snap.Record.Limits.Shards[1] != "127.0.0.2/31" {
		t.Fatalf("%d specs, shards %v", len(f.specs), snap.Record.Limits.Shards)
	}
	mu.Lock()
	if !slices.IsSorted(percents) || len(percents) == 0 {
		t.Errorf("progress %v: must never fall", percents)
	}
	mu.Unlock()
	raw, err := st.RawXML(context.Background(), sc.ID, "")
	if err != nil || !strings.Contains(string(raw), "merged from 4 shards") {
		t.Errorf("the stored XML is not the merged run")
	}

	// shards: 2 asks for two; shards: 1 and a small scan run whole.
	for _, tc := range []struct {
		req  scanargs.Request
		want int
	}{
		{scanargs.Request{Targets: "127.0.1.0/29", Ports: "22", Shards: ptr(2)}, 2},
		{scanargs.Request{Targets: "127.0.1.0/29", Ports: "22", Shards: ptr(1)}, 1},
		{scanargs.Request{Targets: "127.0.2.0/30", Ports: "22"}, 1},
	} {
		f.specs = nil
		sc, err := svc.Submit(context.Background(), tc.req, scans.Options{})
		if err != nil {
			t.Fatal(err)
		}
		<-sc.Done()
		if len(f.specs) != tc.want || sc.Err() != nil {
			t.Errorf("%s shards %v: %d workers, want %d (%v)", tc.req.Targets, tc.req.Shards, len(f.specs), tc.want, sc.Err())
		}
	}
	// More than the server's bound is refused before anything runs.
	if _, err := svc.Submit(context.Background(), scanargs.Request{Targets: "127.0.1.0/29", Shards: ptr(5)}, scans.Options{}); err == nil || !strings.Contains(err.Error(), "shards") {
		t.Errorf("shards 5 with a bound of 4: %v", err)
	}
}

func ptr(i int) *int { return &i }
