package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	_ "modernc.org/sqlite" // the "sqlite" driver, for the test's own lock

	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit/faultfs"
)

// Storage faults injected for real under a running `nmap-mcp serve`
// (stdio) on the user's engine: the history database locked by another
// process (this test process), its folder read-only (a read-only bind
// mount), a damaged page in a copy of it, and the audit trail's disk full
// (a small tmpfs the test fills) and its folder read-only. After each:
// the error names the file, the fault and what to do; no record written
// before is lost; the server serves other calls; a scan works again once
// the fault goes, without a restart; the audit chain verifies. Mounts are
// the test's own, under its temporary folder, and are removed in
// t.Cleanup even when the test fails. Scans target only the test's own
// 127.0.0.1 listeners.

// storageNeedRoot skips a test that mounts, when not root, except under
// CI, where it fails.
func storageNeedRoot(t *testing.T) {
	t.Helper()
	testkit.NeedEngine(t)
	faultfs.NeedRoot(t)
}

// storageServer is `nmap-mcp serve` with its history and trail where the
// test says. It is stopped in t.Cleanup, registered after the test's
// mounts, so before they are removed.
type storageServer struct {
	sess         *mcp.ClientSession
	store, trail string
	stderr       *lockedBuffer
	cmd          *exec.Cmd
}

// lockedBuffer is a bytes.Buffer the server's stderr is copied into
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startStorageServer(t *testing.T, storePath, trailPath string) *storageServer {
	t.Helper()
	s := &storageServer{store: storePath, trail: trailPath, stderr: &lockedBuffer{}}
	s.cmd = exec.Command(binary, "serve")
	s.cmd.Env = serverEnv("NMAP_MCP_STORE="+storePath, "NMAP_MCP_AUDIT="+trailPath)
	s.cmd.Stderr = s.stderr
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-storage", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sess, err := client.Connect(ctx, &mcp.CommandTransport{Command: s.cmd, TerminateDuration: 20 * time.Second}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, s.stderr)
	}
	s.sess = sess
	t.Cleanup(func() {
		_ = sess.Close()
		if t.Failed() {
			t.Logf("server stderr:\n%s", s.stderr)
		}
	})
	return s
}

// scan runs a scan of an open loopback port and returns its id; it fails
// the test unless the scan succeeds.
func (s *storageServer) scan(t *testing.T, port int) string {
	t.Helper()
	res, text := call(t, s.sess, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)})
	if res.IsError || !strings.Contains(text, fmt.Sprintf("%d/tcp open", port)) {
		t.Fatalf("scan: %s", text)
	}
	return scanID(t, res)
}

func scanID(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	b, _ := json.Marshal(res.StructuredContent)
	var out struct {
		ID string `json:"scan_id"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.ID == "" {
		t.Fatalf("no scan_id in %s (%v)", b, err)
	}
	return out.ID
}

// refused checks that a scan is refused, naming the file and the words.
func (s *storageServer) refused(t *testing.T, port int, words ...string) time.Duration {
	t.Helper()
	start := time.Now()
	res, text := call(t, s.sess, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)})
	took := time.Since(start)
	if !res.IsError {
		t.Fatalf("scan during the fault was not refused: %s", text)
	}
	for _, w := range append([]string{"scan not run, nothing recorded or spent", "no restart needed"}, words...) {
		if !strings.Contains(text, w) {
			t.Errorf("refusal lacks %q: %s", w, text)
		}
	}
	return took
}

// serves checks that the server still lists its tools, and shows the
// record of id (with the open port) and lists it.
func (s *storageServer) serves(t *testing.T, id string, port int) {
	t.Helper()
	if tools, err := s.sess.ListTools(context.Background(), nil); err != nil || len(tools.Tools) == 0 {
		t.Fatalf("tools/list: %v", err)
	}
	if res, text := call(t, s.sess, "get_scan", map[string]any{"id": id}); res.IsError || !strings.Contains(text, fmt.Sprintf("%d/tcp open", port)) {
		t.Fatalf("get_scan %s: %s", id, text)
	}
	if res, text := call(t, s.sess, "list_scans", nil); res.IsError || !strings.Contains(text, id) {
		t.Fatalf("list_scans: %s", text)
	}
}

// recovered runs scans until one succeeds (within a minute) and returns
// how long after since that was.
func (s *storageServer) recovered(t *testing.T, port int, since time.Time) (string, time.Duration) {
	t.Helper()
	for n := 1; ; n++ {
		res, text := call(t, s.sess, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)})
		if !res.IsError && strings.Contains(text, fmt.Sprintf("%d/tcp open", port)) {
			t.Logf("recovered at attempt %d", n)
			return scanID(t, res), time.Since(since)
		}
		if time.Since(since) > time.Minute {
			t.Fatalf("no scan succeeded within a minute of the fault's end: %s", text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *storageServer) verify(t *testing.T, records int) {
	t.Helper()
	rep, err := audit.Verify(s.trail)
	if err != nil || rep.Records != records || len(rep.Notes) != 0 {
		t.Fatalf("audit verify: %+v %v (want %d records, no notes)", rep, err, records)
	}
}

// waitStatus polls get_scan until the scan has status (within limit) and
// returns its text.
func (s *storageServer) waitStatus(t *testing.T, id, status string, limit time.Duration) string {
	t.Helper()
	var text, got string
	if !testkit.Eventually(limit, func() bool {
		var res *mcp.CallToolResult
		res, text = call(t, s.sess, "get_scan", map[string]any{"id": id})
		b, _ := json.Marshal(res.StructuredContent)
		var out struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(b, &out)
		got = out.Status
		return got == status
	}) {
		t.Fatalf("scan %s is %q, not %s: %s", id, got, status, text)
	}
	return text
}

// The history database locked by another process (this test holds
// BEGIN EXCLUSIVE on it): a scan is refused after store.BusyTimeout
// saying so, with nothing recorded or spent; old records, lists and tools
// still answer; a scan that ends while the lock is held keeps its end
// (retried until the lock goes); once released, scans work again.
func TestServeStoreLocked(t *testing.T) {
	storageNeedRoot(t)
	dir := t.TempDir()
	s := startStorageServer(t, filepath.Join(dir, "scans.db"), filepath.Join(dir, "audit.jsonl"))
	port := testkit.TCPListener(t)
	id1 := s.scan(t, port)

	// A scan running when the lock is taken, ending while it is held.
	res, text := call(t, s.sess, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port), "wait": false})
	if res.IsError {
		t.Fatal(text)
	}
	id2 := scanID(t, res)
	s.waitStatus(t, id2, "running", 30*time.Second)

	db, err := sql.Open("sqlite", "file:"+s.store+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	locked := true
	unlock := func() {
		if locked {
			locked = false
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
		}
	}
	t.Cleanup(unlock)

	took := s.refused(t, port, s.store, "locked by another process")
	t.Logf("a scan while the history was locked was refused after %s", took.Round(time.Millisecond))
	s.serves(t, id1, port)
	time.Sleep(2 * time.Second) // the running scan has ended by now; its end waits
	released := time.Now()
	unlock()
	_, after := s.recovered(t, port, released)
	t.Logf("first scan after the lock's release succeeded %s after it", after.Round(time.Millisecond))
	text = s.waitStatus(t, id2, "done", 30*time.Second)
	if !strings.Contains(text, fmt.Sprintf("%d/tcp open", port)) {
		t.Fatalf("the scan that ended under the lock lost its result: %s", text)
	}
	if !strings.Contains(s.stderr.String(), "recorded the end of a scan after a storage fault") {
		t.Errorf("the scan's end did not meet the lock (no retry logged)")
	}
	s.verify(t, 6) // three scans admitted and ended; the refused one left nothing
}

// The history's folder read-only (a read-only bind mount; the trail is
// elsewhere): a scan is refused at once saying so; old records, lists
// and tools still answer; once the folder is writable again, scans work.
func TestServeStoreReadOnly(t *testing.T) {
	storageNeedRoot(t)
	storeDir := faultfs.Tmpfs(t, "32m")
	s := startStorageServer(t, filepath.Join(storeDir, "scans.db"), filepath.Join(t.TempDir(), "audit.jsonl"))
	port := testkit.TCPListener(t)
	id1 := s.scan(t, port)

	writable := faultfs.ReadOnlyBind(t, storeDir)
	took := s.refused(t, port, s.store, "read-only", "writable again")
	t.Logf("a scan while the history was read-only was refused after %s", took.Round(time.Millisecond))
	s.serves(t, id1, port)
	back := time.Now()
	writable()
	_, after := s.recovered(t, port, back)
	t.Logf("first scan after the folder became writable again succeeded %s after it", after.Round(time.Millisecond))
	s.verify(t, 4)
	_ = s.sess.Close() // before the bind mount's removal
}

// A page of a copy of a history is damaged: the server starts on it,
// a record in the damaged page is refused with an error naming the file
// and how to check and restore it, every other record reads, the server
// does not panic and goes on serving (scans too: their records land
// elsewhere in the file), and the audit trail verifies.
func TestServeStoreDamaged(t *testing.T) {
	testkit.NeedEngine(t)
	dir := t.TempDir()
	orig := filepath.Join(dir, "scans.db")
	st, err := store.Open(context.Background(), orig, 0)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*store.Record
	const n = 60
	now := time.Now().UTC()
	for i := range n {
		recs = append(recs, &store.Record{ID: fmt.Sprintf("0000000000%02d", i), Status: store.Done, Targets: "127.0.0.1", ScanType: "connect",
			Request: []byte(fmt.Sprintf(`{"targets":"127.0.0.1","marker":"MARK-%02d-%s"}`, i, strings.Repeat("x", 600))),
			Argv:    []string{"nmap", "-sT", "--", "127.0.0.1"}, Client: "local", CreatedAt: now.Add(time.Duration(i-n) * time.Minute),
			StartedAt: now.Add(time.Duration(i-n) * time.Minute), EndedAt: now.Add(time.Duration(i-n)*time.Minute + time.Second),
			Result: &results.Result{NmapVersion: "7.93", Hosts: []results.Host{{Addresses: []string{"127.0.0.1"}, State: "up",
				Ports: []results.Port{{Protocol: "tcp", Port: 22, State: "open", Service: "ssh"}}}}}})
	}
	if err := st.Import(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	st.Close()
	damaged := filepath.Join(dir, "damaged.db")
	page, pages, _ := faultfs.DamagePage(t, orig, "MARK-30-", damaged)

	s := startStorageServer(t, damaged, filepath.Join(dir, "audit.jsonl"))
	res, text := call(t, s.sess, "get_scan", map[string]any{"id": recs[30].ID})
	for _, w := range []string{damaged, "damaged", "PRAGMA integrity_check", "restore it from a backup", ".recover"} {
		if !res.IsError || !strings.Contains(text, w) {
			t.Errorf("get_scan of the damaged record lacks %q: %s", w, text)
		}
	}
	readable := 0
	for _, r := range recs {
		if res, _ := call(t, s.sess, "get_scan", map[string]any{"id": r.ID}); !res.IsError {
			readable++
		}
	}
	t.Logf("page %d of %d damaged: %d of %d records read over MCP", page+1, pages, readable, n)
	if readable < n-6 {
		t.Errorf("only %d of %d records read around one damaged page", readable, n)
	}
	port := testkit.TCPListener(t)
	id := s.scan(t, port)
	if res, text := call(t, s.sess, "get_scan", map[string]any{"id": id}); res.IsError || !strings.Contains(text, fmt.Sprintf("%d/tcp open", port)) {
		t.Fatalf("the new scan's record: %s", text)
	}
	if tools, err := s.sess.ListTools(context.Background(), nil); err != nil || len(tools.Tools) == 0 {
		t.Fatalf("tools/list: %v", err)
	}
	if strings.Contains(s.stderr.String(), "panic") {
		t.Fatalf("the server panicked:\n%s", s.stderr)
	}
	s.verify(t, 2)
}

// The audit trail's disk full (a 1 MiB tmpfs the test fills), then its
// folder read-only: a scan is refused at once saying so, with nothing
// recorded or spent; old records, lists and tools still answer; a scan
// that ends while the disk is full keeps its end (retried until space
// returns); scans work again once the fault goes, and the chain verifies
// with no torn line and no repair.
func TestServeAuditFaults(t *testing.T) {
	storageNeedRoot(t)
	trailDir := faultfs.Tmpfs(t, "1m")
	s := startStorageServer(t, filepath.Join(t.TempDir(), "scans.db"), filepath.Join(trailDir, "audit.jsonl"))
	port := testkit.TCPListener(t)
	id1 := s.scan(t, port)

	// Full, with a scan running: it ends while the disk is full.
	res, text := call(t, s.sess, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port), "wait": false})
	if res.IsError {
		t.Fatal(text)
	}
	id2 := scanID(t, res)
	filler := faultfs.Fill(t, trailDir, 0)
	took := s.refused(t, port, s.trail, "disk is full", "free space")
	t.Logf("a scan while the trail's disk was full was refused after %s", took.Round(time.Millisecond))
	s.serves(t, id1, port)
	time.Sleep(3 * time.Second) // the running scan has ended by now; its end waits
	freed := time.Now()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	_, after := s.recovered(t, port, freed)
	t.Logf("first scan after space was freed succeeded %s after it", after.Round(time.Millisecond))
	if text := s.waitStatus(t, id2, "done", 30*time.Second); !strings.Contains(text, fmt.Sprintf("%d/tcp open", port)) {
		t.Fatalf("the scan that ended on a full disk lost its result: %s", text)
	}
	if !strings.Contains(s.stderr.String(), "wrote the end of a scan to the audit trail after a storage fault") {
		t.Errorf("the scan's end did not meet the full disk (no retry logged)")
	}
	s.verify(t, 6)

	// Read-only folder.
	writable := faultfs.ReadOnlyBind(t, trailDir)
	took = s.refused(t, port, s.trail, "read-only", "writable again")
	t.Logf("a scan while the trail's folder was read-only was refused after %s", took.Round(time.Millisecond))
	s.serves(t, id1, port)
	back := time.Now()
	writable()
	_, after = s.recovered(t, port, back)
	t.Logf("first scan after the folder became writable again succeeded %s after it", after.Round(time.Millisecond))
	s.verify(t, 8)
	_ = s.sess.Close() // before the bind mount's removal
}
