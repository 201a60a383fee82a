//go:build ignore

// Command demolisten is the port scripts/demo.sh opens for its scan to
// find: it listens on 127.0.0.1 on a port the kernel picks, prints that
// port on standard output, and answers each connection with one line
// before closing it. It stops on SIGTERM or SIGINT, when its parent shell
// is gone, or after -max (10 minutes by default), so that a demo killed
// hard leaves nothing listening for long. The build tag keeps it out of
// ./... ; demo.sh builds it into a temporary folder.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	maxLife := flag.Duration("max", 10*time.Minute, "stop after this long")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxLife)
	defer cancel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "demolisten: listen on 127.0.0.1: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	// The parent (demo.sh) gone: stop too.
	parent := os.Getppid()
	go func() {
		for ctx.Err() == nil {
			if os.Getppid() != parent {
				cancel()
			}
			time.Sleep(time.Second)
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "nmap-mcp demo listener\r\n")
		c.Close()
	}
}
