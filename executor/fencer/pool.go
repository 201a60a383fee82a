package fencer

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nmap-mcp/nmap-mcp/sandbox"

	"github.com/nmap-mcp/nmap-mcp/internal/fence"
	"github.com/nmap-mcp/nmap-mcp/internal/lifecycle"
)

// Containers is the part of the Docker client that starts and removes a
// container with its streams attached; *client.Client satisfies it, and
// the executor's Engine builds on it.
type Containers interface {
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig,
		networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerAttach(ctx context.Context, container string, options container.AttachOptions) (types.HijackedResponse, error)
	ContainerStart(ctx context.Context, container string, options container.StartOptions) error
	ContainerRemove(ctx context.Context, container string, options container.RemoveOptions) error
}

// Engine is the part of the Docker client the fence uses; *client.Client
// satisfies it.
type Engine interface {
	Containers
	NetworkInspect(ctx context.Context, network string, options network.InspectOptions) (network.Inspect, error)
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
}

// Labels the fence adds: fencer containers carry the scan labels of
// package sandbox plus LabelRole=RoleFencer; the network it creates
// carries LabelManaged and LabelRole=RoleNetwork.
const (
	LabelRole   = "nmap-mcp.role"
	RoleFencer  = "fencer"
	RoleNetwork = "fence-network"
)

// Config shapes a Pool.
type Config struct {
	// Image is the scanner image (by ID); it has nft.
	Image string
	// Network is the Docker network fenced scans use.
	Network string
	// Create makes Network (a bridge, labelled as ours) when it does not
	// exist: the managed network. Otherwise a missing network is an error.
	Create bool
	// Warm is how many fencers are started ahead of need (0: each scan
	// starts its own).
	Warm int
	// Refill replaces each warm fencer taken, for a server; a one-shot CLI
	// scan leaves it false so that nothing is starting when it exits.
	Refill bool
	// Labels are the owner labels every fencer carries (sandbox.Label*:
	// managed, instance, owner pid and host), so that a sweep finds those
	// a dead server left.
	Labels map[string]string
	// Tamper, when set, rewrites each ruleset before it is sent: a test
	// hook that breaks a rule to show the fence fails closed.
	Tamper func(ruleset string) string
	// Linger is how long a fencer keeps its namespace after its rules are
	// in (it is removed as soon as its scan's container is gone); default
	// sandbox's largest timeout plus a minute.
	Linger time.Duration
}

// Pool hands out fenced network namespaces, keeping Config.Warm fencers
// started ahead of need.
type Pool struct {
	engine Engine
	cfg    Config
	log    *slog.Logger

	mu       sync.Mutex
	warm     []*fencer
	filling  int
	closed   bool
	gateways []netip.Addr
	bridge   string // the host's interface of a bridge network ("" for other drivers)
	netReady bool
	// track holds the fencers not yet removed and their background work;
	// Close ends the removal retries of discarded fencers.
	track *lifecycle.Tracker
}

// NewPool returns a pool; Start warms it. log may be nil.
func NewPool(engine Engine, cfg Config, log *slog.Logger) *Pool {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Linger <= 0 {
		cfg.Linger = sandbox.DefaultLimits().MaxTimeout + time.Minute
	}
	return &Pool{engine: engine, cfg: cfg, log: log, track: lifecycle.New()}
}

// Network is the Docker network of the pool's fences.
func (p *Pool) Network() string { return p.cfg.Network }

// Start begins warming the pool in the background.
func (p *Pool) Start() { p.refill() }

// Ready reports whether Warm fencers are started and waiting.
func (p *Pool) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.warm) >= p.cfg.Warm
}

// Fence installs spec's allowlist in a fresh namespace and returns the
// network mode that joins it ("container:ID") and a release func to call
// once the scan's container is gone. Any failure is an *Error and leaves
// nothing behind.
func (p *Pool) Fence(ctx context.Context, spec sandbox.Spec) (string, func(), error) {
	if spec.Fence == nil {
		return "", nil, &fence.Error{Err: errors.New("the scan has no allowlist")}
	}
	if spec.Fence.Network != p.cfg.Network {
		return "", nil, &fence.Error{Err: fmt.Errorf("the scan is placed on network %q, but fences are made on %q", spec.Fence.Network, p.cfg.Network)}
	}
	f, err := p.take(ctx)
	if err != nil {
		return "", nil, &fence.Error{Err: err}
	}
	p.mu.Lock()
	gateways, bridge := p.gateways, p.bridge
	p.mu.Unlock()
	for _, gw := range f.routers {
		if !slices.Contains(gateways, gw) {
			gateways = append(slices.Clip(gateways), gw)
		}
	}
	r := fence.Rules{Allow: spec.Fence.Allow, Neighbours: gateways, Devices: f.devices, MACs: f.macs, Own: f.own}
	r.Links, r.Closed, r.Own4, err = p.links(ctx, bridge, gateways, f.id)
	var rules string
	if err == nil {
		rules, err = r.Replacing()
	}
	if err == nil {
		if p.cfg.Tamper != nil {
			rules = p.cfg.Tamper(rules)
		}
		err = f.apply(ctx, rules)
	}
	if err != nil {
		p.discard(f)
		return "", nil, &fence.Error{Err: err}
	}
	var once sync.Once
	return "container:" + f.id, func() { once.Do(func() { p.discard(f) }) }, nil
}

// Pending lists the fencers not yet removed, for a hand-off to a reaper.
func (p *Pool) Pending() []string {
	return p.track.Pending()
}

// Close removes the waiting fencers and waits until every fencer is gone
// or ctx ends. Fences in use are removed when released.
func (p *Pool) Close(ctx context.Context) error {
	// Removals still retrying (the engine is away) try once more and give
	// up: the next start-up sweep removes what is left.
	p.mu.Lock()
	p.closed = true
	warm := p.warm
	p.warm = nil
	p.mu.Unlock()
	for _, f := range warm {
		p.discard(f)
	}
	return p.track.Wait(ctx, "fencers to be removed")
}

// take returns a started fencer: a warm one when there is one, otherwise
// a new one.
func (p *Pool) take(ctx context.Context) (*fencer, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("the fence pool is closed")
	}
	var f *fencer
	for len(p.warm) > 0 && f == nil {
		f, p.warm = p.warm[0], p.warm[1:]
		if f.dead() {
			p.discard(f)
			f = nil
		}
	}
	p.mu.Unlock()
	if p.cfg.Refill {
		defer p.refill()
	}
	if f != nil {
		return f, nil
	}
	return p.start(ctx)
}

// refill starts fencers in the background until Warm are waiting.
func (p *Pool) refill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.closed && len(p.warm)+p.filling < p.cfg.Warm {
		p.filling++
		p.track.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			f, err := p.start(ctx)
			p.mu.Lock()
			p.filling--
			closed := p.closed
			if err == nil && !closed {
				p.warm = append(p.warm, f)
				go p.watch(f)
			}
			p.mu.Unlock()
			if err != nil {
				p.log.Warn("could not start a waiting fencer; the next fenced scan starts its own", "network", p.cfg.Network, "err", err)
			} else if closed {
				p.discard(f)
			}
		})
	}
}

// watch removes a waiting fencer as soon as it exits (the engine stopped
// or restarted: its container is left behind, stopped), so that nothing of
// ours stays on the engine, and starts another.
func (p *Pool) watch(f *fencer) {
	<-f.done
	p.mu.Lock()
	i := slices.Index(p.warm, f)
	if i >= 0 {
		p.warm = slices.Delete(p.warm, i, i+1)
	}
	p.mu.Unlock()
	if i < 0 {
		return // taken by a scan, or discarded
	}
	p.log.Warn("a waiting fencer exited (did the engine stop?); it is removed and another started", "container", f.id[:12])
	p.discard(f)
	if p.cfg.Refill {
		p.refill()
	}
}

// discard closes a fencer's stream and removes its container in the
// background.
func (p *Pool) discard(f *fencer) {
	p.track.Go(func() {
		f.remove(p.engine, p.track.Stopping(), p.log, "fencer", func() { p.track.Gone(f.id) })
	})
}

// fencerScript first closes the namespace (every chain drops everything:
// while it waits for a scan, its kernel answers nothing), reports the
// interfaces' Ethernet addresses, its routes (/proc/net/route and
// ipv6_route: `ip` is not in the image), its IPv6 addresses (if_inet6) and
// the interfaces, then replaces that with the ruleset read on stdin in one
// transaction, checks that the inet table and one egress hook per
// interface are in place, says so, and keeps the namespace. Any failure
// exits before the marker: no marker, no scan.
const fencerScript = `set -eu
devs=""
for d in /sys/class/net/*; do d=${d##*/}; [ "$d" = lo ] || devs="$devs $d"; done
{
  echo "table inet ` + fence.TableInet + ` { chain output { type filter hook output priority 0; policy drop; }; chain input { type filter hook input priority 0; policy drop; }; }"
  i=0
  for d in $devs; do
    echo "table netdev ` + fence.TablePrefix + `$i { chain egress { type filter hook egress device \"$d\" priority 0; policy drop; }; }"
    i=$((i+1))
  done
} | nft -f -
for d in $devs; do read -r m < "/sys/class/net/$d/address"; printf 'mac %s %s\n' "$d" "$m"; done
while read -r l; do printf 'route4 %s\n' "$l"; done < /proc/net/route
if [ -r /proc/net/ipv6_route ]; then while read -r l; do printf 'route6 %s\n' "$l"; done < /proc/net/ipv6_route; fi
if [ -r /proc/net/if_inet6 ]; then while read -r l; do printf 'addr6 %s\n' "$l"; done < /proc/net/if_inet6; fi
printf 'ifaces%s\n' "$devs"
nft -f -
` + fence.Verify + `
printf '\036nmap-mcp-fenced\n'
exec sleep "$0"`

const fencedMarker = "\x1enmap-mcp-fenced"

// fencer is one started fencer container, waiting for its ruleset.
type fencer struct {
	*attached
	devices []string
	macs    []net.HardwareAddr // in devices' order
	routers []netip.Addr       // its default routes' gateways
	own     []netip.Addr       // its IPv6 addresses but loopback's
}

// start creates, attaches and starts a fencer on the pool's network and
// waits for its interface report. Create, attach and start run to their
// end even when ctx ends meanwhile (a call cut short on our side can still
// land on the engine's, and a fencer we did not hear of would leak); ctx
// only cuts the wait for the report, after which the fencer is removed.
func (p *Pool) start(ctx context.Context) (*fencer, error) {
	if err := p.ensureNetwork(ctx); err != nil {
		return nil, err
	}
	stepCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	id, cfg, hc := helperConfig(p.cfg.Image, p.cfg.Labels, RoleFencer, "fence-", fencerScript,
		fmt.Sprint(int(p.cfg.Linger.Seconds())), container.NetworkMode(p.cfg.Network))
	name := "nmap-mcp-fence-" + id
	f := &fencer{}
	fail := func(err error) (*fencer, error) {
		if f.attached != nil {
			p.discard(f)
		}
		return nil, err
	}
	err := startAttached(stepCtx, p.engine, fmt.Sprintf("fencer on network %q", p.cfg.Network), name, cfg, hc, func(a *attached) {
		f.attached = a
		p.track.Add(a.id)
	})
	if err != nil {
		return fail(err)
	}
	macs := map[string]net.HardwareAddr{}
	for n := 0; ; n++ {
		line, err := f.next(ctx, 30*time.Second)
		if err != nil {
			return fail(fmt.Errorf("fencer did not report its interfaces: %w", err))
		}
		fields := strings.Fields(line)
		if len(fields) == 0 || n > maxReport {
			return fail(fmt.Errorf("fencer reported %q instead of its interfaces", clip(line, 200)))
		}
		switch fields[0] {
		case "mac":
			if len(fields) == 3 {
				if hw, err := net.ParseMAC(fields[2]); err == nil {
					macs[fields[1]] = hw
				}
			}
			continue
		case "addr6":
			// address, interface index, prefix length, scope, flags, name
			if a, err := hex.DecodeString(fields[1]); err == nil && len(a) == 16 && len(fields) == 7 && fields[6] != "lo" {
				f.own = append(f.own, netip.AddrFrom16([16]byte(a)))
			}
			continue
		case "route4", "route6":
			if gw, ok := defaultRoute(fields); ok && !slices.Contains(f.routers, gw) {
				f.routers = append(f.routers, gw)
			}
			continue
		case "ifaces":
		default:
			return fail(fmt.Errorf("fencer reported %q instead of its interfaces", clip(line, 200)))
		}
		for _, d := range fields[1:] {
			if d != "lo" {
				f.devices = append(f.devices, d)
				f.macs = append(f.macs, macs[d])
			}
		}
		return f, nil
	}
}

// maxReport bounds the lines of a fencer's report.
const maxReport = 512

// defaultRoute reads the gateway of a default route from a fencer's
// "route4" line (a /proc/net/route line: interface, destination, gateway,
// flags, refcnt, use, metric, mask…, 32-bit values in host byte order,
// little-endian here) or "route6" line (a /proc/net/ipv6_route line:
// destination, its length, source, its length, next hop, …).
func defaultRoute(fields []string) (netip.Addr, bool) {
	parse := func(h string, n int) ([]byte, bool) {
		b, err := hex.DecodeString(h)
		return b, err == nil && len(b) == n
	}
	switch {
	case fields[0] == "route4" && len(fields) >= 9:
		dst, ok1 := parse(fields[2], 4)
		gw, ok2 := parse(fields[3], 4)
		mask, ok3 := parse(fields[8], 4)
		if !ok1 || !ok2 || !ok3 || !bytes.Equal(dst, make([]byte, 4)) || !bytes.Equal(mask, make([]byte, 4)) {
			return netip.Addr{}, false
		}
		a := netip.AddrFrom4([4]byte{gw[3], gw[2], gw[1], gw[0]})
		return a, !a.IsUnspecified()
	case fields[0] == "route6" && len(fields) >= 6:
		dst, ok1 := parse(fields[1], 16)
		gw, ok2 := parse(fields[5], 16)
		if !ok1 || !ok2 || fields[2] != "00" || !bytes.Equal(dst, make([]byte, 16)) {
			return netip.Addr{}, false
		}
		a := netip.AddrFrom16([16]byte(gw))
		return a, !a.IsUnspecified() && !a.IsLoopback()
	}
	return netip.Addr{}, false
}

// apply sends the ruleset and waits for the fencer to confirm it.
func (f *fencer) apply(ctx context.Context, rules string) error {
	if _, err := io.WriteString(f.conn.Conn, rules); err != nil {
		return fmt.Errorf("send the ruleset to the fencer: %w", err)
	}
	if err := f.conn.CloseWrite(); err != nil {
		return fmt.Errorf("end the ruleset: %w", err)
	}
	for {
		line, err := f.next(ctx, 30*time.Second)
		if err != nil {
			if msg := strings.TrimSpace(f.stderr.String()); msg != "" {
				return fmt.Errorf("nft: %s", clip(msg, 600))
			}
			return err
		}
		if line == fencedMarker {
			return nil
		}
	}
}

// next returns the fencer's next stdout line.
func (f *fencer) next(ctx context.Context, d time.Duration) (string, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case line, ok := <-f.lines:
		if !ok {
			// Let stderr finish arriving before it is read.
			<-f.done
			return "", errors.New("the fencer exited")
		}
		return line, nil
	case <-t.C:
		return "", fmt.Errorf("no answer from the fencer in %s", d)
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for the fencer: %w", ctx.Err())
	}
}

// ensureNetwork checks (once) that the pool's network exists and can be
// fenced, creating the managed one when allowed, and learns its gateways.
func (p *Pool) ensureNetwork(ctx context.Context) error {
	p.mu.Lock()
	ready := p.netReady
	p.mu.Unlock()
	if ready {
		return nil
	}
	info, err := p.engine.NetworkInspect(ctx, p.cfg.Network, network.InspectOptions{})
	if cerrdefs.IsNotFound(err) && p.cfg.Create {
		_, err = p.engine.NetworkCreate(ctx, p.cfg.Network, network.CreateOptions{
			Driver: "bridge",
			Labels: map[string]string{sandbox.LabelManaged: "true", LabelRole: RoleNetwork},
		})
		if err != nil && !cerrdefs.IsConflict(err) {
			return fmt.Errorf("create the fenced scans' network %q: %w", p.cfg.Network, err)
		}
		p.log.Info("created the network for fenced scans", "network", p.cfg.Network)
		info, err = p.engine.NetworkInspect(ctx, p.cfg.Network, network.InspectOptions{})
	}
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("Docker network %q does not exist: create it (docker network create …: a bridge, an --internal bridge, or macvlan on a lab segment) or use the managed one (sandbox.network: fenced)", p.cfg.Network)
		}
		return fmt.Errorf("inspect network %q: %w", p.cfg.Network, err)
	}
	if info.Driver == "host" || info.Driver == "null" {
		return fmt.Errorf("Docker network %q uses the %s driver, which has no namespace of its own to fence", p.cfg.Network, info.Driver)
	}
	var gws []netip.Addr
	for _, c := range info.IPAM.Config {
		if a, err := netip.ParseAddr(c.Gateway); err == nil {
			gws = append(gws, a)
		}
	}
	bridge := ""
	if info.Driver == "bridge" {
		bridge = info.Options["com.docker.network.bridge.name"]
		if bridge == "" && len(info.ID) >= 12 {
			bridge = "br-" + info.ID[:12]
		}
	}
	p.mu.Lock()
	p.gateways, p.bridge, p.netReady = gws, bridge, true
	p.mu.Unlock()
	return nil
}

// links returns what is known of the Ethernet addresses on the pool's
// network, read when a fence is made: every container endpoint Docker
// lists on it (Docker assigned both addresses), and each gateway that is
// an address of bridge, the host interface of a bridge network, when this
// process runs on the engine's host and sees it. A gateway is not pinned
// otherwise: whoever answers ARP for it could name any address. closed
// reports a bridge whose gateways are all pinned: nothing else is on its
// segment, so a frame to any other Ethernet address is dropped. own4 is
// the IPv4 address Docker assigned to the endpoint of container self (the
// fencer): the only sender address its namespace's ARP may carry.
func (p *Pool) links(ctx context.Context, bridge string, gateways []netip.Addr, self string) (links map[netip.Addr]net.HardwareAddr, closed bool, own4 []netip.Addr, err error) {
	info, err := p.engine.NetworkInspect(ctx, p.cfg.Network, network.InspectOptions{})
	if err != nil {
		return nil, false, nil, fmt.Errorf("list the endpoints of network %q: %w", p.cfg.Network, err)
	}
	if ep, ok := info.Containers[self]; ok {
		if pfx, err := netip.ParsePrefix(ep.IPv4Address); err == nil && pfx.Addr().Unmap().Is4() {
			own4 = append(own4, pfx.Addr().Unmap())
		}
	}
	links = map[netip.Addr]net.HardwareAddr{}
	for _, ep := range info.Containers {
		mac, err := net.ParseMAC(ep.MacAddress)
		if err != nil || !fence.UnicastMAC(mac) {
			continue
		}
		for _, a := range []string{ep.IPv4Address, ep.IPv6Address} {
			if pfx, err := netip.ParsePrefix(a); err == nil {
				links[pfx.Addr().Unmap()] = mac
			}
		}
	}
	pinned := 0
	if bridge != "" {
		for gw, mac := range hostLinks(bridge, gateways) {
			links[gw] = mac
			pinned++
		}
	}
	return links, bridge != "" && len(gateways) > 0 && pinned == len(gateways), own4, nil
}

// hostLinks returns the Ethernet address of each of gws that is an
// address of the host interface named bridge, as this process sees its
// own interfaces: nothing when it does not run in the engine's network
// namespace.
func hostLinks(bridge string, gws []netip.Addr) map[netip.Addr]net.HardwareAddr {
	out := map[netip.Addr]net.HardwareAddr{}
	ifc, err := net.InterfaceByName(bridge)
	if err != nil || !fence.UnicastMAC(ifc.HardwareAddr) {
		return out
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil && slices.Contains(gws, pfx.Addr().Unmap()) {
			out[pfx.Addr().Unmap()] = ifc.HardwareAddr
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 64<<10 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}
