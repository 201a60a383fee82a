package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	st, err := Open(context.Background(), filepath.Join(t.TempDir(), "scans.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestWatchesCRUD(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	w := &Watch{Name: "lab", Client: "alice", Request: []byte(`{"targets":"127.0.0.1"}`), Interval: time.Hour, Created: now, NextRun: now}
	if err := st.CreateWatch(ctx, w); err != nil {
		t.Fatal(err)
	}
	if len(w.ID) != 16 {
		t.Fatalf("id %q", w.ID)
	}
	var exists *WatchExistsError
	if err := st.CreateWatch(ctx, &Watch{Name: "lab", Client: "alice", Request: w.Request, Interval: time.Hour}); !errors.As(err, &exists) {
		t.Fatalf("second create: %v", err)
	}
	var nf *NotFoundError
	if _, err := st.GetWatch(ctx, "lab", "bob"); !errors.As(err, &nf) {
		t.Fatalf("another client's watch: %v", err)
	}
	due, _ := st.DueWatches(ctx, now)
	if len(due) != 1 || due[0].Interval != time.Hour || string(due[0].Request) != `{"targets":"127.0.0.1"}` || due[0].ID != w.ID {
		t.Fatalf("due %+v", due)
	}
	w.NextRun, w.LastRun, w.Baseline, w.Runs, w.LastChange = now.Add(time.Hour), now, "abc", 1, []byte(`{"x":1}`)
	if err := st.SaveWatchRun(ctx, w); err != nil {
		t.Fatal(err)
	}
	if due, _ := st.DueWatches(ctx, now); len(due) != 0 {
		t.Fatalf("still due: %+v", due)
	}
	got, _ := st.GetWatch(ctx, "lab", "alice")
	if got.Baseline != "abc" || got.Runs != 1 || !got.NextRun.Equal(now.Add(time.Hour)) || string(got.LastChange) != `{"x":1}` {
		t.Fatalf("got %+v", got)
	}
	if b, _ := st.Baselines(ctx); len(b) != 1 || b[0] != "abc" {
		t.Fatalf("baselines %v", b)
	}
	if err := st.DeleteWatch(ctx, w.ID, "bob"); !errors.As(err, &nf) {
		t.Fatalf("bob deleted alice's watch: %v", err)
	}
	if err := st.DeleteWatch(ctx, w.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	if ws, _ := st.ListWatches(ctx, ""); len(ws) != 0 {
		t.Fatalf("left %+v", ws)
	}
}

// Names are unique per client only; a run saved for a watch that was
// deleted (and made again under the same name, by another client or the
// same) changes nothing and says the watch is gone.
func TestWatchIdentityAndNamesPerClient(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	mk := func(client string) *Watch {
		w := &Watch{Name: "lab", Client: client, Request: []byte(`{"targets":"127.0.0.1"}`), Interval: time.Hour, Created: now, NextRun: now}
		if err := st.CreateWatch(ctx, w); err != nil {
			t.Fatalf("%s: %v", client, err)
		}
		return w
	}
	alice := mk("alice")
	bob := mk("bob") // the same name for another client: allowed
	if alice.ID == bob.ID {
		t.Fatal("two watches share an id")
	}
	if got, err := st.GetWatch(ctx, "lab", "bob"); err != nil || got.ID != bob.ID {
		t.Fatalf("bob's lab: %+v %v", got, err)
	}
	var amb *AmbiguousWatchError
	if _, err := st.GetWatch(ctx, "lab", ""); !errors.As(err, &amb) || len(amb.Clients) != 2 {
		t.Fatalf("lab without a client: %v", err)
	}
	if err := st.DeleteWatch(ctx, alice.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	again := mk("alice")
	// alice's old run ends now.
	alice.LastScan, alice.LastStatus, alice.Baseline, alice.Runs = "old-scan", Done, "old-scan", 1
	var nf *NotFoundError
	if err := st.SaveWatchRun(ctx, alice); !errors.As(err, &nf) {
		t.Fatalf("a run of a deleted watch was saved: %v", err)
	}
	// Saved with the right id but another client: not found either.
	forged := *bob
	forged.Client, forged.Baseline = "alice", "old-scan"
	if err := st.SaveWatchRun(ctx, &forged); !errors.As(err, &nf) {
		t.Fatalf("a run saved across clients: %v", err)
	}
	for _, w := range []*Watch{again, bob} {
		got, err := st.WatchByID(ctx, w.ID, w.Client)
		if err != nil || got.Baseline != "" || got.LastScan != "" || got.Runs != 0 {
			t.Fatalf("%s's new watch took another run: %+v %v", w.Client, got, err)
		}
	}
}

// Pausing: a paused watch is never due; pausing a client pauses all its
// watches; resuming makes it due again.
func TestWatchPause(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	var ids []string
	for _, c := range []string{"alice", "alice", "bob"} {
		w := &Watch{Name: "w" + string(rune('a'+len(ids))), Client: c, Request: []byte(`{}`), Interval: time.Hour, Created: now, NextRun: now}
		if err := st.CreateWatch(ctx, w); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, w.ID)
	}
	n, err := st.PauseClientWatches(ctx, "alice", "its token was removed", now)
	if err != nil || n != 2 {
		t.Fatalf("paused %d: %v", n, err)
	}
	if due, _ := st.DueWatches(ctx, now); len(due) != 1 || due[0].Client != "bob" {
		t.Fatalf("due %+v", due)
	}
	if err := st.PauseWatch(ctx, ids[2], "bob", "webhook not allowed", now); err != nil {
		t.Fatal(err)
	}
	if next, _ := st.NextWatchRun(ctx); !next.IsZero() {
		t.Fatalf("next run %s with every watch paused", next)
	}
	got, _ := st.WatchByID(ctx, ids[0], "")
	if got.Paused != "its token was removed" || !got.PausedAt.Equal(now) {
		t.Fatalf("paused %+v", got)
	}
	if err := st.ResumeWatch(ctx, ids[0], "alice", now); err != nil {
		t.Fatal(err)
	}
	if due, _ := st.DueWatches(ctx, now); len(due) != 1 || due[0].ID != ids[0] {
		t.Fatalf("due after resume %+v", due)
	}
}

// A database made before watches had ids keeps its watches: each gets an
// id; a baseline or last scan that is another client's scan (left by the
// old keying by name) is forgotten, with its change.
func TestWatchMigrationFromNames(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "scans.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	old := migrations[:3] // schema version 3: before watches had ids
	stmts := append([]string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`}, old...)
	for _, q := range append(stmts,
		`INSERT INTO schema_version VALUES (3)`,
		`INSERT INTO scans (id, status, targets, scan_type, request, argv, image_id, image_tag, limits, client, owner_pid, owner_host, created_at)
			VALUES ('s-alice', 'done', '127.0.0.1', 'connect', '{}', '[]', '', '', '{}', 'alice', 0, '', 1),
			       ('s-bob', 'done', '127.0.0.1', 'connect', '{}', '[]', '', '', '{}', 'bob', 0, '', 2)`,
		`INSERT INTO watches (name, client, request, interval_s, created_at, next_run, last_scan, last_status, baseline, last_change, runs)
			VALUES ('mine', 'alice', '{}', 3600, 1, 2, 's-alice', 'done', 's-alice', '{"x":1}', 3),
			       ('taken', 'bob', '{}', 3600, 1, 2, 's-alice', 'done', 's-alice', '{"x":2}', 1)`,
	) {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	st, err := Open(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mine, err := st.GetWatch(ctx, "mine", "alice")
	if err != nil || len(mine.ID) != 16 || mine.Baseline != "s-alice" || mine.LastScan != "s-alice" || string(mine.LastChange) != `{"x":1}` || mine.Runs != 3 {
		t.Fatalf("alice's watch after the migration: %+v %v", mine, err)
	}
	taken, err := st.GetWatch(ctx, "taken", "bob")
	if err != nil || taken.Baseline != "" || taken.LastScan != "" || len(taken.LastChange) != 0 || taken.Runs != 1 {
		t.Fatalf("bob's watch keeps alice's scan: %+v %v", taken, err)
	}
	// Names are per client from now on.
	if err := st.CreateWatch(ctx, &Watch{Name: "mine", Client: "bob", Request: []byte(`{}`), Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
}
