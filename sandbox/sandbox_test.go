package sandbox

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestLimitsValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := DefaultLimits()
	bad.Memory = 1 << 20
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("1 MiB accepted: %v", err)
	}
	bad = DefaultLimits()
	bad.MaxTimeout = 601e9
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "600") {
		t.Fatalf("601 s accepted: %v", err)
	}
}

// Placement: loopback alone stays on the host network, not fenced; other
// targets are fenced on the configured network; a mix is refused; host
// mode never fences.
func TestPlace(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	cases := []struct {
		opts    Options
		targets []netip.Prefix
		network string
		fenced  bool
		err     string
	}{
		{Options{}, pfx("127.0.0.1/32", "::1/128"), "host", false, "hostfence"},
		{Options{}, pfx("10.0.0.0/30", "10.9.9.9/32"), ManagedNetwork, true, ""},
		{Options{Network: Fenced, FenceNetwork: "lab"}, pfx("192.168.1.1/32"), "lab", true, ""},
		{Options{Network: "macvlan-lab"}, pfx("192.168.1.1/32"), "macvlan-lab", true, ""},
		{Options{}, pfx("127.0.0.1/32", "10.0.0.1/32"), "", false, "split them into two scans"},
		{Options{Network: Host}, pfx("127.0.0.1/32", "10.0.0.1/32"), "host", false, ""},
		{Options{Network: None}, pfx("10.0.0.1/32"), "none", false, ""},
	}
	for _, c := range cases {
		p, err := Place(c.opts, c.targets)
		if c.err == "hostfence" {
			// Loopback only: the host network, inside the host fence.
			if err != nil || p.Network != Host || !p.HostFence || p.Fence != nil || p.Unfenced != "" {
				t.Errorf("%v: %+v, %v; want the host network fenced to loopback", c.targets, p, err)
			}
			continue
		}
		if c.err != "" {
			var mixed *MixedTargetsError
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.As(err, &mixed) {
				t.Errorf("%+v %v: err %v, want %q", c.opts, c.targets, err, c.err)
			}
			continue
		}
		if err != nil || p.Network != c.network || (p.Fence != nil) != c.fenced {
			t.Errorf("%+v %v: %+v, %v; want network %s fenced %v", c.opts, c.targets, p, err, c.network, c.fenced)
		}
		if p.HostFence {
			t.Errorf("%+v %v: only a loopback scan in a fenced deployment is host-fenced", c.opts, c.targets)
		}
		if !c.fenced && p.Unfenced == "" {
			t.Errorf("%+v: an unfenced placement must say why", c.opts)
		}
	}
}

// The result's sandbox line says fenced or not fenced, how many addresses
// and the seccomp profile.
func TestDescribeFence(t *testing.T) {
	opts := Options{Limits: DefaultLimits()}
	place, _ := Place(opts, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/30"), netip.MustParsePrefix("10.0.1.1/32")})
	d := New(opts, Scan{ID: "x", Placement: place}).Describe()
	if !strings.Contains(d, "network nmap-mcp fenced to 5 addresses") || !strings.Contains(d, "seccomp "+SeccompID()) {
		t.Errorf("fenced: %s", d)
	}
	place, _ = Place(opts, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	if d := New(opts, Scan{ID: "y", Placement: place}).Describe(); !strings.Contains(d, "network host fenced to loopback") || !strings.Contains(d, "seccomp "+HostSeccompID()) {
		t.Errorf("loopback: %s", d)
	}
	place, _ = Place(Options{Network: Host}, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	if d := New(opts, Scan{ID: "z", Placement: place}).Describe(); !strings.Contains(d, "network host not fenced") {
		t.Errorf("host opt-out: %s", d)
	}
}

// The profile denies by default with EPERM and allows what nmap needs
// (executor.TestDockerSeccomp: it is applied to the container).
func TestSeccompProfile(t *testing.T) {
	var p struct {
		DefaultAction string `json:"defaultAction"`
		Syscalls      []struct {
			Names  []string `json:"names"`
			Action string   `json:"action"`
		} `json:"syscalls"`
	}
	if err := json.Unmarshal(SeccompProfile(), &p); err != nil {
		t.Fatal(err)
	}
	if p.DefaultAction != "SCMP_ACT_ERRNO" || len(p.Syscalls) == 0 || p.Syscalls[0].Action != "SCMP_ACT_ALLOW" {
		t.Fatalf("profile %+v", p)
	}
	allowed := p.Syscalls[0].Names
	for _, need := range []string{"socket", "sendto", "recvfrom", "execve", "connect"} {
		if !slices.Contains(allowed, need) {
			t.Errorf("%s not allowed", need)
		}
	}
	for _, never := range []string{"mount", "ptrace", "unshare", "setns", "bpf", "init_module", "keyctl", "mkdirat", "clone3"} {
		if slices.Contains(allowed, never) {
			t.Errorf("%s allowed", never)
		}
	}
	if !strings.HasPrefix(SeccompID(), "sha256:") || len(SeccompID()) != 19 {
		t.Errorf("id %q", SeccompID())
	}
}

// Both runners' launchers print the same exit line, from ExitMarker: the
// Docker launcher on both streams, the Kubernetes one with stderr's lines
// marked. (Unit test; the executor and runner tests read it back.)
func TestExitReport(t *testing.T) {
	if got := ExitReport(""); got != `printf '\n\036nmap-mcp-exit=%d\n' "$s"; printf '\n\036nmap-mcp-exit=%d\n' "$s" >&2` {
		t.Errorf("plain: %s", got)
	}
	if got := ExitReport("\x1f"); got != `printf '\n\036nmap-mcp-exit=%d\n' "$s"; printf '\037\n\037\036nmap-mcp-exit=%d\n' "$s" >&2` {
		t.Errorf("marked: %s", got)
	}
	if !strings.Contains(launcher, ExitReport("")) {
		t.Error("the Docker launcher does not use ExitReport")
	}
}
