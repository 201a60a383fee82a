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
// The scheduler runs while the server runs. Runs missed while it was down
// are not replayed one by one: a watch that is overdue runs once, then
// keeps its interval (with up to 10% jitter, so that watches made together
// do not all scan at once).
package watches

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scan"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Config shapes the watches of a deployment.
type Config struct {
	// MinInterval is the shortest interval a watch may have (default
	// 15 min).
	MinInterval time.Duration
	// WebhookAllow lists the URL prefixes webhooks may post to; a webhook
	// outside them is refused when the watch is created.
	WebhookAllow []string
	// WebhookSecret keys the HMAC-SHA256 signature of each delivery.
	WebhookSecret string
	// WebhookOutcome, when set, is told how each delivery ended:
	// "delivered" or "failed" (for metrics).
	WebhookOutcome func(outcome string)
}

// Change is what a run found against its baseline; it is the body of a
// webhook delivery.
type Change struct {
	Watch    string       `json:"watch"`
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
	// Notify, when set, is told of each watch whose run found a change.
	Notify func(w *store.Watch)

	mu      sync.Mutex
	running map[string]bool
	wg      sync.WaitGroup
	wake    chan struct{}
}

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
	return &Service{store: st, scans: sc, cfg: cfg, log: log, hook: hook, running: map[string]bool{}, wake: make(chan struct{}, 1)}
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
// least MinInterval, its webhook inside the allowlist. The first run is
// due at once.
func (s *Service) Create(ctx context.Context, name string, req scan.Request, interval time.Duration, webhook string) (*store.Watch, error) {
	if !validName.MatchString(name) {
		return nil, &FieldError{"name", name, "must be 1-63 lowercase letters, digits, dots, hyphens or underscores, starting with a letter or digit"}
	}
	if interval < s.cfg.MinInterval {
		return nil, &FieldError{"interval_seconds", fmt.Sprint(int(interval.Seconds())),
			fmt.Sprintf("must be at least %s (watches.min_interval_seconds)", s.cfg.MinInterval)}
	}
	if webhook != "" {
		if err := s.allowWebhook(webhook); err != nil {
			return nil, err
		}
	}
	if err := s.scans.Validate(ctx, req); err != nil {
		return nil, fmt.Errorf("the watch's scan could never run: %w", err)
	}
	body, _ := json.Marshal(req)
	now := time.Now().UTC()
	w := &store.Watch{Name: name, Client: s.scans.ClientName(ctx), Request: body, Interval: interval, Webhook: webhook, Created: now, NextRun: now}
	if err := s.store.CreateWatch(ctx, w); err != nil {
		return nil, err
	}
	s.poke()
	return w, nil
}

// allowWebhook accepts an http(s) URL that starts with an allowed prefix.
func (s *Service) allowWebhook(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return &FieldError{"webhook", raw, "must be an http or https URL without credentials"}
	}
	for _, p := range s.cfg.WebhookAllow {
		if p != "" && strings.HasPrefix(raw, p) && (len(raw) == len(p) || strings.HasSuffix(p, "/") || strings.ContainsRune("/?", rune(raw[len(p)]))) {
			return nil
		}
	}
	allowed := "none are allowed"
	if len(s.cfg.WebhookAllow) > 0 {
		allowed = "allowed: " + strings.Join(s.cfg.WebhookAllow, ", ")
	}
	return &FieldError{"webhook", raw, "is not under a URL prefix in watches.webhook_allow (" + allowed + "), so results cannot be sent there"}
}

// List returns the caller's watches (every client's for an admin).
func (s *Service) List(ctx context.Context) ([]*store.Watch, error) {
	return s.store.ListWatches(ctx, s.scans.Viewer(ctx))
}

// Get returns one of the caller's watches.
func (s *Service) Get(ctx context.Context, name string) (*store.Watch, error) {
	return s.store.GetWatch(ctx, name, s.scans.Viewer(ctx))
}

// Delete removes one of the caller's watches.
func (s *Service) Delete(ctx context.Context, name string) error {
	return s.store.DeleteWatch(ctx, name, s.scans.Viewer(ctx))
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
	s.mu.Lock()
	if s.running[w.Name] {
		s.mu.Unlock()
		return
	}
	s.running[w.Name] = true
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.running, w.Name)
			s.mu.Unlock()
			s.poke()
		}()
		s.runOnce(ctx, w)
	}()
}

// runOnce scans, compares with the baseline, and records the run.
func (s *Service) runOnce(ctx context.Context, w *store.Watch) {
	log := s.log.With("watch", w.Name)
	var req scan.Request
	if err := json.Unmarshal(w.Request, &req); err != nil {
		log.Error("watch request unreadable; skipping a run", "err", err)
		w.NextRun = time.Now().Add(w.Interval)
		_ = s.store.SaveWatchRun(context.WithoutCancel(ctx), w)
		return
	}
	sctx := scans.WithClient(ctx, w.Client)
	now := time.Now().UTC()
	w.LastRun, w.Runs = now, w.Runs+1
	// The next run keeps the interval from now, with up to 10% jitter;
	// a watch that was overdue runs once, not once per missed interval.
	w.NextRun = now.Add(w.Interval + time.Duration(rand.Int64N(int64(w.Interval/10)+1)))
	// Record the next run now, so that the scheduler does not see the
	// watch as due for as long as this run lasts.
	if err := s.store.SaveWatchRun(context.WithoutCancel(ctx), w); err != nil {
		log.Error("could not record a watch run", "err", err)
	}
	sc, err := s.scans.Submit(sctx, req, scans.Options{Detach: true})
	if err != nil {
		w.LastScan, w.LastStatus = "", "refused: "+err.Error()
		log.Warn("watch run refused", "err", err)
		_ = s.store.SaveWatchRun(context.WithoutCancel(ctx), w)
		return
	}
	select {
	case <-sc.Done():
	case <-ctx.Done():
		// The server is stopping; the scan's own record says how it ended.
		<-sc.Done()
	}
	rec := sc.Snapshot().Record
	w.LastScan, w.LastStatus = rec.ID, rec.Status
	var change *Change
	if rec.Status == store.Done && rec.Result != nil {
		if w.Baseline != "" {
			if base, err := s.store.Get(context.WithoutCancel(ctx), w.Baseline, ""); err == nil && base.Result != nil {
				if d := results.Compare(base.Result, rec.Result); !d.Empty() {
					change = &Change{Watch: w.Name, Scan: rec.ID, Baseline: w.Baseline, At: now, Targets: rec.Targets, Diff: d}
					w.LastChange, _ = json.Marshal(change)
					w.LastChangeAt = now
				}
			}
		}
		w.Baseline = rec.ID
	}
	if err := s.store.SaveWatchRun(context.WithoutCancel(ctx), w); err != nil {
		log.Error("could not record a watch run", "err", err)
	}
	if change == nil {
		return
	}
	log.Info("watch found a change", "scan", rec.ID, "changes", results.DiffText(change.Diff))
	if s.Notify != nil {
		s.Notify(w)
	}
	if w.Webhook != "" {
		s.hook.send(w.Webhook, change)
	}
}

// Targets is what a watch scans, read from its request.
func Targets(w *store.Watch) string {
	var req scan.Request
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
