package scans

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// shardFake plays nmap for each shard (no engine: runs under -short): it
// writes an XML run with one up host per target address, after delay.
type shardFake struct {
	mu     sync.Mutex
	specs  []sandbox.Spec
	fail   string        // a shard whose name ends so fails (exit 1)
	delay  time.Duration // before the run ends
	hangOn string        // a shard that runs until cancelled
}

func (f *shardFake) Run(ctx context.Context, job executor.Job) (*executor.Result, error) {
	f.mu.Lock()
	f.specs = append(f.specs, job.Spec)
	f.mu.Unlock()
	emit := func(s executor.Step) {
		if job.OnEvent != nil {
			job.OnEvent(executor.Event{Step: s, ContainerID: job.Spec.Name, At: time.Now()})
		}
	}
	defer emit(executor.StepRemoved)
	emit(executor.StepCreated)
	emit(executor.StepStarted)
	_, targets, _ := shard.SplitCommand(job.Spec.Command)
	fmt.Fprintf(job.Stdout, "<?xml version=\"1.0\"?>\n<nmaprun scanner=\"nmap\" args=\"nmap -- %s\" start=\"100\" version=\"7.93\" xmloutputversion=\"1.05\">\n<scaninfo type=\"connect\" protocol=\"tcp\" numservices=\"1\" services=\"22\"/>\n<verbose level=\"0\"/>\n<debugging level=\"0\"/>\n", strings.Join(targets, " "))
	res := &executor.Result{ContainerID: job.Spec.Name, Started: time.Now()}
	n := 0
	for _, t := range targets {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			a := netip.MustParseAddr(t)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		for a := p.Addr(); p.Contains(a); a = a.Next() {
			fmt.Fprintf(job.Stdout, "<host starttime=\"100\" endtime=\"101\"><status state=\"up\" reason=\"syn-ack\" reason_ttl=\"0\"/>\n<address addr=\"%s\" addrtype=\"ipv4\"/>\n<ports><port protocol=\"tcp\" portid=\"22\"><state state=\"open\" reason=\"syn-ack\" reason_ttl=\"0\"/></port>\n</ports>\n</host>\n", a)
			n++
		}
	}
	if strings.HasSuffix(job.Spec.Name, f.hangOn) && f.hangOn != "" {
		<-ctx.Done()
		res.Canceled = true
		return res, fmt.Errorf("scan cancelled, container killed: %w", ctx.Err())
	}
	time.Sleep(f.delay)
	if strings.HasSuffix(job.Spec.Name, f.fail) && f.fail != "" {
		res.ExitCode = 1
		return res, &executor.ExitError{Code: 1, Stderr: "boom"}
	}
	fmt.Fprintf(job.Stdout, "<runstats><finished time=\"110\" timestr=\"x\" elapsed=\"10\" exit=\"success\"/><hosts up=\"%d\" down=\"0\" total=\"%d\"/>\n</runstats>\n</nmaprun>\n", n, n)
	io.WriteString(job.Stderr, "done\n")
	return res, nil
}

func (f *shardFake) Close(context.Context) error { return nil }

func shardJob(t *testing.T, targets ...string) (executor.Job, *bytes.Buffer, *[]executor.Event) {
	t.Helper()
	var pfx []netip.Prefix
	for _, x := range targets {
		pfx = append(pfx, netip.MustParsePrefix(x))
	}
	spec := sandbox.New(sandbox.Options{Limits: sandbox.DefaultLimits(), Network: "lab", Instance: "i"},
		sandbox.Scan{ID: "abc", Image: "img", Args: append([]string{"-sT", "--"}, targets...),
			Placement: sandbox.Placement{Network: "lab", Fence: &sandbox.Fence{Network: "lab", Allow: pfx}}})
	var out bytes.Buffer
	var mu sync.Mutex
	events := &[]executor.Event{}
	return executor.Job{Spec: spec, Stdout: &out, Stderr: io.Discard, OnEvent: func(ev executor.Event) {
		mu.Lock()
		*events = append(*events, ev)
		mu.Unlock()
	}}, &out, events
}

// A split scan runs one worker per shard, each fenced to its own blocks
// and labelled; the merged XML equals one run over every target; the scan
// starts once and is gone once. (Fake runner: no engine.)
func TestRunSharded(t *testing.T) {
	j, out, events := shardJob(t, "10.9.0.0/28", "10.9.1.5/32")
	cfg := shard.Config{Threshold: 4, Shards: 4}
	blocks, err := cfg.Plan(j.Spec, 0)
	if err != nil || len(blocks) != 4 {
		t.Fatalf("plan %v, %v", blocks, err)
	}
	f := &shardFake{}
	res, err := runShards(context.Background(), f, j, blocks, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, derr := results.Decode(bytes.NewReader(out.Bytes()), results.Handlers{})
	if derr != nil {
		t.Fatalf("decode: %v\n%s", derr, out.String())
	}
	var got []string
	for _, h := range r.Hosts {
		got = append(got, h.Addresses[0])
	}
	var want []string
	for a := netip.MustParseAddr("10.9.0.0"); a.Compare(netip.MustParseAddr("10.9.0.15")) <= 0; a = a.Next() {
		want = append(want, a.String())
	}
	want = append(want, "10.9.1.5")
	if !slices.Equal(got, want) {
		t.Errorf("hosts %v, want %v", got, want)
	}
	if !bytes.Equal(res.Stdout, out.Bytes()) || !strings.Contains(out.String(), `args="/usr/bin/nmap -sT -- 10.9.0.0/28 10.9.1.5/32"`) {
		t.Errorf("merged args or stdout wrong:\n%s", out.String()[:300])
	}
	for _, s := range f.specs {
		if s.Fence == nil || shard.Count(s.Fence.Allow) > 5 || s.Labels[shard.LabelShard] == "" || !strings.HasPrefix(s.Name, "nmap-mcp-abc-s") {
			t.Errorf("shard spec %s: fence %v labels %v", s.Name, s.Fence, s.Labels)
		}
	}
	var starts, removes int
	for _, ev := range *events {
		switch ev.Step {
		case executor.StepStarted:
			starts++
		case executor.StepRemoved:
			removes++
		}
	}
	if starts != 1 || removes != 1 {
		t.Errorf("started %d, removed %d times; want once each", starts, removes)
	}
	// Below the threshold, or one shard asked: no split.
	small, _, _ := shardJob(t, "10.9.0.0/30")
	if b, _ := cfg.Plan(small.Spec, 0); b != nil {
		t.Errorf("a small scan was split: %v", b)
	}
	if b, _ := cfg.Plan(j.Spec, 1); b != nil {
		t.Errorf("shards: 1 was split: %v", b)
	}
	if err := (shard.Config{Threshold: 10, Shards: 1}).Validate(); err == nil {
		t.Error("1 shard accepted")
	}
}

// A failing shard keeps the others' hosts and names its blocks; a
// cancel ends every shard.
func TestRunShardFailsOrIsCancelled(t *testing.T) {
	j, out, _ := shardJob(t, "10.9.0.0/29")
	blocks, _ := shard.Config{Threshold: 1, Shards: 2}.Plan(j.Spec, 0)
	_, err := runShards(context.Background(), &shardFake{fail: "-s2"}, j, blocks, 0)
	var se *ShardError
	var ee *executor.ExitError
	if !errors.As(err, &se) || !errors.As(err, &ee) || se.Shard != 2 || !slices.Equal(se.Missing, []string{"10.9.0.4/30"}) {
		t.Fatalf("err %v", err)
	}
	r, derr := results.Decode(bytes.NewReader(out.Bytes()), results.Handlers{})
	if derr != nil || len(r.Hosts) != 8 || !strings.Contains(out.String(), "missing blocks: 10.9.0.4/30") {
		t.Fatalf("decode %v, %d hosts:\n%s", derr, len(r.Hosts), out.String())
	}

	j2, _, _ := shardJob(t, "10.9.0.0/29")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	res, err := runShards(ctx, &shardFake{hangOn: "-s1"}, j2, blocks, 0)
	if !errors.Is(err, context.Canceled) || !res.Canceled {
		t.Fatalf("cancel: %v, %+v", err, res)
	}
}
