package fencer_test

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor/fencer"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// poisoned lists the entries of the neighbour table of tg's namespace
// (its /proc/net/arp) that map an address other than own to mac: what a
// spoofed ARP sender address taught it.
func poisoned(t *testing.T, bin string, tg *testkit.Target, mac, own string) []string {
	t.Helper()
	out := startProbe(t, bin, "container:"+tg.ID, "neigh").wait(t)
	if !strings.Contains(out, "HW address") {
		t.Fatalf("no neighbour table from %s:\n%s", tg.IPv4, out)
	}
	var bad []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && strings.EqualFold(f[3], mac) && f[0] != own {
			bad = append(bad, l)
		}
	}
	return bad
}

// sender reads the "from MAC IP" line of an ndprobe arp run.
func sender(t *testing.T, out string) (mac, ip string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "from" {
			return f[1], f[2]
		}
	}
	t.Fatalf("ndprobe did not say where it sends from:\n%s", out)
	return "", ""
}

// hostSniffer counts the frames that arrive on any interface of this
// process's network namespace (the engine's host: the host ends of the
// containers' veths, before the bridge, whose br_netfilter trims what
// follows an IPv6 packet) holding a marker, by the 3 bytes that follow it.
type hostSniffer struct {
	mu   sync.Mutex
	tags map[string]int
	fd   int
	done chan struct{}
}

func startHostSniffer(t *testing.T, marker string) *hostSniffer {
	t.Helper()
	const ethPAll = 0x0003
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(ethPAll<<8|ethPAll>>8))
	if err != nil {
		t.Skipf("no packet socket in the test's namespace (the IPv6 trailer probe needs root on the engine's host): %v", err)
	}
	tv := syscall.Timeval{Usec: 200000}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	h := &hostSniffer{tags: map[string]int{}, fd: fd, done: make(chan struct{})}
	stop := make(chan struct{})
	go func() {
		defer close(h.done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, from, err := syscall.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if ll, ok := from.(*syscall.SockaddrLinklayer); !ok || ll.Pkttype == syscall.PACKET_OUTGOING {
				continue
			}
			if i := bytes.Index(buf[:n], []byte(marker)); i >= 0 {
				tag := string(buf[i+len(marker) : min(n, i+len(marker)+3)])
				h.mu.Lock()
				h.tags[tag]++
				h.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-h.done
		syscall.Close(fd)
	})
	return h
}

// count is how many frames with tag it saw, once they stop arriving.
func (h *hostSniffer) count(tag string) int {
	n := -1
	for range 10 {
		time.Sleep(500 * time.Millisecond)
		h.mu.Lock()
		now := h.tags[tag]
		h.mu.Unlock()
		if now == n {
			break
		}
		n = now
	}
	return n
}

// A process with NET_RAW in a live fenced scan's namespace sends ARP that
// lies about its sender address (a made-up address with a made-up target
// hardware address and a trailer, the gateway's in a gratuitous request,
// the forbidden neighbour's in a request and a reply to the allowed
// target), an honest request with a trailer, and a well-shaped IPv6
// neighbour solicitation to the allowed target's group with a trailer:
// no neighbour table maps an address that is not the namespace's own to
// its Ethernet address, and no sniffer sees a marker (issue F2: arp_out
// checked only the sender hardware address and the target address, and
// neither ARP nor ND checked the frame's length). The same probes from an
// unfenced container show each of them works; the fenced scan still finds
// its target.
func TestFenceShapesARPAndTrailers(t *testing.T) {
	testkit.NeedEngine(t)
	n := env.Network(t, testkit.NetworkOptions{IPv6: true})
	allowed, forbidden := env.Target(t, n, 8080), env.Target(t, n, 8080)
	var gw string
	for _, g := range n.Gateways {
		if g.Is4() {
			gw = g.String()
		}
	}
	if gw == "" {
		t.Fatalf("the test network lists no IPv4 gateway: %v", n.Gateways)
	}
	bin := probeBinary(t)
	const marker = "nmap-mcp-arp-"
	sniffF := startProbe(t, bin, "container:"+forbidden.ID, "sniff", "-marker", marker)
	sniffA := startProbe(t, bin, "container:"+allowed.ID, "sniff", "-marker", marker)
	sniffF.ready(t, "sniffing")
	sniffA.ready(t, "sniffing")
	host := startHostSniffer(t, marker)

	A, F := allowed.IPv4.String(), forbidden.IPv4.String()
	const bc, zero = "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"
	arps := []string{
		// The forbidden neighbour learns "the gateway" (it answers a
		// request for itself), so that a gratuitous request has an entry
		// to change; from the fenced namespace this one is dropped as
		// before.
		"gateway-asks-forbidden,request," + bc + "," + gw + "," + zero + "," + F,
		"odd-sender-trailer,request," + bc + ",222.173.190.239,RTMK!!," + A + ",t",
		"gratuitous-gateway,request," + bc + "," + gw + "," + zero + "," + gw,
		"as-forbidden,request," + bc + "," + F + "," + zero + "," + A,
		"reply-as-forbidden,reply," + allowed.MAC + "," + F + "," + allowed.MAC + "," + A,
		"own-trailer,request," + bc + ",self," + zero + "," + A + ",t",
	}
	aGroup, aGroupMAC := solicited(allowed.IPv6)
	ns := "ns-trailer," + aGroupMAC + "," + aGroup.String() + "," + allowed.IPv6.String()

	// Control: unfenced, every lie lands and every trailer arrives.
	// It stays, keeping its address: the fencer gets another.
	ctlP := startProbe(t, bin, n.Name, append([]string{"arp", "-stay", "-marker", marker + "ctl"}, arps...)...)
	ctlP.ready(t, "done")
	ctl := ctlP.output(t)
	mac, own := sender(t, ctl)
	if bad := poisoned(t, bin, forbidden, mac, own); len(bad) == 0 {
		t.Fatalf("an unfenced spoofer did not change the forbidden neighbour's table: the test proves nothing\n%s", ctl)
	}
	if bad := poisoned(t, bin, allowed, mac, own); len(bad) == 0 {
		t.Fatalf("an unfenced spoofer did not change the allowed target's table: the test proves nothing\n%s", ctl)
	}
	if got := sniffed(t, sniffF, "ctl"); got < 2 {
		t.Fatalf("the forbidden neighbour saw %d of 2 unfenced ARP trailers: the test proves nothing\n%s\n%s", got, ctl, sniffF.output(t))
	}
	ctl6 := startProbe(t, bin, n.Name, "send", "-trailer", "-marker", marker+"ct6", ns).wait(t)
	if got := host.count("ct6"); got == 0 {
		t.Fatalf("no unfenced solicitation trailer arrived on the host: the test proves nothing\n%s", ctl6)
	}

	r := newRig(t, n, func(c *fencer.Config) { c.Warm = 0 })
	spec := r.spec(t, sandbox.RawSockets, []netip.Addr{allowed.IPv4, allowed.IPv6})
	spec.Command = []string{"/bin/sh", "-c", "sleep 10; exec /usr/bin/nmap -n -Pn -sS -oX - -p 8080 -- " + A}
	id, done := r.startFenced(t, spec)
	attack := startProbe(t, bin, "container:"+id, append([]string{"arp", "-marker", marker + "fen"}, arps...)...).wait(t)
	attack6 := startProbe(t, bin, "container:"+id, "send", "-trailer", "-marker", marker+"fe6", ns).wait(t)
	res := <-done
	if !portOpen(res.out, 8080) {
		t.Errorf("the fenced scan did not find its target's port open: %v\n%s", res.err, res.out)
	}
	if !strings.Contains(attack, "sent own-trailer") || !strings.Contains(attack6, "sent ns-trailer") {
		t.Fatalf("the hostile sender did not run:\n%s\n%s", attack, attack6)
	}
	mac, own = sender(t, attack)
	if bad := poisoned(t, bin, forbidden, mac, own); len(bad) != 0 {
		t.Errorf("the fenced namespace's ARP changed the forbidden neighbour's table:\n%s\n%s", strings.Join(bad, "\n"), attack)
	}
	if bad := poisoned(t, bin, allowed, mac, own); len(bad) != 0 {
		t.Errorf("the fenced namespace's ARP changed the allowed target's table:\n%s\n%s", strings.Join(bad, "\n"), attack)
	}
	for _, s := range []*probe{sniffF, sniffA} {
		if got := sniffed(t, s, "fen") + sniffed(t, s, "fe6"); got != 0 {
			t.Errorf("%d frames with a trailer left the fenced namespace:\n%s\n%s\n%s", got, attack, attack6, s.output(t))
		}
	}
	if got := host.count("fen"); got != 0 {
		t.Errorf("%d ARP frames with a trailer left the fenced namespace (seen on the host):\n%s", got, attack)
	}
	if got := host.count("fe6"); got != 0 {
		t.Errorf("%d neighbour solicitations with a trailer left the fenced namespace (seen on the host):\n%s", got, attack6)
	}
}
