// Package scanner runs one scan end to end: validated request, sandbox
// profile, container run through the executor with nmap's XML decoded as it
// streams, a record in the scan store at the start and at the end, and a
// report that keeps the outcome and all output kept, whether the scan
// succeeded or not. The MCP layer and the CLI both call it, so both
// validate, sandbox and record alike.
package scanner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scan"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Recorder keeps scan records; *store.Store is one.
type Recorder interface {
	Begin(ctx context.Context, r *store.Record) error
	Start(ctx context.Context, id string, startedAt time.Time) error
	Finish(ctx context.Context, r *store.Record) error
}

// Checker is the deployment's policy: it refuses a plan or returns it
// pinned to vetted addresses, and spends a client's budget; *policy.Policy
// is one.
type Checker interface {
	Check(ctx context.Context, plan *scan.Plan) (*scan.Plan, error)
	Spend(client string, addresses uint64) error
}

// Auditor keeps the audit trail: one record when a scan is admitted and
// one when it ends.
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

// Config is what a Scanner needs besides the engine.
type Config struct {
	// Meter, when set, is told of scans starting and ending.
	Meter Meter
	// Audit receives every admitted and ended scan; nil keeps no trail.
	// A scan whose admission cannot be audited does not run.
	Audit Auditor
	// Policy checks every plan before it runs; nil allows everything
	// within the validation rules.
	Policy  Checker
	Sandbox sandbox.Options
	// MaxAddresses bounds addresses per scan after CIDR expansion.
	MaxAddresses uint64
	// MaxOutput bounds the bytes kept per output stream.
	MaxOutput int
	// Limits bound the decoded result (hosts, ports, NSE output kept).
	Limits results.Limits
	// Store records every scan; nil records nothing.
	Store Recorder
	// Client names who asks for scans, for the records ("local" for stdio).
	Client string
	Log    *slog.Logger
}

// Scanner runs validated scans in sandboxed containers.
type Scanner struct {
	cfg   Config
	exec  *executor.Executor
	image images.Info

	dbMu     sync.Mutex
	scriptDB *policy.ScriptIndex
}

// New returns a scanner that runs image through exec.
func New(exec *executor.Executor, image images.Info, cfg Config) *Scanner {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Scanner{cfg: cfg, exec: exec, image: image}
}

// Removed returns a channel closed once the report's container has been
// removed (at once when it has no container or it is gone already).
func (s *Scanner) Removed(r *Report) <-chan struct{} {
	if r.Result == nil || r.Result.ContainerID == "" {
		return s.exec.Removed("")
	}
	return s.exec.Removed(r.Result.ContainerID)
}

// Close waits until the containers of finished scans are removed, or ctx ends.
func (s *Scanner) Close(ctx context.Context) error { return s.exec.Wait(ctx) }

// Image is the scanner image this scanner runs.
func (s *Scanner) Image() images.Info { return s.image }

// Rules are the validation bounds in force.
func (s *Scanner) Rules() scan.Rules {
	return scan.Rules{MaxAddresses: s.cfg.MaxAddresses, DefaultTimeout: s.cfg.Sandbox.Limits.Timeout,
		MaxTimeout: s.cfg.Sandbox.Limits.MaxTimeout}
}

// Report is one scan, complete or not.
type Report struct {
	ID      string
	Plan    *scan.Plan
	Argv    []string // full argv, program name first
	Image   images.Info
	Sandbox string // one-line summary of the container's privileges and limits
	Result  *executor.Result
	Err     error
	// Parsed is nmap's XML decoded, possibly partial; DecodeErr says why
	// it is partial or missing.
	Parsed    *results.Result
	DecodeErr error
	// Record is the scan as stored (also filled when no store is set).
	Record   *store.Record
	Started  time.Time
	Ended    time.Time
	admitted bool // recorded as queued by Admit
	audited  bool // its admission is in the audit trail
}

// Observer is told about a running scan as nmap reports; any field may be nil.
type Observer struct {
	Host     func(results.Host)
	Progress func(results.Progress)
	// Stderr receives nmap's stderr as it arrives.
	Stderr io.Writer
	// Lifecycle is told of the container's steps (created, started,
	// killed, exited, removed) with a detail.
	Lifecycle func(step, detail string)
}

// Status is the record status the outcome maps to: done, failed,
// timed-out or cancelled.
func (r *Report) Status() string {
	var te *executor.TimeoutError
	switch {
	case r.Err == nil:
		return store.Done
	case errors.As(r.Err, &te):
		return store.TimedOut
	case errors.Is(r.Err, context.Canceled) || (r.Result != nil && r.Result.Canceled):
		return store.Cancelled
	default:
		return store.Failed
	}
}

// Prepare validates req, checks it against the policy (resolving and
// pinning hostnames, expanding NSE categories), and describes the scan it
// would run, without running anything and without spending a budget (see
// Spend). Validation errors are *scan.FieldError; policy refusals come
// from the Checker.
func (s *Scanner) Prepare(ctx context.Context, req scan.Request) (*Report, error) {
	plan, err := req.Plan(s.Rules())
	if err != nil {
		return nil, err
	}
	if s.cfg.Policy != nil {
		if plan, err = s.cfg.Policy.Check(ctx, plan); err != nil {
			return nil, err
		}
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	r := &Report{ID: id, Plan: plan, Image: s.image}
	r.Argv = append([]string{"nmap"}, plan.Args()...)
	opts := s.options(plan)
	r.Sandbox = sandbox.Describe(opts, s.sandboxScan(r))
	reqJSON, _ := json.Marshal(req)
	r.Record = &store.Record{
		ID: id, Targets: plan.TargetList(), ScanType: string(plan.Type), Request: reqJSON, Argv: r.Argv,
		ImageID: s.image.ID, ImageTag: s.image.Tag, Client: s.client(ctx), Notes: planNotes(plan),
		Limits: store.Limits{CPUs: opts.Limits.CPUs, MemoryBytes: opts.Limits.Memory, Pids: opts.Limits.Pids,
			TimeoutSeconds: int(plan.Timeout / time.Second), Network: networkName(opts.Network), Profile: r.Sandbox},
	}
	return r, nil
}

// planNotes are the record's notes for what the policy changed: the NSE
// scripts a requested category stood for that were dropped, and why.
func planNotes(plan *scan.Plan) []string {
	var notes []string
	for _, d := range plan.ScriptsDropped {
		notes = append(notes, fmt.Sprintf("NSE script %s not run: %s", d.Name, d.Reason))
	}
	return notes
}

// Spend counts a prepared scan against its client's budgets (after its
// queue place is secured, so a refused call spends nothing).
func (s *Scanner) Spend(r *Report) error {
	if s.cfg.Policy == nil {
		return nil
	}
	return s.cfg.Policy.Spend(r.Record.Client, r.Plan.Addresses)
}

type clientKey struct{}

// WithClient names the client a scan is run for (e.g. the name of an HTTP
// bearer token), for records, the audit trail and budgets.
func WithClient(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, clientKey{}, name)
}

type adminKey struct{}

// WithAdmin marks the client of ctx as an administrator, who may see and
// control every client's scans.
func WithAdmin(ctx context.Context) context.Context { return context.WithValue(ctx, adminKey{}, true) }

// Viewer is whose scans the caller of ctx may see and control: its client
// name, or "" (every client's) for an administrator.
func (s *Scanner) Viewer(ctx context.Context) string {
	if admin, _ := ctx.Value(adminKey{}).(bool); admin {
		return ""
	}
	return s.client(ctx)
}

func (s *Scanner) client(ctx context.Context) string {
	if name, ok := ctx.Value(clientKey{}).(string); ok && name != "" {
		return name
	}
	if s.cfg.Client == "" {
		return "local"
	}
	return s.cfg.Client
}

func networkName(n string) string {
	if n == "" {
		return "host"
	}
	return n
}

func (s *Scanner) options(plan *scan.Plan) sandbox.Options {
	o := s.cfg.Sandbox
	o.Limits.Timeout = plan.Timeout
	return o
}

func (s *Scanner) sandboxScan(r *Report) sandbox.Scan {
	priv := sandbox.Unprivileged
	if r.Plan.Privileged() {
		priv = sandbox.RawSockets
	}
	// The container runs the image by its verified ID: a tag moved after
	// the check cannot swap the image.
	return sandbox.Scan{ID: r.ID, Image: s.image.ID, Args: r.Argv[1:], Privilege: priv}
}

// Run validates and runs one scan, telling obs as it goes. A validation
// error returns (nil, *scan.FieldError) and nothing runs; otherwise the
// report is always returned, and its Err (also returned) says how the scan
// ended.
func (s *Scanner) Run(ctx context.Context, req scan.Request, obs Observer) (*Report, error) {
	r, err := s.Prepare(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := s.Spend(r); err != nil {
		return nil, err
	}
	return r, s.Execute(ctx, r, obs)
}

// Admit records a prepared scan as queued, before it waits for a run slot.
func (s *Scanner) Admit(ctx context.Context, r *Report) error {
	r.Record.Status = store.Queued
	if err := s.recordStart(ctx, r); err != nil {
		return err
	}
	r.admitted = true
	return nil
}

// Abandon ends an admitted scan that never ran (it left the queue), with
// its error in the record.
func (s *Scanner) Abandon(ctx context.Context, r *Report, err error) {
	r.Started, r.Ended, r.Err = time.Now(), time.Now(), err
	s.finishRecord(ctx, r)
}

// Execute runs a prepared report's scan, decoding nmap's XML as it streams,
// records it at the start and at the end, and fills in the report. When the
// start cannot be recorded, nothing runs.
func (s *Scanner) Execute(ctx context.Context, r *Report, obs Observer) error {
	opts := s.options(r.Plan)
	cfg, hc := sandbox.Config(opts, s.sandboxScan(r))
	log := s.cfg.Log.With("scan", r.ID)
	r.Started = time.Now()
	r.Record.StartedAt = r.Started.UTC()
	r.Record.Status = store.Running
	// The record and the audit entry are written while the container is
	// created; it starts only once both are in.
	recorded := make(chan error, 1)
	go func() { recorded <- s.recordStart(ctx, r) }()
	recordErr := sync.OnceValue(func() error { return <-recorded })
	log.Info("scan start", "targets", r.Plan.TargetList(), "addresses", r.Plan.Addresses,
		"argv", strings.Join(r.Argv, " "), "image", s.image.Tag, "timeout_s", int(r.Plan.Timeout.Seconds()))

	xmlR, xmlW := io.Pipe()
	type decoded struct {
		res *results.Result
		err error
	}
	decodedC := make(chan decoded, 1)
	go func() {
		res, err := results.Decode(xmlR, results.Handlers{Host: obs.Host, Progress: obs.Progress, Limits: s.cfg.Limits})
		// Keep reading after a decode error so the stream never blocks.
		_, _ = io.Copy(io.Discard, xmlR)
		decodedC <- decoded{res, err}
	}()
	res, err := s.exec.Run(ctx, executor.Job{
		Name:        "nmap-mcp-" + r.ID,
		Config:      cfg,
		HostConfig:  hc,
		Timeout:     r.Plan.Timeout,
		Stdout:      xmlW,
		Stderr:      obs.Stderr,
		MaxOutput:   s.cfg.MaxOutput,
		BeforeStart: recordErr,
		OnEvent: func(ev executor.Event) {
			if ev.Step == "started" && s.cfg.Meter != nil {
				s.cfg.Meter.ScanStarted(string(r.Plan.Type))
				s.cfg.Meter.ContainerStarted(ev.At.Sub(r.Started))
			}
			log.Debug("container "+ev.Step, "container", shortID(ev.ContainerID), "detail", ev.Detail)
			if obs.Lifecycle != nil {
				obs.Lifecycle(ev.Step, ev.Detail)
			}
		},
	})
	xmlW.Close()
	d := <-decodedC
	if rerr := recordErr(); rerr != nil {
		// Nothing ran: the start could not be recorded.
		r.Ended = time.Now()
		r.Result, r.Err = res, rerr
		r.Record.Status, r.Record.Error, r.Record.EndedAt = store.Failed, rerr.Error(), r.Ended.UTC()
		return rerr
	}
	r.Ended = time.Now()
	r.Result, r.Err = res, err
	r.Parsed, r.DecodeErr = d.res, d.err
	addNames(r.Parsed, r.Plan.Names)
	if err != nil && r.Parsed != nil {
		r.Parsed.Partial = true
	}
	if err == nil && d.err != nil {
		// nmap exited 0 but its XML is unusable: report, do not hide it.
		r.Err = fmt.Errorf("nmap's XML output could not be read: %w", d.err)
	}
	s.finishRecord(ctx, r)
	if s.cfg.Meter != nil {
		s.cfg.Meter.ScanFinished(string(r.Plan.Type), r.Status(), r.Ended.Sub(r.Started))
	}

	attrs := []any{"targets", r.Plan.TargetList(), "argv", strings.Join(r.Argv, " "),
		"outcome", r.Status(), "duration_ms", r.Ended.Sub(r.Started).Milliseconds()}
	if res != nil {
		attrs = append(attrs, "exit_code", res.ExitCode)
	}
	if r.Err != nil {
		log.Warn("scan end", append(attrs, "err", r.Err)...)
	} else {
		log.Info("scan end", attrs...)
	}
	return r.Err
}

// finishRecord completes the record, and stores it even when the caller
// has gone away: a cancelled scan keeps its record and partial output.
func (s *Scanner) finishRecord(ctx context.Context, r *Report) {
	rec := r.Record
	rec.Status = r.Status()
	rec.EndedAt = r.Ended.UTC()
	rec.Result = r.Parsed
	if r.Err != nil {
		rec.Error = r.Err.Error()
	}
	if res := r.Result; res != nil {
		rec.ExitCode = res.ExitCode
		rec.RawXML = res.Stdout
		rec.RawXMLTruncated = res.DroppedStdout > 0
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if s.cfg.Audit != nil && r.audited {
		if err := s.cfg.Audit.Ended(fctx, rec); err != nil {
			s.cfg.Log.Error("could not write the end of a scan to the audit trail", "scan", r.ID, "err", err)
		}
	}
	if s.cfg.Store == nil {
		return
	}
	if err := s.cfg.Store.Finish(fctx, rec); err != nil {
		s.cfg.Log.Error("could not record the end of a scan", "scan", r.ID, "err", err)
	}
}

// Version runs "nmap --version" in the sandbox, with no network, and
// returns its first line.
func (s *Scanner) Version(ctx context.Context) (string, error) {
	out, err := s.runQuiet(ctx, nil, "--version")
	if err != nil {
		return "", fmt.Errorf("run nmap --version in the sandbox: %w", err)
	}
	out = strings.TrimSpace(out)
	line, _, _ := strings.Cut(out, "\n")
	return line, nil
}

func newID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make scan id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// addNames puts the hostnames the caller asked for back on the hosts that
// were scanned by their pinned addresses.
func addNames(res *results.Result, names map[string][]string) {
	if res == nil || len(names) == 0 {
		return
	}
	for i := range res.Hosts {
		h := &res.Hosts[i]
		for _, a := range h.Addresses {
			for _, n := range names[a] {
				if !slices.Contains(h.Hostnames, n) {
					h.Hostnames = append([]string{n}, h.Hostnames...)
				}
			}
		}
	}
}

// ScriptIndex reads the NSE script index from the scanner image (run in
// the sandbox with no network): each script's categories, and which
// scripts add targets or capture packets. It is cached for the scanner's
// life.
func (s *Scanner) ScriptIndex(ctx context.Context) (*policy.ScriptIndex, error) {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.scriptDB != nil {
		return s.scriptDB, nil
	}
	out, err := s.runQuiet(ctx, []string{"/bin/sh", "-c", policy.IndexScript})
	if err != nil {
		return nil, fmt.Errorf("read the NSE script index in the scanner image: %w", err)
	}
	idx := policy.ParseScriptIndex(out)
	if len(idx.Categories) == 0 {
		return nil, errors.New("the scanner image's NSE script.db lists no scripts")
	}
	s.scriptDB = idx
	return idx, nil
}

// runQuiet runs a short command in the unprivileged sandbox with no
// network (entrypoint nil: nmap) and returns its stdout.
func (s *Scanner) runQuiet(ctx context.Context, entrypoint []string, args ...string) (string, error) {
	const limit = 30 * time.Second
	opts := s.cfg.Sandbox
	opts.Network = "none"
	opts.Limits.Timeout = limit
	id, err := newID()
	if err != nil {
		return "", err
	}
	cfg, hc := sandbox.Config(opts, sandbox.Scan{ID: id, Image: s.image.ID, Args: args})
	if entrypoint != nil {
		cfg.Entrypoint = entrypoint
	}
	res, err := s.exec.Run(ctx, executor.Job{Name: "nmap-mcp-" + id, Config: cfg, HostConfig: hc, Timeout: limit})
	if err != nil {
		return "", err
	}
	return string(res.Stdout), nil
}

// audit writes the admission of r to the audit trail, once.
func (s *Scanner) audit(ctx context.Context, r *Report) error {
	if s.cfg.Audit == nil || r.audited {
		return nil
	}
	if err := s.cfg.Audit.Admitted(ctx, r.Record); err != nil {
		return fmt.Errorf("scan not run, because the audit trail could not be written: %w", err)
	}
	r.audited = true
	return nil
}

// recordStart writes a scan's start: the audit admission and a new record,
// or, for a scan admitted earlier, the record's move to running. Its error
// says that nothing ran.
func (s *Scanner) recordStart(ctx context.Context, r *Report) error {
	if err := s.audit(ctx, r); err != nil {
		return err
	}
	if s.cfg.Store == nil {
		return nil
	}
	var err error
	if r.admitted {
		err = s.cfg.Store.Start(ctx, r.ID, r.Record.StartedAt)
	} else {
		err = s.cfg.Store.Begin(ctx, r.Record)
	}
	if err != nil {
		return fmt.Errorf("scan not run, because its record could not be written: %w", err)
	}
	return nil
}
