package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkTargetFilter measures list_scans' target filter at 100,000
// scans: today's List (instr over every row's targets), against the side
// table proposed for issue 24 item 5 (scan_targets(target, created_at,
// id), one row per target token, kept by triggers on scans), queried
// here directly as a prototype. No engine.
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
	// The proposal: a side table and its triggers (the migration would
	// also fill it from the existing rows, as here).
	for _, q := range []string{
		`CREATE TABLE scan_targets (target TEXT NOT NULL, created_at INTEGER NOT NULL, id TEXT NOT NULL, PRIMARY KEY (target, created_at, id)) WITHOUT ROWID`,
		`CREATE TRIGGER scan_targets_insert AFTER INSERT ON scans BEGIN
			INSERT OR IGNORE INTO scan_targets SELECT value, NEW.created_at, NEW.id FROM json_each('["' || replace(lower(NEW.targets), ' ', '","') || '"]') WHERE value <> '';
		END`,
		`CREATE TRIGGER scan_targets_delete AFTER DELETE ON scans BEGIN
			DELETE FROM scan_targets WHERE id = OLD.id AND created_at = OLD.created_at
				AND target IN (SELECT value FROM json_each('["' || replace(lower(OLD.targets), ' ', '","') || '"]'));
		END`,
		`INSERT OR IGNORE INTO scan_targets SELECT j.value, s.created_at, s.id FROM scans s, json_each('["' || replace(lower(s.targets), ' ', '","') || '"]') j WHERE j.value <> ''`,
	} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("today-List-no-match", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if recs, err := s.List(ctx, Filter{Target: "192.0.2.1", Limit: 20}); err != nil || len(recs) != 0 {
				b.Fatal(err, len(recs))
			}
		}
	})
	b.Run("today-List-match", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if recs, err := s.List(ctx, Filter{Target: "host5.lab", Limit: 20}); err != nil || len(recs) != 20 {
				b.Fatal(err, len(recs))
			}
		}
	})
	proposed := `SELECT ` + summaryColumns + ` FROM scans WHERE id IN (SELECT id FROM scan_targets WHERE target = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?)
		ORDER BY created_at DESC, rowid DESC`
	for _, c := range []struct {
		name, target string
		want         int
	}{{"side-table-no-match", "192.0.2.1", 0}, {"side-table-match", "host5.lab", 20}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				rows, err := s.db.QueryContext(ctx, proposed, c.target, 20, 0)
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for rows.Next() {
					if _, err := scanRecord(rows); err != nil {
						b.Fatal(err)
					}
					got++
				}
				rows.Close()
				if got != c.want {
					b.Fatalf("%d rows", got)
				}
			}
		})
	}
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
