// Command sockprobe tries to open the sockets a scan inside the host fence
// must not have (packet sockets, which send past the IP-level fence, and
// UNIX sockets, which reach the host's abstract sockets) and one it must
// (IPv4), and prints one line per attempt: "NAME ok" or "NAME error". It
// sends nothing. Built and run by the fence package's engine tests.
package main

import (
	"fmt"
	"syscall"
)

func main() {
	for _, c := range []struct {
		name                  string
		family, typ, protocol int
	}{
		{"packet-raw", syscall.AF_PACKET, syscall.SOCK_RAW, 0x0300},
		{"packet-raw-0", syscall.AF_PACKET, syscall.SOCK_RAW, 0},
		{"packet-dgram", syscall.AF_PACKET, syscall.SOCK_DGRAM, 0x0300},
		{"unix-stream", syscall.AF_UNIX, syscall.SOCK_STREAM, 0},
		{"unix-dgram", syscall.AF_UNIX, syscall.SOCK_DGRAM, 0},
		{"inet-stream", syscall.AF_INET, syscall.SOCK_STREAM, 0},
	} {
		fd, err := syscall.Socket(c.family, c.typ, c.protocol)
		if err != nil {
			fmt.Printf("%s error %v\n", c.name, err)
			continue
		}
		syscall.Close(fd)
		fmt.Printf("%s ok\n", c.name)
	}
}
