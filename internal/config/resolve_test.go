package config

import (
	"flag"
	"strings"
	"testing"
	"time"
)

// Resolve converts sizes, durations, limits, scan rules and the policy
// once; Layers.Done hands them over with the flags applied.
func TestResolve(t *testing.T) {
	path := write(t, "sandbox:\n  memory: 1g\n  network: host\n  timeout_seconds: 30\n  max_timeout_seconds: 90\nstore:\n  max_xml: 2m\n  max_script_output: 64k\n  keep: \"500\"\n"+
		"queue:\n  timeout_seconds: 7\nhttp:\n  max_body: 3m\n  grace_seconds: 4\n  session_idle_seconds: 60\nbudgets:\n  window: 30m\n  max_addresses_per_scan: 9\nlog:\n  level: debug\n")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	l, err := Register(fs, []string{"--config", path, "--pids", "64"})
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--config", path, "--pids", "64"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Done(); err != nil {
		t.Fatal(err)
	}
	r := l.Resolved
	lim := r.Limits
	switch {
	case lim.Memory != 1<<30 || lim.Pids != 64 || lim.CPUs != 1 || lim.Timeout != 30*time.Second || lim.MaxTimeout != 90*time.Second:
		t.Errorf("limits %+v", lim)
	case r.Rules.MaxAddresses != 9 || r.Rules.DefaultTimeout != 30*time.Second || r.Rules.MaxTimeout != 90*time.Second:
		t.Errorf("rules %+v", r.Rules)
	case !r.Policy.HostNetwork || r.Policy.MaxAddressesPerScan != 9 || r.Policy.Window != 30*time.Minute:
		t.Errorf("policy %+v", r.Policy)
	case r.MaxXML != 2<<20 || r.Results.MaxScriptBytes != 64<<10 || r.Keep.Count != 500 || r.MaxBody != 3<<20:
		t.Errorf("sizes %+v", r)
	case r.QueueWait != 7*time.Second || r.Grace != 4*time.Second || r.SessionIdle != time.Minute || r.WatchMinInterval != 900*time.Second:
		t.Errorf("durations %+v", r)
	case r.LogLevel.String() != "DEBUG" || r.Concurrency < 1:
		t.Errorf("log level %v, concurrency %d", r.LogLevel, r.Concurrency)
	}
	c := Default()
	c.Sandbox.Memory = "5m"
	if _, err := c.Resolve(); err == nil || !strings.Contains(err.Error(), `sandbox.memory "5m"`) {
		t.Errorf("memory below 6 MiB: %v", err)
	}
}
