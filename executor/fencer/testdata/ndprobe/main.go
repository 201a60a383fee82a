// Command ndprobe is a hostile process for the fence tests, built by them
// (CGO_ENABLED=0) and mounted read-only into a container of the scanner
// image that joins a namespace the test made. It is not part of nmap-mcp.
//
//	ndprobe send -marker M PROBE...   sends, on the first interface, one IPv6
//	    neighbour solicitation per PROBE (name,dstmac,dstip,target[,ethertype
//	    of the frame, declared to the kernel as IPv6]), with M in an extra
//	    ND option, and prints what the kernel said.
//	    With -trailer the solicitation is shaped as the kernel sends it
//	    and M follows it as a trailer after the IPv6 packet.
//	ndprobe arp -marker M PROBE...    sends one ARP packet per PROBE
//	    (name,op,dstmac,senderip,targetmac,targetip[,trailer]: op request or
//	    reply, targetmac an address or up to 6 characters; with trailer
//	    "t", M follows the 28 bytes of ARP; senderip "self" is its own), and
//	    prints its own addresses ("from MAC IP") and what the kernel said;
//	    with -stay it then says "done" and keeps its address until stopped.
//	ndprobe neigh                     prints its namespace's /proc/net/arp.
//	ndprobe sniff -marker M           prints a line for every frame its
//	    namespace receives that holds M, with the 3 bytes that follow M.
//	ndprobe arplie -ip A -mac F       answers every ARP request for A with
//	    the Ethernet address F (run it where A's kernel does not answer).
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: ndprobe send|sniff|arplie ...")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	marker := fs.String("marker", "", "marker bytes")
	ip := fs.String("ip", "", "the address to lie about")
	mac := fs.String("mac", "", "the Ethernet address to give")
	stay := fs.Bool("stay", false, "arp: keep running (and the address) after sending")
	trailer := fs.Bool("trailer", false, "send: the marker as a trailer of a well-shaped solicitation")
	_ = fs.Parse(os.Args[2:])
	ifc := firstInterface()
	switch os.Args[1] {
	case "send":
		send(ifc, *marker, *trailer, fs.Args())
	case "arp":
		sendARP(ifc, *marker, fs.Args())
		if *stay {
			fmt.Println("done")
			time.Sleep(time.Hour)
		}
	case "neigh":
		b, err := os.ReadFile("/proc/net/arp")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(string(b))
	case "sniff":
		sniff(*marker)
	case "arplie":
		arplie(ifc, netip.MustParseAddr(*ip), mustMAC(*mac))
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

func firstInterface() *net.Interface {
	ifs, err := net.Interfaces()
	if err != nil {
		log.Fatal(err)
	}
	for _, i := range ifs {
		if i.Name != "lo" && len(i.HardwareAddr) == 6 {
			return &i
		}
	}
	log.Fatal("no Ethernet interface")
	return nil
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		log.Fatal(err)
	}
	return m
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func packetSocket(proto uint16, ifc *net.Interface) int {
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(proto)))
	if err != nil {
		log.Fatalf("packet socket: %v", err)
	}
	if ifc != nil {
		if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifc.Index}); err != nil {
			log.Fatalf("bind: %v", err)
		}
	}
	return fd
}

// ownIPv6 is the interface's global IPv6 address.
func ownIPv6(ifc *net.Interface) netip.Addr {
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is6() && !p.Addr().IsLinkLocalUnicast() {
			return p.Addr()
		}
	}
	log.Fatal("no global IPv6 address")
	return netip.Addr{}
}

// ownIPv4 is the interface's IPv4 address.
func ownIPv4(ifc *net.Interface) netip.Addr {
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			return p.Addr()
		}
	}
	log.Fatal("no IPv4 address")
	return netip.Addr{}
}

// send writes one neighbour solicitation per probe: a source link-layer
// address option, then an option of an unassigned type holding the marker.
func send(ifc *net.Interface, marker string, trailer bool, probes []string) {
	fd := packetSocket(0x86dd, ifc)
	src := ownIPv6(ifc)
	for _, p := range probes {
		f := strings.Split(p, ",")
		if len(f) != 4 && len(f) != 5 {
			log.Fatalf("probe %q: want name,dstmac,dstip,target[,ethertype]", p)
		}
		// The frame's own type may differ from the one the socket
		// declares (IPv6), which the kernel takes as the packet's.
		etype := []byte{0x86, 0xdd}
		if len(f) == 5 {
			v, err := strconv.ParseUint(f[4], 0, 16)
			if err != nil {
				log.Fatal(err)
			}
			etype = []byte{byte(v >> 8), byte(v)}
		}
		dstMAC, dst, target := mustMAC(f[1]), netip.MustParseAddr(f[2]), netip.MustParseAddr(f[3])
		icmp := []byte{135, 0, 0, 0, 0, 0, 0, 0}
		icmp = append(icmp, target.AsSlice()...)
		icmp = append(icmp, 1, 1)
		icmp = append(icmp, ifc.HardwareAddr...)
		if !trailer {
			opt := append([]byte{253, 0}, marker...)
			for len(opt)%8 != 0 {
				opt = append(opt, 0)
			}
			opt[1] = byte(len(opt) / 8)
			icmp = append(icmp, opt...)
		}
		binary.BigEndian.PutUint16(icmp[2:], checksum(src, dst, icmp))
		ip6 := make([]byte, 40)
		ip6[0] = 0x60
		binary.BigEndian.PutUint16(ip6[4:], uint16(len(icmp)))
		ip6[6], ip6[7] = 58, 255
		copy(ip6[8:], src.AsSlice())
		copy(ip6[24:], dst.AsSlice())
		frame := append(append(append(append([]byte{}, dstMAC...), ifc.HardwareAddr...), etype...), append(ip6, icmp...)...)
		if trailer {
			frame = append(frame, marker...)
		}
		err := syscall.Sendto(fd, frame, 0, &syscall.SockaddrLinklayer{Protocol: htons(0x86dd), Ifindex: ifc.Index, Halen: 6, Addr: [8]byte(append(dstMAC, 0, 0))})
		fmt.Printf("sent %s to %s via %s: %v\n", f[0], dst, dstMAC, err)
	}
}

// sendARP writes one ARP packet per probe from the interface's own
// Ethernet address, with the sender protocol address, target hardware
// address and trailer the probe names.
func sendARP(ifc *net.Interface, marker string, probes []string) {
	fd := packetSocket(0x0806, ifc)
	self := ownIPv4(ifc)
	fmt.Printf("from %s %s\n", ifc.HardwareAddr, self)
	for _, p := range probes {
		f := strings.Split(p, ",")
		if len(f) != 6 && len(f) != 7 {
			log.Fatalf("probe %q: want name,op,dstmac,senderip,targetmac,targetip[,t]", p)
		}
		op := map[string]byte{"request": 1, "reply": 2}[f[1]]
		if op == 0 {
			log.Fatalf("probe %q: op %q", p, f[1])
		}
		dstMAC := mustMAC(f[2])
		if f[3] == "self" {
			f[3] = self.String()
		}
		sip, tip := netip.MustParseAddr(f[3]), netip.MustParseAddr(f[5])
		tha, err := net.ParseMAC(f[4])
		if err != nil {
			tha = append([]byte(f[4]), make([]byte, 6)...)[:6]
		}
		frame := append(append(append([]byte{}, dstMAC...), ifc.HardwareAddr...), 0x08, 0x06)
		frame = append(frame, 0, 1, 8, 0, 6, 4, 0, op)
		frame = append(frame, ifc.HardwareAddr...)
		frame = append(frame, sip.AsSlice()...)
		frame = append(frame, tha...)
		frame = append(frame, tip.AsSlice()...)
		if len(f) == 7 && f[6] == "t" {
			frame = append(frame, marker...)
		}
		err = syscall.Sendto(fd, frame, 0, &syscall.SockaddrLinklayer{Protocol: htons(0x0806), Ifindex: ifc.Index, Halen: 6, Addr: [8]byte(append(dstMAC, 0, 0))})
		fmt.Printf("sent %s (%d bytes) to %s: %v\n", f[0], len(frame), dstMAC, err)
	}
}

func checksum(src, dst netip.Addr, icmp []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	add([]byte{0, 0, byte(len(icmp) >> 8), byte(len(icmp)), 0, 0, 0, 58})
	add(icmp)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// sniff prints every received frame that holds the marker.
func sniff(marker string) {
	fd := packetSocket(syscall.ETH_P_ALL, nil)
	fmt.Println("sniffing")
	buf := make([]byte, 65536)
	for {
		n, from, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			log.Fatal(err)
		}
		if ll, ok := from.(*syscall.SockaddrLinklayer); !ok || ll.Pkttype == syscall.PACKET_OUTGOING || n < 14 {
			continue
		}
		if i := bytes.Index(buf[:n], []byte(marker)); i >= 0 {
			tag := buf[i+len(marker) : min(n, i+len(marker)+3)]
			fmt.Printf("marker %s from %s to %s len %d\n", tag, net.HardwareAddr(buf[6:12]), net.HardwareAddr(buf[0:6]), n)
		}
	}
}

// arplie answers each ARP request for ip with mac as the sender's
// hardware address (the frame itself comes from the interface's own
// address, so that switches keep learning the truth).
func arplie(ifc *net.Interface, ip netip.Addr, mac net.HardwareAddr) {
	fd := packetSocket(0x0806, ifc)
	fmt.Println("lying")
	buf := make([]byte, 2048)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			log.Fatal(err)
		}
		a := buf[14:n]
		if n < 42 || binary.BigEndian.Uint16(a[6:]) != 1 || !bytes.Equal(a[24:28], ip.AsSlice()) {
			continue
		}
		asker, askerIP := append([]byte{}, a[8:14]...), append([]byte{}, a[14:18]...)
		reply := append(append(append([]byte{}, asker...), ifc.HardwareAddr...), 0x08, 0x06)
		reply = append(reply, 0, 1, 8, 0, 6, 4, 0, 2)
		reply = append(reply, mac...)
		reply = append(reply, ip.AsSlice()...)
		reply = append(reply, asker...)
		reply = append(reply, askerIP...)
		err = syscall.Sendto(fd, reply, 0, &syscall.SockaddrLinklayer{Protocol: htons(0x0806), Ifindex: ifc.Index, Halen: 6, Addr: [8]byte(append(asker, 0, 0))})
		fmt.Printf("lied to %s: %v\n", net.IP(askerIP), err)
	}
}
