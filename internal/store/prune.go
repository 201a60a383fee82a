package store

import (
	"context"
	"log/slog"
	"time"
)

// PruneEvery applies keep now and then every interval until ctx ends,
// logging what it did to log; a watch's baseline is kept whatever its
// age. The zero Keep keeps everything: it returns at once.
func (s *Store) PruneEvery(ctx context.Context, every time.Duration, keep Keep, log *slog.Logger) {
	if keep == (Keep{}) || every <= 0 {
		return
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		p, err := s.pruneNow(ctx, keep, time.Now())
		switch {
		case err != nil:
			log.Warn("retention (store.keep) failed", "err", err)
		case p.Deleted+p.XMLDropped > 0:
			log.Info("retention (store.keep)", "deleted", p.Deleted, "raw_xml_dropped", p.XMLDropped)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneNow applies keep at now, sparing every watch's baseline.
func (s *Store) pruneNow(ctx context.Context, keep Keep, now time.Time) (Pruned, error) {
	baselines, err := s.Baselines(ctx)
	if err != nil {
		return Pruned{}, err
	}
	return s.Prune(ctx, keep, baselines, now)
}
