package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// CatchUpWait is how long an answer (find_hosts, the web view) waits for
// the scans finished since the inventory last looked: what is not
// ingested by then is the background follower's, and an ingest cut short
// is done again in full (Ingest).
const CatchUpWait = 2 * time.Second

// followPage is how many scans CatchUp reads from the history at once;
// followBatch how many Follow ingests per call.
const (
	followPage  = 200
	followBatch = 100
)

// CatchUp ingests the scans of the history that finished since it last
// looked, oldest first, at most max of them (0: no bound): the scans it
// saw unfinished before and have finished since, then those created
// since. It follows the history itself, so every finished scan is
// ingested whoever ran it (the server, a watch, a CLI command in another
// process) and whenever (one that finished while no server ran is
// ingested at the next call). It returns how many scans it ingested.
// One catch-up runs at a time; a caller waits for its turn only as long
// as ctx allows.
func (inv *Inventory) CatchUp(ctx context.Context, max int) (int, error) {
	select {
	case inv.following <- struct{}{}:
		defer func() { <-inv.following }()
	case <-ctx.Done():
		return 0, fmt.Errorf("inventory: another catch-up is under way: %w", context.Cause(ctx))
	}
	n := 0
	room := func() bool { return max <= 0 || n < max }
	// Scans seen unfinished.
	rows, err := inv.db.QueryContext(ctx, `SELECT scan_id FROM inv_pending`)
	if err != nil {
		return n, inv.fault("follow", err)
	}
	var pending []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return n, inv.fault("follow", err)
		}
		pending = append(pending, id)
	}
	rows.Close()
	for _, id := range pending {
		if !room() {
			return n, nil
		}
		status, err := inv.st.ScanStatus(ctx, id)
		if err != nil {
			return n, err
		}
		if status != "" && !store.Finished(status) {
			continue
		}
		if status != "" {
			if ok, err := inv.ingestID(ctx, id); err != nil {
				return n, err
			} else if ok {
				n++
			}
		}
		if _, err := inv.db.ExecContext(ctx, `DELETE FROM inv_pending WHERE scan_id = ?`, id); err != nil {
			return n, inv.fault("follow", err)
		}
	}
	// Scans created since the last look.
	var at int64
	var after string
	if err := inv.db.QueryRowContext(ctx, `SELECT created_at, scan_id FROM inv_follow`).Scan(&at, &after); err != nil {
		return n, inv.fault("follow", err)
	}
	for room() {
		refs, err := inv.st.ScansAfter(ctx, store.FromMillis(at), after, followPage)
		if err != nil {
			return n, err
		}
		for _, r := range refs {
			if !room() {
				break
			}
			if store.Finished(r.Status) {
				if ok, err := inv.ingestID(ctx, r.ID); err != nil {
					return n, err
				} else if ok {
					n++
				}
			} else if _, err := inv.db.ExecContext(ctx, `INSERT OR IGNORE INTO inv_pending (scan_id) VALUES (?)`, r.ID); err != nil {
				return n, inv.fault("follow", err)
			}
			at, after = store.Millis(r.CreatedAt), r.ID
			if _, err := inv.db.ExecContext(ctx, `UPDATE inv_follow SET created_at = ?, scan_id = ?`, at, after); err != nil {
				return n, inv.fault("follow", err)
			}
		}
		if len(refs) < followPage {
			break
		}
	}
	return n, nil
}

// ingestID ingests one finished scan of the history unless it was
// ingested before; false when there was nothing to ingest.
func (inv *Inventory) ingestID(ctx context.Context, id string) (bool, error) {
	var one int
	// (complete: an ingest stopped part-way is done again.)
	err := inv.db.QueryRowContext(ctx, `SELECT 1 FROM inv_scans WHERE scan_id = ? AND complete = 1`, id).Scan(&one)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return false, inv.fault("follow", err)
	}
	rec, err := inv.st.Get(ctx, id, "")
	var nf *store.NotFoundError
	if errors.As(err, &nf) {
		return false, nil // deleted by retention meanwhile
	}
	if err != nil {
		return false, err
	}
	got, err := inv.IngestRecord(ctx, rec)
	if err != nil {
		return false, err
	}
	return got.Scan != "" && !got.Already, nil
}

// Follow keeps the inventory up to date until ctx ends: it catches up
// with the history every interval, and sweeps (marks gone what was not
// seen for GoneAfter) every sweepEvery. Errors are logged to log.
func (inv *Inventory) Follow(ctx context.Context, every, sweepEvery time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if every <= 0 {
		every = 5 * time.Second
	}
	if sweepEvery <= 0 {
		sweepEvery = time.Hour
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	lastSweep := time.Time{} // the first sweep after the first catch-up
	// Not at start-up: the first catch-up waits one interval, so that a
	// server answers tools/list before the inventory reads the history
	// (a tool call catches up by itself).
	select {
	case <-ctx.Done():
		return
	case <-tick.C:
	}
	for {
		// In batches, so that a long backfill (a history from before the
		// inventory) gives way to other writers between them.
		for ctx.Err() == nil {
			n, err := inv.CatchUp(ctx, followBatch)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("inventory: catching up with the scan history failed", "err", err)
				}
				break
			}
			if n > 0 {
				log.Debug("inventory: ingested finished scans", "scans", n)
			}
			if n < followBatch {
				break
			}
		}
		if time.Since(lastSweep) >= sweepEvery {
			lastSweep = time.Now()
			if sw, err := inv.Sweep(ctx, time.Now()); err != nil && ctx.Err() == nil {
				log.Warn("inventory sweep failed", "err", err)
			} else if sw.Hosts+sw.Ports+sw.Changes > 0 {
				log.Info("inventory: "+sw.String(), "gone_after", inv.cfg.GoneAfter.String(), "changes_keep", inv.cfg.ChangesKeep.String())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
