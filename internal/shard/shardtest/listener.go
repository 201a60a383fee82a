//go:build linux

package shardtest

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Listener is a user-space responder on a raw socket of one
// interface of another network namespace: it answers ARP for the
// addresses of block, and TCP SYNs to them with SYN-ACK (port) or RST
// (other ports) after delay. It ignores every other frame; the namespace's
// kernel does not own those addresses and drops the rest (the scanner's
// ACK, FIN and RST).
type Listener struct {
	fd    int
	mac   net.HardwareAddr
	block netip.Prefix
	port  uint16
	delay time.Duration
	done  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex // serialises writes

	frames, arps, syns, sent atomic.Int64 // what it saw and answered
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Start makes addr (an address with its interface's prefix length, e.g.
// 10.0.0.5/24) of interface ifname in the network namespace of process
// pid answer with a delay: it takes the address off the interface there
// (ip address del, through nsenter: the namespace's kernel then answers
// nothing for it) and answers for it from a raw socket opened inside that
// namespace (a thread of this process enters it only to make the socket;
// a socket stays in the namespace it was made in) until Stop. It needs
// root (or CAP_SYS_ADMIN and CAP_NET_ADMIN) and nsenter and ip on the
// host. The namespace must be one the caller made (a test's own container
// or pod).
func Start(pid int, ifname string, addr netip.Prefix, port int, delay time.Duration) (*Listener, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("port %d: must be 1..65535", port)
	}
	cmd := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", pid), "--", "ip", "address", "del", addr.String(), "dev", ifname)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("take %s off %s in the namespace of process %d: %w: %s", addr, ifname, pid, err, bytes.TrimSpace(out))
	}
	block := netip.PrefixFrom(addr.Addr(), addr.Addr().BitLen())
	type opened struct {
		fd  int
		mac net.HardwareAddr
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		// This goroutine's thread changes namespace and is never unlocked:
		// Go ends the thread with the goroutine, so no other goroutine runs
		// in the target's namespace.
		runtime.LockOSThread()
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			ch <- opened{err: fmt.Errorf("open the target's network namespace: %w", err)}
			return
		}
		defer ns.Close()
		nr, ok := map[string]uintptr{"amd64": 308, "arm64": 268}[runtime.GOARCH] // setns(2); package syscall has no SYS_SETNS
		if !ok {
			ch <- opened{err: fmt.Errorf("setns: GOARCH %s: the benchmark knows only amd64 and arm64", runtime.GOARCH)}
			return
		}
		if _, _, errno := syscall.RawSyscall(nr, ns.Fd(), syscall.CLONE_NEWNET, 0); errno != 0 {
			ch <- opened{err: fmt.Errorf("setns into the target's network namespace: %w", errno)}
			return
		}
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			ch <- opened{err: fmt.Errorf("interface %s in the target's namespace: %w", ifname, err)}
			return
		}
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
		if err != nil {
			ch <- opened{err: fmt.Errorf("raw socket: %w", err)}
			return
		}
		if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			syscall.Close(fd)
			ch <- opened{err: fmt.Errorf("bind the raw socket to %s: %w", ifname, err)}
			return
		}
		tv := syscall.Timeval{Usec: 200000}
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
			syscall.Close(fd)
			ch <- opened{err: fmt.Errorf("receive timeout: %w", err)}
			return
		}
		ch <- opened{fd: fd, mac: ifi.HardwareAddr}
	}()
	o := <-ch
	if o.err != nil {
		return nil, o.err
	}
	s := &Listener{fd: o.fd, mac: o.mac, block: block, port: uint16(port), delay: delay, done: make(chan struct{})}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Stop ends the responder and closes its socket.
func (s *Listener) Stop() {
	close(s.done)
	s.wg.Wait()
	syscall.Close(s.fd)
}

func (s *Listener) serve() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		select {
		case <-s.done:
			return
		default:
		}
		n, _, err := syscall.Recvfrom(s.fd, buf, 0)
		if err != nil || n < 14 {
			continue // the receive timeout, or a runt
		}
		f := buf[:n]
		s.frames.Add(1)
		if bytes.Equal(f[6:12], s.mac) {
			continue // our own frame, seen on the way out
		}
		switch binary.BigEndian.Uint16(f[12:14]) {
		case 0x0806:
			s.arp(f)
		case 0x0800:
			s.tcp(f)
		}
	}
}

func (s *Listener) send(frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return
	default:
	}
	if _, err := syscall.Write(s.fd, frame); err == nil {
		s.sent.Add(1)
	}
}

// arp answers a request for one of the block's addresses.
func (s *Listener) arp(f []byte) {
	a := f[14:]
	if len(a) < 28 || binary.BigEndian.Uint16(a[6:8]) != 1 {
		return
	}
	want := netip.AddrFrom4([4]byte(a[24:28]))
	if !s.block.Contains(want) {
		return
	}
	s.arps.Add(1)
	r := make([]byte, 42)
	copy(r[0:6], f[6:12])
	copy(r[6:12], s.mac)
	binary.BigEndian.PutUint16(r[12:14], 0x0806)
	copy(r[14:22], []byte{0, 1, 8, 0, 6, 4, 0, 2}) // Ethernet, IPv4, reply
	copy(r[22:28], s.mac)
	copy(r[28:32], a[24:28]) // the address asked for is ours
	copy(r[32:38], a[8:14])  // to the asker
	copy(r[38:42], a[14:18])
	s.send(r)
}

// tcp answers a SYN to one of the block's addresses, after the delay.
func (s *Listener) tcp(f []byte) {
	ip := f[14:]
	if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 6 {
		return
	}
	ihl := int(ip[0]&0x0f) * 4
	if len(ip) < ihl+20 {
		return
	}
	dst := netip.AddrFrom4([4]byte(ip[16:20]))
	if !s.block.Contains(dst) {
		return
	}
	t := ip[ihl:]
	flags := t[13]
	if flags&0x02 == 0 || flags&0x10 != 0 {
		return // not a SYN
	}
	s.syns.Add(1)
	var (
		srcMAC   = slices.Clone(f[6:12])
		srcIP    = [4]byte(ip[12:16])
		dstIP    = [4]byte(ip[16:20]) // copied: buf is reused before the reply
		sport    = binary.BigEndian.Uint16(t[0:2])
		dport    = binary.BigEndian.Uint16(t[2:4])
		theirSeq = binary.BigEndian.Uint32(t[4:8])
	)
	reply := func() {
		r := make([]byte, 14+20+24)
		copy(r[0:6], srcMAC)
		copy(r[6:12], s.mac)
		binary.BigEndian.PutUint16(r[12:14], 0x0800)
		h := r[14:34]
		h[0], h[8], h[9] = 0x45, 64, 6
		binary.BigEndian.PutUint16(h[2:4], 44)
		binary.BigEndian.PutUint16(h[6:8], 0x4000) // DF
		copy(h[12:16], dstIP[:])
		copy(h[16:20], srcIP[:])
		binary.BigEndian.PutUint16(h[10:12], checksum(h, 0))
		tc := r[34:]
		binary.BigEndian.PutUint16(tc[0:2], dport)
		binary.BigEndian.PutUint16(tc[2:4], sport)
		binary.BigEndian.PutUint32(tc[8:12], theirSeq+1)
		tc[12] = 6 << 4 // 24-byte header
		if dport == s.port {
			var seq [4]byte
			_, _ = rand.Read(seq[:])
			copy(tc[4:8], seq[:])
			tc[13] = 0x12 // SYN, ACK
			binary.BigEndian.PutUint16(tc[14:16], 64240)
		} else {
			tc[13] = 0x14 // RST, ACK
		}
		copy(tc[20:24], []byte{2, 4, 0x05, 0xb4}) // MSS 1460
		pseudo := uint32(0)
		for i := 0; i < 8; i += 2 {
			pseudo += uint32(binary.BigEndian.Uint16(h[12+i : 14+i]))
		}
		pseudo += 6 + uint32(len(tc))
		binary.BigEndian.PutUint16(tc[16:18], checksum(tc, pseudo))
		s.send(r)
	}
	time.AfterFunc(s.delay, reply)
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i : i+2]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Stats is what a Listener saw and answered.
type Stats struct {
	Frames, ARPs, SYNs, Sent int64
}

// Stats returns the counts so far.
func (s *Listener) Stats() Stats {
	return Stats{Frames: s.frames.Load(), ARPs: s.arps.Load(), SYNs: s.syns.Load(), Sent: s.sent.Load()}
}

// String sums the counts of several listeners.
func (st Stats) String() string {
	return fmt.Sprintf("frames %d, ARP requests answered %d, SYNs %d, frames sent %d", st.Frames, st.ARPs, st.SYNs, st.Sent)
}

// Add returns the sum of st and o.
func (st Stats) Add(o Stats) Stats {
	return Stats{st.Frames + o.Frames, st.ARPs + o.ARPs, st.SYNs + o.SYNs, st.Sent + o.Sent}
}
