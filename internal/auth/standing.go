package auth

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Records keeps until when each person last held a valid token
// (*store.Store satisfies it).
type Records interface {
	TouchIdentity(ctx context.Context, name string, validUntil time.Time) error
	IdentityValidUntil(ctx context.Context, name string) (time.Time, bool, error)
}

// Standing says whether a provider's person still stands: they held a
// valid token within the window. A person removed at the provider gets no
// new token, so their standing ends a window after their last one
// expired; their watches then pause, as a removed static token's do. The
// times are kept in Records (so a restart keeps them), written at most
// once a minute per person; the cache of recent writes is bounded.
type Standing struct {
	rec    Records
	window time.Duration
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	written map[string]time.Time // person → valid-until last written
}

// maxWritten bounds the cache of recent writes (not the people known).
const maxWritten = 10000

// NewStanding returns the standing of people kept in rec.
func NewStanding(rec Records, window time.Duration, log *slog.Logger) *Standing {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Standing{rec: rec, window: window, log: log, now: time.Now, written: map[string]time.Time{}}
}

// Seen records a person's valid token.
func (s *Standing) Seen(ctx context.Context, id Identity) {
	s.mu.Lock()
	last, ok := s.written[id.Name]
	if ok && id.Expires.Sub(last) < time.Minute {
		s.mu.Unlock()
		return
	}
	if len(s.written) >= maxWritten {
		clear(s.written)
	}
	s.written[id.Name] = id.Expires
	s.mu.Unlock()
	if err := s.rec.TouchIdentity(context.WithoutCancel(ctx), id.Name, id.Expires); err != nil {
		s.log.Warn("cannot record a person's standing", "client", id.Name, "err", err)
		s.mu.Lock()
		delete(s.written, id.Name)
		s.mu.Unlock()
	}
}

// Holds says whether name held a valid token within the window. A person
// never seen, or one whose record cannot be read, does not stand.
func (s *Standing) Holds(ctx context.Context, name string) bool {
	until, ok, err := s.rec.IdentityValidUntil(ctx, name)
	if err != nil {
		s.log.Warn("cannot read a person's standing", "client", name, "err", err)
		return false
	}
	return ok && s.now().Before(until.Add(s.window))
}
