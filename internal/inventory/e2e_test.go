package inventory

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// The engine test here runs real scans (the Docker runner) of listeners it
// opens on 127.0.0.1 only; the other tests and the benchmarks need no
// engine (run benchmarks with -short to skip the engine set-up).

var env *testkit.Env

func TestMain(m *testing.M) {
	os.Exit(testkit.Main(m, "inventory", func(e *testkit.Env) { env = e }))
}

// banner serves a line to each connection on 127.0.0.1:port until closed;
// the line can change between scans.
type banner struct {
	mu   sync.Mutex
	line string
	ln   net.Listener
}

func serveBanner(t *testing.T, port int, line string) *banner {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	b := &banner{line: line, ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			l := b.line
			b.mu.Unlock()
			_, _ = c.Write([]byte(l))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			go func() { buf := make([]byte, 512); _, _ = c.Read(buf); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return b
}

func (b *banner) set(line string) { b.mu.Lock(); b.line = line; b.mu.Unlock() }

// TestRealScansUpdateInventory: real connect scans with service detection
// of loopback listeners, followed by the inventory: a port opens, a
// banner's version changes, a port closes, and (not listed for longer
// than gone_after) later goes. Each fact names the scan that saw it.
func TestRealScansUpdateInventory(t *testing.T) {
	testkit.NeedEngine(t)
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "scans.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := scans.New(scans.Config{Sandbox: env.Options(sandbox.DefaultLimits()), MaxAddresses: 16},
		scans.Deps{Runner: executor.New(env.Client, nil), Image: env.Image, Store: st})
	defer svc.Close(ctx)
	inv, err := New(ctx, st, Config{GoneAfter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := testkit.ClosedTCPPort(t), testkit.ClosedTCPPort(t)
	for pb == pa {
		pb = testkit.ClosedTCPPort(t)
	}
	a := serveBanner(t, pa, "SSH-2.0-OpenSSH_8.9p1\r\n")
	scan := func(ports string) *store.Record {
		t.Helper()
		sc, err := svc.Submit(ctx, scanargs.Request{Targets: "127.0.0.1", ScanType: "connect", Ports: ports, ServiceVersions: true}, scans.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("scan: %v", err)
		}
		if n, err := inv.CatchUp(ctx, 0); err != nil || n != 1 {
			t.Fatalf("catch-up: %d, %v", n, err)
		}
		return sc.Snapshot().Record
	}
	port := func(p int) PortFacts {
		t.Helper()
		f, err := inv.Find(ctx, Query{Client: "local", Address: "127.0.0.1", Port: p, Gone: GoneAny})
		if err != nil || len(f.Hosts) != 1 || len(f.Hosts[0].Ports) != 1 {
			t.Fatalf("port %d: %+v %v", p, f, err)
		}
		return f.Hosts[0].Ports[0]
	}
	both := fmt.Sprintf("%d,%d", pa, pb)

	s1 := scan(both)
	if p := port(pa); p.State != "open" || p.Product != "OpenSSH" || p.Version != "8.9p1" || p.LastScan != s1.ID {
		t.Fatalf("scan 1, port a: %+v", p)
	}
	if p := port(pb); p.State != "closed" {
		t.Fatalf("scan 1, port b: %+v", p)
	}
	// b opens; a's banner changes.
	serveBanner(t, pb, "SSH-2.0-OpenSSH_9.6p1\r\n")
	a.set("SSH-2.0-OpenSSH_9.7p1\r\n")
	s2 := scan(both)
	if p := port(pb); p.State != "open" || p.StateChanged != s2.EndedAt.UTC().Format(time.RFC3339) || p.LastScan != s2.ID {
		t.Fatalf("scan 2, port b opened: %+v", p)
	}
	if p := port(pa); p.Version != "9.7p1" || p.State != "open" {
		t.Fatalf("scan 2, port a's new version: %+v", p)
	}
	if f, _ := inv.Find(ctx, Query{Client: "local", Product: "OpenSSH", Version: "<9.7"}); f.Total != 1 || f.Hosts[0].Ports[0].Port != pb {
		t.Fatalf("OpenSSH < 9.7: %+v", f)
	}
	// a closes.
	a.ln.Close()
	s3 := scan(both)
	if p := port(pa); p.State != "closed" || p.LastScan != s3.ID || p.Version != "9.7p1" {
		t.Fatalf("scan 3, port a closed: %+v", p)
	}
	// a is not listed by a scan of b alone; a sweep after gone_after
	// marks it gone, not b.
	s4 := scan(fmt.Sprint(pb))
	sw, err := inv.Sweep(ctx, s4.EndedAt)
	if err != nil || sw.Ports != 1 || sw.Hosts != 0 {
		t.Fatalf("sweep: %+v %v", sw, err)
	}
	if p := port(pa); !p.Gone || p.LastScan != s3.ID {
		t.Fatalf("port a after the sweep: %+v", p)
	}
	if p := port(pb); p.Gone || p.LastScan != s4.ID {
		t.Fatalf("port b after the sweep: %+v", p)
	}
	ch, err := inv.Changes(ctx, ChangeQuery{Client: "local", Address: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, c := range ch.Changes {
		want[fmt.Sprintf("%d %s %s>%s", c.Port, c.Kind, c.From, c.To)] = true
	}
	for _, k := range []string{fmt.Sprintf("%d state closed>open", pb), fmt.Sprintf("%d version 8.9p1>9.7p1", pa),
		fmt.Sprintf("%d state open>closed", pa), fmt.Sprintf("%d port_gone closed>gone", pa)} {
		if !want[k] {
			t.Errorf("change log lacks %q: %v", k, want)
		}
	}
}
