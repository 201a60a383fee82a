package scanargs

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ip(n int) *int { return &n }

func TestPlanAccepts(t *testing.T) {
	rules := DefaultRules()
	cases := []struct {
		name string
		req  Request
		args []string
	}{
		{"defaults", Request{Targets: "127.0.0.1"},
			[]string{"-sT", "--top-ports", "100", "--", "127.0.0.1"}},
		{"ports replace top ports", Request{Targets: "127.0.0.1", Ports: "22, 80,8000-8100"},
			[]string{"-sT", "-p", "22,80,8000-8100", "--", "127.0.0.1"}},
		{"syn with everything", Request{Targets: "127.0.0.1 localhost", ScanType: "syn", TopPorts: ip(10),
			ServiceVersions: true, SkipHostDiscovery: true, Timing: "T4"},
			[]string{"-sS", "--top-ports", "10", "-sV", "-Pn", "-T4", "--", "127.0.0.1", "localhost"}},
		{"udp", Request{Targets: "127.0.0.1", ScanType: "UDP", Ports: "53"},
			[]string{"-sU", "-p", "53", "--", "127.0.0.1"}},
		{"ping has no ports", Request{Targets: "127.0.0.0/30", ScanType: "ping"},
			[]string{"-sn", "--", "127.0.0.0/30"}},
		{"extra_timing alias", Request{Targets: "127.0.0.1", ExtraTiming: "t2"},
			[]string{"-sT", "--top-ports", "100", "-T2", "--", "127.0.0.1"}},
		{"both timing names agree", Request{Targets: "127.0.0.1", Timing: "T3", ExtraTiming: "3"},
			[]string{"-sT", "--top-ports", "100", "-T3", "--", "127.0.0.1"}},
		{"ipv6 adds -6", Request{Targets: "::1, fd00::/120", Ports: "22"},
			[]string{"-sT", "-6", "-p", "22", "--", "::1", "fd00::/120"}},
		{"duplicates dropped", Request{Targets: "127.0.0.1,127.0.0.1 127.0.0.1", Ports: "1"},
			[]string{"-sT", "-p", "1", "--", "127.0.0.1"}},
		{"hostname lowercased", Request{Targets: "ScanMe.Nmap.Org.", Ports: "80"},
			[]string{"-sT", "-p", "80", "--", "scanme.nmap.org"}},
		{"os and scripts", Request{Targets: "127.0.0.1", Ports: "80", OSDetection: true, Scripts: "Default, http-title", ScriptArgs: "http.useragent=nmap-mcp"},
			[]string{"-sT", "-p", "80", "-O", "--script", "default,http-title", "--script-args", "http.useragent=nmap-mcp", "--", "127.0.0.1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := c.req.Plan(rules)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			want := append([]string{"-oX", "-", "--stats-every", StatsEvery}, c.args...)
			if got := p.Args(); !reflect.DeepEqual(got, want) {
				t.Fatalf("Args = %q, want %q", got, want)
			}
		})
	}
}

func TestPlanDefaultsAndPrivileges(t *testing.T) {
	p, err := Request{Targets: "10.0.0.0/24"}.Plan(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	if p.Addresses != 256 || p.Timeout != 220*time.Second || p.Type != Connect || p.Privileged() {
		t.Fatalf("plan = %+v", p)
	}
	for typ, priv := range map[string]bool{"syn": true, "udp": true, "connect": false, "ping": false} {
		p, err := Request{Targets: "127.0.0.1", ScanType: typ}.Plan(DefaultRules())
		if err != nil {
			t.Fatal(err)
		}
		if p.Privileged() != priv {
			t.Errorf("%s: Privileged = %v", typ, p.Privileged())
		}
	}
	p, err = Request{Targets: "127.0.0.1", TimeoutSeconds: ip(600)}.Plan(DefaultRules())
	if err != nil || p.Timeout != 600*time.Second {
		t.Fatalf("timeout 600: %v %v", p, err)
	}
}

func TestPlanRefuses(t *testing.T) {
	rules := DefaultRules()
	cases := []struct {
		name  string
		req   Request
		field string
		rule  string
	}{
		{"empty targets", Request{Targets: " , "}, "targets", "empty"},
		{"option as target", Request{Targets: "-iL=/etc/passwd"}, "targets", `starts with "-"`},
		{"script option", Request{Targets: "127.0.0.1 --script=vuln"}, "targets", `starts with "-"`},
		{"output option", Request{Targets: "-oN=/tmp/x"}, "targets", `starts with "-"`},
		{"huge cidr", Request{Targets: "10.0.0.0/8"}, "targets", "more than 4096 addresses"},
		{"huge v6 cidr", Request{Targets: "fd00::/64"}, "targets", "more than 4096 addresses"},
		{"sum over limit", Request{Targets: "10.0.0.0/21 10.1.0.0/21 10.2.0.0/30"}, "targets", "more than 4096"},
		{"nmap range", Request{Targets: "10.0.0.1-5"}, "targets", "nmap address range"},
		{"nmap wildcard", Request{Targets: "10.0.0.*"}, "targets", "nmap address range"},
		{"path", Request{Targets: "/etc/passwd"}, "targets", "CIDR"},
		{"bad cidr", Request{Targets: "10.0.0.0/33"}, "targets", "CIDR"},
		{"zone", Request{Targets: "fe80::1%eth0"}, "targets", "zone"},
		{"mixed families", Request{Targets: "127.0.0.1 ::1"}, "targets", "mixes IPv4"},
		{"shell chars", Request{Targets: "a;b"}, "targets", "hostname"},
		{"bad type", Request{Targets: "127.0.0.1", ScanType: "xmas"}, "scan_type", "one of"},
		{"port zero", Request{Targets: "127.0.0.1", Ports: "0"}, "ports", "1-65535"},
		{"port too big", Request{Targets: "127.0.0.1", Ports: "65536"}, "ports", "1-65535"},
		{"descending range", Request{Targets: "127.0.0.1", Ports: "90-80"}, "ports", "ascending"},
		{"open range", Request{Targets: "127.0.0.1", Ports: "80-"}, "ports", "ascending"},
		{"port option", Request{Targets: "127.0.0.1", Ports: "-p-"}, "ports", "1-65535"},
		{"protocol prefix", Request{Targets: "127.0.0.1", Ports: "T:80"}, "ports", "1-65535"},
		{"ports and top ports", Request{Targets: "127.0.0.1", Ports: "80", TopPorts: ip(10)}, "top_ports", "drop top_ports to scan ports"},
		{"top ports zero", Request{Targets: "127.0.0.1", TopPorts: ip(0)}, "top_ports", "1 to 65535"},
		{"top ports big", Request{Targets: "127.0.0.1", TopPorts: ip(70000)}, "top_ports", "1 to 65535"},
		{"timing", Request{Targets: "127.0.0.1", Timing: "T9"}, "timing", "T0 to T5"},
		{"timing option", Request{Targets: "127.0.0.1", Timing: "-d"}, "timing", "T0 to T5"},
		{"extra timing", Request{Targets: "127.0.0.1", ExtraTiming: "fast"}, "extra_timing", "T0 to T5"},
		{"timing disagree", Request{Targets: "127.0.0.1", Timing: "T1", ExtraTiming: "T4"}, "extra_timing", "disagrees"},
		{"timeout zero", Request{Targets: "127.0.0.1", TimeoutSeconds: ip(0)}, "timeout_seconds", "1 to 600"},
		{"timeout big", Request{Targets: "127.0.0.1", TimeoutSeconds: ip(601)}, "timeout_seconds", "1 to 600"},
		{"ping with ports", Request{Targets: "127.0.0.1", ScanType: "ping", Ports: "80"}, "ports", "ping"},
		{"ping with -sV", Request{Targets: "127.0.0.1", ScanType: "ping", ServiceVersions: true}, "service_versions", "ping"},
		{"ping with -Pn", Request{Targets: "127.0.0.1", ScanType: "ping", SkipHostDiscovery: true}, "skip_host_discovery", "ping"},
		{"script path", Request{Targets: "127.0.0.1", Scripts: "../../tmp/x.nse"}, "scripts", "letters, digits and hyphens"},
		{"script expression", Request{Targets: "127.0.0.1", Scripts: "not intrusive"}, "scripts", "letters, digits and hyphens"},
		{"script glob", Request{Targets: "127.0.0.1", Scripts: "http-*"}, "scripts", "letters, digits and hyphens"},
		{"script args path", Request{Targets: "127.0.0.1", Scripts: "http-title", ScriptArgs: "userdb=/etc/passwd"}, "script_args", "no paths"},
		{"script args braces", Request{Targets: "127.0.0.1", Scripts: "http-title", ScriptArgs: "a={b}"}, "script_args", "no paths"},
		{"script args alone", Request{Targets: "127.0.0.1", ScriptArgs: "a=b"}, "script_args", "needs scripts"},
		{"ping with os", Request{Targets: "127.0.0.1", ScanType: "ping", OSDetection: true}, "os_detection", "port scan"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := c.req.Plan(rules)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Plan = %v, %v; want a *FieldError", p, err)
			}
			if fe.Field != c.field || !strings.Contains(err.Error(), c.rule) {
				t.Fatalf("error %q (field %s); want field %s and rule containing %q", err, fe.Field, c.field, c.rule)
			}
			if !strings.Contains(err.Error(), fe.Value) || fe.Value == "" && c.field != "targets" {
				t.Fatalf("error %q does not name the value", err)
			}
		})
	}
}

func TestMaxAddressesConfigurable(t *testing.T) {
	rules := DefaultRules()
	rules.MaxAddresses = 2
	if _, err := (Request{Targets: "127.0.0.1 127.0.0.2"}).Plan(rules); err != nil {
		t.Fatalf("2 addresses: %v", err)
	}
	if _, err := (Request{Targets: "127.0.0.0/30"}).Plan(rules); err == nil {
		t.Fatal("4 addresses accepted under a limit of 2")
	}
	rules.MaxTimeout = 30 * time.Second
	if _, err := (Request{Targets: "127.0.0.1", TimeoutSeconds: ip(31)}).Plan(rules); err == nil ||
		!strings.Contains(err.Error(), "1 to 30") {
		t.Fatalf("timeout over the configured max: %v", err)
	}
}

func TestDecodeRequest(t *testing.T) {
	r, err := DecodeRequest([]byte(`{"targets":"127.0.0.1","top_ports":5,"extra_timing":"T4","service_versions":true}`))
	if err != nil || r.Targets != "127.0.0.1" || *r.TopPorts != 5 || r.ExtraTiming != "T4" || !r.ServiceVersions {
		t.Fatalf("DecodeRequest = %+v, %v", r, err)
	}
	for in, want := range map[string]string{
		`{"targets":"x","script":"vuln"}`:   `invalid script "(present)": is not a parameter`,
		`{"targets":"x","top_ports":"100"}`: "top_ports",
		`{"targets":"x","top_ports":1.5}`:   "top_ports",
		`{"targets":7}`:                     "targets",
	} {
		if _, err := DecodeRequest([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeRequest(%s) = %v; want error containing %q", in, err, want)
		}
	}
}

// Regression (security review 2): script arguments that add targets or
// point scripts at hosts, networks or interfaces are refused.
func TestScriptArgsNamingHostsRefused(t *testing.T) {
	for _, args := range []string{"newtargets=1", "max-newtargets=5", "resolveall.hosts=127.0.0.1", "targets-sniffer.iface=lo",
		"targets-asn.asn=1", "broadcast-ping.interface=eth0", "http.host=evil", "dns-brute.domain=example.com",
		"whois-ip.whodb=nofollow,x.target=y", "smb.server=a", "foo=10.0.0.1", "foo=fe80::1"} {
		_, err := Request{Targets: "127.0.0.1", Scripts: "banner", ScriptArgs: args}.Plan(DefaultRules())
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "script_args" {
			t.Errorf("script_args %q: %v; want a refusal", args, err)
		}
	}
	if _, err := (Request{Targets: "127.0.0.1", Scripts: "http-title", ScriptArgs: "http.useragent=scanner,http-title.url=index"}).Plan(DefaultRules()); err != nil {
		t.Fatalf("harmless args refused: %v", err)
	}
}

// Regression (security review 2, item 1): a value that is a host name is
// refused for every key, not only for keys that name hosts: ftp-bounce's
// checkhost resolved a name the caller chose (a DNS exfiltration channel).
func TestScriptArgValuesNamingHostsRefused(t *testing.T) {
	for _, args := range []string{"ftp-bounce.checkhost=exfil.attacker.example", "foo=scanme.nmap.org", "foo=user@evil.example",
		"foo=evil.example:8080", "foo=x.local.", "foo=user@10.1.2.3", "foo=127.0.0.1:53",
		// Red-team review: the numeric forms inet_aton reads, and labels
		// DNS would refuse but resolvers take.
		"ftp-bounce.checkhost=3232235777", "foo=127.1", "foo=10.1", "foo=0300.0250.1.1", "foo=192.168.257", "foo=0x7f000001",
		"foo=0X7F000001", "foo=evil-.example", "foo=user@0x7f000001"} {
		_, err := Request{Targets: "127.0.0.1", Scripts: "ftp-bounce", ScriptArgs: args}.Plan(DefaultRules())
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "script_args" || !strings.Contains(fe.Rule, "carries") {
			t.Errorf("script_args %q: %v; want a refusal that says it carries a host", args, err)
		}
	}
	for _, ok := range []string{"http.useragent=scanner", "http.max-body-size=2097152", "foo=5", "foo=v2.0", "ssh-hostkey=full", "foo=16777215"} {
		if _, err := (Request{Targets: "127.0.0.1", Scripts: "http-title", ScriptArgs: ok}).Plan(DefaultRules()); err != nil {
			t.Errorf("script_args %q refused: %v", ok, err)
		}
	}
}

// shards: 1 always passes (never split); more needs a server that splits
// scans, within its bound; the refusal names the field, value and rule.
func TestPlanShards(t *testing.T) {
	n := func(i int) *int { return &i }
	off := DefaultRules()
	on := DefaultRules()
	on.MaxShards = 8
	for _, tc := range []struct {
		rules Rules
		n     int
		ok    bool
		want  string
	}{
		{off, 1, true, ""},
		{off, 4, false, "does not split scans"},
		{on, 4, true, ""},
		{on, 9, false, "from 1 to 8"},
		{on, 0, false, "from 1 to 8"},
	} {
		p, err := Request{Targets: "127.0.0.1", Shards: n(tc.n)}.Plan(tc.rules)
		if tc.ok != (err == nil) || !tc.ok && !strings.Contains(err.Error(), tc.want) || !tc.ok && !strings.Contains(err.Error(), "shards") {
			t.Errorf("shards %d (max %d): %v", tc.n, tc.rules.MaxShards, err)
		}
		if tc.ok && p.Shards != tc.n {
			t.Errorf("shards %d planned as %d", tc.n, p.Shards)
		}
	}
}
