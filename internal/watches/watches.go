// Package watches runs scheduled rescans that say what changed. A watch is
// a name, a scan request (the nmap_scan parameters), an interval and an
// optional webhook; it lives in the store and survives restarts. Each run
// is an ordinary scan through the scans service — same scope check,
// budgets, queue and audit, as the watch's creator — and is compared with
// the watch's baseline (its latest successful run): hosts that appeared or
// went, ports that opened or closed, services, products or versions that
// changed. A change is told to the Notify callback (MCP resource
// subscribers) and, when the watch has one, to its webhook: a signed POST,
// retried with backoff, never blocking scans.
//
// A watch has an immutable ID; its name is unique among its client's
// watches only. Runs, saves, baselines and the set of runs under way are
// keyed by ID and client: a run whose watch was deleted meanwhile is
// cancelled and dropped, never saved into a watch made later under the
// same name. Before every run (and before every webhook delivery) the
// watch's client must still exist and its webhook must still be allowed;
// otherwise the watch is paused, saying why.
//
// The scheduler runs while the server runs. Runs missed while it was down
// are not replayed one by one: a watch that is overdue runs once, then
// keeps its interval (with up to 10% jitter, so that watches made together
// do not all scan at once).
package watches

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Config shapes the watches of a deployment.
type Config struct {
	// MinInterval is the shortest interval a watch may have (default
	// 15 min).
	MinInterval time.Duration
	// MaxPerClient bounds the watches one client may have (0: 50).
	MaxPerClient int
	// WebhookAllow lists the URLs webhooks may post to or under (see
	// CheckWebhook); a webhook outside them is refused when the watch is
	// made, and pauses the watch at its next run.
	WebhookAllow []string
	// WebhookSecret keys the HMAC-SHA256 signature of each delivery.
	WebhookSecret string
	// WebhookOutcome, when set, is told how each delivery ended:
	// "delivered" or "failed" (for metrics).
	WebhookOutcome func(outcome string)
	// ClientExists, when set, says whether a client (a token's name) still
	// exists; a watch whose client does not is paused at its next run
	// instead of scanning. Nil: every client exists.
	ClientExists func(client string) bool
}

// Change is what a run found against its baseline; it is the body of a
// webhook delivery.
type Change struct {
	Watch    string       `json:"watch"`
	WatchID  string       `json:"watch_id"`
	Scan     string       `json:"scan_id"`
	Baseline string       `json:"baseline_scan_id"`
	At       time.Time    `json:"at"`
	Targets  string       `json:"targets"`
	Diff     results.Diff `json:"changes"`
}

// Service keeps and runs the watches.
type Service struct {
	store *store.Store
	scans *scans.Service
	cfg   Config
	log   *slog.Logger
	hook  *deliverer
	// Notify, when set, is told of each watch whose run found a change,
	// and of each watch paused.
	Notify func(w *store.Watch)

	// createMu serialises creations, so that the count per client holds.
	createMu sync.Mutex

	mu sync.Mutex
	// running holds the runs under way, by watch: one at most per watch.
	running map[runKey]*inflight
	wg      sync.WaitGroup
	wake    chan struct{}
}

// runKey names a watch by what cannot change: its ID and its client.
type runKey struct{ id, client string }

// inflight is one run under way; stop cancels it with a cause, done is
// closed when it has ended.
type inflight struct {
	stop context.CancelCauseFunc
	done chan struct{}
}

// errDeleted is the cause of a run stopped because its watch was deleted.
var errDeleted = errors.New("the watch was deleted")

// New returns the service; Run schedules.
func New(st *store.Store, sc *scans.Service, cfg Config, log *slog.Logger) *Service {
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 15 * time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hook := newDeliverer(cfg.WebhookSecret, log)
	hook.outcome = cfg.WebhookOutcome
	return &Service{store: st, scans: sc, cfg: cfg, log: log, hook: hook, running: map[runKey]*inflight{}, wake: make(chan struct{}, 1)}
}

// FieldError is a watch argument that is not acceptable.
type FieldError struct {
	Field, Value, Rule string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Rule)
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Create checks and stores a watch for the caller of ctx: its scan must be
// one that could run now (scope, techniques, scripts), its interval at
// least MinInterval, its webhook inside the allowlist (it is stored and
// sent as re-serialised by CheckWebhook). The name must be new among the
// caller's own watches only. The first run is due at once.
func (s *Service) Create(ctx context.Context, name string, req scanargs.Request, interval time.Duration, webhook string) (*store.Watch, error) {
	if !validName.MatchString(name) {
		return nil, &FieldError{"name", name, "must be 1-63 lowercase letters, digits, dots, hyphens or underscores, starting with a letter or digit"}
	}
	if interval < s.cfg.MinInterval {
		return nil, &FieldError{"interval_seconds", fmt.Sprint(int(interval.Seconds())),
			fmt.Sprintf("must be at least %s (watches.min_interval_seconds)", s.cfg.MinInterval)}
	}
	if webhook != "" {
		canon, err := CheckWebhook(webhook, s.cfg.WebhookAllow)
		if err != nil {
			return nil, err
		}
		webhook = canon
	}
	if err := s.scans.Validate(ctx, req); err != nil {
		return nil, fmt.Errorf("the watch's scan could never run: %w", err)
	}
	client := s.scans.ClientName(ctx)
	s.createMu.Lock()
	defer s.createMu.Unlock()
	mine, err := s.store.ListWatches(ctx, client)
	if err != nil {
		return nil, err
	}
	if max := cmp.Or(s.cfg.MaxPerClient, 50); len(mine) >= max {
		return nil, &FieldError{"name", name, fmt.Sprintf("would be watch number %d of client %q, and at most %d are allowed (watches.max_per_client); delete one first", len(mine)+1, client, max)}
	}
	body, _ := json.Marshal(req)
	now := time.Now().UTC()
	w := &store.Watch{Name: name, Client: client, Request: body, Interval: interval, Webhook: webhook, Created: now, NextRun: now}
	if err := s.store.CreateWatch(ctx, w); err != nil {
		return nil, err
	}
	s.poke()
	return w, nil
}

// List returns the caller's watches (every client's for an admin).
func (s *Service) List(ctx context.Context) ([]*store.Watch, error) {
	return s.store.ListWatches(ctx, s.scans.Viewer(ctx))
}

// Ref is how the caller of ctx names watch w: its name for the caller's
// own, CLIENT/NAME for another client's (an admin's view).
func (s *Service) Ref(ctx context.Context, w *store.Watch) string {
	if w.Client == s.scans.ClientName(ctx) {
		return w.Name
	}
	return w.Client + "/" + w.Name
}

// Get returns one watch the caller may see: ref is NAME for one of the
// caller's own watches, or CLIENT/NAME (an admin may name any client's;
// another client's watch is not found, like an unknown one).
func (s *Service) Get(ctx context.Context, ref string) (*store.Watch, error) {
	client, name := s.scans.ClientName(ctx), ref
	if c, n, ok := strings.Cut(ref, "/"); ok {
		if viewer := s.scans.Viewer(ctx); viewer != "" && viewer != c {
			return nil, &store.NotFoundError{ID: ref, What: "watch"}
		}
		client, name = c, n
	}
	if client == "" || name == "" {
		return nil, &store.NotFoundError{ID: ref, What: "watch"}
	}
	return s.store.GetWatch(ctx, name, client)
}

// Delete removes one of the caller's watches (see Get for ref) and stops
// its run under way, if any: the run's scan is cancelled and nothing of it
// is saved into any watch. It waits (up to 10 s) for the run to end.
func (s *Service) Delete(ctx context.Context, ref string) error {
	w, err := s.Get(ctx, ref)
	if err != nil {
		return err
	}
	return s.DeleteWatch(ctx, w)
}

// DeleteWatch removes w (as read from the store) and stops its run under
// way; the CLI, which sees every client's watches, uses it directly.
func (s *Service) DeleteWatch(ctx context.Context, w *store.Watch) error {
	if err := s.store.DeleteWatch(ctx, w.ID, w.Client); err != nil {
		return err
	}
	s.stop(runKey{w.ID, w.Client}, errDeleted)
	return nil
}

// stop cancels the run under way of watch k, if any, and waits (up to
// 10 s) for it to end.
func (s *Service) stop(k runKey, cause error) {
	s.mu.Lock()
	run := s.running[k]
	s.mu.Unlock()
	if run == nil {
		return
	}
	run.stop(cause)
	select {
	case <-run.done:
	case <-time.After(10 * time.Second):
		s.log.Warn("watches: a deleted watch's run did not end within 10 s", "watch_id", k.id)
	}
}

// Resume lets one of the caller's paused watches run again (see Get for
// ref), once its client exists and its webhook is allowed.
func (s *Service) Resume(ctx context.Context, ref string) (*store.Watch, error) {
	w, err := s.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	return s.ResumeWatch(ctx, w)
}

// ResumeWatch lets w run again from now, if nothing would pause it again.
func (s *Service) ResumeWatch(ctx context.Context, w *store.Watch) (*store.Watch, error) {
	if reason := s.refusal(w); reason != "" {
		return nil, fmt.Errorf("watch %s cannot resume: %s", w.Name, reason)
	}
	if err := s.store.ResumeWatch(ctx, w.ID, w.Client, time.Now()); err != nil {
		return nil, err
	}
	s.poke()
	return s.store.WatchByID(ctx, w.ID, w.Client)
}

// refusal says why w may not run now, or "".
func (s *Service) refusal(w *store.Watch) string {
	if s.cfg.ClientExists != nil && !s.cfg.ClientExists(w.Client) {
		return fmt.Sprintf("its client %q no longer exists (its token was removed from http.tokens), and a watch scans as its client", w.Client)
	}
	if w.Webhook != "" {
		if _, err := CheckWebhook(w.Webhook, s.cfg.WebhookAllow); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				return "its webhook " + w.Webhook + " " + fe.Rule
			}
			return "its webhook " + w.Webhook + ": " + err.Error()
		}
	}
	return ""
}

// pause stops w from running, saying why, in the store and the log, and
// tells subscribers.
func (s *Service) pause(ctx context.Context, w *store.Watch, reason string) {
	now := time.Now().UTC()
	if err := s.store.PauseWatch(context.WithoutCancel(ctx), w.ID, w.Client, reason, now); err != nil {
		s.log.Error("watches: could not pause a watch", "watch", w.Name, "client", w.Client, "err", err)
		return
	}
	w.Paused, w.PausedAt = reason, now
	s.log.Warn("watch paused", "watch", w.Name, "client", w.Client, "watch_id", w.ID, "reason", reason)
	if s.Notify != nil {
		s.Notify(w)
	}
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run schedules the watches until ctx ends, then waits for the runs and
// deliveries under way.
func (s *Service) Run(ctx context.Context) {
	defer func() { s.wg.Wait(); s.hook.wait() }()
	for {
		due, err := s.store.DueWatches(ctx, time.Now())
		if err != nil && ctx.Err() == nil {
			s.log.Warn("watches: read due watches", "err", err)
		}
		for _, w := range due {
			s.start(ctx, w)
		}
		wait := time.Minute
		if next, err := s.store.NextWatchRun(ctx); err == nil && !next.IsZero() {
			wait = min(max(time.Until(next), 50*time.Millisecond), time.Minute)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// start runs w in the background unless it is running already.
func (s *Service) start(ctx context.Context, w *store.Watch) {
	k := runKey{w.ID, w.Client}
	runCtx, stop := context.WithCancelCause(ctx)
	run := &inflight{stop: stop, done: make(chan struct{})}
	s.mu.Lock()
	if s.running[k] != nil {
		s.mu.Unlock()
		stop(nil)
		return
	}
	s.running[k] = run
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.running, k)
			s.mu.Unlock()
			stop(nil)
			close(run.done)
			s.poke()
		}()
		s.runOnce(runCtx, w)
	}()
}

// gone reports whether err says the watch no longer exists (the run is
// then dropped: nothing of it may reach any watch).
func (s *Service) gone(w *store.Watch, err error) bool {
	var nf *store.NotFoundError
	if errors.As(err, &nf) {
		s.log.Info("watch deleted during its run; the run is dropped", "watch", w.Name, "client", w.Client, "watch_id", w.ID)
		return true
	}
	if err != nil {
		s.log.Error("could not record a watch run", "watch", w.Name, "err", err)
	}
	return false
}

// runOnce checks that w may still run, scans as its client, compares with
// its baseline (read as its client) and records the run into w's ID.
func (s *Service) runOnce(ctx context.Context, w *store.Watch) {
	log := s.log.With("watch", w.Name, "client", w.Client)
	keep := context.WithoutCancel(ctx)
	if reason := s.refusal(w); reason != "" {
		s.pause(ctx, w, reason)
		return
	}
	var req scanargs.Request
	if err := json.Unmarshal(w.Request, &req); err != nil {
		log.Error("watch request unreadable; skipping a run", "err", err)
		w.NextRun = time.Now().Add(w.Interval)
		_ = s.store.SaveWatchRun(keep, w)
		return
	}
	now := time.Now().UTC()
	w.LastRun, w.Runs = now, w.Runs+1
	// The next run keeps the interval from now, with up to 10% jitter;
	// a watch that was overdue runs once, not once per missed interval.
	w.NextRun = now.Add(w.Interval + time.Duration(rand.Int64N(int64(w.Interval/10)+1)))
	// Record the next run now, so that the scheduler does not see the
	// watch as due for as long as this run lasts; a watch deleted since
	// it was read is not run.
	if err := s.store.SaveWatchRun(keep, w); s.gone(w, err) {
		return
	}
	if ctx.Err() != nil {
		return
	}
	sctx := scans.WithClient(ctx, w.Client)
	sc, err := s.scans.Submit(sctx, req, scans.Options{Detach: true})
	if err != nil {
		w.LastScan, w.LastStatus = "", "refused: "+err.Error()
		log.Warn("watch run refused", "err", err)
		_ = s.store.SaveWatchRun(keep, w)
		return
	}
	select {
	case <-sc.Done():
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), errDeleted) {
			// The watch is gone: stop its scan (the scan's record says
			// so) and drop the run.
			s.scans.Cancel(scans.WithClient(keep, w.Client), sc.ID)
			<-sc.Done()
			log.Info("watch deleted during its run; its scan was cancelled and the run dropped", "scan", sc.ID)
			return
		}
		// The server is stopping; the scan's own record says how it ended.
		<-sc.Done()
	}
	if errors.Is(context.Cause(ctx), errDeleted) {
		return
	}
	rec := sc.Snapshot().Record
	w.LastScan, w.LastStatus = rec.ID, rec.Status
	var change *Change
	if rec.Status == store.Done && rec.Result != nil {
		if w.Baseline != "" {
			// The baseline is read as the watch's client: only its own
			// scans can be compared with.
			if base, err := s.store.Get(keep, w.Baseline, w.Client); err == nil && base.Result != nil {
				if d := results.Compare(base.Result, rec.Result); !d.Empty() {
					change = &Change{Watch: w.Name, WatchID: w.ID, Scan: rec.ID, Baseline: w.Baseline, At: now, Targets: rec.Targets, Diff: d}
					w.LastChange, _ = json.Marshal(change)
					w.LastChangeAt = now
				}
			}
		}
		w.Baseline = rec.ID
	}
	if err := s.store.SaveWatchRun(keep, w); s.gone(w, err) || change == nil {
		return
	}
	// The client or the webhook may have been revoked during the run.
	cur, err := s.store.WatchByID(keep, w.ID, w.Client)
	if s.gone(w, err) || err != nil {
		return
	}
	if cur.Paused != "" {
		log.Info("watch paused during its run; its change is recorded, not sent", "scan", rec.ID, "paused", cur.Paused)
		return
	}
	if reason := s.refusal(cur); reason != "" {
		s.pause(ctx, cur, reason)
		return
	}
	log.Info("watch found a change", "scan", rec.ID, "changes", results.DiffText(change.Diff))
	if s.Notify != nil {
		s.Notify(cur)
	}
	if cur.Webhook != "" {
		// Sent as re-serialised by the check (a webhook stored before
		// webhooks were canonical is sent in its checked form too).
		if to, err := CheckWebhook(cur.Webhook, s.cfg.WebhookAllow); err == nil {
			s.hook.send(to, s.webhookBody(keep, cur, change), change, func() bool { return s.deliverable(cur) })
		}
	}
}

// deliverable reports whether a delivery for w may still be attempted:
// its watch exists, is not paused, and its client and webhook are allowed.
func (s *Service) deliverable(w *store.Watch) bool {
	cur, err := s.store.WatchByID(context.Background(), w.ID, w.Client)
	return err == nil && cur.Paused == "" && cur.Webhook == w.Webhook && s.refusal(cur) == ""
}

// Targets is what a watch scans, read from its request.
func Targets(w *store.Watch) string {
	var req scanargs.Request
	_ = json.Unmarshal(w.Request, &req)
	return req.Targets
}

// ChangeText is a watch's latest change as text, or "" when none was
// seen: the scans compared and what changed between them.
func ChangeText(w *store.Watch) string {
	var c Change
	if len(w.LastChange) == 0 || json.Unmarshal(w.LastChange, &c) != nil {
		return ""
	}
	return fmt.Sprintf("from scan %s to scan %s:\n%s", c.Baseline, c.Scan, results.DiffText(c.Diff))
}
