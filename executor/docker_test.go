package executor

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Unit tests of the Docker configuration of a spec (no engine).

// dockerConfig is Docker's configuration for one scan.
func dockerConfig(opts sandbox.Options, s sandbox.Scan) (*container.Config, *container.HostConfig) {
	return DockerConfig(sandbox.New(opts, s))
}

func TestConfigUnprivileged(t *testing.T) {
	opts := sandbox.Options{Limits: sandbox.DefaultLimits(), Instance: "i1"}
	place, err := sandbox.Place(opts, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	if err != nil {
		t.Fatal(err)
	}
	cfg, hc := dockerConfig(opts, sandbox.Scan{ID: "s1", Image: "img", Args: []string{"-sT", "--", "127.0.0.1"}, Placement: place})
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
	opts := sandbox.Options{Network: "labnet", Limits: sandbox.DefaultLimits(), Instance: "i1"}
	place, err := sandbox.Place(opts, []netip.Prefix{netip.MustParsePrefix("10.1.2.0/30")})
	if err != nil || place.Fence == nil {
		t.Fatalf("place %+v: %v", place, err)
	}
	cfg, hc := dockerConfig(opts, sandbox.Scan{ID: "s2", Image: "img", Privilege: sandbox.RawSockets, Placement: place})
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
	resolv := len(h.Mounts) == 1 && h.Mounts[0].Source == "/dev/null" && h.Mounts[0].Target == sandbox.ResolvConf && h.Mounts[0].ReadOnly
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
	if labels[sandbox.LabelManaged] != "true" || labels[sandbox.LabelScanID] == "" || labels[sandbox.LabelInstance] != "i1" || labels[sandbox.LabelOwnerPID] == "" {
		t.Errorf("labels = %v", labels)
	}
}

// The scan's seccomp profile is applied to its container.
func TestDockerSeccomp(t *testing.T) {
	_, hc := dockerConfig(sandbox.Options{Limits: sandbox.DefaultLimits()}, sandbox.Scan{ID: "z"})
	if !slices.Contains(hc.SecurityOpt, "seccomp="+string(sandbox.SeccompProfile())) {
		t.Errorf("security opts %v lack the profile", hc.SecurityOpt)
	}
}
