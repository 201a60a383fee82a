package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Keep is a retention rule: the newest Count finished scans, or those
// younger than Age. The zero Keep keeps everything.
type Keep struct {
	Count int
	Age   time.Duration
}

// ParseKeep reads store.keep: "" (everything), a count ("10000") or an
// age ("90d", "720h").
func ParseKeep(s string) (Keep, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Keep{}, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 {
			return Keep{}, fmt.Errorf("%q: a count must be at least 1", s)
		}
		return Keep{Count: n}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 1 {
			return Keep{Age: time.Duration(n) * 24 * time.Hour}, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= time.Hour {
		return Keep{Age: d}, nil
	}
	return Keep{}, fmt.Errorf("%q: give a count of scans (10000) or an age of at least an hour (90d, 720h)", s)
}

// Pruned says what Prune did.
type Pruned struct {
	XMLDropped, Deleted int64
}

// Prune applies k to the finished scans: those outside k lose their raw
// XML first (their decoded result, summary and record stay), and those
// outside twice k are deleted. Scans whose IDs are in protect (a watch's
// last baseline) are never touched. Running and queued scans never are.
func (s *Store) Prune(ctx context.Context, k Keep, protect []string, now time.Time) (Pruned, error) {
	var p Pruned
	if k == (Keep{}) {
		return p, nil
	}
	cut := func(scale int) (int64, bool, error) {
		if k.Age > 0 {
			return Millis(now.Add(-time.Duration(scale) * k.Age)), true, nil
		}
		var at int64
		err := s.db.QueryRowContext(ctx, `SELECT created_at FROM scans WHERE status NOT IN (?, ?, ?) ORDER BY created_at DESC LIMIT 1 OFFSET ?`,
			Queued, Running, PendingApproval, scale*k.Count).Scan(&at)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, false, nil
		}
		return at + 1, err == nil, err
	}
	notProtected, args := "", []any{}
	if len(protect) > 0 {
		notProtected = ` AND id NOT IN (?` + strings.Repeat(",?", len(protect)-1) + `)`
		for _, id := range protect {
			args = append(args, id)
		}
	}
	if at, ok, err := cut(2); err != nil {
		return p, s.fail("retention", err)
	} else if ok {
		res, err := s.exec(ctx, `DELETE FROM scans WHERE created_at < ? AND status NOT IN (?, ?, ?)`+notProtected,
			append([]any{at, Queued, Running, PendingApproval}, args...)...)
		if err != nil {
			return p, s.fail("retention: delete", err)
		}
		p.Deleted, _ = res.RowsAffected()
	}
	if at, ok, err := cut(1); err != nil {
		return p, s.fail("retention", err)
	} else if ok {
		res, err := s.exec(ctx, `UPDATE scans SET raw_xml = NULL WHERE created_at < ? AND status NOT IN (?, ?, ?) AND raw_xml IS NOT NULL`+notProtected,
			append([]any{at, Queued, Running, PendingApproval}, args...)...)
		if err != nil {
			return p, s.fail("retention: drop raw XML", err)
		}
		p.XMLDropped, _ = res.RowsAffected()
	}
	return p, nil
}
