package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rec(id, targets string) *Record {
	return &Record{ID: id, Targets: targets, ScanType: "connect", Request: []byte(`{"targets":"` + targets + `"}`),
		Argv: []string{"nmap", "-sT", "--", targets}, ImageID: "sha256:x", ImageTag: "nmap-mcp/nmap:t",
		Limits:    Limits{CPUs: 1, MemoryBytes: 512 << 20, Pids: 128, TimeoutSeconds: 220, Network: "host"},
		StartedAt: time.Now().UTC()}
}

// The store survives a restart: write, close, reopen, read back.
func TestSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state", "scans.db")
	s := open(t, path)
	r := rec("a1", "127.0.0.1")
	if err := s.Begin(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Status, r.ExitCode = Done, 0
	r.RawXML = bytes.Repeat([]byte("x"), 100) // over the 64-byte cap
	r.Result = &results.Result{NmapVersion: "7.93", Hosts: []results.Host{{Addresses: []string{"127.0.0.1"}, State: "up",
		Ports: []results.Port{{Protocol: "tcp", Port: 22, State: "open", Service: "ssh"}}}}}
	if err := s.Finish(ctx, r); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2 := open(t, path)
	got, err := s2.Get(ctx, "a1", "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != Done || got.Targets != "127.0.0.1" || got.Limits.Pids != 128 || got.Argv[3] != "127.0.0.1" ||
		got.Result == nil || got.Result.Hosts[0].Ports[0].Service != "ssh" || !got.RawXMLTruncated || got.Duration() < 0 {
		t.Fatalf("read back %+v", got)
	}
	xml, err := s2.RawXML(ctx, "a1", "")
	if err != nil || len(xml) != 64 {
		t.Fatalf("raw xml %d bytes, %v", len(xml), err)
	}
	var nf *NotFoundError
	if _, err := s2.Get(ctx, "nope", ""); !errors.As(err, &nf) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown id: %v", err)
	}
	var mode string
	if err := s2.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q %v", mode, err)
	}
}

// deadPID is the process id of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	return dead.ProcessState.Pid()
}

// A scan whose server died is marked interrupted at the next open; a scan
// of a live server is not.
func TestInterruptedAtOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "scans.db")
	s := open(t, path)
	for _, id := range []string{"dead", "live"} {
		if err := s.Begin(ctx, rec(id, "127.0.0.1")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.db.Exec(`UPDATE scans SET owner_pid = ? WHERE id = 'dead'`, deadPID(t)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := open(t, path)
	for id, want := range map[string]string{"dead": Interrupted, "live": Running} {
		r, err := s2.Get(ctx, id, "")
		if err != nil || r.Status != want {
			t.Fatalf("%s: status %v, %v; want %s", id, r.Status, err, want)
		}
	}
}

func TestCorruptIsNotReset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scans.db")
	junk := bytes.Repeat([]byte("not a database "), 500)
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), path, 0)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "left untouched") {
		t.Fatalf("Open(corrupt) = %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, junk) {
		t.Fatal("the corrupt file was changed")
	}
}

func TestUnwritableFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A path under a regular file cannot be created, even by root.
	_, err := Open(context.Background(), filepath.Join(file, "scans.db"), 0)
	if err == nil || !strings.Contains(err.Error(), "NMAP_MCP_STORE") {
		t.Fatalf("Open(unwritable) = %v", err)
	}
}

func TestListFilters(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "scans.db"))
	for i, tg := range []string{"127.0.0.1", "127.0.0.2 localhost", "127.0.0.1", "127.0.0.10"} {
		r := rec(string(rune('a'+i)), tg)
		r.CreatedAt = time.Now().Add(time.Duration(i) * time.Second)
		if err := s.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			r.Status = Done
			if err := s.Finish(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	ids := func(f Filter) string {
		list, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, r := range list {
			b.WriteString(r.ID)
		}
		return b.String()
	}
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "dcba"},
		{Filter{Target: "127.0.0.1"}, "ca"},
		{Filter{Target: "localhost"}, "b"},
		{Filter{Status: Running}, "d"},
		{Filter{Finished: true, Limit: 2}, "cb"},
		{Filter{Since: time.Now().Add(1500 * time.Millisecond)}, "dc"},
	} {
		if got := ids(c.f); got != c.want {
			t.Errorf("%+v: %s, want %s", c.f, got, c.want)
		}
	}
}

// Regression (security review 13): the history and its -wal and -shm are
// private (0600), even when an older version left them 0644.
func TestFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "scans.db")
	s := open(t, path)
	if err := s.Begin(context.Background(), rec("p1", "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Fatalf("%s has mode %v, want 0600", p, st.Mode().Perm())
			}
		}
		if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
			t.Fatalf("folder mode %v, want 0700", st.Mode().Perm())
		}
	}
	check()
	s.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		os.Chmod(p, 0o644)
	}
	open(t, path)
	check()
}

// Regression (security review 4 and 6): lists are summaries that never
// load results; a client sees only its own scans, and another client's id
// is "not found" like an unknown one.
func TestListSummariesAndOwners(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "scans.db"))
	for _, c := range []struct{ id, client string }{{"a1", "alice"}, {"b1", "bob"}} {
		r := rec(c.id, "127.0.0.1")
		r.Client = c.client
		if err := s.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.Status = Done
		r.Result = &results.Result{Hosts: []results.Host{{Addresses: []string{"127.0.0.1"}, State: "up",
			Ports: []results.Port{{Protocol: "tcp", Port: 22, State: "open"}, {Protocol: "tcp", Port: 23, State: "closed"}}}},
			Stats: results.Stats{HostsUp: 1}}
		if err := s.Finish(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.List(ctx, Filter{Client: "alice"})
	if err != nil || len(recs) != 1 || recs[0].ID != "a1" || recs[0].Result != nil || recs[0].HostsUp != 1 || recs[0].OpenPorts != 1 {
		t.Fatalf("alice's list: %v %+v", err, recs)
	}
	var nf *NotFoundError
	_, errForeign := s.Get(ctx, "b1", "alice")
	_, errUnknown := s.Get(ctx, "zz", "alice")
	if !errors.As(errForeign, &nf) || !errors.As(errUnknown, &nf) ||
		strings.ReplaceAll(errForeign.Error(), "b1", "zz") != errUnknown.Error() {
		t.Fatalf("foreign %v, unknown %v", errForeign, errUnknown)
	}
	if _, err := s.RawXML(ctx, "b1", "alice"); !errors.As(err, &nf) {
		t.Fatalf("foreign xml: %v", err)
	}
	if _, _, err := s.Pair(ctx, "a1", "b1", "", "alice"); !errors.As(err, &nf) {
		t.Fatalf("diff with a foreign scan: %v", err)
	}
	if r, err := s.Get(ctx, "b1", ""); err != nil || r.Result == nil {
		t.Fatalf("admin get: %v", err)
	}
}

// The target filter reads the target index: a target matches whole
// tokens, case-insensitively, with the other filters applied to the scan
// and the newest first; scans deleted by retention leave the index.
// (Unit test; BenchmarkTargetFilter measures it at 100,000 scans.)
func TestListByTarget(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "scans.db"))
	now := time.Now().UTC()
	for i, tc := range []struct{ targets, client string }{
		{"10.0.0.1 Lab.Example", "alice"}, {"10.0.0.10", "alice"}, {"10.0.0.1", "bob"}, {"10.0.0.0/24 10.0.0.1", "alice"},
	} {
		r := &Record{ID: fmt.Sprintf("s%d", i), Status: Done, Targets: tc.targets, ScanType: "connect", Client: tc.client, CreatedAt: now.Add(time.Duration(i) * time.Second)}
		if err := s.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(f Filter) []string {
		t.Helper()
		recs, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return out
	}
	if got := ids(Filter{Target: "10.0.0.1"}); !slices.Equal(got, []string{"s3", "s2", "s0"}) {
		t.Errorf("10.0.0.1: %v", got)
	}
	if got := ids(Filter{Target: "10.0.0.1", Client: "alice", Limit: 1, Offset: 1}); !slices.Equal(got, []string{"s0"}) {
		t.Errorf("alice's second: %v", got)
	}
	if got := ids(Filter{Target: "lab.example"}); !slices.Equal(got, []string{"s0"}) {
		t.Errorf("a name, any case: %v", got)
	}
	if got := ids(Filter{Target: "10.0.0"}); len(got) != 0 {
		t.Errorf("a part of a token matched: %v", got)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM scans WHERE id = 's3'`); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM scan_targets WHERE id = 's3'`).Scan(&left); err != nil || left != 0 {
		t.Errorf("a deleted scan left %d index rows (%v)", left, err)
	}
}

// Every connection cuts the write-ahead log back to walLimit when it
// starts again: a big write does not keep its disk space.
func TestWALIsCutBack(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "scans.db"))
	ctx := context.Background()
	var conns []interface{ Close() error }
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 3 {
		c, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var limit int64
		if err := c.QueryRowContext(ctx, `PRAGMA journal_size_limit`).Scan(&limit); err != nil {
			t.Fatal(err)
		}
		if limit != walLimit {
			t.Errorf("journal_size_limit %d, want %d", limit, walLimit)
		}
	}
}

// A scan waiting for approval is stored as pending-approval: when its
// server died before the answer, the next start marks it interrupted and
// says nothing ran; it is never listed as finished, nor removed by
// retention while it waits. When it is answered, the record it begins
// with replaces the pending one (one row, its targets indexed once).
func TestPendingApprovalRecord(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "scans.db")
	s := open(t, path)
	for _, id := range []string{"dead", "waiting", "answered"} {
		r := rec(id, "127.0.0.1")
		r.Status = PendingApproval
		if err := s.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
		if r.Status != PendingApproval {
			t.Fatalf("%s began as %s", id, r.Status)
		}
	}
	if fin, err := s.List(ctx, Filter{Finished: true}); err != nil || len(fin) != 0 {
		t.Fatalf("finished: %d records (%v), want none", len(fin), err)
	}
	if p, err := s.Prune(ctx, Keep{Age: time.Hour}, nil, time.Now().Add(48*time.Hour)); err != nil || p.Deleted != 0 {
		t.Fatalf("retention: %+v %v, want nothing deleted", p, err)
	}
	// Answered: the scan begins; its pending record gives way.
	r := rec("answered", "127.0.0.1")
	r.Status = Queued
	if err := s.Begin(ctx, r); err != nil {
		t.Fatalf("begin after approval: %v", err)
	}
	if got, err := s.List(ctx, Filter{Target: "127.0.0.1"}); err != nil || len(got) != 3 {
		t.Fatalf("by target: %d records (%v), want 3", len(got), err)
	}
	// Another client's scan of the same id does not replace it.
	other := rec("waiting", "127.0.0.1")
	other.Client = "mallory"
	if err := s.Begin(ctx, other); err == nil {
		t.Fatal("another client's record replaced a pending one")
	}
	if _, err := s.db.Exec(`UPDATE scans SET owner_pid = ? WHERE id = 'dead'`, deadPID(t)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := open(t, path)
	for id, want := range map[string]string{"dead": Interrupted, "waiting": PendingApproval, "answered": Queued} {
		r, err := s2.Get(ctx, id, "")
		if err != nil || r.Status != want {
			t.Fatalf("%s: status %v, %v; want %s", id, r.Status, err, want)
		}
		if id == "dead" && !strings.Contains(r.Error, "waited for approval; nothing ran") {
			t.Fatalf("dead: error %q", r.Error)
		}
	}
}
