package main

import (
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/config"
)

// The http: session and connection settings reach the HTTP front (issue
// 20.2, 20.3). No engine needed.
func TestHTTPConfigCarriesBounds(t *testing.T) {
	c := config.Default()
	c.HTTP.MaxConnectionsPerAddress = 7
	c.HTTP.SessionIdleSeconds = 90
	c.HTTP.MaxSessions = 11
	c.HTTP.MaxSessionsPerClient = 3
	cfg, err := httpConfig(&settings{Config: &c}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConnections != 256 || cfg.MaxConnectionsPerAddress != 7 || cfg.SessionIdle != 90*time.Second ||
		cfg.MaxSessions != 11 || cfg.MaxSessionsPerClient != 3 {
		t.Fatalf("httpapi config: %+v", cfg)
	}
}
