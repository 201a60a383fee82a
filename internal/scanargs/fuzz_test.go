package scanargs

import (
	"regexp"
	"strings"
	"testing"
)

// flagsWithValue are the only flags that take a separate value, and the
// shape that value must have.
var flagsWithValue = map[string]*regexp.Regexp{
	"-p":            regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`),
	"--top-ports":   regexp.MustCompile(`^[0-9]+$`),
	"-oX":           regexp.MustCompile(`^-$`),
	"--stats-every": regexp.MustCompile(`^[0-9]+s$`),
}

// fixedFlags are the flags Args may emit on its own.
var fixedFlags = map[string]bool{
	"-sT": true, "-sS": true, "-sU": true, "-sn": true, "-6": true, "-sV": true, "-Pn": true, "-O": true,
	"-T0": true, "-T1": true, "-T2": true, "-T3": true, "-T4": true, "-T5": true,
}

// checkArgv asserts the safety property: before "--" only fixed flags and
// well-shaped values of value flags; exactly one "--"; after it, targets
// that do not start with "-".
func checkArgv(t *testing.T, args []string) {
	t.Helper()
	sep := -1
	for i, a := range args {
		if a == "--" {
			if sep >= 0 {
				t.Fatalf("two -- in %q", args)
			}
			sep = i
		}
	}
	if sep < 0 || sep == len(args)-1 {
		t.Fatalf("no -- followed by targets in %q", args)
	}
	for i := 0; i < sep; i++ {
		a := args[i]
		if re, ok := flagsWithValue[a]; ok {
			if i+1 >= sep || !re.MatchString(args[i+1]) {
				t.Fatalf("flag %s has a bad value in %q", a, args)
			}
			i++
			continue
		}
		if !fixedFlags[a] {
			t.Fatalf("argv element %q before -- is not a fixed flag: %q", a, args)
		}
	}
	for _, a := range args[sep+1:] {
		if a == "" || strings.HasPrefix(a, "-") || strings.ContainsAny(a, " \t\n,;=*") {
			t.Fatalf("target %q would reach nmap as an option or range: %q", a, args)
		}
	}
}

// FuzzArgs holds the property: for any input the plan is refused, or its
// argv has no option that came from user text. Seeds live in
// testdata/fuzz/FuzzArgs.
func FuzzArgs(f *testing.F) {
	f.Add("127.0.0.1", "connect", "", 0, false, false, "", "", 0, false, "", "")
	f.Add("-iL=/etc/passwd", "syn", "80", 10, true, true, "T4", "", 30, true, "default", "")
	f.Add("127.0.0.1 --script=vuln", "udp", "1-100", 0, false, false, "", "T3", 0, false, "http-title,safe", "http.useragent=x")
	f.Add("::1,fd00::/120", "ping", "", 0, false, false, "-d", "", 600, false, "", "")
	f.Add("scanme.nmap.org", "connect", "-p-", 65536, false, false, "T5", "T5", 1, false, "../x.nse", "a={b},c=/etc/passwd")
	f.Fuzz(func(t *testing.T, targets, typ, ports string, top int, sv, pn bool, timing, extra string, timeout int, osd bool, scripts, scriptArgs string) {
		req := Request{Targets: targets, ScanType: typ, Ports: ports, ServiceVersions: sv,
			SkipHostDiscovery: pn, Timing: timing, ExtraTiming: extra, OSDetection: osd, Scripts: scripts, ScriptArgs: scriptArgs}
		if top != 0 {
			req.TopPorts = &top
		}
		if timeout != 0 {
			req.TimeoutSeconds = &timeout
		}
		p, err := req.Plan(DefaultRules())
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("refusal is %T, not *FieldError: %v", err, err)
			}
			return
		}
		checkArgv(t, p.Args())
	})
}
