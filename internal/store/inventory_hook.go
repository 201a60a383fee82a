package store

import "database/sql"

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
