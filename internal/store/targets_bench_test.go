package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkTargetFilter measures list_scans' target filter at 100,000
// scans, read from the target index (scan_targets, one row per target
// token, kept by triggers on scans), and the index's cost on a write
// (Begin). No engine.
//
//	go test -short -run '^$' -bench TargetFilter ./internal/store/
func BenchmarkTargetFilter(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "scans.db"), 0)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 100000
	t0 := time.Now().Add(-n * time.Second)
	recs := make([]*Record, 0, 1000)
	for i := 0; i < n; i++ {
		recs = append(recs, &Record{ID: fmt.Sprintf("%012x", i), Status: Done, Targets: fmt.Sprintf("10.%d.%d.0/24 host%d.lab", i%200, i%250, i%997),
			ScanType: "connect", Client: "local", CreatedAt: t0.Add(time.Duration(i) * time.Second)})
		if len(recs) == cap(recs) {
			if err := s.Import(ctx, recs); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	b.Run("List-no-match", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if recs, err := s.List(ctx, Filter{Target: "192.0.2.1", Limit: 20}); err != nil || len(recs) != 0 {
				b.Fatal(err, len(recs))
			}
		}
	})
	b.Run("List-match", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if recs, err := s.List(ctx, Filter{Target: "host5.lab", Limit: 20}); err != nil || len(recs) != 20 {
				b.Fatal(err, len(recs))
			}
		}
	})
	// The trigger's cost on a write.
	next := 0
	b.Run("Begin-with-trigger", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			next++
			if err := s.Begin(ctx, &Record{ID: fmt.Sprintf("new%09d", next), Targets: "10.9.9.9 lab.example", ScanType: "connect"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
