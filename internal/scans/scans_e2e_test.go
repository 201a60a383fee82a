package scans_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// These tests run real containers on the real engine (the Docker runner);
// scans target only listeners the tests open on 127.0.0.1. The lifecycle
// logic is tested without an engine in service_test.go.

var env *testkit.Env

func TestMain(m *testing.M) {
	os.Exit(testkit.Main(m, "scans", func(e *testkit.Env) { env = e }))
}

// newService returns a service on the real engine whose containers are
// removed before the test ends.
func newService(t *testing.T, pol scans.Checker) *scans.Service {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "scans.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	svc := scans.New(scans.Config{Sandbox: env.Options(sandbox.DefaultLimits()), MaxAddresses: 4096, Concurrency: 2, QueueSize: 4},
		scans.Deps{Runner: executor.New(env.Client, nil), Image: env.Image, Store: st, Policy: pol})
	t.Cleanup(func() {
		if err := svc.Close(context.Background()); err != nil {
			t.Error(err)
		}
		st.Close()
	})
	return svc
}

func intp(n int) *int { return &n }

func runScan(t testing.TB, svc *scans.Service, req scanargs.Request) (*store.Record, error) {
	t.Helper()
	sc, err := svc.Submit(context.Background(), req, scans.Options{})
	if err != nil {
		return nil, err
	}
	return sc.Snapshot().Record, sc.Err()
}

// TCP scans see the test's listener open and a free port closed, both as
// an unprivileged connect scan and as a SYN scan with NET_RAW only.
func TestTCPScansSeeOpenAndClosed(t *testing.T) {
	testkit.NeedEngine(t)
	open := testkit.TCPListener(t)
	closed := testkit.ClosedTCPPort(t)
	svc := newService(t, nil)
	for _, typ := range []string{"connect", "syn"} {
		t.Run(typ, func(t *testing.T) {
			rec, err := runScan(t, svc, scanargs.Request{Targets: "127.0.0.1", ScanType: typ, Ports: fmt.Sprintf("%d,%d", open, closed)})
			text, _ := scans.RecordText(rec, scans.DefaultTextCap)
			if err != nil {
				t.Fatalf("scan: %v\n%s", err, text)
			}
			assertPort(t, rec, "tcp", open, "open")
			assertPort(t, rec, "tcp", closed, "closed")
			for _, want := range []string{fmt.Sprintf("%d/tcp open", open), "1 open, 1 closed",
				"Command: nmap", "-- 127.0.0.1", ": done after"} {
				if !strings.Contains(text, want) {
					t.Fatalf("result lacks %q:\n%s", want, text)
				}
			}
			wantCaps := map[string]string{"connect": "uid 65532, caps none", "syn": "uid 0, caps NET_RAW"}[typ]
			if !strings.Contains(text, wantCaps) {
				t.Errorf("header does not show %q:\n%s", wantCaps, text)
			}
		})
	}
}

func TestUDPScanSeesListener(t *testing.T) {
	testkit.NeedEngine(t)
	port := testkit.UDPEcho(t)
	rec, err := runScan(t, newService(t, nil), scanargs.Request{Targets: "127.0.0.1", ScanType: "udp", Ports: fmt.Sprint(port), Timing: "T4"})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	assertPort(t, rec, "udp", port, "open")
}

// A scan that outlives timeout_seconds is killed and keeps what it printed.
func TestTimeoutKeepsPartialOutput(t *testing.T) {
	testkit.NeedEngine(t)
	svc := newService(t, nil)
	rec, err := runScan(t, svc, scanargs.Request{Targets: "127.0.0.1", Ports: "1-50", Timing: "T0", TimeoutSeconds: intp(2)})
	var te *executor.TimeoutError
	if !errors.As(err, &te) || rec.Status != store.TimedOut {
		t.Fatalf("err = %v, status %s", err, rec.Status)
	}
	text, _ := scans.RecordText(rec, 0)
	xml, _ := svc.RawXML(context.Background(), rec.ID)
	if rec.Result == nil || !rec.Result.Partial || !strings.Contains(string(xml), "<nmaprun") || !strings.Contains(text, "partial") {
		t.Fatalf("partial output or its mark missing:\n%s", text)
	}
}

func TestRefusedScanRunsNothing(t *testing.T) {
	testkit.NeedEngine(t)
	svc := newService(t, nil)
	for _, targets := range []string{"-iL=/etc/passwd", "--script=vuln", "10.0.0.0/8"} {
		sc, err := svc.Submit(context.Background(), scanargs.Request{Targets: targets}, scans.Options{})
		var fe *scanargs.FieldError
		if sc != nil || !errors.As(err, &fe) {
			t.Fatalf("%s: scan %v, err %v; want a refusal and no scan", targets, sc, err)
		}
	}
	if recs, _ := svc.List(context.Background(), store.Filter{}); len(recs) != 0 {
		t.Fatalf("refusals left records: %d", len(recs))
	}
}

func TestVersion(t *testing.T) {
	testkit.NeedEngine(t)
	v, err := newService(t, nil).Version(context.Background())
	if err != nil || !strings.HasPrefix(v, "Nmap version 7.93") {
		t.Fatalf("Version = %q, %v", v, err)
	}
}

// assertPort checks the decoded result has the port in the state.
func assertPort(t *testing.T, rec *store.Record, proto string, port int, state string) {
	t.Helper()
	if rec.Result == nil || len(rec.Result.Hosts) != 1 {
		t.Fatalf("decoded result %+v (error %s)", rec.Result, rec.Error)
	}
	for _, p := range rec.Result.Hosts[0].Ports {
		if p.Protocol == proto && p.Port == port {
			if p.State != state {
				t.Fatalf("%d/%s is %s, want %s", port, proto, p.State, state)
			}
			return
		}
	}
	t.Fatalf("%d/%s not in the result: %+v", port, proto, rec.Result.Hosts[0].Ports)
}

// Regression (security review 1-3), with the real image's script index: an
// allowed category such as discovery never reaches nmap as a category;
// its scripts that are also intrusive, vuln, external or broadcast, that
// add targets, or that capture packets are dropped and named. Nothing is
// scanned: the policy is called directly.
func TestDiscoveryCategoryRunsOnlyAllowedScripts(t *testing.T) {
	testkit.NeedEngine(t)
	ctx := context.Background()
	svc := newService(t, nil)
	idx, err := svc.ScriptIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Categories) < 500 || !idx.AddsTargets["resolveall"] || !idx.Captures["targets-sniffer"] {
		t.Fatalf("script index: %d scripts, resolveall adds targets %v, targets-sniffer captures %v",
			len(idx.Categories), idx.AddsTargets["resolveall"], idx.Captures["targets-sniffer"])
	}
	pol, err := policy.New(policy.DefaultConfig(), nil, svc.ScriptIndex)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := scanargs.Request{Targets: "127.0.0.1", Ports: "80", Scripts: "discovery"}.Plan(scanargs.DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	plan, err = pol.Check(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	args := plan.Args()
	var list []string
	for i, a := range args {
		if a == "--script" {
			list = strings.Split(args[i+1], ",")
		}
	}
	for _, bad := range []string{"discovery", "http-enum", "resolveall", "targets-sniffer", "whois-ip"} {
		if slices.Contains(list, bad) {
			t.Fatalf("--script names %s: %v", bad, args)
		}
	}
	if !slices.Contains(list, "banner") {
		t.Fatalf("argv: %v", args)
	}
	dropped := map[string]bool{}
	for _, d := range plan.ScriptsDropped {
		dropped[d.Name] = true
	}
	for _, want := range []string{"http-enum", "resolveall", "targets-sniffer", "whois-ip"} {
		if !dropped[want] {
			t.Errorf("%s not dropped", want)
		}
	}
	t.Logf("discovery: %d scripts run, %d dropped", len(plan.Scripts), len(plan.ScriptsDropped))
}
