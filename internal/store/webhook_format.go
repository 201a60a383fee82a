package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// A watch's webhook format (generic JSON, Slack, Teams) is kept in a side
// table, made on first use, keyed by the watch's immutable ID: the
// watches table and its migrations are left as they are. A deleted
// watch's row stays (IDs are never reused) and is harmless.
const webhookFormatTable = `CREATE TABLE IF NOT EXISTS watch_webhook_format (
	watch_id TEXT PRIMARY KEY,
	format TEXT NOT NULL
) WITHOUT ROWID`

// SetWebhookFormat records the format the watch id's webhook posts in;
// "" or "json" is the default (the row is removed).
func (s *Store) SetWebhookFormat(ctx context.Context, id, format string) error {
	if _, err := s.exec(ctx, webhookFormatTable); err != nil {
		return s.fail("webhook format", err)
	}
	var err error
	if format == "" || format == "json" {
		_, err = s.exec(ctx, `DELETE FROM watch_webhook_format WHERE watch_id = ?`, id)
	} else {
		_, err = s.exec(ctx, `INSERT INTO watch_webhook_format (watch_id, format) VALUES (?, ?)
			ON CONFLICT(watch_id) DO UPDATE SET format = excluded.format`, id, format)
	}
	if err != nil {
		return s.fail(fmt.Sprintf("webhook format of watch %s", id), err)
	}
	return nil
}

// WebhookFormat is the format the watch id's webhook posts in ("" for
// the default, generic JSON).
func (s *Store) WebhookFormat(ctx context.Context, id string) (string, error) {
	var format string
	err := s.db.QueryRowContext(ctx, `SELECT format FROM watch_webhook_format WHERE watch_id = ?`, id).Scan(&format)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	case err != nil && strings.Contains(err.Error(), "no such table"):
		return "", nil // no watch ever had a format
	case err != nil:
		return "", s.fail(fmt.Sprintf("webhook format of watch %s", id), err)
	}
	return format, nil
}
