// Package scans owns every scan from request to final record. One call
// goes: validate (scan) → policy check (scope, scripts, pinning) → a place
// in the queue and the client's share → spend the client's budget → admit
// (record + audit) → run the container through a Runner → decode nmap's
// XML as it streams → finalise the record and the audit trail. One
// goroutine owns a scan's mutable state; callers get immutable snapshots
// (Get, List) and typed events (queued, started, progress, host done, log,
// finished). The MCP layer and the CLI talk only to this service, and to
// results for rendering.
//
// How a container is run is the Runner's business (executor.Runner: the
// Docker runner today); the lifecycle logic here is tested against a fake
// runner, without an engine.
package scans

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Checker is the deployment's policy: it refuses a plan or returns it
// pinned to vetted addresses, and spends a client's budget; *policy.Policy
// is one.
type Checker interface {
	Check(ctx context.Context, plan *scanargs.Plan) (*scanargs.Plan, error)
	Spend(client string, addresses uint64) error
}

// Auditor keeps the audit trail: one record when a scan is admitted and
// one when it ends; *audit.Log is one.
type Auditor interface {
	Admitted(ctx context.Context, r *store.Record) error
	Ended(ctx context.Context, r *store.Record) error
}

// Meter counts scans for metrics; any method may be a no-op.
type Meter interface {
	ScanStarted(scanType string)
	ScanFinished(scanType, status string, d time.Duration)
	ContainerStarted(latency time.Duration)
}

// Config bounds the service.
type Config struct {
	// Sandbox holds the container limits, network and instance label.
	Sandbox sandbox.Options
	// MaxAddresses bounds addresses per scan after CIDR expansion.
	MaxAddresses uint64
	// MaxOutput bounds the bytes kept per output stream (raw XML).
	MaxOutput int
	// Limits bound the decoded result (hosts, ports, NSE output kept).
	Limits results.Limits
	// Concurrency is how many scans run at once (default 1).
	Concurrency int
	// QueueSize is how many more may wait (0: none).
	QueueSize int
	// MaxQueueWait bounds the time a scan waits for a slot (0: none).
	MaxQueueWait time.Duration
	// PerClient bounds one client's running plus queued scans (0: half of
	// Concurrency+QueueSize, at least 1).
	PerClient int
	// Client names stdio and CLI callers (default "local").
	Client string
	// Sharding splits a scan of many addresses into workers (see package
	// shard); the zero value never splits. A split scan holds one queue
	// place and runs at most Sharding.Shards containers or Jobs.
	Sharding shard.Config
}

// Deps are what the service runs scans with. Store is required; Runner
// too, except for a service that only reads the history (the CLI's scans
// commands); the others may be nil.
type Deps struct {
	Runner executor.Runner
	Image  images.Info
	Store  *store.Store
	Audit  Auditor
	Policy Checker
	Meter  Meter
	Log    *slog.Logger
	// Advice, when set, adds to a failed scan's error what to change and
	// where (the edge knows the flags, keys and tool arguments).
	Advice func(error) string
	// Ready, when set, is asked before each scan is admitted (after its
	// arguments are validated) and before each quiet run: its error
	// refuses the call with nothing recorded or run (the engine is not
	// answering: the error says what to do), and the image it returns
	// replaces Image. It lets a server start before its engine does and
	// work as soon as the engine answers.
	Ready func(ctx context.Context) (images.Info, error)
	// ApprovalRules say which scans need a person's yes (nil or empty:
	// none); Approvals keeps the questions (see approval.go).
	ApprovalRules *approval.Rules
	Approvals     *approval.Store
}

// Service admits, queues, runs and records scans.
type Service struct {
	cfg Config
	d   Deps
	q   *Queue

	bg       context.Context // parent of detached scans
	bgCancel context.CancelFunc
	wg       sync.WaitGroup

	mu    sync.Mutex
	live  map[string]*Scan
	share map[string]int // running + queued scans per client

	idxMu    sync.Mutex
	scriptDB *policy.ScriptIndex

	imgMu sync.Mutex
	image images.Info // Deps.Image, then what Deps.Ready returned last
}

// New returns a service; call Close when done.
func New(cfg Config, d Deps) *Service {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	cfg.QueueSize = max(cfg.QueueSize, 0)
	if cfg.PerClient <= 0 {
		cfg.PerClient = max((cfg.Concurrency+cfg.QueueSize)/2, 1)
	}
	if cfg.Client == "" {
		cfg.Client = "local"
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	bg, cancel := context.WithCancel(context.Background())
	return &Service{cfg: cfg, d: d, q: NewQueue(cfg.Concurrency, cfg.QueueSize), bg: bg, bgCancel: cancel,
		live: map[string]*Scan{}, share: map[string]int{}, image: d.Image}
}

// Image is the scanner image scans run (empty until Deps.Ready first
// succeeds, when the service started without its engine).
func (s *Service) Image() images.Info {
	s.imgMu.Lock()
	defer s.imgMu.Unlock()
	return s.image
}

// ready asks Deps.Ready, when set, whether scans can run now, and
// returns the image they run.
func (s *Service) ready(ctx context.Context) (images.Info, error) {
	if s.d.Ready == nil {
		return s.Image(), nil
	}
	img, err := s.d.Ready(ctx)
	if err != nil {
		return images.Info{}, err
	}
	s.imgMu.Lock()
	s.image = img
	s.imgMu.Unlock()
	return img, nil
}

// Rules are the validation bounds in force.
func (s *Service) Rules() scanargs.Rules {
	return scanargs.NewRules(s.cfg.MaxAddresses, s.cfg.Sandbox.Limits.Timeout, s.cfg.Sandbox.Limits.MaxTimeout, s.cfg.Sharding.Width())
}

// QueueStats returns how many scans run and how many wait.
func (s *Service) QueueStats() (running, waiting int) { return s.q.Stats() }

// ShareError is a scan refused because its client already has its share
// of running and queued scans.
type ShareError struct {
	Client string
	Limit  int
}

func (e *ShareError) Error() string {
	return fmt.Sprintf("client %q already has %d scans running or queued, its share of the queue (queue.per_client); "+
		"wait for one to finish, or stop one with cancel_scan", e.Client, e.Limit)
}

// ErrCancelledByRequest is the cause of a scan stopped with Cancel.
var ErrCancelledByRequest = errors.New("cancelled by request (cancel_scan)")

// errShutdown is the cause of scans stopped by Close.
var errShutdown = errors.New("the server is shutting down")

type clientKey struct{}
type adminKey struct{}

// WithClient names the client a scan is run for (e.g. the name of an HTTP
// bearer token), for records, the audit trail, budgets and ownership.
func WithClient(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, clientKey{}, name)
}

// WithAdmin marks the client of ctx as an administrator, who may see and
// control every client's scans.
func WithAdmin(ctx context.Context) context.Context { return context.WithValue(ctx, adminKey{}, true) }

func (s *Service) client(ctx context.Context) string {
	if name := ClientOf(ctx); name != "" {
		return name
	}
	return s.cfg.Client
}

// ClientOf is the client WithClient put in ctx ("" when none).
func ClientOf(ctx context.Context) string {
	name, _ := ctx.Value(clientKey{}).(string)
	return name
}

// ClientName is the client the caller of ctx acts as.
func (s *Service) ClientName(ctx context.Context) string { return s.client(ctx) }

// Viewer is whose scans the caller of ctx may see: its client, or "" (all)
// for an administrator.
func (s *Service) Viewer(ctx context.Context) string { return s.viewer(ctx) }

// viewer is whose scans the caller of ctx may see and control: its client
// name, or "" (every client's) for an administrator.
func (s *Service) viewer(ctx context.Context) string {
	if admin, _ := ctx.Value(adminKey{}).(bool); admin {
		return ""
	}
	return s.client(ctx)
}

// shape lets the runner say how it will really run spec (see
// executor.Shaper).
func (s *Service) shape(spec sandbox.Spec) sandbox.Spec {
	if sh, ok := s.d.Runner.(executor.Shaper); ok {
		return sh.Shape(spec)
	}
	return spec
}

func newID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make scan id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func (s *Service) takeShare(client string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.share[client] >= s.cfg.PerClient {
		return &ShareError{Client: client, Limit: s.cfg.PerClient}
	}
	s.share[client]++
	return nil
}

func (s *Service) dropShare(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.share[client]--; s.share[client] <= 0 {
		delete(s.share, client)
	}
}

// liveScan returns a queued or running scan the viewer may see.
func (s *Service) liveScan(id, viewer string) (*Scan, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.live[id]
	if ok && viewer != "" && sc.client != viewer {
		return nil, false
	}
	return sc, ok
}

// Get returns a snapshot of one scan the caller may see: live status for a
// queued or running scan, the stored record otherwise. Another client's
// scan is a *store.NotFoundError, like an unknown one.
func (s *Service) Get(ctx context.Context, id string) (Snapshot, error) {
	viewer := s.viewer(ctx)
	if sc, ok := s.liveScan(id, viewer); ok {
		snap := sc.Snapshot()
		if !snap.Live {
			// Finished between the lookup and now: the record is final.
			return s.stored(ctx, id, viewer)
		}
		return snap, nil
	}
	return s.stored(ctx, id, viewer)
}

func (s *Service) stored(ctx context.Context, id, viewer string) (Snapshot, error) {
	rec, err := s.d.Store.Get(ctx, id, viewer)
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{Record: rec, Percent: 100, Message: rec.Status}, nil
}

// Live returns snapshots of the caller's queued and running scans (every
// client's for an administrator), oldest first.
func (s *Service) Live(ctx context.Context) []Snapshot {
	viewer := s.viewer(ctx)
	s.mu.Lock()
	live := make([]*Scan, 0, len(s.live))
	for _, sc := range s.live {
		if viewer == "" || sc.client == viewer {
			live = append(live, sc)
		}
	}
	s.mu.Unlock()
	out := make([]Snapshot, 0, len(live))
	for _, sc := range live {
		if snap := sc.Snapshot(); snap.Live {
			out = append(out, snap)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Record.CreatedAt.Before(out[j].Record.CreatedAt) })
	return out
}

// List returns summaries of the caller's scans (every client's for an
// administrator), newest first.
//
// Scans waiting for approval here come first, newest first, as they
// live (their stored copies are left out), unless the filter's status,
// target or NoPending leaves them out.
func (s *Service) List(ctx context.Context, f store.Filter) ([]*store.Record, error) {
	f.Client = s.viewer(ctx)
	recs, err := s.d.Store.List(ctx, f)
	if err != nil || f.NoPending || (f.Status != "" && f.Status != store.PendingApproval) {
		return recs, err
	}
	var pending []*store.Record
	live := map[string]bool{}
	for _, snap := range s.Live(ctx) {
		r := snap.Record
		if r.Status != store.PendingApproval {
			continue
		}
		live[r.ID] = true
		if f.Target != "" && !slices.Contains(strings.Fields(r.Targets), f.Target) {
			continue
		}
		r.Result = nil
		pending = append([]*store.Record{r}, pending...)
	}
	recs = slices.DeleteFunc(recs, func(r *store.Record) bool { return r.Status == store.PendingApproval && live[r.ID] })
	return append(pending, recs...), nil
}

// RawXML returns a scan's raw nmap XML as kept, for the caller's scans.
func (s *Service) RawXML(ctx context.Context, id string) ([]byte, error) {
	return s.d.Store.RawXML(ctx, id, s.viewer(ctx))
}

// Pair finds two of the caller's finished scans to compare (see
// store.Store.Pair).
func (s *Service) Pair(ctx context.Context, idA, idB, target string) (*store.Record, *store.Record, error) {
	return s.d.Store.Pair(ctx, idA, idB, target, s.viewer(ctx))
}

// Cancel stops one of the caller's queued or running scans and waits (up
// to 10 s) until its record is final. It reports false when the caller has
// no such scan live.
func (s *Service) Cancel(ctx context.Context, id string) bool {
	sc, ok := s.liveScan(id, s.viewer(ctx))
	if !ok {
		return false
	}
	sc.cancel(ErrCancelledByRequest)
	select {
	case <-sc.done:
	case <-time.After(10 * time.Second):
	}
	return true
}

// Close cancels every live scan (their records say so), waits for them and
// for the runner's removals, or for ctx.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	for _, sc := range s.live {
		sc.cancel(errShutdown)
	}
	s.mu.Unlock()
	s.bgCancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var waitErr error
	select {
	case <-done:
	case <-ctx.Done():
		// A scan still retrying its end (storage away) must not keep the
		// runner open: its fencers, warden and pending removals are closed
		// all the same, on a bound of their own.
		waitErr = fmt.Errorf("wait for scans to stop: %w", ctx.Err())
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), runnerCloseGrace)
		defer cancel()
	}
	if s.d.Runner == nil {
		return waitErr
	}
	return errors.Join(waitErr, s.d.Runner.Close(ctx))
}

// runnerCloseGrace bounds the runner's Close after the wait for scans
// gave up.
const runnerCloseGrace = 30 * time.Second

// Explainer answers for targets without scanning; *policy.Policy is one.
type Explainer interface {
	Explain(ctx context.Context, targets []scanargs.Target) []policy.Decision
}

// CheckScope says, without scanning, spending a budget or recording
// anything, whether each target would be allowed, what a hostname
// resolves to and which rule decides. Malformed targets are a
// *scanargs.FieldError.
func (s *Service) CheckScope(ctx context.Context, targets string) ([]policy.Decision, error) {
	list, err := scanargs.ParseTargetList(targets)
	if err != nil {
		return nil, err
	}
	var out []policy.Decision
	if ex, ok := s.d.Policy.(Explainer); ok {
		out = ex.Explain(ctx, list)
	} else {
		for _, t := range list {
			out = append(out, policy.Decision{Target: t.Text, Allowed: true, Rule: "no scope policy in this deployment", Addresses: []string{}})
		}
	}
	for i := range out {
		if out[i].Allowed {
			out[i].Network = s.placeOne(out[i])
		}
	}
	return out, nil
}

// placeOne says where a scan of one allowed target would run.
func (s *Service) placeOne(d policy.Decision) string {
	texts := d.Addresses
	if len(texts) == 0 {
		texts = []string{d.Target}
	}
	var prefixes []netip.Prefix
	for _, t := range texts {
		if p, err := netip.ParsePrefix(t); err == nil {
			prefixes = append(prefixes, p.Masked())
		} else if a, err := netip.ParseAddr(t); err == nil {
			prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if len(prefixes) == 0 {
		return "resolved by nmap inside the sandbox; not fenced"
	}
	place, err := sandbox.Place(s.cfg.Sandbox, prefixes)
	if err != nil {
		return "refused when scanned: " + err.Error()
	}
	// As the runner would run it (a Kubernetes pod's network, say).
	spec := s.shape(sandbox.New(s.cfg.Sandbox, sandbox.Scan{ID: "check", Placement: place}))
	if spec.Fence != nil {
		return "fenced on network " + spec.Fence.Network
	}
	if spec.HostFence {
		return "host network, fenced to loopback (the host fence: its packets may reach 127.0.0.0/8 and ::1 only)"
	}
	return spec.Network + " network, not fenced (" + spec.Unfenced + ")"
}
