// Command target is a scan target for the fence tests. It runs inside a
// container that a test starts on a Docker network the test created: it
// listens on the TCP ports named by -tcp and answers UDP on -udp, and it
// counts every Ethernet frame its interfaces receive, by source MAC
// address (an AF_PACKET socket, so ARP and frames no IP stack would take
// are counted too). A line "get" on the -stats port returns the counts
// as JSON: {"02:42:…": 3, …}.
//
// It is built by the tests (CGO_ENABLED=0) and mounted into a container of
// the scanner image; it is not part of nmap-mcp.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

func main() {
	tcp := flag.String("tcp", "8080", "comma-separated TCP ports to listen on")
	udp := flag.Int("udp", 5353, "UDP port to answer on (0: none)")
	stats := flag.Int("stats", 9, "TCP port that reports the frame counts")
	flag.Parse()

	c := &counter{bySource: map[string]int{}}
	go func() {
		if err := c.capture(); err != nil {
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
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(*stats))
	if err != nil {
		log.Fatalf("target: listen stats: %v", err)
	}
	fmt.Println("target ready")
	accept(ln, func(conn net.Conn) {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if strings.TrimSpace(line) == "get" {
			_ = json.NewEncoder(conn).Encode(c.snapshot())
		}
	})
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

// counter counts received frames by source MAC address.
type counter struct {
	mu       sync.Mutex
	bySource map[string]int
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.bySource))
	for k, v := range c.bySource {
		out[k] = v
	}
	return out
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *counter) capture() error {
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
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
		src := net.HardwareAddr(buf[6:12]).String()
		c.mu.Lock()
		c.bySource[src]++
		c.mu.Unlock()
	}
}
