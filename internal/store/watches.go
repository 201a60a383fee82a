package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Watch is a scheduled rescan that reports what changed. A watch is
// identified by its ID, fixed when it is made; its name is unique among
// its client's watches only. Every run, save and baseline is keyed by ID
// and client, so a run of a watch that was deleted (and perhaps made again
// under the same name, by the same or another client) is never saved into
// another watch.
type Watch struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Client   string          `json:"client"`
	Request  json.RawMessage `json:"request"` // the scan's arguments, as nmap_scan takes them
	Interval time.Duration   `json:"-"`
	Webhook  string          `json:"webhook,omitempty"`
	Created  time.Time       `json:"created_at"`
	NextRun  time.Time       `json:"next_run"`
	LastRun  time.Time       `json:"last_run"`
	// LastScan and LastStatus are the latest run's scan and its status.
	LastScan   string `json:"last_scan,omitempty"`
	LastStatus string `json:"last_status,omitempty"`
	// Baseline is the latest scan that finished done: the next run is
	// compared with it.
	Baseline string `json:"baseline,omitempty"`
	// LastChange is the latest non-empty diff (JSON), and when it was seen.
	LastChange   json.RawMessage `json:"last_change,omitempty"`
	LastChangeAt time.Time       `json:"last_change_at"`
	Runs         int             `json:"runs"`
	// Paused, when set, says why the watch does not run (its client's
	// token was removed, its webhook is no longer allowed); PausedAt is
	// when it was paused.
	Paused   string    `json:"paused,omitempty"`
	PausedAt time.Time `json:"paused_at"`
}

// WatchExistsError refuses a second watch of the same name for a client.
type WatchExistsError struct{ Name, Client string }

func (e *WatchExistsError) Error() string {
	return fmt.Sprintf("you already have a watch named %q; pick another name or delete it first", e.Name)
}

// AmbiguousWatchError is a name looked up without a client that several
// clients' watches have.
type AmbiguousWatchError struct {
	Name    string
	Clients []string
}

func (e *AmbiguousWatchError) Error() string {
	return fmt.Sprintf("several clients have a watch named %q (%s); name the client (--client)", e.Name, strings.Join(e.Clients, ", "))
}

// watchesByID is the migration that gives watches an immutable id and
// makes names unique per client (they were the primary key). A baseline or
// latest scan that is not a scan of the watch's own client can only come
// from the old keying by name (a watch deleted while its run was under way
// and made again by another client): it is forgotten, with the change
// computed from it, so no client keeps another's hosts and ports.
const watchesByID = `CREATE TABLE watches_by_id (
		id TEXT PRIMARY KEY,
		client TEXT NOT NULL,
		name TEXT NOT NULL,
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
		runs INTEGER NOT NULL DEFAULT 0,
		paused TEXT NOT NULL DEFAULT '',
		paused_at INTEGER NOT NULL DEFAULT 0,
		UNIQUE (client, name)
	);
	INSERT INTO watches_by_id (id, client, name, request, interval_s, webhook, created_at, next_run, last_run, last_scan, last_status,
		baseline, last_change, last_change_at, runs)
		SELECT lower(hex(randomblob(8))), client, name, request, interval_s, webhook, created_at, next_run, last_run, last_scan, last_status,
			baseline, last_change, last_change_at, runs FROM watches;
	UPDATE watches_by_id SET baseline = '', last_change = '', last_change_at = 0
		WHERE baseline != '' AND NOT EXISTS (SELECT 1 FROM scans WHERE scans.id = watches_by_id.baseline AND scans.client = watches_by_id.client);
	UPDATE watches_by_id SET last_scan = '', last_status = '', last_change = '', last_change_at = 0
		WHERE last_scan != '' AND NOT EXISTS (SELECT 1 FROM scans WHERE scans.id = watches_by_id.last_scan AND scans.client = watches_by_id.client);
	DROP TABLE watches;
	ALTER TABLE watches_by_id RENAME TO watches;
	CREATE INDEX watches_due ON watches(paused, next_run);`

const watchColumns = `id, client, name, request, interval_s, webhook, created_at, next_run, last_run, last_scan, last_status, baseline,
	last_change, last_change_at, runs, paused, paused_at`

// newWatchID is 16 random hex digits.
func newWatchID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make watch id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// CreateWatch stores a new watch, giving it an ID when it has none. A
// watch of the same name for the same client is a *WatchExistsError;
// other clients' names do not matter.
func (s *Store) CreateWatch(ctx context.Context, w *Watch) error {
	if w.ID == "" {
		id, err := newWatchID()
		if err != nil {
			return err
		}
		w.ID = id
	}
	_, err := s.exec(ctx, `INSERT INTO watches (`+watchColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		w.ID, w.Client, w.Name, string(w.Request), int64(w.Interval/time.Second), w.Webhook, Millis(w.Created), Millis(w.NextRun), Millis(w.LastRun),
		w.LastScan, w.LastStatus, w.Baseline, string(w.LastChange), Millis(w.LastChangeAt), w.Runs, w.Paused, Millis(w.PausedAt))
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") || strings.Contains(err.Error(), "PRIMARY KEY") {
			return &WatchExistsError{Name: w.Name, Client: w.Client}
		}
		return s.fail(fmt.Sprintf("create watch %s", w.Name), err)
	}
	return nil
}

// SaveWatchRun records a run (times, scan, baseline, change, count) into
// the watch of w's ID and client. When that watch is gone it changes
// nothing and returns a *NotFoundError: the run must be dropped.
func (s *Store) SaveWatchRun(ctx context.Context, w *Watch) error {
	res, err := s.exec(ctx, `UPDATE watches SET next_run=?, last_run=?, last_scan=?, last_status=?, baseline=?, last_change=?,
		last_change_at=?, runs=? WHERE id=? AND client=?`, Millis(w.NextRun), Millis(w.LastRun), w.LastScan, w.LastStatus, w.Baseline, string(w.LastChange),
		Millis(w.LastChangeAt), w.Runs, w.ID, w.Client)
	if err != nil {
		return s.fail(fmt.Sprintf("save watch %s", w.Name), err)
	}
	return s.affected(res, w.Name)
}

func (s *Store) affected(res sql.Result, name string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return s.fail(fmt.Sprintf("watch %s", name), err)
	}
	if n == 0 {
		return &NotFoundError{ID: name, What: "watch"}
	}
	return nil
}

// GetWatch returns client's watch of that name. With client "" (the CLI,
// which sees every client's) the name must be unique across clients, else
// it is an *AmbiguousWatchError.
func (s *Store) GetWatch(ctx context.Context, name, client string) (*Watch, error) {
	var (
		ws  []*Watch
		err error
	)
	if client == "" {
		ws, err = s.watches(ctx, `WHERE name = ? ORDER BY client`, name)
	} else {
		ws, err = s.watches(ctx, `WHERE client = ? AND name = ?`, client, name)
	}
	if err != nil {
		return nil, err
	}
	switch len(ws) {
	case 0:
		return nil, &NotFoundError{ID: name, What: "watch"}
	case 1:
		return ws[0], nil
	default:
		e := &AmbiguousWatchError{Name: name}
		for _, w := range ws {
			e.Clients = append(e.Clients, w.Client)
		}
		return nil, e
	}
}

// WatchByID returns the watch of that ID if client owns it ("" for any).
func (s *Store) WatchByID(ctx context.Context, id, client string) (*Watch, error) {
	ws, err := s.watches(ctx, `WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 || client != "" && ws[0].Client != client {
		return nil, &NotFoundError{ID: id, What: "watch"}
	}
	return ws[0], nil
}

// ListWatches returns client's watches (every client's for ""), by name.
func (s *Store) ListWatches(ctx context.Context, client string) ([]*Watch, error) {
	if client == "" {
		return s.watches(ctx, `ORDER BY name, client`)
	}
	return s.watches(ctx, `WHERE client = ? ORDER BY name`, client)
}

// DueWatches returns the watches not paused whose next run is at or
// before now.
func (s *Store) DueWatches(ctx context.Context, now time.Time) ([]*Watch, error) {
	return s.watches(ctx, `WHERE paused = '' AND next_run <= ? ORDER BY next_run`, Millis(now))
}

// NextWatchRun is the earliest next run of a watch not paused (zero: none).
func (s *Store) NextWatchRun(ctx context.Context) (time.Time, error) {
	var at sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT min(next_run) FROM watches WHERE paused = ''`).Scan(&at); err != nil {
		return time.Time{}, s.fail("next watch run", err)
	}
	if !at.Valid {
		return time.Time{}, nil
	}
	return FromMillis(at.Int64), nil
}

// DeleteWatch removes the watch of that ID if client owns it (any for "").
func (s *Store) DeleteWatch(ctx context.Context, id, client string) error {
	w, err := s.WatchByID(ctx, id, client)
	if err != nil {
		return err
	}
	res, err := s.exec(ctx, `DELETE FROM watches WHERE id = ? AND client = ?`, w.ID, w.Client)
	if err != nil {
		return s.fail(fmt.Sprintf("delete watch %s", w.Name), err)
	}
	return s.affected(res, w.Name)
}

// PauseWatch stops the watch of that ID and client from running, saying
// why; a watch already paused keeps its first reason.
func (s *Store) PauseWatch(ctx context.Context, id, client, reason string, at time.Time) error {
	res, err := s.exec(ctx, `UPDATE watches SET paused = CASE WHEN paused = '' THEN ? ELSE paused END,
		paused_at = CASE WHEN paused = '' THEN ? ELSE paused_at END WHERE id = ? AND client = ?`, reason, Millis(at), id, client)
	if err != nil {
		return s.fail(fmt.Sprintf("pause watch %s", id), err)
	}
	return s.affected(res, id)
}

// PauseClientWatches pauses every watch of client that runs, saying why,
// and returns how many it paused.
func (s *Store) PauseClientWatches(ctx context.Context, client, reason string, at time.Time) (int, error) {
	res, err := s.exec(ctx, `UPDATE watches SET paused = ?, paused_at = ? WHERE client = ? AND paused = ''`, reason, Millis(at), client)
	if err != nil {
		return 0, s.fail(fmt.Sprintf("pause the watches of %s", client), err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// ResumeWatch lets a paused watch run again, from now.
func (s *Store) ResumeWatch(ctx context.Context, id, client string, now time.Time) error {
	res, err := s.exec(ctx, `UPDATE watches SET paused = '', paused_at = 0, next_run = min(next_run, ?) WHERE id = ? AND client = ?`,
		Millis(now), id, client)
	if err != nil {
		return s.fail(fmt.Sprintf("resume watch %s", id), err)
	}
	return s.affected(res, id)
}

// Baselines are the scans watches compare with: retention keeps them.
func (s *Store) Baselines(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT baseline FROM watches WHERE baseline != ''`)
	if err != nil {
		return nil, s.fail("baselines", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (s *Store) watches(ctx context.Context, where string, args ...any) ([]*Watch, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+watchColumns+` FROM watches `+where, args...)
	if err != nil {
		return nil, s.fail("watches", err)
	}
	defer rows.Close()
	out := []*Watch{}
	for rows.Next() {
		var (
			w                                               Watch
			req, change                                     string
			interval, created, next, last, changeAt, paused int64
		)
		if err := rows.Scan(&w.ID, &w.Client, &w.Name, &req, &interval, &w.Webhook, &created, &next, &last, &w.LastScan, &w.LastStatus,
			&w.Baseline, &change, &changeAt, &w.Runs, &w.Paused, &paused); err != nil {
			return nil, s.fail("watches", err)
		}
		w.Request, w.Interval = json.RawMessage(req), time.Duration(interval)*time.Second
		w.Created, w.NextRun, w.LastRun, w.LastChangeAt, w.PausedAt = FromMillis(created), FromMillis(next), FromMillis(last), FromMillis(changeAt), FromMillis(paused)
		if change != "" {
			w.LastChange = json.RawMessage(change)
		}
		out = append(out, &w)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("watches", err)
	}
	return out, nil
}
