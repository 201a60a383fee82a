package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink safe for the loop's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// PruneEvery applies the rule at once, again on each tick (a scan
// finished after the first pass is pruned by a later one), logs what it
// did and returns when ctx ends; the zero rule returns at once.
func TestPruneEvery(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "scans.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Now().Add(-time.Hour)
	rec := func(i int) *Record {
		return &Record{ID: fmt.Sprint("s", i), Status: Done, Targets: "127.0.0.1", CreatedAt: t0.Add(time.Duration(i) * time.Minute),
			RawXML: []byte("<nmaprun/>"), Argv: []string{"nmap"}}
	}
	if err := st.Import(ctx, []*Record{rec(0), rec(1), rec(2)}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	st.PruneEvery(ctx, time.Hour, Keep{}, nil) // returns at once, or the test hangs
	var logs syncBuffer
	pctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(done)
		st.PruneEvery(pctx, 20*time.Millisecond, Keep{Count: 1}, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s; log: %s", what, logs.String())
			}
		}
	}
	// Keep 1: s2 keeps its XML, s1 loses it; s0 is outside twice the rule.
	waitFor("first pass, logged", func() bool {
		_, err := st.RawXML(ctx, "s0", "")
		return err != nil && strings.Contains(logs.String(), "retention (store.keep)")
	})
	if err := st.Import(ctx, []*Record{rec(3), rec(4)}); err != nil {
		t.Fatal(err)
	}
	waitFor("a later pass", func() bool { _, err := st.RawXML(ctx, "s2", ""); return err != nil })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("PruneEvery did not return when its context ended")
	}
}
