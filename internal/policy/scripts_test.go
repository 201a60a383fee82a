package policy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// These tests call the policy directly: nothing here sends a packet.

// testIndex is a small script index shaped like the image's: categories
// from script.db, and which scripts add targets or capture packets.
func testIndex(context.Context) (*ScriptIndex, error) {
	return ParseScriptIndex(`Entry { filename = "http-title.nse", categories = { "default", "discovery", "safe", } }
Entry { filename = "http-enum.nse", categories = { "discovery", "intrusive", "vuln", } }
Entry { filename = "ssh-brute.nse", categories = { "brute", "intrusive", } }
Entry { filename = "smb-vuln-ms17-010.nse", categories = { "vuln", "safe", } }
Entry { filename = "banner.nse", categories = { "discovery", "safe", } }
Entry { filename = "resolveall.nse", categories = { "discovery", "safe", } }
Entry { filename = "targets-sniffer.nse", categories = { "broadcast", "discovery", "safe", } }
Entry { filename = "qscan.nse", categories = { "discovery", "safe", } }
Entry { filename = "whois-ip.nse", categories = { "discovery", "external", "safe", } }
Entry { filename = "ssh-hostkey.nse", categories = { "default", "discovery", "safe", } }
` + AddsTargetsMarker + `
resolveall.nse
targets-sniffer.nse
` + CapturesMarker + `
targets-sniffer.nse
qscan.nse
`), nil
}

func TestTechniquesAndScripts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.UDP, cfg.OSDetection = false, false
	pol, _ := New(cfg, dns, testIndex)
	for _, c := range []struct {
		req  scanargs.Request
		want string
	}{
		{scanargs.Request{Targets: "127.0.0.1", ScanType: "udp"}, "techniques.udp"},
		{scanargs.Request{Targets: "127.0.0.1", OSDetection: true}, "techniques.os_detection"},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "vuln"}, `category "vuln" is refused`},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "exploit"}, `"exploit"`},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "dos,brute"}, `"dos"`},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "intrusive"}, `"intrusive"`},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "malware"}, `"malware"`},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "external"}, `"external" is refused`},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "broadcast"}, `"broadcast" is refused`},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "ssh-brute"}, `category "brute"`},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "smb-vuln-ms17-010"}, `category "vuln"`},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "http-enum"}, `category "intrusive"`},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "whois-ip"}, `category "external"`},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "resolveall"}, "adds scan targets"},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "qscan"}, "packet capture"},
		{scanargs.Request{Targets: "127.0.0.1", Scripts: "no-such-script"}, "neither an NSE category nor a script"},
	} {
		if _, err := pol.Check(context.Background(), plan(t, c.req)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v; want %q", c.req, err, c.want)
		}
	}
	for _, ok := range []string{"default", "safe,discovery", "http-title", "banner"} {
		if _, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "127.0.0.1", Scripts: ok})); err != nil {
			t.Errorf("scripts %s refused: %v", ok, err)
		}
	}
	cfg.ScriptCategories = append(cfg.ScriptCategories, "vuln")
	pol, _ = New(cfg, dns, testIndex)
	if _, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "127.0.0.1", Scripts: "vuln"})); err != nil {
		t.Fatalf("vuln allowed by config, still refused: %v", err)
	}
}

// Regression (security review 1-3): an allowed category no longer runs
// its scripts that are also in categories that are not allowed, nor those
// that add targets or capture packets; nmap is given names only.
func TestCategoryExpandsToAllowedScriptsOnly(t *testing.T) {
	pol, _ := New(DefaultConfig(), dns, testIndex)
	p, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "127.0.0.1", Scripts: "discovery"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Scripts, ","); got != "banner,http-title,ssh-hostkey" {
		t.Fatalf("scripts run = %s", got)
	}
	args := strings.Join(p.Args(), " ")
	if !strings.Contains(args, "--script banner,http-title,ssh-hostkey ") || strings.Contains(args, "discovery") {
		t.Fatalf("argv passes a category: %s", args)
	}
	why := map[string]string{}
	for _, d := range p.ScriptsDropped {
		why[d.Name] = d.Reason
	}
	for name, want := range map[string]string{"http-enum": `category "intrusive"`, "whois-ip": `category "external"`,
		"resolveall": "adds scan targets", "targets-sniffer": "host network", "qscan": "host network"} {
		if !strings.Contains(why[name], want) {
			t.Errorf("%s dropped for %q, want %q", name, why[name], want)
		}
	}
	// Listed by name, a target-adding script may run; a capture never does
	// on the host network, and may off it when listed.
	cfg := DefaultConfig()
	cfg.ScriptNames = []string{"resolveall", "qscan"}
	pol, _ = New(cfg, dns, testIndex)
	if _, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "127.0.0.1", Scripts: "resolveall"})); err != nil {
		t.Fatalf("listed by name: %v", err)
	}
	if _, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "127.0.0.1", Scripts: "qscan"})); err == nil || !strings.Contains(err.Error(), "host network") {
		t.Fatalf("capture on the host network: %v", err)
	}
	cfg.HostNetwork = false
	pol, _ = New(cfg, dns, testIndex)
	if _, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "127.0.0.1", Scripts: "qscan"})); err == nil || !strings.Contains(err.Error(), "host network") {
		t.Fatalf("a loopback scan runs on the host network even when fenced, but a capture was let through: %v", err)
	}
	// The policy is only asked here; nothing is scanned.
	cfg.Allow = append(cfg.Allow, "192.0.2.0/24")
	pol, _ = New(cfg, dns, testIndex)
	if _, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "192.0.2.7", Scripts: "qscan"})); err != nil {
		t.Fatalf("listed capture off the host network: %v", err)
	}
}

// thirdPartyIndex adds ftp-bounce (default, safe; resolves a check host
// the caller may name and makes the target connect to it), @args lines and
// requires to testIndex's shape.
func thirdPartyIndex(context.Context) (*ScriptIndex, error) {
	return ParseScriptIndex(`Entry { filename = "http-title.nse", categories = { "default", "discovery", "safe", } }
Entry { filename = "ftp-bounce.nse", categories = { "default", "safe", } }
Entry { filename = "banner.nse", categories = { "discovery", "safe", } }
` + AddsTargetsMarker + `
` + CapturesMarker + `
` + ThirdPartyMarker + `
ftp-bounce.nse
` + ArgsMarker + `
ftp-bounce.nse:-- @args ftp-bounce.username Username to log in with. Default
ftp-bounce.nse:--@args ftp-bounce.checkhost Host to try connecting to with the PORT command.
http-title.nse:-- @args http-title.url The url to fetch. Default: /
` + RequiresMarker + `
http-title.nse:local http = require "http"
banner.nse:local comm = require("comm")
` + LibArgsMarker + `
http.lua:-- @args http.useragent The value of the User-Agent header field sent with
comm.lua:-- @args comm.timeout A timeout
`), nil
}

// Regression (security review 2, item 1): ftp-bounce and its kind (they
// resolve names or make the target connect elsewhere) run only when named
// in scripts.names, and never on the host network.
func TestThirdPartyScripts(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.HostNetwork = false
	cfg.Allow = append(cfg.Allow, "192.0.2.0/24") // asked only: nothing is scanned
	pol, _ := New(cfg, dns, thirdPartyIndex)
	for _, target := range []string{"127.0.0.1", "192.0.2.7"} {
		p, err := pol.Check(ctx, plan(t, scanargs.Request{Targets: target, Scripts: "default"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(p.Scripts, ","); got != "http-title" {
			t.Errorf("%s: default ran %s; ftp-bounce must be dropped", target, got)
		}
		if len(p.ScriptsDropped) != 1 || !strings.Contains(p.ScriptsDropped[0].Reason, "third parties") {
			t.Errorf("%s: dropped %+v", target, p.ScriptsDropped)
		}
		want := "scripts.names"
		if target == "127.0.0.1" {
			want = "never allowed on the host network"
		}
		if _, err := pol.Check(ctx, plan(t, scanargs.Request{Targets: target, Scripts: "ftp-bounce"})); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: ftp-bounce by name, not listed: %v", target, err)
		}
	}
	cfg.ScriptNames = []string{"ftp-bounce"}
	pol, _ = New(cfg, dns, thirdPartyIndex)
	if _, err := pol.Check(ctx, plan(t, scanargs.Request{Targets: "192.0.2.7", Scripts: "ftp-bounce"})); err != nil {
		t.Errorf("listed, off the host network: %v", err)
	}
	if _, err := pol.Check(ctx, plan(t, scanargs.Request{Targets: "127.0.0.1", Scripts: "ftp-bounce"})); err == nil || !strings.Contains(err.Error(), "never allowed on the host network") {
		t.Errorf("listed, on the host network (loopback): %v", err)
	}
}

// Regression (security review 2, item 1): a script_args key passes only
// when a script that will run, or a library it requires, documents it.
func TestScriptArgsMustBeDocumented(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.ScriptNames = []string{"ftp-bounce"}
	cfg.HostNetwork = false
	cfg.Allow = append(cfg.Allow, "192.0.2.0/24") // asked only: nothing is scanned
	pol, _ := New(cfg, dns, thirdPartyIndex)
	for _, c := range []struct{ scripts, args, want string }{
		{"http-title", "http.useragent=scanner", ""},
		{"http-title", "http-title.url=index", ""},
		{"banner", "comm.timeout=5s", ""},
		{"ftp-bounce", "ftp-bounce.username=anon", ""},
		{"http-title", "ftp-bounce.username=anon", `"ftp-bounce.username"`},
		{"banner", "http.useragent=scanner", `"http.useragent"`},
		{"http-title", "made.up=1", `"made.up"`},
		{"default", "unknown=1", "documents the argument"},
	} {
		_, err := pol.Check(ctx, plan(t, scanargs.Request{Targets: "192.0.2.7", Scripts: c.scripts, ScriptArgs: c.args}))
		var fe *scanargs.FieldError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s refused: %v", c.scripts, c.args, err)
		case c.want != "" && (!errors.As(err, &fe) || fe.Field != "script_args" || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s: %v; want a script_args refusal naming %s", c.scripts, c.args, err, c.want)
		}
	}
}

// The index is read from the text the image's shell script prints.
func TestParseScriptIndex(t *testing.T) {
	idx, _ := testIndex(context.Background())
	if len(idx.Categories) != 10 || !idx.AddsTargets["resolveall"] || !idx.Captures["qscan"] || idx.Captures["resolveall"] ||
		strings.Join(idx.Categories["http-enum"], ",") != "discovery,intrusive,vuln" {
		t.Fatalf("%+v", idx)
	}
}

// Regression (security review 7): the address limit counts addresses
// after name resolution.
func TestAddressLimitAfterResolution(t *testing.T) {
	many := fakeDNS{"many.lab.test": nil}
	for i := 1; i <= 40; i++ {
		many["many.lab.test"] = append(many["many.lab.test"], fmt.Sprintf("10.9.0.%d", i))
	}
	cfg := DefaultConfig()
	cfg.Allow = append(cfg.Allow, "many.lab.test")
	cfg.MaxAddressesPerScan = 5
	pol, _ := New(cfg, many, nil)
	_, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "many.lab.test"}))
	if err == nil || !strings.Contains(err.Error(), "40 addresses") || !strings.Contains(err.Error(), "budgets.max_addresses_per_scan") {
		t.Fatalf("40 resolved addresses with a limit of 5: %v", err)
	}
}

// countingDNS counts lookups and fails them the way the standard resolver
// does, naming the resolver's address.
type countingDNS struct{ n int }

func (c *countingDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	c.n++
	return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.53.0.2:53", IsNotFound: true}
}

// Regression (security review 8): names no allow rule names are refused
// before any lookup, and messages never show the resolver.
func TestNoLookupBeforeRefusal(t *testing.T) {
	res := &countingDNS{}
	pol, _ := New(DefaultConfig(), res, nil)
	_, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "exfil-secret-data.attacker.test"}))
	if err == nil || res.n != 0 || !strings.Contains(err.Error(), "resolve_unlisted_names") {
		t.Fatalf("unlisted name: err %v, lookups %d", err, res.n)
	}
	cfg := DefaultConfig()
	cfg.ResolveUnlistedNames = true
	pol, _ = New(cfg, res, nil)
	_, err = pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "gone.example.test"}))
	if err == nil || res.n != 1 || strings.Contains(err.Error(), "10.53.0.2") || !strings.Contains(err.Error(), "no such host") {
		t.Fatalf("failed lookup: err %v, lookups %d", err, res.n)
	}
}

// Regression (security review 9): an IPv4 deny rule also matches the
// address written as IPv4-mapped, NAT64, 6to4 or Teredo IPv6, even when
// a broad IPv6 range is allowed.
func TestDenyAcrossFamilies(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Allow = append(cfg.Allow, "::/0")
	pol, err := New(cfg, dns, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "64:ff9b::169.254.169.254",
		"2002:a9fe:a9fe::1", "2002:a9fe:a9fe::/116", "64:ff9b::a9fe:a900/120", "2001:0:4136:e378:8000:63bf:5601:5601",
		"64:ff9b:1:a9fe:a9:fe00::", "2001::/116"} {
		if _, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: target})); err == nil || !strings.Contains(err.Error(), "169.254.169.254") {
			t.Errorf("%s: %v; want a refusal naming 169.254.169.254", target, err)
		}
	}
	if _, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "2002:0a00:0001::1"})); err != nil {
		t.Errorf("6to4 of an allowed address: %v", err)
	}
}

func TestBudgets(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Window, cfg.ScansPerClient, cfg.AddressesPerClient = time.Minute, 3, 300
	pol, _ := New(cfg, dns, nil)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	pol.now = func() time.Time { return now }
	check := func(client, targets string) error {
		p, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: targets}))
		if err != nil {
			return err
		}
		return pol.Spend(client, p.Addresses)
	}
	if err := check("a", "10.0.0.0/24"); err != nil { // 256 addresses
		t.Fatal(err)
	}
	now = now.Add(10 * time.Second)
	var be *BudgetError
	if err := check("a", "10.0.1.0/26"); !errors.As(err, &be) || be.Budget != "addresses per client" || !be.FreesAt.Equal(now.Add(50*time.Second)) {
		t.Fatalf("address budget: %v", err)
	}
	if err := check("b", "10.0.1.0/26"); err != nil {
		t.Fatalf("another client shares the budget: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := check("a", "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := check("a", "127.0.0.1"); !errors.As(err, &be) || be.Budget != "scans per client" || !strings.Contains(err.Error(), "3 per 1m0s") {
		t.Fatalf("scan budget: %v", err)
	}
	now = now.Add(time.Minute)
	if err := check("a", "127.0.0.1"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// check_scope's answers: allowed with the rule that covers it, refused
// with the rule and key, names resolved only when an allow rule names
// them. Nothing is scanned.
func TestExplain(t *testing.T) {
	res := &countingDNS{}
	cfg := DefaultConfig()
	pol, _ := New(cfg, fakeDNS{"localhost": {"127.0.0.1", "::1"}}, nil)
	targets, err := scanargs.ParseTargetList("127.0.0.1, 169.254.169.254 localhost 8.8.8.8 10.1.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	ds := pol.Explain(context.Background(), targets)
	want := []struct {
		allowed bool
		rule    string
	}{{true, "allow 127.0.0.0/8"}, {false, "deny"}, {true, "allow localhost"}, {false, "no allow rule"}, {true, "allow 10.0.0.0/8"}}
	for i, w := range want {
		if ds[i].Allowed != w.allowed || ds[i].Rule != w.rule {
			t.Errorf("%s: %+v, want %+v", ds[i].Target, ds[i], w)
		}
	}
	if strings.Join(ds[2].Addresses, " ") != "127.0.0.1 ::1" || ds[1].Key != "scope.deny" || !strings.Contains(ds[1].Reason, "169.254.169.254/32") {
		t.Fatalf("%+v", ds)
	}
	pol, _ = New(cfg, res, nil)
	targets, _ = scanargs.ParseTargetList("unlisted.example.test")
	if d := pol.Explain(context.Background(), targets)[0]; d.Allowed || res.n != 0 || d.Key != "scope.allow" {
		t.Fatalf("unlisted name: %+v, %d lookups", d, res.n)
	}
}
