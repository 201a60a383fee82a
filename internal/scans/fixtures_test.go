package scans_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// TestRecordFixtures records the decoder's XML fixtures (and nmap's normal
// output for the same scans, to measure the compact text against) from
// real scans by the project's image against loopback listeners. It runs
// only with NMAP_MCP_RECORD_FIXTURES=1:
//
//	NMAP_MCP_RECORD_FIXTURES=1 go test ./internal/scans -run RecordFixtures
func TestRecordFixtures(t *testing.T) {
	testkit.NeedEngine(t)
	if os.Getenv("NMAP_MCP_RECORD_FIXTURES") != "1" {
		t.Skip("set NMAP_MCP_RECORD_FIXTURES=1 to record results/testdata fixtures")
	}
	dir := filepath.Join("..", "results", "testdata")
	open1, open2 := testkit.TCPListener(t), testkit.TCPListener(t)
	closed := testkit.ClosedTCPPort(t)
	ssh := bannerListener(t, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
	web := httpListener(t)
	udp := testkit.UDPEcho(t)
	lim := sandbox.DefaultLimits()
	lim.Timeout = 2 * time.Minute

	record := func(name, network string, sysctls map[string]string, priv sandbox.Privilege, args ...string) {
		opts := env.Options(lim)
		opts.Network = network
		full := append([]string{"-oX", "-", "-oN", "/dev/stderr"}, args...)
		spec := sandbox.New(opts, sandbox.Scan{ID: name, Image: env.Image.Tag, Args: full, Privilege: priv, Placement: testkit.HostPlacement})
		spec.Sysctls = sysctls
		ex := executor.New(env.Client, nil)
		res, err := ex.Run(context.Background(), executor.Job{Spec: spec})
		_ = ex.Close(context.Background())
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, res.Stderr)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".xml"), res.Stdout, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".nmap"), res.Stderr, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := func(ports ...int) string {
		s := make([]string, len(ports))
		for i, x := range ports {
			s[i] = fmt.Sprint(x)
		}
		return strings.Join(s, ",")
	}
	record("connect", "host", nil, sandbox.Unprivileged, "-sT", "-p", p(open1, open2, closed), "--", "127.0.0.1")
	record("service-versions", "host", nil, sandbox.Unprivileged, "-sT", "-sV", "-p", p(ssh, web, closed), "--", "127.0.0.1")
	record("syn-top100", "host", nil, sandbox.RawSockets, "-sS", "--top-ports", "100", "-p", p(open1, ssh, web), "--", "127.0.0.1")
	record("udp", "host", nil, sandbox.RawSockets, "-sU", "-p", p(udp, closed), "--", "127.0.0.1")
	record("multi-host", "host", nil, sandbox.Unprivileged, "-sT", "--top-ports", "20", "--", "127.0.0.1", "127.0.0.2", "127.0.0.3")
	// A host-down result without touching any network: IPv6 disabled in a
	// container with no network, so ::1 does not answer.
	record("host-down", "none", map[string]string{"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.lo.disable_ipv6": "1"},
		sandbox.Unprivileged, "-v", "-6", "-sn", "--", "::1")
}

func bannerListener(t *testing.T, banner string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(banner))
			time.Sleep(200 * time.Millisecond)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func httpListener(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "nmap-mcp-fixture/1.0")
		_, _ = w.Write(bytes.Repeat([]byte("ok "), 10))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}
