package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// BusyTimeout is how long a write waits for a lock another process holds
// on the database before it fails with a *FaultError of kind Locked.
const BusyTimeout = 5 * time.Second

// Kinds of storage fault a *FaultError names.
const (
	Locked   = "locked"
	ReadOnly = "read-only"
	Damaged  = "damaged"
	Full     = "full"
	IOError  = "i/o error"
)

// FaultError is a fault of the database's storage: locked by another
// process, read-only, damaged, on a full disk, or an I/O error. Its text
// names the file, the fault and what to do, for the model and the user.
type FaultError struct {
	Path string
	Op   string // what was being done, e.g. "record scan 0123abcd"
	Kind string // Locked, ReadOnly, Damaged, Full or IOError
	Err  error
}

func (e *FaultError) Error() string {
	var what, todo string
	switch e.Kind {
	case Locked:
		what = fmt.Sprintf("the database is locked by another process (waited %s)", BusyTimeout)
		todo = "another program holds a write lock on it (an sqlite3 shell in a transaction, a backup tool, another nmap-mcp); " +
			"end that, then try again: the server writes as soon as the lock is released, no restart needed"
	case ReadOnly:
		what = "the database or its folder is read-only"
		todo = "make the file, its -wal and -shm files and its folder writable again (remount the disk read-write, chattr -i, " +
			"fix the owner), or set --store / NMAP_MCP_STORE to a writable path and restart; the server writes as soon as it can, no restart needed"
	case Full:
		what = "the disk is full"
		todo = "free space on the disk that holds it; the server writes as soon as it can, no restart needed"
	case Damaged:
		what = "the database file is damaged"
		todo = fmt.Sprintf("records elsewhere in it can still be read; stop nmap-mcp, check it with `sqlite3 %s 'PRAGMA integrity_check'`, "+
			"then restore it from a backup, or recover what it holds with `sqlite3 %s .recover | sqlite3 %s.recovered` "+
			"and set --store / NMAP_MCP_STORE to the recovered file (keep the damaged one)", e.Path, e.Path, e.Path)
	default:
		what = "the disk reported an I/O error"
		todo = "check the disk (dmesg, smartctl) and its free space; the server tries again on the next write"
	}
	return fmt.Sprintf("scan store %s: %s: %s (%v); %s", e.Path, e.Op, what, e.Err, todo)
}

func (e *FaultError) Unwrap() error { return e.Err }

// Transient reports whether the fault can go away by itself (a lock
// released, a disk remounted or freed), so that a write is worth
// retrying; a damaged file needs a person.
func (e *FaultError) Transient() bool { return e.Kind != Damaged }

// faultKind classifies err as a storage fault, or "".
func faultKind(err error) string {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return Locked
		case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
			return ReadOnly
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return Damaged
		case sqlite3.SQLITE_FULL:
			return Full
		case sqlite3.SQLITE_IOERR:
			return IOError
		}
		return ""
	}
	switch {
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return ReadOnly
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return Full
	case errors.Is(err, syscall.EIO):
		return IOError
	}
	return ""
}

// fail wraps err from op: a storage fault as a *FaultError, anything else
// with the store's path. A connection that found the database read-only
// stays so (SQLite opens a file it cannot write read-only): the idle
// connections are dropped, so that writes work again once the fault goes.
func (s *Store) fail(op string, err error) error {
	kind := faultKind(err)
	if kind == "" {
		return fmt.Errorf("scan store %s: %s: %w", s.path, op, err)
	}
	if kind == ReadOnly {
		s.db.SetMaxIdleConns(0)
		s.db.SetMaxIdleConns(idleConns)
	}
	return &FaultError{Path: s.path, Op: op, Kind: kind, Err: err}
}

// MinFree is the free space on the database's disk below which Ready
// refuses a scan: room for its record and its raw XML (DefaultMaxXML).
const MinFree = 8 << 20

// idleConns is how many idle connections the pool keeps.
const idleConns = 2

// walLimit is the size (bytes) the write-ahead log is cut back to when
// it starts again after a checkpoint: a big write (an inventory ingest
// of a /16 writes hundreds of MB of log) does not keep its disk space.
const walLimit = 64 << 20

// Ready says whether a scan can be admitted now: the database file (and
// its -wal file) can be written, its disk has MinFree bytes free, and no
// other process holds its write lock for longer than BusyTimeout. Its error is a *FaultError. It is
// asked before a scan spends its client's budget or is audited, so that a
// fault known beforehand refuses the scan with nothing spent or written.
// It takes the write lock for an instant (BEGIN IMMEDIATE, ROLLBACK).
func (s *Store) Ready(ctx context.Context) error {
	op := "admit a scan"
	for _, p := range []string{s.path, s.path + "-wal"} {
		// access(2), not open(2): closing a descriptor of the database
		// would drop SQLite's POSIX locks on it.
		if err := syscall.Access(p, 2 /* W_OK */); err != nil && !errors.Is(err, syscall.ENOENT) {
			return &FaultError{Path: s.path, Op: op, Kind: ReadOnly, Err: &os.PathError{Op: "access", Path: p, Err: err}}
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(s.path), &st); err == nil && st.Bavail*uint64(st.Bsize) < MinFree {
		return &FaultError{Path: s.path, Op: op, Kind: Full, Err: fmt.Errorf("%d bytes free on its disk, fewer than the %d a scan's record may need: %w",
			st.Bavail*uint64(st.Bsize), MinFree, syscall.ENOSPC)}
	}
	err := s.lockable(ctx, op)
	var fe *FaultError
	if errors.As(err, &fe) && fe.Kind == ReadOnly {
		// A connection opened while the disk was read-only stays so;
		// fail dropped the idle ones: the file is writable now, so ask
		// a new connection.
		err = s.lockable(ctx, op)
	}
	return err
}

// lockable takes the write lock for an instant.
func (s *Store) lockable(ctx context.Context, op string) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.fail(op, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return s.fail(op, err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		return s.fail(op, err)
	}
	return nil
}

// writeTx runs fn in a write transaction, tried once more on a new
// connection when it fails as read-only (see exec).
func (s *Store) writeTx(ctx context.Context, fn func(*sql.Tx) error) error {
	try := func() error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Commit()
	}
	err := try()
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_READONLY {
		s.db.SetMaxIdleConns(0)
		s.db.SetMaxIdleConns(idleConns)
		err = try()
	}
	return err
}

// exec runs a write. A connection SQLite opened while the disk was
// read-only stays read-only after the disk is writable again: when the
// write fails so, the idle connections are dropped and it is tried once
// more, on a new connection.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := s.db.ExecContext(ctx, query, args...)
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_READONLY {
		s.db.SetMaxIdleConns(0)
		s.db.SetMaxIdleConns(idleConns)
		res, err = s.db.ExecContext(ctx, query, args...)
	}
	return res, err
}
