package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	units "github.com/docker/go-units"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/httpapi"
	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/metrics"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

// httpConfig is the HTTP front's configuration from the settings.
func httpConfig(s *settings, addr string) (httpapi.Config, error) {
	hc := s.HTTP
	maxBody, err := units.RAMInBytes(hc.MaxBody)
	if err != nil || maxBody <= 0 {
		return httpapi.Config{}, fmt.Errorf("http.max_body %q: not a size such as 1m", hc.MaxBody)
	}
	cfg := httpapi.Config{Addr: addr, TLSCert: hc.TLSCert, TLSKey: hc.TLSKey, Origins: hc.Origins, MaxBody: maxBody,
		MaxConnections: hc.MaxConnections, MaxConnectionsPerAddress: hc.MaxConnectionsPerAddress,
		SessionIdle: time.Duration(hc.SessionIdleSeconds) * time.Second, MaxSessions: hc.MaxSessions,
		MaxSessionsPerClient: hc.MaxSessionsPerClient}
	for _, t := range hc.Tokens {
		cfg.Tokens = append(cfg.Tokens, httpapi.Token{Name: t.Name, SHA256: t.SHA256, Admin: t.Admin})
	}
	return cfg, nil
}

// serveHTTP serves MCP over streamable HTTP until ctx ends (SIGTERM or
// SIGINT), then drains: new calls get 503, running scans get the grace
// period, the rest are cancelled (their records say so), and no container
// is left.
func serveHTTP(ctx context.Context, s *settings, addr string, st *stack, srv *server.MCPServer, watch *watches.Service,
	delivery *mcpserver.Delivery, meters *metrics.Metrics, log *slog.Logger) error {
	hc := s.HTTP
	cfg, err := httpConfig(s, addr)
	if err != nil {
		return err
	}
	img := st.scans.Image()
	tag := img.Tag // for logs; scans and health use the ID
	health := st.health
	auditPath, err := s.auditFile()
	if err != nil {
		return err
	}
	front, err := httpapi.New(cfg, httpapi.Deps{MCP: srv, Delivery: delivery, Health: health, Metrics: meters.Handler(),
		Refused: meters.Refused, Log: log, Scans: st.scans, AuditPath: auditPath, Watches: watch})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	served := make(chan error, 1)
	go func() { served <- front.Serve(ln) }()
	log.Info("serving MCP over HTTP", "url", "http://"+ln.Addr().String()+"/mcp", "web", "http://"+ln.Addr().String()+"/", "tokens", len(cfg.Tokens),
		"image", tag, "store", st.store.Path())

	select {
	case err := <-served:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	grace := time.Duration(hc.GraceSeconds) * time.Second
	log.Info("shutting down: refusing new calls, waiting for running scans", "grace", grace)
	front.Drain()
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if r, w := st.scans.QueueStats(); r == 0 && w == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.scans.Close(cctx); err != nil {
		log.Warn("some scans or their containers did not stop in time; the next start-up sweep removes what is left", "err", err)
	}
	// Every call has ended by now; only idle SSE streams remain.
	sctx, scancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_ = front.Shutdown(sctx)
	scancel()
	log.Info("http server stopped")
	return nil
}
