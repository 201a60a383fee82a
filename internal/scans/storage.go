package scans

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Storage faults (the history database locked, read-only, damaged or on
// a full disk; the audit trail's disk full or its folder read-only) and
// what a scan meets:
//
//   - Before admission, the store and the trail are asked whether they
//     can be written (storageReady). A fault found then refuses the scan
//     with the fault's error (naming the file, the fault and what to do):
//     nothing is recorded, audited, spent or run.
//   - A fault that appears between that check and the admission's writes
//     refuses the scan too, with nothing run: if the audit line was
//     written and the record was not, an "ended failed" line follows it,
//     and the client's budget is spent.
//   - A fault at the end of a scan does not lose its end: the audit line
//     and the final record are retried with backoff for up to
//     FinalRetry; meanwhile the scan stays live (get_scan shows it). Only
//     if the fault outlasts that is the end given up (logged): the record
//     stays running until the next start marks it interrupted, and the
//     trail's open scan is closed the same way.

// FinalRetry bounds how long the end of a scan (its audit line and final
// record) is retried while storage is faulty.
const FinalRetry = 2 * time.Minute

// storageReady asks the store and the audit trail, when they can say,
// whether a scan's admission can be written now.
func (s *Service) storageReady(ctx context.Context) error {
	if s.d.Store == nil {
		return nil
	}
	if err := s.d.Store.Ready(ctx); err != nil {
		return fmt.Errorf("scan not run, nothing recorded or spent: %w", err)
	}
	if a, ok := s.d.Audit.(interface{ Ready(context.Context) error }); ok {
		if err := a.Ready(ctx); err != nil {
			return fmt.Errorf("scan not run, nothing recorded or spent: %w", err)
		}
	}
	return nil
}

// transient reports whether err says it may go away by itself.
func transient(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient()
}

// retry calls write until it succeeds, fails with an error that is not
// transient, or bound has passed (or ctx ends), waiting 100 ms and then
// twice as long each time, up to 5 s. It returns the last error and how
// many attempts were made.
func retry(ctx context.Context, bound time.Duration, write func(context.Context) error) (int, error) {
	deadline := time.Now().Add(bound)
	wait := 100 * time.Millisecond
	for n := 1; ; n++ {
		err := write(ctx)
		if err == nil || !transient(err) || time.Now().Add(wait).After(deadline) {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, err
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}
