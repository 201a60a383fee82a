package approval_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// The tests here need no engine: rules, hashes and the store are pure.

func intp(n int) *int { return &n }

func plan(t *testing.T, r scanargs.Request) *scanargs.Plan {
	t.Helper()
	p, err := r.Plan(scanargs.DefaultRules())
	if err != nil {
		t.Fatalf("plan %+v: %v", r, err)
	}
	return p
}

func compile(t *testing.T, cfg approval.Config) *approval.Rules {
	t.Helper()
	r, err := approval.Compile(cfg)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return r
}

func decide(t *testing.T, r *approval.Rules, s approval.Scan) *approval.Decision {
	t.Helper()
	d, err := r.Decide(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDefaultAsksNothing(t *testing.T) {
	r := compile(t, approval.Config{})
	p := plan(t, scanargs.Request{Targets: "127.0.0.0/22", ScanType: "udp", Ports: "1-65535", Timing: "T5", OSDetection: true})
	d := decide(t, r, approval.Scan{Client: "local", Validated: p})
	if d.Needed || d.Rule != "" {
		t.Fatalf("with no rules a scan needs no approval; got %+v", d)
	}
	if len(d.Hash) != 64 {
		t.Fatalf("hash %q: want 64 hex digits", d.Hash)
	}
	var nilRules *approval.Rules
	if d := decide(t, nilRules, approval.Scan{Client: "local", Validated: p}); d.Needed {
		t.Fatal("nil rules asked")
	}
}

func TestRulesMatch(t *testing.T) {
	r := compile(t, approval.Config{TimeZone: "UTC", Rules: []approval.Rule{
		{Name: "big-udp", ScanTypes: []string{"udp"}, MinAddresses: 256},
		{Name: "all-ports", MinPorts: 10000},
		{Name: "fast", Timing: []string{"T5"}},
		{Name: "intrusive", ScriptCategories: []string{"intrusive", "vuln"}},
		{Name: "brute-ssh", Scripts: []string{"ssh-brute"}, SecondPerson: true},
		{Name: "os", OSDetection: true, Clients: []string{"intern"}},
		{Name: "night", Hours: "22:00-06:00", ScanTypes: []string{"syn"}},
	}})
	noon := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	night := time.Date(2026, 12, 6, 23, 30, 0, 0, time.UTC)
	early := time.Date(2026, 12, 6, 5, 59, 0, 0, time.UTC)
	cats := func(s string) []string {
		return map[string][]string{"http-vuln-cve2017-5638": {"vuln", "intrusive"}, "http-title": {"default", "safe"}}[s]
	}
	cases := []struct {
		name   string
		req    scanargs.Request
		client string
		now    time.Time
		want   string
	}{
		{"small udp", scanargs.Request{Targets: "127.0.0.0/25", ScanType: "udp"}, "a", noon, ""},
		{"big udp", scanargs.Request{Targets: "127.0.0.0/24", ScanType: "udp"}, "a", noon, "big-udp"},
		{"big connect", scanargs.Request{Targets: "127.0.0.0/22"}, "a", noon, ""},
		{"all ports", scanargs.Request{Targets: "127.0.0.1", Ports: "1-65535"}, "a", noon, "all-ports"},
		{"top ports counts", scanargs.Request{Targets: "127.0.0.1", TopPorts: intp(10000)}, "a", noon, "all-ports"},
		{"few ports", scanargs.Request{Targets: "127.0.0.1", Ports: "1-9999"}, "a", noon, ""},
		{"T5", scanargs.Request{Targets: "127.0.0.1", ExtraTiming: "T5"}, "a", noon, "fast"},
		{"T4", scanargs.Request{Targets: "127.0.0.1", Timing: "T4"}, "a", noon, ""},
		{"category asked", scanargs.Request{Targets: "127.0.0.1", Scripts: "vuln"}, "a", noon, "intrusive"},
		{"script in category", scanargs.Request{Targets: "127.0.0.1", Scripts: "http-vuln-cve2017-5638"}, "a", noon, "intrusive"},
		{"safe script", scanargs.Request{Targets: "127.0.0.1", Scripts: "http-title"}, "a", noon, ""},
		{"named script", scanargs.Request{Targets: "127.0.0.1", Scripts: "ssh-brute"}, "a", noon, "brute-ssh"},
		{"os by intern", scanargs.Request{Targets: "127.0.0.1", OSDetection: true}, "intern", noon, "os"},
		{"os by other", scanargs.Request{Targets: "127.0.0.1", OSDetection: true}, "b", noon, ""},
		{"syn at night", scanargs.Request{Targets: "127.0.0.1", ScanType: "syn"}, "a", night, "night"},
		{"syn before six", scanargs.Request{Targets: "127.0.0.1", ScanType: "syn"}, "a", early, "night"},
		{"syn at noon", scanargs.Request{Targets: "127.0.0.1", ScanType: "syn"}, "a", noon, ""},
	}
	for _, c := range cases {
		d := decide(t, r, approval.Scan{Client: c.client, Validated: plan(t, c.req), Categories: cats, Now: c.now})
		if d.Rule != c.want || d.Needed != (c.want != "") {
			t.Errorf("%s: rule %q needed %v; want %q", c.name, d.Rule, d.Needed, c.want)
		}
		if c.want == "brute-ssh" && !d.SecondPerson {
			t.Errorf("%s: second_person not carried", c.name)
		}
	}
}

// The checked plan (names pinned, categories expanded) is what the rules
// see for counts and scripts: a hostname standing for many addresses, or a
// category expanded to a matching script, asks.
func TestCheckedPlanCounts(t *testing.T) {
	r := compile(t, approval.Config{Rules: []approval.Rule{
		{Name: "many", MinAddresses: 3},
		{Name: "ssh", Scripts: []string{"ssh-hostkey"}},
	}})
	v := plan(t, scanargs.Request{Targets: "localhost", Scripts: "default"})
	checked := *v
	checked.Targets = []scanargs.Target{{Text: "127.0.0.1", Kind: "ip", Addresses: 1}, {Text: "127.0.0.2", Kind: "ip", Addresses: 1}}
	checked.Addresses = 2
	checked.Scripts = []string{"ssh-hostkey", "http-title"}
	if d := decide(t, r, approval.Scan{Client: "a", Validated: v, Checked: &checked}); d.Rule != "ssh" {
		t.Fatalf("expanded script: rule %q, want ssh", d.Rule)
	}
	checked.Addresses = 3
	if d := decide(t, r, approval.Scan{Client: "a", Validated: v, Checked: &checked}); d.Rule != "many" {
		t.Fatalf("pinned address count: rule %q, want many", d.Rule)
	}
}

func TestCompileRefuses(t *testing.T) {
	cases := []struct {
		cfg  approval.Config
		want string
	}{
		{approval.Config{Rules: []approval.Rule{{Name: "x"}}}, "gives no condition"},
		{approval.Config{Rules: []approval.Rule{{Name: "", ScanTypes: []string{"udp"}}}}, "rules[0].name"},
		{approval.Config{Rules: []approval.Rule{{Name: "Big UDP", ScanTypes: []string{"udp"}}}}, "rules[0].name"},
		{approval.Config{Rules: []approval.Rule{{Name: "a", ScanTypes: []string{"udp"}}, {Name: "a", MinPorts: 2}}}, "must be unique"},
		{approval.Config{Rules: []approval.Rule{{Name: "a", ScanTypes: []string{"xmas"}}}}, `scan_types "xmas"`},
		{approval.Config{Rules: []approval.Rule{{Name: "a", Timing: []string{"T6"}}}}, `timing "T6"`},
		{approval.Config{Rules: []approval.Rule{{Name: "a", Timing: []string{"4"}}}}, `timing "4"`},
		{approval.Config{Rules: []approval.Rule{{Name: "a", ScriptCategories: []string{"nasty"}}}}, `script_categories "nasty"`},
		{approval.Config{Rules: []approval.Rule{{Name: "a", Scripts: []string{"../x"}}}}, `scripts "../x"`},
		{approval.Config{Rules: []approval.Rule{{Name: "a", Scripts: []string{"vuln"}}}}, `categories go in script_categories`},
		{approval.Config{Rules: []approval.Rule{{Name: "a", Hours: "22-06"}}}, `hours "22-06"`},
		{approval.Config{Rules: []approval.Rule{{Name: "a", Hours: "25:00-06:00"}}}, `hours`},
		{approval.Config{Rules: []approval.Rule{{Name: "a", Hours: "06:00-06:00"}}}, `hours`},
		{approval.Config{Rules: []approval.Rule{{Name: "a", MinPorts: 70000}}}, `min_ports "70000"`},
		{approval.Config{Rules: []approval.Rule{{Name: "a", Clients: []string{" "}}}}, `clients`},
		{approval.Config{TimeoutSeconds: -1}, `timeout_seconds "-1"`},
		{approval.Config{TimeoutSeconds: 90000}, `timeout_seconds "90000"`},
		{approval.Config{MaxPending: 2, MaxPendingPerClient: 3}, `max_pending_per_client "3"`},
		{approval.Config{TimeZone: "Mars/Olympus"}, `time_zone "Mars/Olympus"`},
	}
	for _, c := range cases {
		_, err := approval.Compile(c.cfg)
		var ae *approval.Error
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v; want an *approval.Error containing %q", c.cfg, err, c.want)
		}
	}
}

func TestHashBindsArguments(t *testing.T) {
	base := scanargs.Request{Targets: "127.0.0.1, 127.0.0.2", ScanType: "syn", Ports: "22,80", Timing: "T4", Scripts: "default,http-title"}
	h := approval.Hash(plan(t, base))
	same := []scanargs.Request{
		{Targets: "127.0.0.2 127.0.0.1", ScanType: "SYN", Ports: "22, 80", ExtraTiming: "T4", Scripts: "http-title,default"},
	}
	for _, r := range same {
		if got := approval.Hash(plan(t, r)); got != h {
			t.Errorf("%+v: hash differs for the same scan", r)
		}
	}
	changed := []func(*scanargs.Request){
		func(r *scanargs.Request) { r.Targets = "127.0.0.1" },
		func(r *scanargs.Request) { r.Targets = "127.0.0.1, 127.0.0.3" },
		func(r *scanargs.Request) { r.ScanType = "connect" },
		func(r *scanargs.Request) { r.Ports = "22,81" },
		func(r *scanargs.Request) { r.Ports = ""; r.TopPorts = intp(2) },
		func(r *scanargs.Request) { r.Timing = "T5" },
		func(r *scanargs.Request) { r.Scripts = "default" },
		func(r *scanargs.Request) { r.ScriptArgs = "http.useragent=x" },
		func(r *scanargs.Request) { r.ServiceVersions = true },
		func(r *scanargs.Request) { r.SkipHostDiscovery = true },
		func(r *scanargs.Request) { r.OSDetection = true },
		func(r *scanargs.Request) { r.TimeoutSeconds = intp(100) },
	}
	for i, change := range changed {
		r := base
		change(&r)
		if got := approval.Hash(plan(t, r)); got == h {
			t.Errorf("change %d (%+v): same hash; a changed argument must change it", i, r)
		}
	}
}

func TestDescription(t *testing.T) {
	r := compile(t, approval.Config{Rules: []approval.Rule{{Name: "big-udp", ScanTypes: []string{"udp"}, MinAddresses: 256, SecondPerson: true}}})
	d := decide(t, r, approval.Scan{Client: "alice", Validated: plan(t, scanargs.Request{Targets: "127.0.0.0/22", ScanType: "udp", Timing: "T4", Scripts: "default"})})
	for _, want := range []string{`Rule "big-udp"`, "scan type udp,", "at least 256 addresses", "Client: alice", "127.0.0.0/22 (1024 addresses)",
		"Scan type: udp", "the 100 most common (100 per host)", "Scripts: default", "Timing: T4", "about 208896 probes", "stops at 220 s",
		"second person", d.Hash} {
		if !strings.Contains(d.Text, want) {
			t.Errorf("description lacks %q:\n%s", want, d.Text)
		}
	}
	if d.Summary.EstimatedSeconds < 1 || d.Summary.EstimatedSeconds > 220 {
		t.Errorf("estimated seconds %d: want 1..220", d.Summary.EstimatedSeconds)
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func needed(t *testing.T, client string, secondPerson bool, req scanargs.Request) *approval.Decision {
	r := compile(t, approval.Config{Rules: []approval.Rule{{Name: "udp", ScanTypes: []string{"udp"}, SecondPerson: secondPerson}}})
	d := decide(t, r, approval.Scan{Client: client, Validated: plan(t, req)})
	if !d.Needed {
		t.Fatal("rule did not ask")
	}
	return d
}

func TestStoreApproveOnce(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	s := approval.NewStore(approval.Limits{Timeout: time.Minute}, c.now)
	d := needed(t, "alice", false, scanargs.Request{Targets: "127.0.0.1", ScanType: "udp"})
	other := needed(t, "alice", false, scanargs.Request{Targets: "127.0.0.2", ScanType: "udp"})
	p, err := s.Ask(d, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Take(p.ID, d.Hash, "alice"); !errors.Is(err, approval.ErrUndecided) {
		t.Fatalf("take before the answer: %v, want ErrUndecided", err)
	}
	// An answer for other arguments does not answer this question.
	var mm *approval.MismatchError
	if _, err := s.Decide(p.ID, other.Hash, approval.Answer{Approve: true, By: "alice's user", ByClient: "alice", Via: approval.ViaElicitation}); !errors.As(err, &mm) {
		t.Fatalf("decide with another hash: %v, want *MismatchError", err)
	}
	c.add(10 * time.Second)
	g, err := s.Decide(p.ID, d.Hash, approval.Answer{Approve: true, By: "alice's user", ByClient: "alice", Via: approval.ViaElicitation, Reason: "lab window"})
	if err != nil || !g.Approved() || g.Rule != "udp" || g.Hash != d.Hash || g.By != "alice's user" || g.At.Sub(g.AskedAt) != 10*time.Second {
		t.Fatalf("decide: %+v %v", g, err)
	}
	if _, err := s.Decide(p.ID, d.Hash, approval.Answer{Approve: false}); !errors.Is(err, approval.ErrAnswered) {
		t.Fatalf("second answer: %v, want ErrAnswered", err)
	}
	// The approval cannot be used for another scan, nor by another client.
	if _, err := s.Take(p.ID, other.Hash, "alice"); !errors.As(err, &mm) {
		t.Fatalf("take for another scan: %v, want *MismatchError", err)
	}
	if _, err := s.Take(p.ID, d.Hash, "mallory"); !errors.Is(err, approval.ErrUnknown) {
		t.Fatalf("take by another client: %v, want ErrUnknown", err)
	}
	if g, err := s.Take(p.ID, d.Hash, "alice"); err != nil || !g.Approved() {
		t.Fatalf("take: %+v %v", g, err)
	}
	// Once used, it is gone: no replay.
	if _, err := s.Take(p.ID, d.Hash, "alice"); !errors.Is(err, approval.ErrUnknown) {
		t.Fatalf("replay: %v, want ErrUnknown", err)
	}
	if s.Len() != 0 {
		t.Fatalf("store holds %d after take", s.Len())
	}
}

func TestStoreSecondPerson(t *testing.T) {
	s := approval.NewStore(approval.Limits{}, nil)
	d := needed(t, "alice", true, scanargs.Request{Targets: "127.0.0.1", ScanType: "udp"})
	p, err := s.Ask(d, "scan1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decide(p.ID, d.Hash, approval.Answer{Approve: true, By: "alice", ByClient: "alice", Via: approval.ViaWeb}); !errors.Is(err, approval.ErrSelfApproval) {
		t.Fatalf("self-approval: %v, want ErrSelfApproval", err)
	}
	if got := s.List(); len(got) != 1 || got[0].ScanID != "scan1" {
		t.Fatalf("after a refused self-approval the question waits on: %+v", got)
	}
	g, err := s.Decide(p.ID, d.Hash, approval.Answer{Approve: true, By: "bob", ByClient: "bob", Via: approval.ViaWeb})
	if err != nil || !g.Approved() || g.By != "bob" {
		t.Fatalf("bob approves: %+v %v", g, err)
	}
	// Anyone may say no, the requester included.
	d2 := needed(t, "alice", true, scanargs.Request{Targets: "127.0.0.2", ScanType: "udp"})
	p2, _ := s.Ask(d2, "")
	if g, err := s.Decide(p2.ID, d2.Hash, approval.Answer{By: "alice", ByClient: "alice", Via: approval.ViaWeb}); err != nil || g.Outcome != approval.Denied {
		t.Fatalf("self-denial: %+v %v", g, err)
	}
}

func TestStoreTimeoutIsDenial(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	s := approval.NewStore(approval.Limits{Timeout: time.Minute}, c.now)
	d := needed(t, "alice", false, scanargs.Request{Targets: "127.0.0.1", ScanType: "udp"})
	p, _ := s.Ask(d, "")
	c.add(time.Minute)
	if got := s.List(); len(got) != 0 {
		t.Fatalf("expired question still listed: %+v", got)
	}
	if _, err := s.Decide(p.ID, d.Hash, approval.Answer{Approve: true, By: "late", Via: approval.ViaWeb}); !errors.Is(err, approval.ErrAnswered) {
		t.Fatalf("late approval: %v, want ErrAnswered (timed out)", err)
	}
	g, err := s.Take(p.ID, d.Hash, "alice")
	if err != nil || g.Outcome != approval.TimedOut || g.Approved() {
		t.Fatalf("take after timeout: %+v %v", g, err)
	}
	// Wait on a real clock: the timeout ends the wait.
	rs := approval.NewStore(approval.Limits{Timeout: 50 * time.Millisecond}, nil)
	p2, _ := rs.Ask(d, "")
	start := time.Now()
	g, err = rs.Wait(context.Background(), p2.ID)
	if err != nil || g.Outcome != approval.TimedOut || time.Since(start) < 40*time.Millisecond {
		t.Fatalf("wait: %+v %v after %s", g, err, time.Since(start))
	}
}

func TestStoreWaitWakes(t *testing.T) {
	s := approval.NewStore(approval.Limits{Timeout: time.Minute}, nil)
	d := needed(t, "alice", false, scanargs.Request{Targets: "127.0.0.1", ScanType: "udp"})
	p, _ := s.Ask(d, "")
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = s.Decide(p.ID, d.Hash, approval.Answer{By: "bob", ByClient: "bob", Via: approval.ViaWeb, Reason: "not now"})
	}()
	g, err := s.Wait(context.Background(), p.ID)
	if err != nil || g.Outcome != approval.Denied || g.Reason != "not now" {
		t.Fatalf("wait: %+v %v", g, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	p2, _ := s.Ask(d, "")
	if _, err := s.Wait(ctx, p2.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with ended ctx: %v", err)
	}
	if _, ok := s.Withdraw(p2.ID); !ok {
		t.Fatal("withdraw")
	}
	if _, ok := s.Get(p2.ID); ok {
		t.Fatal("withdrawn question still there")
	}
}

func TestStoreBounds(t *testing.T) {
	s := approval.NewStore(approval.Limits{Timeout: time.Minute, MaxPending: 3, MaxPerClient: 2}, nil)
	a := needed(t, "alice", false, scanargs.Request{Targets: "127.0.0.1", ScanType: "udp"})
	b := needed(t, "bob", false, scanargs.Request{Targets: "127.0.0.1", ScanType: "udp"})
	cc := needed(t, "carol", false, scanargs.Request{Targets: "127.0.0.1", ScanType: "udp"})
	var le *approval.LimitError
	p1, _ := s.Ask(a, "")
	_, _ = s.Ask(a, "")
	if _, err := s.Ask(a, ""); !errors.As(err, &le) || le.Client != "alice" {
		t.Fatalf("third of alice: %v, want per-client *LimitError", err)
	}
	_, _ = s.Ask(b, "")
	if _, err := s.Ask(cc, ""); !errors.As(err, &le) || le.Client != "" {
		t.Fatalf("fourth in all: %v, want total *LimitError", err)
	}
	// A used question frees its place.
	_, _ = s.Decide(p1.ID, a.Hash, approval.Answer{Approve: true, By: "x", Via: approval.ViaWeb})
	if _, err := s.Take(p1.ID, a.Hash, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ask(cc, ""); err != nil {
		t.Fatalf("after a take: %v", err)
	}
	if _, err := s.Ask(&approval.Decision{}, ""); err == nil {
		t.Fatal("asked for a scan that needs no approval")
	}
}
