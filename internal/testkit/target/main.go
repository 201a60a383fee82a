// Command target is a scan target for the fence tests. It runs inside a
// container that a test starts on a Docker network the test created: it
// listens on the TCP ports named by -tcp and answers UDP on -udp, and it
// counts every Ethernet frame its interfaces receive, by source MAC
// address (an AF_PACKET socket, so ARP and frames no IP stack would take
// are counted too), leaving out only address resolution for other hosts:
// an ARP request or IPv6 neighbour solicitation whose target is not one of
// its own addresses (on Ethernet every host on the segment hears those).
// It prints one line per counted frame ("frame src MAC dst MAC type …"),
// which the tests read from the container's log, so that reading the
// counts sends nothing on the network.
//
// It is built by the tests (CGO_ENABLED=0) and mounted into a container of
// the scanner image; it is not part of nmap-mcp.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	tcp := flag.String("tcp", "8080", "comma-separated TCP ports to listen on")
	udp := flag.Int("udp", 5353, "UDP port to answer on (0: none)")
	flag.Parse()

	c := &counter{own: ownAddrs()}
	// The packet socket is open before "target ready" is printed, so that
	// no frame after that is missed.
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		log.Fatalf("target: packet socket: %v", err)
	}
	go func() {
		if err := c.capture(fd); err != nil {
			log.Fatalf("target: count frames: %v", err)
		}
	}()
	for _, p := range strings.Split(*tcp, ",") {
		if p == "" {
			continue
		}
		ln, err := net.Listen("tcp", ":"+p)
		if err != nil {
			log.Fatalf("target: listen tcp %s: %v", p, err)
		}
		go accept(ln, func(conn net.Conn) { fmt.Fprintln(conn, "hello from the fence test target") })
	}
	if *udp > 0 {
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(*udp))
		if err != nil {
			log.Fatalf("target: listen udp: %v", err)
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				n, addr, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(buf[:n], addr)
			}
		}()
	}
	fmt.Println("target ready")
	select {}
}

func accept(ln net.Listener, serve func(net.Conn)) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			os.Exit(0)
		}
		go func() {
			defer conn.Close()
			serve(conn)
		}()
	}
}

// counter logs the frames received.
type counter struct {
	own map[netip.Addr]bool
}

func ownAddrs() map[netip.Addr]bool {
	own := map[netip.Addr]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			own[p.Addr()] = true
		}
	}
	return own
}

// resolvesOther reports whether frame is an ARP request or a neighbour
// solicitation for an address that is not ours.
func (c *counter) resolvesOther(frame []byte) bool {
	etype := uint16(frame[12])<<8 | uint16(frame[13])
	switch {
	case etype == 0x0806 && len(frame) >= 42: // ARP: target protocol address at 38
		op := uint16(frame[20])<<8 | uint16(frame[21])
		tpa, _ := netip.AddrFromSlice(frame[38:42])
		return op == 1 && !c.own[tpa]
	case etype == 0x86dd && len(frame) >= 14+40+24: // IPv6, ICMPv6 next header, type 135
		ip6 := frame[14:]
		if ip6[6] != 58 || ip6[40] != 135 {
			return false
		}
		target, _ := netip.AddrFromSlice(ip6[48:64])
		return !c.own[target]
	}
	return false
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *counter) capture(fd int) error {
	buf := make([]byte, 65536)
	for {
		n, from, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		ll, ok := from.(*syscall.SockaddrLinklayer)
		if !ok || ll.Pkttype == syscall.PACKET_OUTGOING || n < 14 {
			continue
		}
		if name, err := net.InterfaceByIndex(ll.Ifindex); err == nil && name.Name == "lo" {
			continue
		}
		if c.resolvesOther(buf[:n]) {
			continue
		}
		src := net.HardwareAddr(buf[6:12]).String()
		// One line per counted frame, for `docker logs` when a test fails.
		fmt.Printf("frame src %s dst %s type %#04x len %d head %x\n", src, net.HardwareAddr(buf[0:6]), uint16(buf[12])<<8|uint16(buf[13]), n, buf[14:min(n, 14+28)])
	}
}
