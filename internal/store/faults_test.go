package store

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit/faultfs"
)

// Storage faults injected for real, without the Docker engine (they run
// under -short): a write lock held by another process, a read-only bind
// mount over the database's folder (root; a read-only tmpfs at open), a
// damaged page in a copy of a database. The mounts are the test's own,
// under its temporary folder, and are unmounted in t.Cleanup even when
// the test fails.

// TestLockHolderProcess is not a test: run as a child process with
// STORE_TEST_LOCK_DB set, it holds that database's write lock (BEGIN
// EXCLUSIVE) from when it prints "locked" until its stdin closes.
func TestLockHolderProcess(t *testing.T) {
	path := os.Getenv("STORE_TEST_LOCK_DB")
	if path == "" {
		return
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
	conn.Close()
	db.Close()
}

// holdLock starts another process holding the database's write lock; the
// returned func releases it (and waits for the process to exit).
func holdLock(t *testing.T, path string) func() {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$")
	cmd.Env = append(os.Environ(), "STORE_TEST_LOCK_DB="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			stdin.Close()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(release)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("lock holder: %q %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return release
}

func finished(t *testing.T, s *Store, id string) {
	t.Helper()
	r := rec(id, "127.0.0.1")
	if err := s.Begin(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	r.Status = Done
	r.RawXML = []byte("<nmaprun/>")
	r.Result = &results.Result{NmapVersion: "7.93"}
	if err := s.Finish(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func wantFault(t *testing.T, err error, kind string, words ...string) *FaultError {
	t.Helper()
	var fe *FaultError
	if !errors.As(err, &fe) || fe.Kind != kind {
		t.Fatalf("want a %s fault, got %T: %v", kind, err, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	return fe
}

// Another process holds the write lock: a write waits BusyTimeout and
// fails saying the file is locked and what to do; reads go on (WAL); a
// write waiting when the lock is released completes at once, and writes
// work again without reopening anything.
func TestLockedByAnotherProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "scans.db")
	s := open(t, path)
	finished(t, s, "old1")
	release := holdLock(t, path)

	start := time.Now()
	errs := make(chan error, 2)
	go func() { errs <- s.Ready(ctx) }()
	go func() { errs <- s.Begin(ctx, rec("new1", "127.0.0.1")) }()
	for range 2 {
		wantFault(t, <-errs, Locked, path, "locked by another process", "no restart needed")
	}
	waited := time.Since(start)
	if waited < BusyTimeout || waited > BusyTimeout+3*time.Second {
		t.Errorf("a locked write failed after %s, want about %s", waited, BusyTimeout)
	}
	if got, err := s.Get(ctx, "old1", ""); err != nil || got.Status != Done {
		t.Fatalf("read while locked: %+v %v", got, err)
	}
	if list, err := s.List(ctx, Filter{}); err != nil || len(list) != 1 {
		t.Fatalf("list while locked: %d %v", len(list), err)
	}

	// A write waiting on the lock completes as soon as it is released.
	done := make(chan time.Time, 1)
	go func() {
		if err := s.Begin(ctx, rec("new2", "127.0.0.1")); err != nil {
			t.Error(err)
		}
		done <- time.Now()
	}()
	time.Sleep(time.Second)
	released := time.Now()
	release()
	at := <-done
	t.Logf("a locked write failed after %s; a write waiting on the lock completed %s after its release", waited.Round(time.Millisecond), at.Sub(released).Round(time.Millisecond))
	if at.Sub(released) > time.Second {
		t.Errorf("write completed %s after the lock was released", at.Sub(released))
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	finished(t, s, "new3")
	if list, err := s.List(ctx, Filter{}); err != nil || len(list) != 3 {
		t.Fatalf("records after the lock: %d %v", len(list), err)
	}
}

// The database's folder turns read-only while the store is open: Ready
// refuses, naming the file and what to do; a connection opened during
// the fault is read-only and its write fails as a read-only fault (and is
// dropped); reads go on; once the folder is writable again, writes work
// without reopening the store.
func TestReadOnlyFolder(t *testing.T) {
	ctx := context.Background()
	dir := faultfs.Tmpfs(t, "32m")
	path := filepath.Join(dir, "scans.db")
	s := open(t, path)
	finished(t, s, "old1")
	undo := faultfs.ReadOnlyBind(t, dir)

	wantFault(t, s.Ready(ctx), ReadOnly, path, "read-only", "writable again", "no restart needed")
	// A connection SQLite opens now cannot write: drop the pool's idle
	// ones so that the next write opens one.
	s.db.SetMaxIdleConns(0)
	s.db.SetMaxIdleConns(idleConns)
	err := s.Begin(ctx, rec("new1", "127.0.0.1"))
	wantFault(t, err, ReadOnly, path, "record scan new1")
	t.Logf("write on a connection opened while read-only: %v", err)
	if got, err := s.Get(ctx, "old1", ""); err != nil || got.Status != Done {
		t.Fatalf("read while read-only: %+v %v", got, err)
	}

	undo()
	start := time.Now()
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	finished(t, s, "new2")
	t.Logf("first write after the folder became writable again took %s", time.Since(start).Round(time.Microsecond))
	if list, err := s.List(ctx, Filter{}); err != nil || len(list) != 2 {
		t.Fatalf("records after the fault: %d %v", len(list), err)
	}
	s.Close() // before the bind mount's removal: nothing open through it
}

// A store whose disk is read-only when it opens is refused, naming the
// file and what to do; nothing in it is lost: once writable, it opens
// with its records.
func TestReadOnlyAtOpen(t *testing.T) {
	dir := faultfs.Tmpfs(t, "32m")
	path := filepath.Join(dir, "scans.db")
	s, err := Open(context.Background(), path, 0)
	if err != nil {
		t.Fatal(err)
	}
	finished(t, s, "old1")
	s.Close()
	writable := faultfs.ReadOnlyDisk(t, dir)
	_, err = Open(context.Background(), path, 0)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "read-only") || !strings.Contains(err.Error(), "writable path") {
		t.Fatalf("open on a read-only disk: %v", err)
	}
	writable()
	s = open(t, path)
	if got, err := s.Get(context.Background(), "old1", ""); err != nil || got.Status != Done {
		t.Fatalf("after the fault: %+v %v", got, err)
	}
}

// A page of a copy of the database is damaged: the store opens it (the
// header is intact), the records in the damaged page fail with an error
// that names the file and says how to check and restore it, every other
// record reads, writes elsewhere in the file work, and nothing panics.
func TestDamagedPage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	orig := filepath.Join(dir, "scans.db")
	s, err := Open(ctx, orig, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 60
	for i := range n {
		r := rec(fmt.Sprintf("scan%02d", i), "127.0.0.1")
		r.Request = []byte(fmt.Sprintf(`{"targets":"127.0.0.1","marker":"MARK-%02d-%s"}`, i, strings.Repeat("x", 600)))
		if err := s.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	s.Close() // checkpoints the WAL into the file
	damaged := filepath.Join(dir, "damaged.db")
	page, pages, pageSize := faultfs.DamagePage(t, orig, "MARK-30-", damaged)

	d := open(t, damaged)
	var ok, bad int
	for i := range n {
		_, err := d.Get(ctx, fmt.Sprintf("scan%02d", i), "")
		switch {
		case err == nil:
			ok++
		default:
			wantFault(t, err, Damaged, damaged, "damaged", "PRAGMA integrity_check", "restore it from a backup", ".recover")
			bad++
		}
	}
	if _, err := d.Get(ctx, "scan30", ""); err == nil {
		t.Error("the record in the damaged page read back")
	}
	t.Logf("page %d of %d (%d bytes) damaged: %d records read, %d refused as damaged", page+1, pages, pageSize, ok, bad)
	if ok < n-6 {
		t.Errorf("only %d of %d records read around one damaged page", ok, n)
	}
	_, err = d.List(ctx, Filter{Limit: n})
	t.Logf("list over the damaged page: %v", err)
	if err != nil {
		wantFault(t, err, Damaged, damaged, "PRAGMA integrity_check")
	}
	if err := d.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	finished(t, d, "after")
}

// The database's disk fills: Ready refuses (less than MinFree left), a
// write fails as Full naming the file and what to do, reads go on, and
// once space is freed writes work again without reopening; nothing
// written before is lost.
func TestDiskFull(t *testing.T) {
	ctx := context.Background()
	dir := faultfs.Tmpfs(t, "32m")
	path := filepath.Join(dir, "scans.db")
	s := open(t, path)
	finished(t, s, "old1")
	running := rec("run1", "127.0.0.1")
	if err := s.Begin(ctx, running); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 64<<10)); err != nil {
			break
		}
	}
	f.Close()
	wantFault(t, s.Ready(ctx), Full, path, "disk is full", "free space", "no restart needed")
	running.Status, running.RawXML = Done, bytes.Repeat([]byte("<host/>"), 300<<10)
	err = s.Finish(ctx, running)
	wantFault(t, err, Full, path, "finish scan run1", "disk is full")
	if got, err := s.Get(ctx, "old1", ""); err != nil || got.Status != Done {
		t.Fatalf("read on a full disk: %+v %v", got, err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, running); err != nil {
		t.Fatal(err)
	}
	if xml, err := s.RawXML(ctx, "run1", ""); err != nil || len(xml) == 0 {
		t.Fatalf("raw XML after the fault: %d %v", len(xml), err)
	}
	finished(t, s, "new1")
	if list, err := s.List(ctx, Filter{}); err != nil || len(list) != 3 {
		t.Fatalf("records after the fault: %d %v", len(list), err)
	}
}

// A damaged page holds the records of a dead server's running scans: the
// store still opens (the records it can reach are marked interrupted,
// those in the damaged page are left and report the damage when read).
func TestDamagedPageAtOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	orig := filepath.Join(dir, "scans.db")
	s, err := Open(ctx, orig, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	var recs []*Record
	for i := range n {
		r := rec(fmt.Sprintf("scan%02d", i), "127.0.0.1")
		r.Status, r.OwnerPID, r.OwnerHost = Running, 0, "gone" // a dead server's
		r.CreatedAt = time.Now().UTC().Add(time.Duration(i) * time.Second)
		r.Request = []byte(fmt.Sprintf(`{"targets":"127.0.0.1","marker":"MARK-%02d-%s"}`, i, strings.Repeat("x", 600)))
		recs = append(recs, r)
	}
	if err := s.Import(ctx, recs); err != nil {
		t.Fatal(err)
	}
	s.Close()
	faultfs.DamagePage(t, orig, "MARK-20-", orig)
	d, err := Open(ctx, orig, 0)
	if err != nil {
		t.Fatalf("a damaged page kept the store from opening: %v", err)
	}
	defer d.Close()
	interrupted := 0
	for _, r := range recs {
		got, err := d.Get(ctx, r.ID, "")
		if err != nil {
			wantFault(t, err, Damaged, orig, "PRAGMA integrity_check")
			continue
		}
		if got.Status == Interrupted {
			interrupted++
		}
	}
	t.Logf("%d of %d running records of a dead server marked interrupted around a damaged page", interrupted, n)
	if interrupted < n-6 {
		t.Errorf("only %d of %d records marked interrupted", interrupted, n)
	}
}
