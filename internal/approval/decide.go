package approval

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// Scan is what the rules decide on.
type Scan struct {
	// Client is the requesting client's name.
	Client string
	// Validated is the request as validated (Request.Plan), before the
	// policy pinned names or expanded script categories. Its hash binds
	// the answer. Required.
	Validated *scanargs.Plan
	// Checked is the plan as the policy returned it (names resolved,
	// categories expanded to the scripts that will run); nil: Validated.
	Checked *scanargs.Plan
	// Categories returns an NSE script's categories (from the image's
	// script index); nil: only the categories asked for by name count.
	Categories func(script string) []string
	// Now is when the scan is asked for; zero: time.Now().
	Now time.Time
}

// Decision is the rules' answer for one scan.
type Decision struct {
	// Needed is true when a rule asks for approval.
	Needed bool `json:"needed"`
	// Rule names the rule that asks ("" when none does).
	Rule string `json:"rule,omitempty"`
	// Conditions say in words what the rule asks for.
	Conditions string `json:"conditions,omitempty"`
	// SecondPerson is true when the requesting client may not approve.
	SecondPerson bool `json:"second_person,omitempty"`
	// Hash is the SHA-256 (hex) of the canonical JSON of the validated
	// request; an answer is bound to it.
	Hash string `json:"args_sha256"`
	// Client is the requesting client.
	Client string `json:"client"`
	// Summary is the scan in figures.
	Summary Summary `json:"summary"`
	// Text is the scan and the rule in plain words, the question put to
	// the person.
	Text string `json:"text"`
}

// Summary is one scan in figures, for the question and the record.
type Summary struct {
	Targets         []string `json:"targets"`
	Addresses       uint64   `json:"addresses"`
	ScanType        string   `json:"scan_type"`
	Ports           string   `json:"ports"`
	PortCount       int      `json:"port_count"`
	Scripts         []string `json:"scripts"`
	Timing          string   `json:"timing"`
	ServiceVersions bool     `json:"service_versions"`
	OSDetection     bool     `json:"os_detection"`
	// EstimatedProbes is a rough count of the packets or connections the
	// scan sends (discovery, port probes, OS detection); version probes
	// and script traffic come on top.
	EstimatedProbes uint64 `json:"estimated_probes"`
	// EstimatedSeconds is a rough duration, at most TimeoutSeconds.
	EstimatedSeconds int `json:"estimated_seconds"`
	// TimeoutSeconds is the scan's wall-clock limit.
	TimeoutSeconds int `json:"timeout_seconds"`
}

// Decide says whether scan needs approval and which rule asks. With no
// rules (r nil or empty) nothing is needed. The decision always carries
// the hash and summary.
func (r *Rules) Decide(scan Scan) (*Decision, error) {
	if scan.Validated == nil {
		return nil, fmt.Errorf("approval: decide: no validated plan")
	}
	checked := scan.Checked
	if checked == nil {
		checked = scan.Validated
	}
	now := scan.Now
	if now.IsZero() {
		now = time.Now()
	}
	d := &Decision{Hash: Hash(scan.Validated), Client: scan.Client, Summary: summarize(scan.Validated, checked)}
	if !r.Empty() {
		facts := factsOf(scan, checked, now.In(r.loc))
		for _, c := range r.rules {
			if c.matches(facts) {
				d.Needed, d.Rule, d.Conditions, d.SecondPerson = true, c.Name, c.conditions(), c.SecondPerson
				break
			}
		}
	}
	d.Text = d.text()
	return d, nil
}

// facts are what the rules' conditions test.
type facts struct {
	typ        scanargs.Type
	addresses  uint64
	ports      int
	timing     int
	scripts    map[string]bool
	categories map[string]bool
	os, sv     bool
	minute     int
	client     string
}

func factsOf(scan Scan, checked *scanargs.Plan, now time.Time) facts {
	f := facts{typ: checked.Type, addresses: max(checked.Addresses, scan.Validated.Addresses), ports: PortCount(checked),
		timing: checked.Timing, os: checked.OSDetection, sv: checked.ServiceVersions,
		minute: now.Hour()*60 + now.Minute(), client: scan.Client,
		scripts: map[string]bool{}, categories: map[string]bool{}}
	if f.timing < 0 {
		f.timing = 3 // nmap's default template
	}
	// Asked for by name (script or category), and as they will run.
	for _, s := range slices.Concat(scan.Validated.Scripts, checked.Scripts) {
		if slices.Contains(Categories, s) {
			f.categories[s] = true
			continue
		}
		f.scripts[s] = true
		if scan.Categories != nil {
			for _, c := range scan.Categories(s) {
				f.categories[c] = true
			}
		}
	}
	return f
}

func (c compiled) matches(f facts) bool {
	if c.types != nil && !c.types[f.typ] {
		return false
	}
	if c.MinAddresses > 0 && f.addresses < c.MinAddresses {
		return false
	}
	if c.MinPorts > 0 && f.ports < c.MinPorts {
		return false
	}
	if c.timing != nil && !c.timing[f.timing] {
		return false
	}
	if c.categories != nil && !anyIn(c.categories, f.categories) {
		return false
	}
	if c.scripts != nil && !anyIn(c.scripts, f.scripts) {
		return false
	}
	if c.OSDetection && !f.os {
		return false
	}
	if c.ServiceVersions && !f.sv {
		return false
	}
	if c.from >= 0 && !inHours(f.minute, c.from, c.to) {
		return false
	}
	if c.clients != nil && !c.clients[f.client] {
		return false
	}
	return true
}

func anyIn(want, have map[string]bool) bool {
	for k := range have {
		if want[k] {
			return true
		}
	}
	return false
}

// inHours reports whether minute m lies in [from, to), which may span
// midnight.
func inHours(m, from, to int) bool {
	if from < to {
		return m >= from && m < to
	}
	return m >= from || m < to
}

// PortCount is how many ports per host a plan probes: the listed ports
// (ranges counted), top_ports N, or 0 for a ping scan.
func PortCount(p *scanargs.Plan) int {
	if p.Type == scanargs.Ping {
		return 0
	}
	if p.Ports == "" {
		return p.TopPorts
	}
	n := 0
	for _, it := range strings.Split(p.Ports, ",") {
		lo, hi, isRange := strings.Cut(it, "-")
		a, _ := strconv.Atoi(lo)
		if !isRange {
			n++
			continue
		}
		b, _ := strconv.Atoi(hi)
		n += b - a + 1
	}
	return n
}

// canonical is the hashed form of a validated request: every field that
// changes what the scan does, with defaults applied, lists sorted.
type canonical struct {
	V                 int      `json:"v"`
	Type              string   `json:"scan_type"`
	Targets           []string `json:"targets"`
	Ports             string   `json:"ports"`
	TopPorts          int      `json:"top_ports"`
	ServiceVersions   bool     `json:"service_versions"`
	SkipHostDiscovery bool     `json:"skip_host_discovery"`
	Timing            int      `json:"timing"`
	TimeoutSeconds    int64    `json:"timeout_seconds"`
	OSDetection       bool     `json:"os_detection"`
	Scripts           []string `json:"scripts"`
	ScriptArgs        []string `json:"script_args"`
}

// Hash is the SHA-256 (hex) of the canonical JSON of a validated request
// (Request.Plan's result, before the policy pins it): the same scan
// asked for in other words (extra_timing for timing, targets in another
// order) hashes the same; any change to what the scan does changes it.
func Hash(p *scanargs.Plan) string {
	c := canonical{V: 1, Type: string(p.Type), Ports: p.Ports, TopPorts: p.TopPorts,
		ServiceVersions: p.ServiceVersions, SkipHostDiscovery: p.SkipHostDiscovery, Timing: p.Timing,
		TimeoutSeconds: int64(p.Timeout / time.Second), OSDetection: p.OSDetection,
		Targets: []string{}, Scripts: sortedSet(p.Scripts), ScriptArgs: sortedSet(p.ScriptArgs)}
	for _, t := range p.Targets {
		c.Targets = append(c.Targets, t.Text)
	}
	c.Targets = sortedSet(c.Targets)
	// A struct of strings, ints and bools always marshals.
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func sortedSet(in []string) []string {
	out := slices.Clone(in)
	sort.Strings(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// Probe rates (probes per second) assumed per timing template for the
// duration estimate; T0 and T1 wait between probes (300 s, 15 s).
var probeRates = [6]float64{1.0 / 300, 1.0 / 15, 2.5, 300, 1000, 3000}

func summarize(validated, checked *scanargs.Plan) Summary {
	s := Summary{Addresses: max(checked.Addresses, validated.Addresses), ScanType: string(checked.Type),
		PortCount: PortCount(checked), ServiceVersions: checked.ServiceVersions, OSDetection: checked.OSDetection,
		TimeoutSeconds: int(checked.Timeout / time.Second), Targets: []string{}, Scripts: []string{}}
	for _, t := range validated.Targets {
		s.Targets = append(s.Targets, t.Text)
	}
	s.Scripts = append(s.Scripts, sortedSet(slices.Concat(validated.Scripts, checked.Scripts))...)
	switch {
	case checked.Type == scanargs.Ping:
		s.Ports = "none (host discovery only)"
	case checked.Ports != "":
		s.Ports = checked.Ports
	default:
		s.Ports = fmt.Sprintf("the %d most common", checked.TopPorts)
	}
	timing := checked.Timing
	if timing < 0 {
		s.Timing = "T3 (nmap's default)"
		timing = 3
	} else {
		s.Timing = "T" + strconv.Itoa(timing)
	}
	perHost := uint64(s.PortCount)
	if checked.Type == scanargs.UDP {
		perHost *= 2 // UDP probes are retried: no answer is the common case
	}
	if !checked.SkipHostDiscovery || checked.Type == scanargs.Ping {
		perHost += 4 // ICMP echo, TCP SYN 443, TCP ACK 80, ICMP timestamp
	}
	if checked.OSDetection {
		perHost += 16
	}
	s.EstimatedProbes = perHost * s.Addresses
	rate := probeRates[timing]
	if checked.Type == scanargs.UDP && timing >= 3 {
		// Closed UDP ports answer with ICMP, which hosts rate-limit to
		// about one a second each; hosts are scanned in parallel groups.
		rate = min(rate, float64(min(s.Addresses, 256)))
	}
	secs := float64(s.EstimatedProbes) / rate
	if s.TimeoutSeconds > 0 && secs > float64(s.TimeoutSeconds) {
		secs = float64(s.TimeoutSeconds)
	}
	s.EstimatedSeconds = int(secs + 0.5)
	return s
}

// text is the decision in plain words: the question put to the person.
func (d *Decision) text() string {
	s := d.Summary
	var b strings.Builder
	if d.Needed {
		fmt.Fprintf(&b, "Approve this scan? Rule %q asks for a person's yes (%s).\n", d.Rule, d.Conditions)
	} else {
		b.WriteString("No approval rule asks for this scan.\n")
	}
	fmt.Fprintf(&b, "Client: %s\n", d.Client)
	fmt.Fprintf(&b, "Targets: %s (%d addresses)\n", listClip(s.Targets, 10), s.Addresses)
	fmt.Fprintf(&b, "Scan type: %s\n", typeWords(s.ScanType))
	if s.ScanType != string(scanargs.Ping) {
		fmt.Fprintf(&b, "Ports: %s (%d per host)\n", s.Ports, s.PortCount)
	}
	scripts := "none"
	if len(s.Scripts) > 0 {
		scripts = listClip(s.Scripts, 10)
	}
	fmt.Fprintf(&b, "Scripts: %s\n", scripts)
	fmt.Fprintf(&b, "Timing: %s; version detection: %s; OS detection: %s\n", s.Timing, yesNo(s.ServiceVersions), yesNo(s.OSDetection))
	fmt.Fprintf(&b, "Estimate: about %d probes, about %s (the scan stops at %d s)\n", s.EstimatedProbes, seconds(s.EstimatedSeconds), s.TimeoutSeconds)
	if d.SecondPerson {
		b.WriteString("A second person must approve: the requesting client cannot.\n")
	}
	fmt.Fprintf(&b, "Arguments SHA-256: %s", d.Hash)
	return b.String()
}

func typeWords(t string) string {
	switch scanargs.Type(t) {
	case scanargs.Connect:
		return "connect (TCP connect scan)"
	case scanargs.SYN:
		return "syn (TCP SYN scan, raw packets)"
	case scanargs.UDP:
		return "udp (UDP scan, raw packets)"
	case scanargs.Ping:
		return "ping (host discovery only)"
	}
	return t
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func seconds(n int) string {
	switch {
	case n < 1:
		return "under a second"
	case n < 300:
		return fmt.Sprintf("%d s", n)
	case n < 7200:
		return fmt.Sprintf("%d min", (n+30)/60)
	}
	return fmt.Sprintf("%.1f h", float64(n)/3600)
}

func listClip(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
