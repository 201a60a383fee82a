package scanner_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/scan"
	"github.com/nmap-mcp/nmap-mcp/internal/scanner"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

var env *testkit.Env

func TestMain(m *testing.M) {
	os.Exit(testkit.Main(m, "scanner", func(e *testkit.Env) { env = e }))
}

// newScanner returns a scanner whose finished containers are removed
// before the test ends.
func newScanner(t *testing.T) *scanner.Scanner {
	sc := scanner.New(executor.New(env.Client, nil), env.Image, scanner.Config{
		Sandbox: env.Options(sandbox.DefaultLimits()), MaxAddresses: 4096})
	t.Cleanup(func() {
		if err := sc.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return sc
}

func intp(n int) *int { return &n }

// TCP scans see the test's listener open and a free port closed, both as
// an unprivileged connect scan and as a SYN scan with NET_RAW only.
func TestTCPScansSeeOpenAndClosed(t *testing.T) {
	open := testkit.TCPListener(t)
	closed := testkit.ClosedTCPPort(t)
	for _, typ := range []string{"connect", "syn"} {
		t.Run(typ, func(t *testing.T) {
			rep, err := newScanner(t).Run(context.Background(), scan.Request{
				Targets: "127.0.0.1", ScanType: typ, Ports: fmt.Sprintf("%d,%d", open, closed)}, scanner.Observer{})
			text, _ := rep.Text(scanner.DefaultTextCap)
			if err != nil {
				t.Fatalf("scan: %v\n%s", err, text)
			}
			assertPort(t, rep, "tcp", open, "open")
			assertPort(t, rep, "tcp", closed, "closed")
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
	port := testkit.UDPEcho(t)
	rep, err := newScanner(t).Run(context.Background(), scan.Request{
		Targets: "127.0.0.1", ScanType: "udp", Ports: fmt.Sprint(port), Timing: "T4"}, scanner.Observer{})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	assertPort(t, rep, "udp", port, "open")
}

// A scan that outlives timeout_seconds is killed and keeps what it printed.
func TestTimeoutThroughScanner(t *testing.T) {
	rep, err := newScanner(t).Run(context.Background(), scan.Request{
		Targets: "127.0.0.1", Ports: "1-50", Timing: "T0", TimeoutSeconds: intp(2)}, scanner.Observer{})
	var te *executor.TimeoutError
	if !errors.As(err, &te) || rep.Status() != store.TimedOut {
		t.Fatalf("err = %v, status %s", err, rep.Status())
	}
	text, _ := rep.Text(0)
	if !rep.Parsed.Partial || !strings.Contains(string(rep.Result.Stdout), "<nmaprun") || !strings.Contains(text, "partial") {
		t.Fatalf("partial output or its mark missing:\n%s", text)
	}
	if !env.ContainerGone(context.Background(), rep.Result.ContainerID) {
		t.Fatal("container left after time-out")
	}
}

func TestRefusedScanRunsNothing(t *testing.T) {
	for _, targets := range []string{"-iL=/etc/passwd", "--script=vuln", "10.0.0.0/8"} {
		rep, err := newScanner(t).Run(context.Background(), scan.Request{Targets: targets}, scanner.Observer{})
		var fe *scan.FieldError
		if rep != nil || !errors.As(err, &fe) {
			t.Fatalf("%s: report %v, err %v; want a refusal and no report", targets, rep, err)
		}
	}
}

func TestVersion(t *testing.T) {
	v, err := newScanner(t).Version(context.Background())
	if err != nil || !strings.HasPrefix(v, "Nmap version 7.93") {
		t.Fatalf("Version = %q, %v", v, err)
	}
}

// assertPort checks the decoded result has the port in the state.
func assertPort(t *testing.T, rep *scanner.Report, proto string, port int, state string) {
	t.Helper()
	if rep.Parsed == nil || len(rep.Parsed.Hosts) != 1 {
		t.Fatalf("decoded result %+v (decode error %v)", rep.Parsed, rep.DecodeErr)
	}
	for _, p := range rep.Parsed.Hosts[0].Ports {
		if p.Protocol == proto && p.Port == port {
			if p.State != state {
				t.Fatalf("%d/%s is %s, want %s", port, proto, p.State, state)
			}
			return
		}
	}
	t.Fatalf("%d/%s not in the result: %+v", port, proto, rep.Parsed.Hosts[0].Ports)
}

// Regression (security review 1-3), with the real image's script index: an
// allowed category such as discovery no longer reaches nmap as a category;
// its scripts that are also intrusive, vuln, external or broadcast, that
// add targets, or that capture packets are dropped and named. The scan
// targets only a loopback listener the test opens.
func TestDiscoveryCategoryRunsOnlyAllowedScripts(t *testing.T) {
	ctx := context.Background()
	open := testkit.TCPListener(t)
	var sc *scanner.Scanner
	pol, err := policy.New(policy.DefaultConfig(), nil, func(ctx context.Context) (*policy.ScriptIndex, error) { return sc.ScriptIndex(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	sc = scanner.New(executor.New(env.Client, nil), env.Image, scanner.Config{
		Sandbox: env.Options(sandbox.DefaultLimits()), MaxAddresses: 4096, Policy: pol})
	t.Cleanup(func() { sc.Close(ctx) })
	idx, err := sc.ScriptIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Categories) < 500 || !idx.AddsTargets["resolveall"] || !idx.Captures["targets-sniffer"] {
		t.Fatalf("script index: %d scripts, resolveall adds targets %v, targets-sniffer captures %v",
			len(idx.Categories), idx.AddsTargets["resolveall"], idx.Captures["targets-sniffer"])
	}
	rep, err := sc.Prepare(ctx, scan.Request{Targets: "127.0.0.1", Ports: fmt.Sprint(open), Scripts: "discovery"})
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Join(rep.Argv, " ")
	var list []string
	for i, a := range rep.Argv {
		if a == "--script" {
			list = strings.Split(rep.Argv[i+1], ",")
		}
	}
	for _, bad := range []string{"discovery", "http-enum", "resolveall", "targets-sniffer", "whois-ip"} {
		if slices.Contains(list, bad) {
			t.Fatalf("--script names %s: %s", bad, argv)
		}
	}
	if !slices.Contains(list, "banner") {
		t.Fatalf("argv: %s", argv)
	}
	notes := strings.Join(rep.Record.Notes, "\n")
	for _, want := range []string{"http-enum not run", "resolveall not run", "targets-sniffer not run", "whois-ip not run"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q", want)
		}
	}
	t.Logf("discovery: %d scripts run, %d dropped", len(rep.Plan.Scripts), len(rep.Plan.ScriptsDropped))
}
