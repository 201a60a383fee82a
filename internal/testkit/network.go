package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// LabelTest marks the networks and target containers a test process
// makes, with its instance as the value, so that the leak check finds
// them.
const LabelTest = "nmap-mcp.test"

// NetworkOptions shape a test network.
type NetworkOptions struct {
	// Driver is "bridge" (default) or "macvlan".
	Driver string
	// Parent is the macvlan parent interface.
	Parent string
	// IPv6 adds an IPv6 subnet (a ULA /64).
	IPv6 bool
	// Internal cuts the network off from the outside (default true for
	// bridges: scans in tests must never reach past it).
	External bool
	// NoGateway leaves the gateways out of an IPv6 network's IPAM
	// configuration (Docker then picks them and does not list them).
	NoGateway bool
}

// Network is a Docker network a test created.
type Network struct {
	Name     string
	ID       string
	Gateways []netip.Addr
	Subnets  []netip.Prefix
}

// ContainerMAC reports whether mac is that of a container on the network:
// Docker derives it from the container's IPv4 address (02:42 and the four
// address bytes), which no bridge or host interface has.
func (n *Network) ContainerMAC(mac string) bool {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 || hw[0] != 0x02 || hw[1] != 0x42 {
		return false
	}
	a := netip.AddrFrom4([4]byte(hw[2:6]))
	for _, p := range n.Subnets {
		if p.Contains(a) && !slices.Contains(n.Gateways, a) {
			return true
		}
	}
	return false
}

// Network creates an internal Docker network for this test and removes it
// when the test ends. Scans in tests target only containers on networks
// made here.
func (e *Env) Network(t testing.TB, o NetworkOptions) *Network {
	t.Helper()
	ctx := context.Background()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "nmap-mcp-test-" + hex.EncodeToString(b[:])
	driver := o.Driver
	if driver == "" {
		driver = "bridge"
	}
	opts := network.CreateOptions{Driver: driver, Internal: !o.External, Labels: map[string]string{LabelTest: e.Instance}}
	if o.Parent != "" {
		opts.Options = map[string]string{"parent": o.Parent}
	}
	if o.IPv6 {
		enable := true
		opts.EnableIPv6 = &enable
		// A ULA /64 and an IPv4 /24 picked at random in 172.31/16 and fd00::/8.
		opts.IPAM = &network.IPAM{Config: []network.IPAMConfig{
			{Subnet: fmt.Sprintf("172.31.%d.0/24", b[0]), Gateway: fmt.Sprintf("172.31.%d.1", b[0])},
			{Subnet: fmt.Sprintf("fd00:6e6d:%02x%02x::/64", b[1], b[2]), Gateway: fmt.Sprintf("fd00:6e6d:%02x%02x::1", b[1], b[2])},
		}}
		if o.NoGateway {
			for i := range opts.IPAM.Config {
				opts.IPAM.Config[i].Gateway = ""
			}
		}
	} else if driver == "macvlan" {
		opts.IPAM = &network.IPAM{Config: []network.IPAMConfig{{Subnet: fmt.Sprintf("172.30.%d.0/24", b[0]), Gateway: fmt.Sprintf("172.30.%d.1", b[0])}}}
	}
	created, err := e.Client.NetworkCreate(ctx, name, opts)
	if err != nil {
		t.Fatalf("create test network: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Client.NetworkRemove(context.Background(), created.ID); err != nil {
			t.Errorf("remove test network %s: %v", name, err)
		}
	})
	info, err := e.Client.NetworkInspect(ctx, created.ID, network.InspectOptions{})
	if err != nil {
		t.Fatalf("inspect test network: %v", err)
	}
	n := &Network{Name: name, ID: created.ID}
	for _, c := range info.IPAM.Config {
		if a, err := netip.ParseAddr(c.Gateway); err == nil {
			n.Gateways = append(n.Gateways, a)
		}
		if p, err := netip.ParsePrefix(c.Subnet); err == nil {
			n.Subnets = append(n.Subnets, p)
		}
	}
	return n
}

// Target is a container of the target program (internal/testkit/target)
// on a test network: it listens on its TCP ports and UDP 5353 and logs
// each frame it receives.
type Target struct {
	env  *Env
	Net  *Network
	ID   string
	IPv4 netip.Addr
	IPv6 netip.Addr
	MAC  string
}

// Target starts a target on n listening on tcpPorts, and removes it when
// the test ends.
func (e *Env) Target(t testing.TB, n *Network, tcpPorts ...int) *Target {
	t.Helper()
	return e.TargetWith(t, n, nil, tcpPorts...)
}

// TargetWith starts a target as Target does, with these network sysctls
// of its namespace set as well (for example
// net.ipv4.conf.all.arp_ignore=8: its kernel answers no ARP, so that a
// process in it can answer instead).
func (e *Env) TargetWith(t testing.TB, n *Network, sysctls map[string]string, tcpPorts ...int) *Target {
	t.Helper()
	ctx := context.Background()
	bin := e.targetBinary(t)
	ports := make([]string, len(tcpPorts))
	for i, p := range tcpPorts {
		ports[i] = fmt.Sprint(p)
	}
	cfg := &container.Config{
		Image:      e.Image.ID,
		Entrypoint: []string{"/target", "-tcp", strings.Join(ports, ","), "-udp", "5353"},
		User:       "0:0",
		Labels:     map[string]string{LabelTest: e.Instance, sandbox.LabelManaged: "true", sandbox.LabelInstance: e.Instance},
	}
	hc := &container.HostConfig{
		NetworkMode: container.NetworkMode(n.Name),
		CapDrop:     []string{"ALL"},
		CapAdd:      []string{"NET_RAW"},
		Mounts:      []mount.Mount{{Type: mount.TypeBind, Source: bin, Target: "/target", ReadOnly: true}},
		Sysctls:     map[string]string{"net.ipv6.conf.all.disable_ipv6": "0"},
	}
	for k, v := range sysctls {
		hc.Sysctls[k] = v
	}
	created, err := e.Client.ContainerCreate(ctx, cfg, hc, nil, nil, "")
	if err != nil {
		t.Fatalf("create target: %v", err)
	}
	t.Cleanup(func() {
		_ = e.Client.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	if err := e.Client.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start target: %v", err)
	}
	info, err := e.Client.ContainerInspect(ctx, created.ID)
	if err != nil {
		t.Fatalf("inspect target: %v", err)
	}
	ep := info.NetworkSettings.Networks[n.Name]
	if ep == nil {
		t.Fatalf("target is not on %s", n.Name)
	}
	tg := &Target{env: e, Net: n, ID: created.ID, MAC: ep.MacAddress}
	tg.IPv4, _ = netip.ParseAddr(ep.IPAddress)
	tg.IPv6, _ = netip.ParseAddr(ep.GlobalIPv6Address)
	if !Eventually(10*time.Second, func() bool { out, _ := tg.output(); return strings.Contains(out, "target ready") }) {
		t.Fatalf("target %s did not start", tg.IPv4)
	}
	return tg
}

// Sources returns the source MAC of each frame the target received, in
// order, read from its log (one line per frame), so that reading them
// sends nothing on the network. A test marks len(Sources) before a scan
// and looks at what came after.
func (tg *Target) Sources(t testing.TB) []string {
	t.Helper()
	var srcs []string
	for _, f := range tg.Frames(t) {
		srcs = append(srcs, f.Src)
	}
	return srcs
}

func (tg *Target) output() (string, error) {
	rc, err := tg.env.Client.ContainerLogs(context.Background(), tg.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", fmt.Errorf("logs: %w", err)
	}
	defer rc.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		return "", fmt.Errorf("logs: %w", err)
	}
	return out.String(), nil
}

// Log returns the end of the target's output: one line per frame it
// counted, for a failing test to show.
func (tg *Target) Log(t testing.TB) string {
	t.Helper()
	out, err := tg.output()
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// targetBinary builds the target program once per test process, in a
// temporary directory that Main removes.
func (e *Env) targetBinary(t testing.TB) string {
	t.Helper()
	b := &e.target
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "nmap-mcp-target-")
		if err != nil {
			b.err = err
			return
		}
		b.dir = dir
		bin := filepath.Join(dir, "target")
		cmd := exec.Command("go", "build", "-o", bin, targetPackage)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("build the target program: %v\n%s", err, out)
			return
		}
		b.path = bin
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// targetPackage is the import path of the target program.
const targetPackage = "github.com/nmap-mcp/nmap-mcp/internal/testkit/target"

// leftoverNetworks lists the networks this test process made that still
// exist.
func (e *Env) leftoverNetworks(ctx context.Context) ([]string, error) {
	list, err := e.Client.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelTest+"="+e.Instance))})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	var names []string
	for _, n := range list {
		names = append(names, n.Name)
	}
	return names, nil
}
