package scans_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// These run against the fake runner, with the real store and audit
// trail: no engine needed (-short). The lock is real: a second SQLite
// connection holds BEGIN EXCLUSIVE on the history database.

// lockDB holds the database's write lock until the returned func is
// called (or the test ends).
func lockDB(t *testing.T, path string) func() {
	t.Helper()
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
	done := false
	release := func() {
		if !done {
			done = true
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
			db.Close()
		}
	}
	t.Cleanup(release)
	return release
}

// While another connection holds the history's write lock, a scan is
// refused before admission — saying the file is locked and what to do —
// with nothing recorded, audited or spent (the client's budget of one
// scan is still there afterwards); the scan admitted before the lock
// ends while the lock is held, and its end is retried until the lock
// goes: nothing of it is lost.
func TestScanEndWaitsOutALock(t *testing.T) {
	pcfg := policy.DefaultConfig()
	pcfg.ScansPerClient = 2
	f := newFixture(t, scans.Config{Concurrency: 2, PerClient: 2}, &pcfg)
	sc := f.submit(t, req(22))
	id := f.started(t)

	release := lockDB(t, f.store.Path())
	f.runner.finish(id) // the scan ends while the lock is held
	refused := make(chan error, 1)
	go func() {
		_, err := f.svc.Submit(context.Background(), req(23), scans.Options{Detach: true})
		refused <- err
	}()
	err := <-refused
	var fe *store.FaultError
	if !errors.As(err, &fe) || fe.Kind != store.Locked {
		t.Fatalf("scan while locked: %v", err)
	}
	for _, want := range []string{"scan not run, nothing recorded or spent", f.store.Path(), "locked by another process", "no restart needed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q: %v", want, err)
		}
	}
	select {
	case <-sc.Done():
		t.Fatal("the scan's end was given up while the lock was held")
	case <-time.After(time.Second):
	}
	released := time.Now()
	release()
	wait(t, sc)
	t.Logf("the scan's end was recorded %s after the lock was released", time.Since(released).Round(time.Millisecond))
	f.stored(t, sc.ID, store.Done, "admitted:", "ended:done")
	if list, err := f.store.List(context.Background(), store.Filter{}); err != nil || len(list) != 1 {
		t.Fatalf("records: %d %v (the refused scan left one?)", len(list), err)
	}
	// The refused scan spent nothing: the budget's second scan runs.
	sc2 := f.submit(t, req(24))
	f.runner.finish(f.started(t))
	wait(t, sc2)
	f.stored(t, sc2.ID, store.Done, "admitted:", "ended:done")
	if rep, err := audit.Verify(f.trail); err != nil || rep.Records != 4 {
		t.Fatalf("audit: %+v %v", rep, err)
	}
}
