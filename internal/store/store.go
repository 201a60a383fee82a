// Package store keeps the scan history in an embedded, pure-Go SQLite
// database (modernc.org/sqlite, no cgo), in WAL mode with versioned
// migrations. A scan is written when it starts (running) and updated when it
// ends. Scans whose server died mid-scan are marked interrupted at the next
// open. A corrupt or unwritable database is an error at open: it is never
// reset or replaced.
//
// Storage faults while the server runs are a *FaultError naming the
// file, the fault and what to do; none loses a record already written,
// and the store heals by itself when the fault goes (no reopen):
//
//   - Locked by another process (a write lock held by an sqlite3 shell,
//     a backup, another nmap-mcp): reads go on (WAL); a write waits up to
//     BusyTimeout (5 s) and then fails as Locked; a write waiting when
//     the lock is released completes at once (about 30 ms measured).
//   - Read-only (the file or its folder: a read-only remount, chattr +i,
//     an owner change): files SQLite already holds open stay writable,
//     so Ready checks the file with access(2) and refuses admissions; a
//     connection SQLite opens during the fault is read-only and stays so,
//     so a write that meets one drops the idle connections and tries once
//     more (exec). At open, a read-only database is refused.
//   - Damaged in a page: the header is checked at open; the records in
//     the damaged page (and a list that crosses it) fail as Damaged, with
//     how to check (PRAGMA integrity_check), restore or recover the file;
//     other records read and writes elsewhere in the file work; at open,
//     running records a damaged page holds are left as they are, so the
//     server still starts. A damaged file is never repaired or replaced
//     here: that needs a person and a restart.
//   - A full disk or an I/O error: writes fail as Full or IOError and
//     work again once space returns; Ready refuses admissions while less
//     than MinFree (8 MiB) is free.
//
// What a scan meets during a fault (internal/scans): Ready is asked
// before the scan spends its budget or is audited, so a fault known then
// refuses it with nothing recorded, spent or run; the end of a running
// scan is retried until the fault goes (bounded, scans.FinalRetry).
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/owner"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// Statuses a scan record can have.
const (
	Queued      = "queued"
	Running     = "running"
	Done        = "done"
	Failed      = "failed"
	TimedOut    = "timed-out"
	Cancelled   = "cancelled"
	Interrupted = "interrupted"
	// PendingApproval is a scan waiting for a person's yes (approval
	// rules): it holds no queue place. Its record is stored so that a
	// server that dies meanwhile leaves it interrupted, not unknown;
	// the record the scan begins with when it is answered replaces it.
	PendingApproval = "pending-approval"
	// Denied is a scan a person said no to, or that no one approved in
	// time; nothing ran.
	Denied = "denied"
)

// Statuses lists every status, for validation and schemas.
var Statuses = []string{PendingApproval, Queued, Running, Done, Failed, TimedOut, Cancelled, Interrupted, Denied}

// Finished reports whether status is final.
func Finished(status string) bool {
	return status != Running && status != Queued && status != PendingApproval
}

// Limits are the sandbox limits a scan ran under.
type Limits struct {
	CPUs           float64 `json:"cpus"`
	MemoryBytes    int64   `json:"memory_bytes"`
	Pids           int64   `json:"pids"`
	TimeoutSeconds int     `json:"timeout_seconds"`
	Network        string  `json:"network"`
	// Fenced is true when the kernel kept the scan to its targets;
	// AllowedAddresses is how many addresses the fence let it reach.
	Fenced           bool   `json:"fenced"`
	AllowedAddresses uint64 `json:"allowed_addresses,omitempty"`
	// Unfenced says why a scan was not fenced.
	Unfenced string `json:"unfenced,omitempty"`
	// Seccomp names the seccomp profile of the container.
	Seccomp string `json:"seccomp,omitempty"`
	// Profile describes the container: user, capabilities, network,
	// limits, seccomp.
	Profile string `json:"profile"`
	// Shards are the address blocks of each worker of a scan split into
	// shards (see package shard), one entry per shard; empty when it ran
	// whole.
	Shards []string `json:"shards,omitempty"`
}

// Record is one scan as stored.
type Record struct {
	ID       string          `json:"id"`
	Status   string          `json:"status"`
	Targets  string          `json:"targets"` // space-separated, as passed to nmap
	ScanType string          `json:"scan_type"`
	Request  json.RawMessage `json:"request"` // the arguments as sent
	Argv     []string        `json:"argv"`
	ImageID  string          `json:"image_id"`
	ImageTag string          `json:"image_tag"`
	Limits   Limits          `json:"limits"`
	Client   string          `json:"client"`

	CreatedAt time.Time `json:"created_at"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	ExitCode  int       `json:"exit_code"`
	Error     string    `json:"error"`

	RawXML          []byte          `json:"-"`
	RawXMLTruncated bool            `json:"raw_xml_truncated"`
	Result          *results.Result `json:"result"`
	// HostsUp and OpenPorts summarise Result; List fills them without
	// loading Result.
	HostsUp   int `json:"hosts_up"`
	OpenPorts int `json:"open_ports"`
	// Notes say what the scan left out or changed from the request, e.g.
	// NSE scripts the policy dropped and why.
	Notes []string `json:"notes"`
	// Approval says who approved the scan (or denied it), when, under
	// which rule and for which arguments; nil when no rule asked.
	Approval *approval.Grant `json:"approval,omitempty"`

	OwnerPID  int    `json:"-"`
	OwnerHost string `json:"-"`
}

// Duration is how long the scan ran, or has run so far.
func (r *Record) Duration() time.Duration {
	switch {
	case r.StartedAt.IsZero():
		return 0
	case r.EndedAt.IsZero():
		return time.Since(r.StartedAt)
	default:
		return r.EndedAt.Sub(r.StartedAt)
	}
}

// Store is an open scan database.
type Store struct {
	db     *sql.DB
	path   string
	maxXML int
}

// DefaultPath is $XDG_STATE_HOME/nmap-mcp/scans.db, or
// ~/.local/state/nmap-mcp/scans.db.
func DefaultPath() (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the scan store: no XDG_STATE_HOME and no home directory: %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "nmap-mcp", "scans.db"), nil
}

// DefaultMaxXML bounds the raw XML kept per scan.
const DefaultMaxXML = 4 << 20

// Open opens (creating if need be) the database at path, checks it, brings
// its schema up to date and marks scans of dead servers interrupted.
// maxXML bounds the raw XML kept per scan (0: DefaultMaxXML).
func Open(ctx context.Context, path string, maxXML int) (*Store, error) {
	if maxXML <= 0 {
		maxXML = DefaultMaxXML
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("scan store %s: cannot create its folder: %w; set --store or NMAP_MCP_STORE to a writable path", path, err)
	}
	if err := private(path); err != nil {
		return nil, err
	}
	dsn := fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=journal_size_limit(%d)", path, BusyTimeout.Milliseconds(), walLimit)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("scan store %s: %w", path, err)
	}
	db.SetMaxIdleConns(idleConns)
	s := &Store{db: db, path: path, maxXML: maxXML}
	if err := s.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.markInterrupted(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// private creates the database file 0600 before SQLite does (SQLite gives
// its -wal and -shm files the database file's mode), and takes group and
// other access away from an existing database and its -wal and -shm: the
// history holds who scanned what.
func private(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("scan store %s: %w; set --store or NMAP_MCP_STORE to a writable path", path, err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, st.Mode().Perm()&0o700); err != nil {
				return fmt.Errorf("scan store %s: make it private: %w", p, err)
			}
		}
	}
	return nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// check reads the database's header and schema: a file that is not a
// SQLite database is refused and left untouched. It does not read the
// whole file (PRAGMA quick_check would, and start-up must not grow with
// the history); damage further in is reported by the query that meets it.
func (s *Store) check(ctx context.Context) error {
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n); err != nil {
		return fmt.Errorf("scan store %s is not a readable SQLite database (%v); it was left untouched: move it aside or set --store / NMAP_MCP_STORE to another path", s.path, err)
	}
	return nil
}

// migrations are applied in order; the schema version is their count.
var migrations = []string{
	`CREATE TABLE scans (
		id TEXT PRIMARY KEY,
		status TEXT NOT NULL,
		targets TEXT NOT NULL,
		scan_type TEXT NOT NULL,
		request TEXT NOT NULL,
		argv TEXT NOT NULL,
		image_id TEXT NOT NULL,
		image_tag TEXT NOT NULL,
		limits TEXT NOT NULL,
		client TEXT NOT NULL,
		owner_pid INTEGER NOT NULL,
		owner_host TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		started_at INTEGER NOT NULL DEFAULT 0,
		ended_at INTEGER NOT NULL DEFAULT 0,
		exit_code INTEGER NOT NULL DEFAULT 0,
		error TEXT NOT NULL DEFAULT '',
		raw_xml BLOB,
		raw_xml_truncated INTEGER NOT NULL DEFAULT 0,
		result TEXT
	);
	CREATE INDEX scans_created_at ON scans(created_at);
	CREATE INDEX scans_status ON scans(status);`,
	// Summaries, so that lists never load full results; notes such as
	// the NSE scripts the policy dropped.
	`ALTER TABLE scans ADD COLUMN hosts_up INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE scans ADD COLUMN open_ports INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE scans ADD COLUMN notes TEXT NOT NULL DEFAULT '[]';
	UPDATE scans SET hosts_up = coalesce(json_extract(result, '$.stats.hosts_up'), 0),
		open_ports = (SELECT count(*) FROM json_each(result, '$.hosts') h, json_each(h.value, '$.ports') p
			WHERE json_extract(p.value, '$.state') IN ('open', 'open|filtered'))
		WHERE result IS NOT NULL;
	CREATE INDEX scans_client ON scans(client, created_at);`,
	// Watches: scheduled rescans that report what changed.
	`CREATE TABLE watches (
		name TEXT PRIMARY KEY,
		client TEXT NOT NULL,
		request TEXT NOT NULL,
		interval_s INTEGER NOT NULL,
		webhook TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		next_run INTEGER NOT NULL,
		last_run INTEGER NOT NULL DEFAULT 0,
		last_scan TEXT NOT NULL DEFAULT '',
		last_status TEXT NOT NULL DEFAULT '',
		baseline TEXT NOT NULL DEFAULT '',
		last_change TEXT NOT NULL DEFAULT '',
		last_change_at INTEGER NOT NULL DEFAULT 0,
		runs INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX watches_next_run ON watches(next_run);`,
	// Watches get an immutable id; names are unique per client (watches.go).
	watchesByID,
	// Who approved a scan a rule asked for (or denied it): JSON of an
	// approval.Grant, '' when no rule asked.
	`ALTER TABLE scans ADD COLUMN approval TEXT NOT NULL DEFAULT '';`,
	// One row per target token of each scan, kept by triggers, so that
	// list_scans' target filter reads an index, not every row (targets
	// are validated tokens: no quotes or backslashes, as json_each needs).
	`CREATE TABLE scan_targets (
		target TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		id TEXT NOT NULL,
		PRIMARY KEY (target, created_at, id)
	) WITHOUT ROWID;
	CREATE TRIGGER scan_targets_insert AFTER INSERT ON scans BEGIN
		INSERT OR IGNORE INTO scan_targets SELECT value, NEW.created_at, NEW.id
			FROM json_each(` + targetTokens("NEW.targets") + `) WHERE value <> '';
	END;
	CREATE TRIGGER scan_targets_delete AFTER DELETE ON scans BEGIN
		DELETE FROM scan_targets WHERE id = OLD.id AND created_at = OLD.created_at
			AND target IN (SELECT value FROM json_each(` + targetTokens("OLD.targets") + `));
	END;
	INSERT OR IGNORE INTO scan_targets SELECT j.value, s.created_at, s.id
		FROM scans s, json_each(` + targetTokens("s.targets") + `) j WHERE j.value <> '';`,
	// People signed by the identity provider: until when each last held a
	// valid token, so that their watches keep their standing across
	// restarts (identities.go).
	`CREATE TABLE identities (
		name TEXT PRIMARY KEY,
		valid_until INTEGER NOT NULL
	) WITHOUT ROWID;`,
}

// targetTokens is the SQL of a JSON array of the lower-cased,
// space-separated tokens of the targets column expression col (an empty
// array when they would not make valid JSON, so that no insert fails).
func targetTokens(col string) string {
	arr := `'["' || replace(lower(` + col + `), ' ', '","') || '"]'`
	return `CASE WHEN json_valid(` + arr + `) THEN ` + arr + ` ELSE '[]' END`
}

func (s *Store) migrate(ctx context.Context) error {
	fail := func(err error) error {
		if strings.Contains(strings.ToLower(err.Error()), "readonly") || strings.Contains(strings.ToLower(err.Error()), "read-only") {
			return fmt.Errorf("scan store %s is not writable (%v); fix its permissions or set --store / NMAP_MCP_STORE", s.path, err)
		}
		return s.fail("migrate schema", err)
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fail(err)
	}
	var version int
	err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&version)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fail(err)
		}
	} else if err != nil {
		return fail(err)
	}
	if version > len(migrations) {
		return fmt.Errorf("scan store %s has schema version %d, newer than this nmap-mcp knows (%d); use a newer nmap-mcp or another --store", s.path, version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fail(err)
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fail(err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v+1); err != nil {
			tx.Rollback()
			return fail(err)
		}
		if err := tx.Commit(); err != nil {
			return fail(err)
		}
	}
	return nil
}

// markInterrupted closes the records of scans whose server died. A
// record in a damaged page is left as it is (reading it reports the
// damage): a damaged page must not keep the server from starting and
// serving the rest of the history.
func (s *Store) markInterrupted(ctx context.Context) error {
	// Row ids from the status index alone, then each record on its own,
	// so that one damaged page hides only the records it holds.
	rows, err := s.db.QueryContext(ctx, `SELECT rowid FROM scans WHERE status IN (?, ?, ?)`, Queued, Running, PendingApproval)
	if err != nil {
		if faultKind(err) == Damaged {
			return nil
		}
		return s.fail("find running scans", err)
	}
	var open []int64
	for rows.Next() {
		var rowid int64
		if err := rows.Scan(&rowid); err != nil {
			rows.Close()
			return fmt.Errorf("scan store %s: %w", s.path, err)
		}
		open = append(open, rowid)
	}
	if err := rows.Err(); err != nil && faultKind(err) != Damaged {
		rows.Close()
		return s.fail("find running scans", err)
	}
	rows.Close()
	for _, rowid := range open {
		var id, host string
		var pid int
		err := s.db.QueryRowContext(ctx, `SELECT id, owner_pid, owner_host FROM scans WHERE rowid = ?`, rowid).Scan(&id, &pid, &host)
		switch {
		case errors.Is(err, sql.ErrNoRows) || faultKind(err) == Damaged:
			continue
		case err != nil:
			return s.fail("find running scans", err)
		case !owner.Orphaned(pid, host):
			continue
		}
		if _, err := s.exec(ctx, `UPDATE scans SET status = ?, ended_at = ?,
			error = iif(status = ?, 'the server stopped while this scan waited for approval; nothing ran: ask again', 'the server stopped while this scan was queued or running')
			WHERE rowid = ? AND status IN (?, ?, ?)`,
			Interrupted, time.Now().UnixMilli(), PendingApproval, rowid, Queued, Running, PendingApproval); err != nil {
			if faultKind(err) == Damaged {
				continue
			}
			return s.fail(fmt.Sprintf("mark %s interrupted", id), err)
		}
	}
	return nil
}
