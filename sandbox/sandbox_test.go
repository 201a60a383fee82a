package sandbox

import (
	"github.com/docker/docker/api/types/container"
	"slices"
	"strings"
	"testing"
)

func TestConfigUnprivileged(t *testing.T) {
	opts := Options{Limits: DefaultLimits(), Instance: "i1"}
	cfg, hc := Config(opts, Scan{ID: "s1", Image: "img", Args: []string{"-sT", "--", "127.0.0.1"}})
	if cfg.User != "65532:65532" || len(hc.CapAdd) != 0 || !slices.Equal(hc.CapDrop, []string{"ALL"}) {
		t.Fatalf("user %q caps +%v -%v", cfg.User, hc.CapAdd, hc.CapDrop)
	}
	checkAlways(t, cfg.Labels, hc)
	if hc.NetworkMode != "host" {
		t.Errorf("default network %q, want host", hc.NetworkMode)
	}
}

func TestConfigRawSockets(t *testing.T) {
	opts := Options{Network: "labnet", Limits: DefaultLimits(), Instance: "i1"}
	cfg, hc := Config(opts, Scan{ID: "s2", Image: "img", Privilege: RawSockets})
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
	if h.Privileged || h.AutoRemove || !h.ReadonlyRootfs || len(h.Binds) != 0 || len(h.Mounts) != 0 {
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
