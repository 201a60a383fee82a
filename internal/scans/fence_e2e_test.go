package scans_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/executor/fencer"
	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/fence"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// These tests run the scans service in a fenced deployment on the real
// engine: fenced scans target only a container the test started on an
// --internal network it created; loopback scans target the test's own
// listener. The fence itself is tested in package fence.

// newFencedService returns a service whose scans are fenced on network n,
// with an audit trail at the returned path.
func newFencedService(t *testing.T, n *testkit.Network, tamper func(string) string, pol scans.Checker) (*scans.Service, string) {
	t.Helper()
	st, trail := testkit.OpenHistory(t)
	ex := executor.New(env.Client, nil)
	ex.SetFencer(fencer.NewPool(env.Client, fencer.Config{Image: env.Image.ID, Network: n.Name, Warm: 1, Refill: true,
		Labels: sandbox.OwnerLabels(env.Instance), Tamper: tamper}, nil))
	ex.SetHostFence(fencer.NewHostFence(env.Client, fencer.HostConfig{Image: env.Image.ID, Labels: sandbox.OwnerLabels(env.Instance)}, nil))
	opts := sandbox.Options{Network: n.Name, Limits: sandbox.DefaultLimits(), Instance: env.Instance}
	svc := scans.New(scans.Config{Sandbox: opts, MaxAddresses: 4096, Concurrency: 2, QueueSize: 4},
		scans.Deps{Runner: ex, Image: env.Image, Store: st, Audit: trail, Policy: pol})
	t.Cleanup(func() {
		if err := svc.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if err := ex.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return svc, trail.Path()
}

// A fenced scan finds its target and says so in its record and text; a
// loopback scan in the same deployment runs on the host network inside the
// host fence and says "fenced to loopback" (a raw one is refused); a scan
// mixing both is refused before anything is recorded.
func TestFencedDeployment(t *testing.T) {
	testkit.NeedEngine(t)
	n := env.Network(t, testkit.NetworkOptions{})
	tg := env.Target(t, n, 8080)
	// The name is resolved by the policy (a fake resolver: no DNS query
	// leaves the test) and pinned; the fenced scan runs with -n and the
	// result still shows the name.
	cfg := policy.DefaultConfig()
	cfg.Allow = append(cfg.Allow, "target.fence.test")
	cfg.HostNetwork = false
	pol, err := policy.New(cfg, fakeResolver{"target.fence.test": tg.IPv4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, _ := newFencedService(t, n, nil, pol)

	rec, err := runScan(t, svc, scanargs.Request{Targets: "target.fence.test", Ports: "8080,22"})
	text, _ := scans.RecordText(rec, scans.DefaultTextCap)
	if err != nil {
		t.Fatalf("fenced scan: %v\n%s", err, text)
	}
	assertPort(t, rec, "tcp", 8080, "open")
	if !rec.Limits.Fenced || rec.Limits.AllowedAddresses != 1 || rec.Limits.Network != n.Name || rec.Limits.Seccomp != sandbox.SeccompID() {
		t.Errorf("limits %+v", rec.Limits)
	}
	if !slices.Contains(rec.Argv, "-n") || !slices.Contains(rec.Argv, tg.IPv4.String()) {
		t.Errorf("a fenced scan reaches no resolver and must run with -n on the pinned address: %v", rec.Argv)
	}
	if len(rec.Result.Hosts) != 1 || !slices.Contains(rec.Result.Hosts[0].Hostnames, "target.fence.test") {
		t.Errorf("the result lost the name the caller gave: %+v", rec.Result.Hosts)
	}
	brief, _ := scans.BriefText(rec, 0)
	for _, want := range []string{"network " + n.Name + " fenced to 1 address", "seccomp " + sandbox.SeccompID()} {
		if !strings.Contains(text, want) {
			t.Errorf("record text lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(brief, "fenced to 1 address") {
		t.Errorf("the model's text lacks the fence:\n%s", brief)
	}

	port := testkit.TCPListener(t)
	rec, err = runScan(t, svc, scanargs.Request{Targets: "127.0.0.1", Ports: fmt.Sprint(port)})
	if err != nil {
		t.Fatalf("loopback scan: %v", err)
	}
	assertPort(t, rec, "tcp", port, "open")
	if !rec.Limits.Fenced || rec.Limits.Network != "host" || !strings.Contains(rec.Limits.Profile, "fenced to loopback") || rec.Limits.Unfenced != "" ||
		rec.Limits.Seccomp != sandbox.HostSeccompID() {
		t.Errorf("a loopback scan must run on the host network inside the host fence and say so: %+v", rec.Limits)
	}
	if brief, _ := scans.BriefText(rec, 0); !strings.Contains(brief, "fenced to loopback") {
		t.Errorf("the model's text does not say \"fenced to loopback\":\n%s", brief)
	}
	// A raw-socket scan of loopback is refused before anything runs.
	_, err = svc.Submit(context.Background(), scanargs.Request{Targets: "127.0.0.1", ScanType: "syn", Ports: fmt.Sprint(port)}, scans.Options{})
	if fe := new(scanargs.FieldError); !errors.As(err, &fe) || fe.Field != "scan_type" || !strings.Contains(err.Error(), "connect") {
		t.Errorf("a SYN scan of loopback inside the host fence: %v", err)
	}

	before, _ := svc.List(context.Background(), store.Filter{})
	_, err = svc.Submit(context.Background(), scanargs.Request{Targets: "127.0.0.1 " + tg.IPv4.String(), Ports: "8080"}, scans.Options{})
	var fe *scanargs.FieldError
	if !errors.As(err, &fe) || fe.Field != "targets" || !strings.Contains(err.Error(), "split them into two scans") {
		t.Fatalf("mixed loopback and other targets: %v", err)
	}
	if after, _ := svc.List(context.Background(), store.Filter{}); len(after) != len(before) {
		t.Errorf("a refused scan was recorded")
	}
}

// A fence that cannot be installed fails the scan: nmap never runs, the
// record and the audit trail say why, and nothing is left (the package's
// leak check).
func TestFenceFailureIsRecorded(t *testing.T) {
	testkit.NeedEngine(t)
	n := env.Network(t, testkit.NetworkOptions{})
	tg := env.Target(t, n, 8080)
	svc, trail := newFencedService(t, n, func(rules string) string { return rules + "this is not a rule\n" }, nil)
	rec, err := runScan(t, svc, scanargs.Request{Targets: tg.IPv4.String(), Ports: "8080"})
	var fe *fence.Error
	if !errors.As(err, &fe) {
		t.Fatalf("err %v, want a fence.Error", err)
	}
	if rec.Status != store.Failed || !strings.Contains(rec.Error, "network fence could not be installed") || rec.Result != nil && len(rec.Result.Hosts) > 0 {
		t.Errorf("record %s %q %+v", rec.Status, rec.Error, rec.Result)
	}
	recs, err := audit.Tail(trail, 10)
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	if last.Event != audit.Ended || last.ScanID != rec.ID || last.Outcome != store.Failed || !strings.Contains(last.Error, "network fence could not be installed") {
		t.Errorf("audit's last record %+v", last)
	}
}

// fakeResolver answers for its names only.
type fakeResolver map[string]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, fmt.Errorf("no such host %s", host)
}
