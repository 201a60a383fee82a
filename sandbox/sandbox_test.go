package sandbox

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
)

func TestConfigUnprivileged(t *testing.T) {
	opts := Options{Limits: DefaultLimits(), Instance: "i1"}
	place, err := Place(opts, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	if err != nil {
		t.Fatal(err)
	}
	cfg, hc := Config(opts, Scan{ID: "s1", Image: "img", Args: []string{"-sT", "--", "127.0.0.1"}, Placement: place})
	if cfg.User != "65532:65532" || len(hc.CapAdd) != 0 || !slices.Equal(hc.CapDrop, []string{"ALL"}) {
		t.Fatalf("user %q caps +%v -%v", cfg.User, hc.CapAdd, hc.CapDrop)
	}
	checkAlways(t, cfg.Labels, hc)
	if hc.NetworkMode != "host" || !place.HostFence || place.Unfenced != "" {
		t.Errorf("a loopback scan's network %q (%+v), want host inside the host fence", hc.NetworkMode, place)
	}
	if !strings.Contains(hc.SecurityOpt[1], `"args":[{"index":0,"value":2,"valueTwo":0,"op":"SCMP_CMP_EQ"}]`) {
		t.Errorf("a host-fenced scan must get the host seccomp profile")
	}
}

func TestConfigRawSockets(t *testing.T) {
	opts := Options{Network: "labnet", Limits: DefaultLimits(), Instance: "i1"}
	place, err := Place(opts, []netip.Prefix{netip.MustParsePrefix("10.1.2.0/30")})
	if err != nil || place.Fence == nil {
		t.Fatalf("place %+v: %v", place, err)
	}
	cfg, hc := Config(opts, Scan{ID: "s2", Image: "img", Privilege: RawSockets, Placement: place})
	if cfg.User != "0:0" || !slices.Equal(hc.CapAdd, []string{"NET_RAW"}) || !slices.Equal(hc.CapDrop, []string{"ALL"}) {
		t.Fatalf("user %q caps +%v -%v", cfg.User, hc.CapAdd, hc.CapDrop)
	}
	if hc.NetworkMode != "labnet" {
		t.Errorf("network %q, want labnet", hc.NetworkMode)
	}
	checkAlways(t, cfg.Labels, hc)
}

func checkAlways(t *testing.T, labels map[string]string, h *container.HostConfig) {
	t.Helper()
	// The only mount: an empty, read-only resolv.conf (no resolver).
	resolv := len(h.Mounts) == 1 && h.Mounts[0].Source == "/dev/null" && h.Mounts[0].Target == ResolvConf && h.Mounts[0].ReadOnly
	if h.Privileged || h.AutoRemove || !h.ReadonlyRootfs || len(h.Binds) != 0 || !resolv {
		t.Fatalf("privileged=%v autoremove=%v ro=%v binds=%v mounts=%v", h.Privileged, h.AutoRemove, h.ReadonlyRootfs, h.Binds, h.Mounts)
	}
	if !slices.Contains(h.SecurityOpt, "no-new-privileges") {
		t.Errorf("security opts %v lack no-new-privileges", h.SecurityOpt)
	}
	tmp := h.Tmpfs["/tmp"]
	if !strings.Contains(tmp, "noexec") || !strings.Contains(tmp, "nosuid") {
		t.Errorf("tmpfs /tmp = %q", tmp)
	}
	r := h.Resources
	if r.NanoCPUs != 1e9 || r.Memory != 512<<20 || r.MemorySwap != r.Memory || r.PidsLimit == nil || *r.PidsLimit != 128 {
		t.Errorf("resources = cpus %d mem %d swap %d pids %v", r.NanoCPUs, r.Memory, r.MemorySwap, r.PidsLimit)
	}
	if labels[LabelManaged] != "true" || labels[LabelScanID] == "" || labels[LabelInstance] != "i1" || labels[LabelOwnerPID] == "" {
		t.Errorf("labels = %v", labels)
	}
}

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

// The profile denies by default with EPERM, allows what nmap needs, and
// is applied to the container.
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
	_, hc := Config(Options{Limits: DefaultLimits()}, Scan{ID: "z"})
	if !slices.Contains(hc.SecurityOpt, "seccomp="+string(SeccompProfile())) {
		t.Errorf("security opts %v lack the profile", hc.SecurityOpt)
	}
	if !strings.HasPrefix(SeccompID(), "sha256:") || len(SeccompID()) != 19 {
		t.Errorf("id %q", SeccompID())
	}
}
