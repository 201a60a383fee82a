package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestWatchesCRUD(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "scans.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	w := &Watch{Name: "lab", Client: "alice", Request: []byte(`{"targets":"127.0.0.1"}`), Interval: time.Hour, Created: now, NextRun: now}
	if err := st.CreateWatch(ctx, w); err != nil {
		t.Fatal(err)
	}
	var exists *WatchExistsError
	if err := st.CreateWatch(ctx, w); !errors.As(err, &exists) {
		t.Fatalf("second create: %v", err)
	}
	var nf *NotFoundError
	if _, err := st.GetWatch(ctx, "lab", "bob"); !errors.As(err, &nf) {
		t.Fatalf("another client's watch: %v", err)
	}
	due, _ := st.DueWatches(ctx, now)
	if len(due) != 1 || due[0].Interval != time.Hour || string(due[0].Request) != `{"targets":"127.0.0.1"}` {
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
	if err := st.DeleteWatch(ctx, "lab", "bob"); !errors.As(err, &nf) {
		t.Fatalf("bob deleted alice's watch: %v", err)
	}
	if err := st.DeleteWatch(ctx, "lab", "alice"); err != nil {
		t.Fatal(err)
	}
	if ws, _ := st.ListWatches(ctx, ""); len(ws) != 0 {
		t.Fatalf("left %+v", ws)
	}
}
