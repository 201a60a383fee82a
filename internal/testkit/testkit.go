// Package testkit holds what the integration tests share: a connection to
// the real Docker engine, the real scanner image, loopback listeners to
// scan, and the leak checks every test package runs when it ends.
//
// Scans in tests target only 127.0.0.0/8 or ::1, through listeners opened
// here.
package testkit

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Env is a test package's view of the engine.
type Env struct {
	Client   *client.Client
	Image    images.Info
	Instance string // the sandbox instance label of this test process

	target struct { // the target program, built on first use
		once      sync.Once
		dir, path string
		err       error
	}
}

// Setup connects to the engine and ensures the scanner image (building it
// when missing, which the test script normally did first). It is meant for
// TestMain; its error says what to do.
func Setup(ctx context.Context, pkg string) (*Env, error) {
	cli, err := executor.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("integration tests need a Docker engine (run ./scripts/test.sh, which starts one): %w", err)
	}
	img, err := images.New(cli, os.Stderr, "").Ensure(ctx)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("integration tests need the scanner image: %w", err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &Env{Client: cli, Image: img, Instance: "test-" + pkg + "-" + hex.EncodeToString(b[:])}, nil
}

// HostPlacement puts a test's container on the host network, not fenced:
// for scans of the test's own loopback listeners.
var HostPlacement = sandbox.Placement{Network: sandbox.Host, Unfenced: "test scan of the host's loopback"}

// Options returns sandbox options for this test process with limits lim.
func (e *Env) Options(lim sandbox.Limits) sandbox.Options {
	return sandbox.Options{Network: "host", Limits: lim, Instance: e.Instance}
}

// Leftovers lists the managed containers this test process created that
// still exist.
func (e *Env) Leftovers(ctx context.Context) ([]string, error) {
	list, err := e.Client.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", sandbox.LabelManaged+"=true"),
		filters.Arg("label", sandbox.LabelInstance+"="+e.Instance),
	)})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	ids := make([]string, 0, len(list))
	for _, c := range list {
		ids = append(ids, c.ID[:12]+" "+c.State)
	}
	return ids, nil
}

// Main runs m between Setup and the leak check, for a TestMain. It exits
// non-zero when setup fails or a container of ours is left behind.
//
// Under -short it runs the tests without an engine: those that need one
// call NeedEngine and skip, so that `go test -short ./...` passes on a
// machine with no Docker engine at all. Without -short a missing engine is
// an error, never a silent skip.
func Main(m *testing.M, pkg string, set func(*Env)) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	ctx := context.Background()
	env, err := Setup(ctx, pkg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testkit:", err)
		return 1
	}
	defer env.Client.Close()
	set(env)
	code := m.Run()
	if env.target.dir != "" {
		os.RemoveAll(env.target.dir)
	}
	if nets, err := env.leftoverNetworks(ctx); err != nil || len(nets) > 0 {
		fmt.Fprintf(os.Stderr, "testkit: LEAK: networks left behind: %v %v\n", nets, err)
		return 1
	}
	// Removals that finish in the background get a few seconds.
	var left []string
	Eventually(10*time.Second, func() bool {
		left, err = env.Leftovers(ctx)
		return err == nil && len(left) == 0
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testkit: leak check:", err)
		return 1
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "testkit: LEAK: %d managed containers left behind: %v\n", len(left), left)
		return 1
	}
	return code
}

// NeedEngine skips the test under -short: it needs the Docker engine.
func NeedEngine(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Docker engine; runs without -short (scripts/test.sh)")
	}
}

// ContainerGone reports whether the container no longer exists.
func (e *Env) ContainerGone(ctx context.Context, id string) bool {
	_, err := e.Client.ContainerInspect(ctx, id)
	return err != nil && client.IsErrNotFound(err)
}

// TCPListener opens a TCP listener on 127.0.0.1 that accepts and closes
// connections until the test ends, and returns its port.
func TCPListener(t testing.TB) int {
	t.Helper()
	return ListenOn(t, 0).Addr().(*net.TCPAddr).Port
}

// ListenOn opens a TCP listener on 127.0.0.1:port (0: any free port) that
// accepts and closes connections until it is closed or the test ends, so
// that a test can open and close a port between two scans.
func ListenOn(t testing.TB, port int) net.Listener {
	t.Helper()
	return ListenAt(t, "127.0.0.1", port)
}

// ListenAt is ListenOn at a loopback address of the test's choosing
// (127.0.0.2, ::1, ...).
func ListenAt(t testing.TB, addr string, port int) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
	if err != nil {
		t.Fatalf("listen tcp on %s port %d: %v", addr, port, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

// ClosedTCPPort returns a loopback TCP port that nothing listens on.
func ClosedTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen tcp: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// UDPEcho opens a UDP socket on 127.0.0.1 that answers every datagram,
// so that nmap sees the port open, and returns its port.
func UDPEcho(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_, addr, err := pc.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			_, _ = pc.WriteTo([]byte("nmap-mcp test echo\n"), addr)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// Eventually polls cond every 20 ms until it holds or d passes.
func Eventually(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// OpenHistory opens a scan store and an audit trail in a temporary folder
// that the test removes; they are closed when the test ends (after the
// cleanups registered later, which run first).
func OpenHistory(t testing.TB) (*store.Store, *audit.Log) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "scans.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	trail, _, err := audit.Open(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); trail.Close() })
	return st, trail
}

// AuditEvents lists the events of scan id in the audit trail at path, in
// order, as "admitted" or "ended:OUTCOME" (e.g. "ended:timed-out").
func AuditEvents(t testing.TB, path, id string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if r.ScanID == id {
			out = append(out, strings.TrimSuffix(r.Event+":"+r.Outcome, ":"))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
