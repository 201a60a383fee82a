package watches_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// These tests run the watches' scans on the real engine, of loopback
// listeners the test opens; cmd/nmap-mcp/watch_e2e_test.go drives them
// over MCP.

var env *testkit.Env

func TestMain(m *testing.M) {
	os.Exit(testkit.Main(m, "watches", func(e *testkit.Env) { env = e }))
}

func newService(t *testing.T, cfg watches.Config) (*watches.Service, *store.Store) {
	t.Helper()
	st, trail := testkit.OpenHistory(t)
	ex := executor.New(env.Client, nil)
	svc := scans.New(scans.Config{Sandbox: env.Options(sandbox.DefaultLimits()), MaxAddresses: 16, Concurrency: 2, QueueSize: 4},
		scans.Deps{Runner: ex, Image: env.Image, Store: st, Audit: trail})
	t.Cleanup(func() {
		_ = svc.Close(context.Background())
		_ = ex.Close(context.Background())
	})
	return watches.New(st, svc, cfg, nil), st
}

// A watch overdue by many intervals (a server that was down) runs once,
// then keeps its interval: missed runs are not replayed.
func TestOverdueWatchRunsOnce(t *testing.T) {
	testkit.NeedEngine(t)
	ws, st := newService(t, watches.Config{MinInterval: time.Second})
	port := testkit.TCPListener(t)
	body, _ := json.Marshal(scanargs.Request{Targets: "127.0.0.1", Ports: fmt.Sprint(port)})
	long := time.Hour
	if err := st.CreateWatch(context.Background(), &store.Watch{Name: "overdue", Client: "local", Request: body, Interval: long,
		Created: time.Now().Add(-10 * long), NextRun: time.Now().Add(-9 * long)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ws.Run(ctx) }()
	var w *store.Watch
	testkit.Eventually(30*time.Second, func() bool {
		w, _ = st.GetWatch(context.Background(), "overdue", "")
		return w != nil && w.Runs >= 1 && w.LastStatus != ""
	})
	time.Sleep(2 * time.Second) // room for a wrong second run
	cancel()
	<-done
	w, _ = st.GetWatch(context.Background(), "overdue", "")
	if w.Runs != 1 || w.LastStatus != store.Done || w.Baseline == "" || w.NextRun.Before(time.Now().Add(long-time.Minute)) {
		t.Fatalf("after catching up: runs %d, status %s, baseline %q, next run %s", w.Runs, w.LastStatus, w.Baseline, w.NextRun)
	}
}

// Creating a watch checks everything at once: name, interval, webhook
// allowlist and the scan itself; a refused watch is not stored.
func TestCreateRefusals(t *testing.T) {
	testkit.NeedEngine(t)
	ws, st := newService(t, watches.Config{MinInterval: time.Minute, WebhookAllow: []string{"https://hooks.lab/nmap/"}})
	ok := scanargs.Request{Targets: "127.0.0.1", Ports: "22"}
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		req      scanargs.Request
		interval time.Duration
		hook     string
		field    string
	}{
		{"Bad Name", ok, time.Hour, "", "name"},
		{"short", ok, time.Second, "", "interval_seconds"},
		{"hook", ok, time.Hour, "https://evil.example/x", "webhook"},
		{"prefix-trick", ok, time.Hour, "https://hooks.lab/nmapx", "webhook"},
	} {
		_, err := ws.Create(ctx, c.name, c.req, c.interval, c.hook)
		var fe *watches.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want a refusal of %s", c.name, err, c.field)
		}
	}
	if _, err := ws.Create(ctx, "bad-scan", scanargs.Request{Targets: "-iL=/etc/passwd"}, time.Hour, ""); err == nil {
		t.Error("a watch whose scan could never run was created")
	}
	if _, err := ws.Create(ctx, "good", ok, time.Hour, "https://hooks.lab/nmap/lab"); err != nil {
		t.Fatal(err)
	}
	if list, _ := st.ListWatches(ctx, ""); len(list) != 1 || list[0].Name != "good" {
		t.Fatalf("stored %+v", list)
	}
}
