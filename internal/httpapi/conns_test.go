package httpapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// These tests need no engine. They use two loopback source addresses:
// 127.0.0.1 for the idle connections and 127.0.0.2 for the real client
// (Linux routes all of 127.0.0.0/8 to lo).

// serveLoopback serves s on a loopback port until the test ends.
func serveLoopback(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

// idleHealthz opens n keep-alive connections from 127.0.0.1, sends one
// GET /healthz on each, reads the answer when there is one, and leaves
// them open until the test ends. It reports how many got an answer.
func idleHealthz(t *testing.T, addr string, n int) int {
	t.Helper()
	return idleAfter(t, addr, n, fmt.Sprintf("GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr))
}

// idleAfter is idleHealthz with another request.
func idleAfter(t *testing.T, addr string, n int, request string) int {
	t.Helper()
	answered := 0
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			continue
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, request); err != nil {
			continue
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				answered++
			}
		}
		_ = c.SetDeadline(time.Time{})
	}
	return answered
}

// openFrom counts the server's open connections from 127.0.0.1, and those
// that carried an authenticated request.
func openFrom(s *Server) (all, authed int) {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	for c := range s.conns.open {
		if c.key == "127.0.0.1" {
			all++
			if c.authed {
				authed++
			}
		}
	}
	return all, authed
}

// clientFrom is an HTTP client whose connections come from local.
func clientFrom(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// mcpInitialize makes a real MCP call (initialize) as token from local and
// returns the status and how long it took.
func mcpInitialize(t *testing.T, addr, local, token string) (int, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/mcp", strings.NewReader(initBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	resp, err := clientFrom(local).Do(req)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("MCP call from %s after idle connections filled the server: %v (after %s)", local, err, took)
	}
	resp.Body.Close()
	return resp.StatusCode, took
}

// Regression (issue 20.3): 256 unauthenticated keep-alive connections
// from one address, idle after one GET /healthz, held every slot, and a
// real client timed out. Now one address holds at most its share, and a
// real client from another address is answered at once.
func TestIdleConnectionsDoNotStarveClients(t *testing.T) {
	secret, tok, _ := NewToken("alice")
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: []Token{tok}}, Deps{MCP: server.NewMCPServer("t", "1")})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveLoopback(t, s)
	answered := idleHealthz(t, addr, 256)
	t.Logf("%d of 256 idle connections from 127.0.0.1 were answered", answered)
	code, took := mcpInitialize(t, addr, "127.0.0.2", secret)
	if code != http.StatusOK {
		t.Fatalf("initialize from 127.0.0.2: %d", code)
	}
	t.Logf("initialize from 127.0.0.2 answered in %s", took)
	if n, _ := openFrom(s); n > DefaultMaxConnectionsPerAddress {
		t.Errorf("127.0.0.1 holds %d connections; at most %d per address", n, DefaultMaxConnectionsPerAddress)
	}
}

// Without a per-address cap in the way (one address may hold every slot),
// idle keep-alives are closed first near the cap, unauthenticated ones
// before authenticated ones, and the last slots are kept for
// authenticated work.
func TestIdleKeepAlivesClosedFirstNearCap(t *testing.T) {
	secret, tok, _ := NewToken("alice")
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: []Token{tok}, MaxConnections: 64, MaxConnectionsPerAddress: 64},
		Deps{MCP: server.NewMCPServer("t", "1")})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveLoopback(t, s)
	auth := fmt.Sprintf("POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Accept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n%s", addr, secret, len(initBody), initBody)
	if n := idleAfter(t, addr, 16, auth); n != 16 {
		t.Fatalf("%d of 16 authenticated keep-alives answered", n)
	}
	answered := idleHealthz(t, addr, 256)
	all, authed := openFrom(s)
	t.Logf("after 256 idle /healthz connections: %d answered; 127.0.0.1 holds %d connections, %d authenticated", answered, all, authed)
	if authed != 16 {
		t.Errorf("%d of 16 idle authenticated connections left; unauthenticated ones must be closed first", authed)
	}
	if reserve := reserveFor(64); all > 64-reserve {
		t.Errorf("127.0.0.1 holds %d connections; idle unauthenticated ones may not use the last %d slots", all, reserve)
	}
	code, took := mcpInitialize(t, addr, "127.0.0.2", secret)
	if code != http.StatusOK {
		t.Fatalf("initialize from 127.0.0.2: %d", code)
	}
	t.Logf("initialize from 127.0.0.2 answered in %s", took)
}

// An address whose connections are all busy (here: headers begun, never
// finished) gets no more: its next connection is closed at once, and
// another address is served.
func TestBusyAddressRefused(t *testing.T) {
	secret, tok, _ := NewToken("alice")
	var refusals atomic.Int32
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: []Token{tok}, MaxConnectionsPerAddress: 8},
		Deps{MCP: server.NewMCPServer("t", "1"), Refused: func(r string) {
			if r == "connections_per_address" {
				refusals.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveLoopback(t, s)
	for i := 0; i < 8; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil { // headers never end
			t.Fatal(err)
		}
	}
	if !testkit.Eventually(2*time.Second, func() bool { n, _ := openFrom(s); return n == 8 }) {
		t.Fatal("the 8 busy connections were not all accepted")
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a ninth connection from the busy address: read %v, want it closed", err)
	}
	if refusals.Load() == 0 {
		t.Error("the refusal was not counted")
	}
	if code, _ := mcpInitialize(t, addr, "127.0.0.2", secret); code != http.StatusOK {
		t.Fatalf("initialize from 127.0.0.2: %d", code)
	}
}

// The per-address cap is on connections before authentication: one client
// host with more authenticated connections than the cap (50 sessions with
// their streams, or a reverse proxy) keeps them all, while its
// unauthenticated ones stay bounded.
func TestAuthenticatedConnectionsNotCappedPerAddress(t *testing.T) {
	secret, tok, _ := NewToken("alice")
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: []Token{tok}, MaxConnectionsPerAddress: 8},
		Deps{MCP: server.NewMCPServer("t", "1")})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveLoopback(t, s)
	auth := fmt.Sprintf("POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Accept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n%s", addr, secret, len(initBody), initBody)
	if n := idleAfter(t, addr, 24, auth); n != 24 {
		t.Fatalf("%d of 24 authenticated connections from one address answered", n)
	}
	idleHealthz(t, addr, 24)
	all, authed := openFrom(s)
	if authed != 24 || all-authed > 8 {
		t.Errorf("127.0.0.1 holds %d authenticated connections (want 24) and %d unauthenticated (want at most 8)", authed, all-authed)
	}
}
