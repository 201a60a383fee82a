package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/mark3labs/mcp-go/server"
)

// These tests need no engine: the health check is a counter.

// Regression (security review 11): the server bounds reads, writes and
// idle keep-alive connections, and /healthz, which needs no token, does
// not cost engine calls per request.
func TestTimeoutsAndHealthCache(t *testing.T) {
	var checks atomic.Int32
	s, err := New(Config{Addr: "127.0.0.1:0"}, Deps{MCP: server.NewMCPServer("t", "1"),
		Health: func(context.Context) error { checks.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if s.http.ReadHeaderTimeout == 0 || s.http.ReadTimeout == 0 || s.http.WriteTimeout == 0 || s.http.IdleTimeout == 0 {
		t.Fatalf("timeouts: %+v", s.http)
	}
	if s.cfg.MaxConnections != 256 {
		t.Fatalf("max connections %d", s.cfg.MaxConnections)
	}
	for i := 0; i < 50; i++ {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != 200 {
			t.Fatalf("healthz %d", rec.Code)
		}
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("50 health requests ran %d checks; want 1", n)
	}
}
