package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// TouchIdentity records that the identity provider's person name held a
// valid token until validUntil (a later time than the one kept wins).
func (s *Store) TouchIdentity(ctx context.Context, name string, validUntil time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO identities(name, valid_until) VALUES(?, ?)
		ON CONFLICT(name) DO UPDATE SET valid_until = max(valid_until, excluded.valid_until)`, name, Millis(validUntil))
	if err != nil {
		return s.fail("record identity", err)
	}
	return nil
}

// IdentityValidUntil says until when name last held a valid token; false
// when the server has never seen the person.
func (s *Store) IdentityValidUntil(ctx context.Context, name string) (time.Time, bool, error) {
	var ms int64
	err := s.db.QueryRowContext(ctx, `SELECT valid_until FROM identities WHERE name = ?`, name).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, s.fail("read identity", err)
	}
	return FromMillis(ms), true, nil
}
