package fencer

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/system"

	"github.com/nmap-mcp/nmap-mcp/internal/fence"
)

// Unit tests of the host fence's ruleset and cgroup placement; the fence
// itself is tested on the engine in host_e2e_test.go.

func TestHostRuleset(t *testing.T) {
	rules, err := fence.HostRuleset("unified/nmap-mcp-scans", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"add table inet nmap_mcp_host\ndelete table inet nmap_mcp_host\n", // replaced in one transaction
		`socket cgroupv2 level 1 "unified/nmap-mcp-scans" jump scans`,
		`oifname != "lo" drop`,
		"ip daddr != 127.0.0.0/8 drop",
		"ip6 daddr != ::1 drop",
		"policy accept", // only the scans' cgroup is filtered, never the host's own traffic
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rules)
		}
	}
	for _, bad := range []string{"", `a"b`, "a\nb", `a\b`} {
		if _, err := fence.HostRuleset(bad, 1); err == nil {
			t.Errorf("cgroup path %q accepted", bad)
		}
	}
	if _, err := fence.HostRuleset("x", 0); err == nil {
		t.Error("level 0 accepted")
	}
}

func TestCgroupPlace(t *testing.T) {
	for _, c := range []struct {
		driver, version, parent, path string
	}{
		{"cgroupfs", "1", "/nmap-mcp-scans", "unified/nmap-mcp-scans"},
		{"cgroupfs", "2", "/nmap-mcp-scans", "nmap-mcp-scans"},
		{"systemd", "2", "nmap_mcp_scans.slice", "nmap_mcp_scans.slice"},
	} {
		parent, path, level, err := cgroupPlace(system.Info{CgroupDriver: c.driver, CgroupVersion: c.version})
		if err != nil || parent != c.parent || path != c.path || level != 1 {
			t.Errorf("%s v%s: %q %q %d %v", c.driver, c.version, parent, path, level, err)
		}
	}
	if _, _, _, err := cgroupPlace(system.Info{CgroupDriver: "none"}); err == nil {
		t.Error("an unknown cgroup driver was accepted")
	}
}

// noInfo is an engine that cannot say its cgroup driver: the fence fails
// closed before any container is made (so its other methods are never
// called).
type noInfo struct{ HostEngine }

func (noInfo) Info(context.Context) (system.Info, error) {
	return system.Info{CgroupDriver: "mystery", CgroupVersion: "3"}, nil
}

func TestHostFenceFailsClosed(t *testing.T) {
	h := NewHostFence(noInfo{}, HostConfig{Image: "img"}, nil)
	_, err := h.Ensure(context.Background())
	var he *HostError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "sandbox.network: host") || !strings.Contains(err.Error(), "mystery") {
		t.Fatalf("err %v: want a *HostError that names the cause and the opt-out", err)
	}
	if len(h.Pending()) != 0 {
		t.Fatalf("containers left: %v", h.Pending())
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Ensure(context.Background()); err == nil {
		t.Fatal("a closed host fence installed a fence")
	}
}
