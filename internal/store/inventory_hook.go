package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// DB is the store's database handle, for packages that keep their own
// tables in the same file (internal/inventory: the inventory lives
// beside the history, so a backup of the file holds both, and retention
// of scans, which touches only the scans table, never loses it). Such a
// package creates and migrates its own tables, and must not write to the
// store's.
func (s *Store) DB() *sql.DB { return s.db }

// Fault wraps err from op as the store's own writes do: a storage fault
// (locked, read-only, damaged, full, I/O) as a *FaultError naming the
// file and what to do, anything else with the store's path.
func (s *Store) Fault(op string, err error) error { return s.fail(op, err) }

// ScanRef is a scan's place in the history, for packages that follow it
// (the inventory ingests every finished scan).
type ScanRef struct {
	ID        string
	Status    string
	CreatedAt time.Time
}

// ScansAfter lists up to limit scans created after the scan (createdAt,
// id) in that order, oldest first (by created_at, then id), with their
// status: a follower's keyset page. The zero time and "" start at the
// beginning. It reads the created_at index, not the records.
func (s *Store) ScansAfter(ctx context.Context, createdAt time.Time, id string, limit int) ([]ScanRef, error) {
	if limit <= 0 {
		limit = 100
	}
	at := Millis(createdAt)
	rows, err := s.db.QueryContext(ctx, `SELECT id, status, created_at FROM scans
		WHERE created_at >= ? AND (created_at > ? OR id > ?) ORDER BY created_at, id LIMIT ?`, at, at, id, limit)
	if err != nil {
		return nil, s.fail("list scans to follow", err)
	}
	defer rows.Close()
	var out []ScanRef
	for rows.Next() {
		var r ScanRef
		var created int64
		if err := rows.Scan(&r.ID, &r.Status, &created); err != nil {
			return nil, s.fail("list scans to follow", err)
		}
		r.CreatedAt = FromMillis(created)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list scans to follow", err)
	}
	return out, nil
}

// ScanStatus returns the status of the scan id ("" when it is not in
// the history any more).
func (s *Store) ScanStatus(ctx context.Context, id string) (string, error) {
	var status string
	err := s.db.QueryRowContext(ctx, `SELECT status FROM scans WHERE id = ?`, id).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", s.fail(fmt.Sprintf("status of %s", id), err)
	}
	return status, nil
}
