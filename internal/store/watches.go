package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Watch is a scheduled rescan that reports what changed.
type Watch struct {
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
}

// WatchExistsError refuses a second watch of the same name.
type WatchExistsError struct{ Name string }

func (e *WatchExistsError) Error() string {
	return fmt.Sprintf("a watch named %q exists; pick another name or delete it first", e.Name)
}

const watchColumns = `name, client, request, interval_s, webhook, created_at, next_run, last_run, last_scan, last_status, baseline,
	last_change, last_change_at, runs`

// CreateWatch stores a new watch.
func (s *Store) CreateWatch(ctx context.Context, w *Watch) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO watches (`+watchColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		w.Name, w.Client, string(w.Request), int64(w.Interval/time.Second), w.Webhook, ms(w.Created), ms(w.NextRun), ms(w.LastRun),
		w.LastScan, w.LastStatus, w.Baseline, string(w.LastChange), ms(w.LastChangeAt), w.Runs)
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") || strings.Contains(err.Error(), "PRIMARY KEY") {
			return &WatchExistsError{Name: w.Name}
		}
		return fmt.Errorf("scan store %s: create watch %s: %w", s.path, w.Name, err)
	}
	return nil
}

// SaveWatchRun records a run: times, scan, baseline, change, count.
func (s *Store) SaveWatchRun(ctx context.Context, w *Watch) error {
	_, err := s.db.ExecContext(ctx, `UPDATE watches SET next_run=?, last_run=?, last_scan=?, last_status=?, baseline=?, last_change=?,
		last_change_at=?, runs=? WHERE name=?`, ms(w.NextRun), ms(w.LastRun), w.LastScan, w.LastStatus, w.Baseline, string(w.LastChange),
		ms(w.LastChangeAt), w.Runs, w.Name)
	if err != nil {
		return fmt.Errorf("scan store %s: save watch %s: %w", s.path, w.Name, err)
	}
	return nil
}

// GetWatch returns the named watch if client may see it ("" for any).
func (s *Store) GetWatch(ctx context.Context, name, client string) (*Watch, error) {
	ws, err := s.watches(ctx, `WHERE name = ?`, name)
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 || client != "" && ws[0].Client != client {
		return nil, &NotFoundError{ID: name, What: "watch"}
	}
	return ws[0], nil
}

// ListWatches returns client's watches (every client's for ""), by name.
func (s *Store) ListWatches(ctx context.Context, client string) ([]*Watch, error) {
	if client == "" {
		return s.watches(ctx, `ORDER BY name`)
	}
	return s.watches(ctx, `WHERE client = ? ORDER BY name`, client)
}

// DueWatches returns the watches whose next run is at or before now.
func (s *Store) DueWatches(ctx context.Context, now time.Time) ([]*Watch, error) {
	return s.watches(ctx, `WHERE next_run <= ? ORDER BY next_run`, ms(now))
}

// NextWatchRun is the earliest next run of any watch (zero: none).
func (s *Store) NextWatchRun(ctx context.Context) (time.Time, error) {
	var at sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT min(next_run) FROM watches`).Scan(&at); err != nil {
		return time.Time{}, fmt.Errorf("scan store %s: next watch run: %w", s.path, err)
	}
	if !at.Valid {
		return time.Time{}, nil
	}
	return fromMS(at.Int64), nil
}

// DeleteWatch removes the named watch if client may (any for "").
func (s *Store) DeleteWatch(ctx context.Context, name, client string) error {
	if _, err := s.GetWatch(ctx, name, client); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM watches WHERE name = ?`, name); err != nil {
		return fmt.Errorf("scan store %s: delete watch %s: %w", s.path, name, err)
	}
	return nil
}

// Baselines are the scans watches compare with: retention keeps them.
func (s *Store) Baselines(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT baseline FROM watches WHERE baseline != ''`)
	if err != nil {
		return nil, fmt.Errorf("scan store %s: baselines: %w", s.path, err)
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
		return nil, fmt.Errorf("scan store %s: watches: %w", s.path, err)
	}
	defer rows.Close()
	out := []*Watch{}
	for rows.Next() {
		var (
			w                                       Watch
			req, change                             string
			interval, created, next, last, changeAt int64
		)
		if err := rows.Scan(&w.Name, &w.Client, &req, &interval, &w.Webhook, &created, &next, &last, &w.LastScan, &w.LastStatus,
			&w.Baseline, &change, &changeAt, &w.Runs); err != nil {
			return nil, fmt.Errorf("scan store %s: watches: %w", s.path, err)
		}
		w.Request, w.Interval = json.RawMessage(req), time.Duration(interval)*time.Second
		w.Created, w.NextRun, w.LastRun, w.LastChangeAt = fromMS(created), fromMS(next), fromMS(last), fromMS(changeAt)
		if change != "" {
			w.LastChange = json.RawMessage(change)
		}
		out = append(out, &w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("scan store %s: watches: %w", s.path, err)
	}
	return out, nil
}
