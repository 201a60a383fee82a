package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/server"
)

// These tests need no engine. They use two loopback source addresses:
// 127.0.0.1 for the idle connections and 127.0.0.2 for the real client
// (Linux routes all of 127.0.0.0/8 to lo).

// serveLoopback serves s on a loopback port until the test ends.
func serveLoopback(t *testing.T, s *Server) string {
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
	answered := 0
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			continue
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
			continue
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
			answered++
		}
		_ = c.SetDeadline(time.Time{})
	}
	return answered
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
}
