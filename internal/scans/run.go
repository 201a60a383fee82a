package scans

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// EventKind says what an Event reports.
type EventKind int

// The events of one scan, in the order they can come.
const (
	Queued   EventKind = iota // waiting for a slot; Message has the position
	Started                   // the container started
	Progress                  // nmap reported progress
	HostDone                  // a host finished; Host is set
	Log                       // a lifecycle step or an nmap stderr line; Level is set
	Finished                  // the record is final; Record is set
	// AwaitingApproval: the scan waits for a person's yes
	// (pending-approval); Message says which rule asked.
	AwaitingApproval
)

// Event is one step of a scan, told to the caller that submitted it.
// Percent is the overall progress (0..100, never falling).
type Event struct {
	Kind    EventKind
	Percent float64
	Message string
	Level   string // for Log: debug, info, warning or error
	Host    *results.Host
	Record  *store.Record
}

// Options shape one submission.
type Options struct {
	// Detach lets the scan run on after ctx ends; Submit returns at once.
	// Otherwise Submit returns when the scan has ended, and ctx's end
	// cancels it.
	Detach bool
	// Events, when set, is told the scan's events, one at a time, in order.
	Events func(Event)
	// ApprovalID names a question (Approvals) the caller had a person
	// answer for exactly this request and client; its approval admits
	// this scan, once. See approval.go.
	ApprovalID string
	// AwaitApproval lets a scan an approval rule asks for wait as
	// pending-approval for an approver instead of being refused.
	AwaitApproval bool
}

// Snapshot is one scan as seen at one moment: its record (for a live scan,
// with the hosts finished so far as a partial result) and its progress.
type Snapshot struct {
	Record  *store.Record
	Live    bool // queued or running
	Percent float64
	Message string
}

// Scan is one admitted scan. Its run goroutine owns its state; Snapshot
// copies it.
type Scan struct {
	ID     string
	client string
	done   chan struct{}
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	rec     store.Record // status and live progress; the run goroutine writes it
	percent float64
	message string
	hosts   []results.Host
	final   *store.Record
	err     error
}

// Done is closed when the scan has ended and its record is final.
func (sc *Scan) Done() <-chan struct{} { return sc.done }

// Err says how the scan ended (nil: done), once Done is closed.
func (sc *Scan) Err() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.err
}

// Snapshot returns the scan's state now; once Done, its final record.
func (sc *Scan) Snapshot() Snapshot {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.final != nil {
		rec := *sc.final
		return Snapshot{Record: &rec, Percent: 100, Message: rec.Status}
	}
	rec := sc.rec
	rec.Result = &results.Result{Hosts: slices.Clone(sc.hosts), Partial: true}
	return Snapshot{Record: &rec, Live: true, Percent: sc.percent, Message: sc.message}
}

// Submit validates req, checks it against the policy, takes the client's
// share and a place in the queue (refusing at once with a *ShareError or
// *QueueFullError), then spends the client's budget — so a call refused
// for the queue spends none — records and audits the scan as queued, and
// runs it when a slot frees. Validation errors are *scanargs.FieldError,
// policy refusals *policy.Refusal or *policy.BudgetError; after any
// refusal nothing is recorded or run.
func (s *Service) Submit(ctx context.Context, req scanargs.Request, opts Options) (*Scan, error) {
	plan, err := req.Plan(s.Rules())
	if err != nil {
		return nil, err
	}
	// Bad input is told first; then a scan needs the engine.
	img, err := s.ready(ctx)
	if err != nil {
		return nil, err
	}
	validated := plan
	if s.d.Policy != nil {
		if plan, err = s.d.Policy.Check(ctx, plan); err != nil {
			return nil, err
		}
	}
	place, err := s.place(plan)
	if err != nil {
		return nil, err
	}
	client := s.client(ctx)
	// A scan an approval rule asks for needs a person's yes (approval.go).
	var (
		grant    *approval.Grant
		decision *approval.Decision
	)
	if !s.d.ApprovalRules.Empty() {
		if decision, err = s.decide(ctx, client, validated, plan); err != nil {
			return nil, err
		}
		if decision.Needed {
			switch {
			case opts.ApprovalID != "":
				g, err := s.useAnswer(opts.ApprovalID, decision)
				if err != nil {
					return nil, err
				}
				if !g.Approved() {
					id, err := newID()
					if err != nil {
						return nil, err
					}
					reqJSON, _ := json.Marshal(req)
					rec := store.Record{ID: id, Targets: plan.TargetList(), ScanType: string(plan.Type), Request: reqJSON, Client: client, CreatedAt: g.AskedAt.UTC()}
					s.recordDenial(ctx, &rec, g)
					return nil, &DeniedError{ScanID: id, Grant: g}
				}
				grant = &g
			case opts.AwaitApproval && s.d.Approvals != nil:
			default:
				return nil, &ApprovalNeededError{Decision: decision}
			}
		}
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	sc := &Scan{ID: id, client: client, done: make(chan struct{})}
	base := ctx
	if opts.Detach {
		base = s.bg
	}
	runCtx, cancel := context.WithCancelCause(base)
	sc.cancel = cancel
	enter := func(ctx context.Context, g *approval.Grant) error {
		r := &run{s: s, sc: sc, plan: plan, events: opts.Events}
		if err := s.takeShare(client); err != nil {
			return err
		}
		ticket, err := s.q.Enter(r.queued)
		if err != nil {
			s.dropShare(client)
			return err
		}
		r.ticket = ticket
		// Storage faults known now refuse the scan before anything is spent
		// or written (see storage.go).
		if err := s.storageReady(ctx); err != nil {
			ticket.Cancel()
			s.dropShare(client)
			return err
		}
		if s.d.Policy != nil {
			if err := s.d.Policy.Spend(client, plan.Addresses); err != nil {
				ticket.Cancel()
				s.dropShare(client)
				return err
			}
		}
		r.prepare(req, place, img)
		r.rec.Approval = g
		sc.mu.Lock()
		sc.rec.Approval = g
		sc.mu.Unlock()
		if err := r.admit(ctx); err != nil {
			ticket.Cancel()
			s.dropShare(client)
			return err
		}
		s.mu.Lock()
		s.live[id] = sc
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer r.dropShare()
			defer cancel(nil)
			r.run(runCtx, ticket)
		}()
		return nil
	}
	if decision != nil && decision.Needed && grant == nil {
		// Wait as pending-approval for an approver: no queue place,
		// share or budget until the answer.
		q, err := s.d.Approvals.Ask(decision, id)
		if err != nil {
			cancel(nil)
			return nil, err
		}
		rec := pendingRecord(id, client, req, plan, q)
		// Stored, so that a server that dies before the answer leaves the
		// scan interrupted (the next start says so), not unknown.
		if s.d.Store != nil {
			if err := s.d.Store.Begin(ctx, &rec); err != nil {
				s.d.Approvals.Withdraw(q.ID)
				cancel(nil)
				return nil, fmt.Errorf("scan not run, because its record could not be written while it waits for approval: %w", err)
			}
		}
		sc.rec = rec
		sc.message = fmt.Sprintf("waiting for approval (rule %s)", decision.Rule)
		s.mu.Lock()
		s.live[id] = sc
		s.mu.Unlock()
		if opts.Events != nil {
			opts.Events(Event{Kind: AwaitingApproval, Message: sc.message})
		}
		s.wg.Add(1)
		wait := func() {
			defer s.wg.Done()
			s.awaitApproval(runCtx, sc, q, func(g approval.Grant) error { return enter(runCtx, &g) }, opts.Events)
		}
		if opts.Detach {
			go wait()
			return sc, nil
		}
		wait()
		<-sc.done
		return sc, nil
	}
	if err := enter(ctx, grant); err != nil {
		cancel(nil)
		return nil, err
	}
	if !opts.Detach {
		<-sc.done
	}
	return sc, nil
}

// Validate checks req as Submit would — arguments, scope, techniques,
// scripts and placement — without recording, spending, queueing or
// running anything (a watch checks its scan when it is created).
//
// A scan an approval rule asks for is refused (*ApprovalNeededError,
// Unattended): a watch's runs have no one to ask, and a standing approval
// would outlive the circumstances a person said yes to.
func (s *Service) Validate(ctx context.Context, req scanargs.Request) error {
	plan, err := req.Plan(s.Rules())
	if err != nil {
		return err
	}
	validated := plan
	if s.d.Policy != nil {
		if plan, err = s.d.Policy.Check(ctx, plan); err != nil {
			return err
		}
	}
	if _, err = s.place(plan); err != nil {
		return err
	}
	if !s.d.ApprovalRules.Empty() {
		d, err := s.decide(ctx, s.client(ctx), validated, plan)
		if err != nil {
			return err
		}
		if d.Needed {
			return &ApprovalNeededError{Decision: d, Unattended: true}
		}
	}
	return nil
}

// run is one scan's state, owned by its goroutine.
type run struct {
	s    *Service
	sc   *Scan
	plan *scanargs.Plan
	spec sandbox.Spec
	// blocks are the scan's shards' targets (nil: it runs whole).
	blocks [][]netip.Prefix
	rec    *store.Record
	events func(Event)

	evMu    sync.Mutex // serialises events; guards started
	started bool
	tracker *Tracker
	audited bool

	// ticket is the scan's place in the queue; shareOnce gives the
	// client's share back once: when the scan is final (finish), not when
	// its container is gone, so that neither holds the client's next call.
	ticket    *Ticket
	shareOnce sync.Once
}

// dropShare gives the scan's share of the queue back to its client, once.
func (r *run) dropShare() { r.shareOnce.Do(func() { r.s.dropShare(r.sc.client) }) }

// emit tells the caller one event, updating the live snapshot.
func (r *run) emit(ev Event) {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	r.emitLocked(ev)
}

func (r *run) emitLocked(ev Event) {
	sc := r.sc
	sc.mu.Lock()
	if ev.Kind != Log {
		if ev.Percent > sc.percent {
			sc.percent = ev.Percent
		}
		ev.Percent = sc.percent
		if ev.Message != "" {
			sc.message = ev.Message
		}
	}
	if ev.Host != nil {
		sc.hosts = append(sc.hosts, *ev.Host)
	}
	sc.mu.Unlock()
	if r.events != nil {
		r.events(ev)
	}
}

func (r *run) logf(level, format string, a ...any) {
	r.emit(Event{Kind: Log, Level: level, Message: fmt.Sprintf(format, a...)})
}

// queued tells the place in line, unless the scan has left the line.
func (r *run) queued(pos int) {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	if !r.started {
		r.emitLocked(Event{Kind: Queued, Message: fmt.Sprintf("queued, position %d", pos)})
	}
}

// place decides where the scan runs (sandbox.Place): fenced to its
// targets, or on the host network fenced to loopback for loopback only.
// Every scan gets -n: none reaches a resolver, and names were pinned by
// the policy.
// Mixing loopback and other targets in a fenced deployment is refused as
// a *scanargs.FieldError.
func (s *Service) place(plan *scanargs.Plan) (sandbox.Placement, error) {
	var prefixes []netip.Prefix
	if s.cfg.Sandbox.FencedNetwork() != "" && !plan.AllLoopback() {
		var err error
		if prefixes, err = plan.Prefixes(); err != nil {
			return sandbox.Placement{}, err
		}
	} else {
		prefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} // loopback or unfenced: placed without a fence
	}
	place, err := sandbox.Place(s.cfg.Sandbox, prefixes)
	var mixed *sandbox.MixedTargetsError
	if errors.As(err, &mixed) {
		return place, &scanargs.FieldError{Field: "targets", Value: plan.TargetList(), Rule: mixed.Error()}
	}
	if err != nil {
		return place, fmt.Errorf("place the scan: %w", err)
	}
	// Raw-socket scans need a packet socket (libpcap's capture), and a
	// packet socket on the host's network can send on any interface past
	// the host fence: inside it, none may be opened.
	if place.HostFence && plan.Privileged() {
		field, value := "scan_type", string(plan.Type)
		if plan.Type != scanargs.SYN && plan.Type != scanargs.UDP {
			field, value = "os_detection", "true"
		}
		return place, &scanargs.FieldError{Field: field, Value: value, Rule: "needs raw sockets (a packet capture), which a scan of this machine's loopback " +
			"cannot have inside the host fence (a packet socket sends on any host interface); use scan_type \"connect\" for loopback " +
			"(the administrator can opt out of fencing with sandbox.network: host)"}
	}
	// No scan reaches a resolver (every container's resolv.conf is empty):
	// nmap's own reverse DNS is off, and names were pinned by the policy.
	plan.NoDNS = true
	return place, nil
}

// prepare builds the container spec and the record.
func (r *run) prepare(req scanargs.Request, place sandbox.Placement, img images.Info) {
	s, plan := r.s, r.plan
	priv := sandbox.Unprivileged
	if plan.Privileged() {
		priv = sandbox.RawSockets
	}
	opts := s.cfg.Sandbox
	opts.Limits.Timeout = plan.Timeout
	argv := append([]string{"nmap"}, plan.Args()...)
	// The container runs the image by its verified ID: a tag moved after
	// the check cannot swap the image.
	r.spec = s.shape(sandbox.New(opts, sandbox.Scan{ID: r.sc.ID, Image: img.ID, Args: argv[1:], Privilege: priv, Placement: place}))
	reqJSON, _ := json.Marshal(req)
	r.rec = &store.Record{
		ID: r.sc.ID, Status: store.Queued, CreatedAt: time.Now().UTC(), Targets: plan.TargetList(), ScanType: string(plan.Type), Request: reqJSON,
		Argv: argv, ImageID: img.ID, ImageTag: img.Tag, Client: r.sc.client, Notes: planNotes(plan),
		Limits: store.Limits{CPUs: r.spec.CPUs, MemoryBytes: r.spec.Memory, Pids: r.spec.Pids,
			TimeoutSeconds: int(plan.Timeout / time.Second), Network: r.spec.Network, Profile: r.spec.Describe(),
			Fenced: place.Fence != nil || place.HostFence, AllowedAddresses: allowed(place), Unfenced: place.Unfenced, Seccomp: r.spec.SeccompID},
	}
	if blocks, err := s.cfg.Sharding.Plan(r.spec, plan.Shards); err == nil && blocks != nil {
		r.blocks = blocks
		for _, b := range blocks {
			r.rec.Limits.Shards = append(r.rec.Limits.Shards, shardLine(b))
		}
		r.rec.Notes = append(r.rec.Notes, fmt.Sprintf("split into %d shards, each its own container or Job fenced to its own addresses", len(blocks)))
	}
	// A scan that waited for approval is already visible (Snapshot).
	r.sc.mu.Lock()
	r.sc.rec = *r.rec
	r.sc.mu.Unlock()
	r.tracker = NewTracker(plan)
}

func allowed(place sandbox.Placement) uint64 {
	if place.Fence == nil {
		return 0
	}
	return place.Fence.Addresses()
}

// planNotes are the record's notes for what the policy changed: the NSE
// scripts a requested category stood for that were dropped, and why.
func planNotes(plan *scanargs.Plan) []string {
	var notes []string
	for _, d := range plan.ScriptsDropped {
		notes = append(notes, fmt.Sprintf("NSE script %s not run: %s", d.Name, d.Reason))
	}
	return notes
}

// admit writes the audit admission and the queued record; its error says
// that nothing will run.
func (r *run) admit(ctx context.Context) error {
	if a := r.s.d.Audit; a != nil {
		if err := a.Admitted(ctx, r.rec); err != nil {
			return fmt.Errorf("scan not run, because the audit trail could not be written: %w", err)
		}
		r.audited = true
	}
	if err := r.s.d.Store.Begin(ctx, r.rec); err != nil {
		err = fmt.Errorf("scan not run, because its record could not be written: %w", err)
		if r.audited {
			r.rec.Status, r.rec.Error, r.rec.EndedAt = store.Failed, err.Error(), time.Now().UTC()
			_ = r.s.d.Audit.Ended(context.WithoutCancel(ctx), r.rec)
		}
		return err
	}
	return nil
}

func (r *run) setStatus(status, message string) {
	r.sc.mu.Lock()
	r.sc.rec.Status, r.sc.message = status, message
	r.sc.mu.Unlock()
}

// run waits for a slot, runs the container and finalises the record.
func (r *run) run(ctx context.Context, ticket *Ticket) {
	s, sc := r.s, r.sc
	log := s.d.Log.With("scan", sc.ID)
	defer func() {
		s.mu.Lock()
		delete(s.live, sc.ID)
		s.mu.Unlock()
		close(sc.done)
	}()
	release, err := ticket.Wait(ctx, s.cfg.MaxQueueWait)
	r.evMu.Lock()
	r.started = true // no position update after this point
	r.evMu.Unlock()
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) && errors.Is(cause, ErrCancelledByRequest) {
			err = fmt.Errorf("%w: %w", err, cause)
		}
		r.logf("warning", "scan %s left the queue: %v", sc.ID, err)
		r.finish(ctx, time.Now(), nil, nil, err)
		return
	}
	// The slot is held until the container is gone, so that no more than
	// Concurrency containers of ours ever exist at once.
	gone := make(chan struct{})
	var goneOnce sync.Once
	markGone := func() { goneOnce.Do(func() { close(gone) }) }
	defer func() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case <-gone:
			case <-time.After(time.Minute):
			}
			release()
		}()
	}()

	r.setStatus(store.Running, "starting")
	r.logf("info", "scan %s: image %s (%.19s), verified when the engine was reached", sc.ID, r.rec.ImageTag, r.rec.ImageID)
	started := time.Now()
	r.rec.StartedAt = started.UTC()
	if err := s.d.Store.Start(ctx, sc.ID, r.rec.StartedAt); err != nil {
		markGone()
		err = fmt.Errorf("scan not run, because its record could not be written: %w", err)
		r.finish(ctx, time.Now(), nil, nil, err)
		return
	}
	log.Info("scan start", "targets", r.plan.TargetList(), "addresses", r.plan.Addresses,
		"argv", strings.Join(r.rec.Argv, " "), "image", r.rec.ImageTag, "timeout_s", int(r.plan.Timeout.Seconds()))

	xmlR, xmlW := io.Pipe()
	type decoded struct {
		res *results.Result
		err error
	}
	decodedC := make(chan decoded, 1)
	go func() {
		res, err := results.Decode(xmlR, results.Handlers{
			Limits: s.cfg.Limits,
			Host: func(h results.Host) {
				r.emit(Event{Kind: HostDone, Percent: r.tracker.Current(), Message: HostMessage(h), Host: &h})
			},
			Progress: func(p results.Progress) {
				v, msg := r.tracker.Update(p)
				r.emit(Event{Kind: Progress, Percent: v, Message: msg})
			},
		})
		// Keep reading after a decode error so the stream never blocks.
		_, _ = io.Copy(io.Discard, xmlR)
		decodedC <- decoded{res, err}
	}()
	stderr := &lineWriter{emit: func(line string) { r.logf("warning", "nmap: %s", line) }}
	res, err := r.runJob(ctx, executor.Job{
		Spec:      r.spec,
		Stdout:    xmlW,
		Stderr:    stderr,
		MaxOutput: s.cfg.MaxOutput,
		OnEvent: func(ev executor.Event) {
			log.Debug("container "+string(ev.Step), "container", shortID(ev.ContainerID), "detail", ev.Detail)
			switch ev.Step {
			case "started":
				if s.d.Meter != nil {
					s.d.Meter.ScanStarted(string(r.plan.Type))
					s.d.Meter.ContainerStarted(ev.At.Sub(started))
				}
				r.emit(Event{Kind: Started, Percent: r.tracker.Started(), Message: "container started"})
				r.logf("info", "scan %s: container started", sc.ID)
			case "exited":
				r.logf("info", "scan %s: container exited, %s", sc.ID, ev.Detail)
			case "killed":
				r.logf("warning", "scan %s: container killed (%s)", sc.ID, ev.Detail)
			case "removed", "abandoned":
				markGone()
			default:
				r.logf("debug", "scan %s: container %s %s", sc.ID, ev.Step, ev.Detail)
			}
		},
	})
	xmlW.Close()
	d := <-decodedC
	stderr.flush()
	if res == nil || res.ContainerID == "" {
		markGone() // no container was made
	}
	ended := time.Now()
	if d.res != nil {
		addNames(d.res, r.plan.Names)
		if err != nil {
			d.res.Partial = true
		}
	}
	if err == nil && d.err != nil {
		// nmap exited 0 but its XML is unusable: report, do not hide it.
		err = fmt.Errorf("nmap's XML output could not be read: %w", d.err)
	}
	status := r.finish(ctx, ended, res, d.res, err)
	if s.d.Meter != nil {
		s.d.Meter.ScanFinished(string(r.plan.Type), status, ended.Sub(started))
	}
	attrs := []any{"targets", r.plan.TargetList(), "argv", strings.Join(r.rec.Argv, " "),
		"outcome", status, "duration_ms", ended.Sub(started).Milliseconds()}
	if res != nil {
		attrs = append(attrs, "exit_code", res.ExitCode)
	}
	if err != nil {
		log.Warn("scan end", append(attrs, "err", err)...)
	} else {
		log.Info("scan end", attrs...)
	}
}

// statusOf maps how a scan ended to its record status.
func statusOf(ctx context.Context, res *executor.Result, err error) string {
	var (
		te   *executor.TimeoutError
		lost *executor.LostError
	)
	switch {
	case err == nil:
		return store.Done
	case errors.As(err, &te):
		return store.TimedOut
	case errors.As(err, &lost):
		// The engine stopped or restarted under the scan: interrupted,
		// as when the server itself stops mid-scan.
		return store.Interrupted
	case errors.Is(err, context.Canceled) || (res != nil && res.Canceled) || ctx.Err() != nil:
		return store.Cancelled
	default:
		return store.Failed
	}
}

// finish completes the record and the audit trail, and stores them even
// when the caller has gone away: a cancelled scan keeps its record and
// partial output. It returns the final status and tells Finished.
func (r *run) finish(ctx context.Context, ended time.Time, res *executor.Result, parsed *results.Result, err error) string {
	// The scan is final for its client from here: its slot holds only the
	// container's removal (it lends a place in line) and its share is free.
	r.ticket.Finished()
	r.dropShare()
	rec := r.rec
	status := statusOf(ctx, res, err)
	rec.Status = status
	if rec.StartedAt.IsZero() {
		rec.StartedAt = ended.UTC()
	}
	rec.EndedAt = ended.UTC()
	rec.Result = parsed
	if err != nil {
		rec.Error = err.Error()
		if errors.Is(context.Cause(ctx), ErrCancelledByRequest) && status == store.Cancelled {
			rec.Error = ErrCancelledByRequest.Error()
		} else if r.s.d.Advice != nil {
			rec.Error += r.s.d.Advice(err)
		}
	}
	if res != nil {
		rec.ExitCode = res.ExitCode
		rec.RawXML = res.Stdout
		rec.RawXMLTruncated = res.DroppedStdout > 0
	}
	// A storage fault (a lock, a full disk) is waited out, within
	// FinalRetry, rather than losing the scan's end.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FinalRetry+30*time.Second)
	defer cancel()
	if a := r.s.d.Audit; a != nil && r.audited {
		if n, aerr := retry(fctx, FinalRetry, func(ctx context.Context) error { return a.Ended(ctx, rec) }); aerr != nil {
			r.s.d.Log.Error("could not write the end of a scan to the audit trail", "scan", rec.ID, "attempts", n, "err", aerr)
		} else if n > 1 {
			r.s.d.Log.Info("wrote the end of a scan to the audit trail after a storage fault", "scan", rec.ID, "attempts", n)
		}
	}
	if n, serr := retry(fctx, FinalRetry, func(ctx context.Context) error { return r.s.d.Store.Finish(ctx, rec) }); serr != nil {
		r.s.d.Log.Error("could not record the end of a scan", "scan", rec.ID, "attempts", n, "err", serr)
	} else if n > 1 {
		r.s.d.Log.Info("recorded the end of a scan after a storage fault", "scan", rec.ID, "attempts", n)
	}
	final := *rec
	final.RawXML = nil
	r.sc.mu.Lock()
	r.sc.final, r.sc.err = &final, err
	r.sc.mu.Unlock()
	r.logf("info", "scan %s: %s in %.2f s", rec.ID, status, rec.Duration().Seconds())
	if err == nil && parsed != nil {
		r.emit(Event{Kind: Finished, Percent: 100, Message: fmt.Sprintf("done: %d hosts up", parsed.Stats.HostsUp), Record: &final})
	} else {
		r.emit(Event{Kind: Finished, Message: fmt.Sprintf("%s: %v", status, err), Record: &final})
	}
	return status
}

// addNames puts the hostnames the caller asked for back on the hosts that
// were scanned by their pinned addresses.
func addNames(res *results.Result, names map[string][]string) {
	if len(names) == 0 {
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

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// lineWriter passes complete lines to emit.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if line := bytes.TrimSpace(w.buf[:i]); len(line) > 0 {
			w.emit(string(line))
		}
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // no newline for too long: pass it on
		w.emit(string(w.buf))
		w.buf = nil
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if line := bytes.TrimSpace(w.buf); len(line) > 0 {
		w.emit(string(line))
	}
	w.buf = nil
}
