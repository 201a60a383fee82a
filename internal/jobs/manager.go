package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scan"
	"github.com/nmap-mcp/nmap-mcp/internal/scanner"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Listener receives one call's notifications as the scan goes; any field
// may be nil. Calls come from one goroutine at a time, in order.
type Listener struct {
	// Progress is told the overall percent (0..100, never falling) and a
	// message such as "queued, position 3" or "127.0.0.1: 2 open ports".
	Progress func(percent float64, message string)
	// Log is told lifecycle steps and nmap's stderr lines, with a syslog
	// level name (debug, info, warning, error).
	Log func(level, message string)
}

// Config bounds the manager.
type Config struct {
	// Concurrency is how many scans run at once (default 1).
	Concurrency int
	// QueueSize is how many more may wait (default 32).
	QueueSize int
	// MaxQueueWait bounds the time a scan waits for a slot (0: none).
	MaxQueueWait time.Duration
	// PerClient bounds one client's running plus queued scans, so that no
	// client can fill the whole queue (0: half of Concurrency+QueueSize,
	// at least 1).
	PerClient int
	Log       *slog.Logger
}

// Manager admits, queues, runs and tracks scans.
type Manager struct {
	sc  *scanner.Scanner
	q   *Queue
	cfg Config

	bg       context.Context // parent of detached scans
	bgCancel context.CancelFunc
	wg       sync.WaitGroup

	mu    sync.Mutex
	live  map[string]*Job
	share map[string]int // running + queued scans per client
}

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

// New returns a manager running scans through sc.
func New(sc *scanner.Scanner, cfg Config) *Manager {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.QueueSize < 0 {
		cfg.QueueSize = 0
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.PerClient <= 0 {
		cfg.PerClient = max((cfg.Concurrency+cfg.QueueSize)/2, 1)
	}
	bg, cancel := context.WithCancel(context.Background())
	return &Manager{sc: sc, q: NewQueue(cfg.Concurrency, cfg.QueueSize), cfg: cfg, bg: bg, bgCancel: cancel,
		live: map[string]*Job{}, share: map[string]int{}}
}

// Scanner is the scanner the manager runs scans with.
func (m *Manager) Scanner() *scanner.Scanner { return m.sc }

// QueueStats returns how many scans run and how many wait.
func (m *Manager) QueueStats() (running, waiting int) { return m.q.Stats() }

// Job is one admitted scan.
type Job struct {
	Report *scanner.Report
	done   chan struct{}
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	status  string
	percent float64
	message string
	hosts   []results.Host
}

// Done is closed when the scan has ended and its record is final.
func (j *Job) Done() <-chan struct{} { return j.done }

// Status is a snapshot of a job.
type Status struct {
	Status  string
	Percent float64
	Message string
	// Hosts are those finished so far.
	Hosts []results.Host
}

// Snapshot returns the job's live status.
func (j *Job) Snapshot() Status {
	j.mu.Lock()
	defer j.mu.Unlock()
	return Status{Status: j.status, Percent: j.percent, Message: j.message, Hosts: append([]results.Host(nil), j.hosts...)}
}

func (j *Job) set(status string, percent float64, msg string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if status != "" {
		j.status = status
	}
	if percent > j.percent {
		j.percent = percent
	}
	if msg != "" {
		j.message = msg
	}
}

// ErrCancelledByRequest is the cause of a scan stopped with Cancel.
var ErrCancelledByRequest = errors.New("cancelled by request (cancel_scan)")

// Submit validates req and checks it against the policy, takes the
// client's share and a place in the queue (refusing at once with a
// *ShareError or *QueueFullError), then spends the client's budget (so a
// call refused for the queue spends none), records the scan as queued and
// runs it when a slot frees. With detach the scan runs on after ctx ends
// and Submit returns at once; otherwise Submit returns when the scan has
// ended, and ctx's end cancels it. Validation errors are *scan.FieldError
// and nothing is recorded.
func (m *Manager) Submit(ctx context.Context, req scan.Request, l Listener, detach bool) (*Job, error) {
	rep, err := m.sc.Prepare(ctx, req)
	if err != nil {
		return nil, err
	}
	client := rep.Record.Client
	if err := m.takeShare(client); err != nil {
		return nil, err
	}
	shareHeld := true
	defer func() {
		if shareHeld {
			m.dropShare(client)
		}
	}()
	job := &Job{Report: rep, done: make(chan struct{}), status: store.Queued}
	n := &notifier{job: job, l: l}
	ticket, err := m.q.Enter(n.queued)
	if err != nil {
		return nil, err
	}
	if err := m.sc.Spend(rep); err != nil {
		ticket.Cancel()
		return nil, err
	}
	if err := m.sc.Admit(ctx, rep); err != nil {
		ticket.Cancel()
		return nil, err
	}
	shareHeld = false // the run gives it back
	base := ctx
	if detach {
		base = m.bg
	}
	jobCtx, cancel := context.WithCancelCause(base)
	job.cancel = cancel
	m.mu.Lock()
	m.live[rep.ID] = job
	m.mu.Unlock()

	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.dropShare(client)
		defer cancel(nil)
		m.run(jobCtx, job, ticket, n)
	}()
	if !detach {
		<-job.done
	}
	return job, nil
}

func (m *Manager) run(ctx context.Context, job *Job, ticket *Ticket, n *notifier) {
	rep := job.Report
	logf, progress := n.logf, n.progress
	defer func() {
		m.mu.Lock()
		delete(m.live, rep.ID)
		m.mu.Unlock()
		close(job.done)
	}()

	release, err := ticket.Wait(ctx, m.cfg.MaxQueueWait)
	n.start() // no position update after this point
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) && errors.Is(cause, ErrCancelledByRequest) {
			err = fmt.Errorf("%w: %w", err, cause)
		}
		m.sc.Abandon(ctx, rep, err)
		job.set(rep.Status(), 0, err.Error())
		logf("warning", "scan %s left the queue: %v", rep.ID, err)
		return
	}
	// The slot is held until the container is gone, so that no more than
	// Concurrency containers of ours ever exist at once.
	defer func() {
		removed := m.sc.Removed(rep)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			select {
			case <-removed:
			case <-time.After(time.Minute):
			}
			release()
		}()
	}()

	job.set(store.Running, 0, "starting")
	logf("info", "scan %s: image %s (%.19s), verified at start-up", rep.ID, rep.Image.Tag, rep.Image.ID)
	tracker := NewTracker(rep.Plan)
	stderr := &lineWriter{emit: func(line string) { logf("warning", "nmap: %s", line) }}
	obs := scanner.Observer{
		Lifecycle: func(step, detail string) {
			switch step {
			case "started":
				progress(tracker.Started(), "container started")
				logf("info", "scan %s: container started", rep.ID)
			case "exited":
				logf("info", "scan %s: container exited, %s", rep.ID, detail)
			case "killed":
				logf("warning", "scan %s: container killed (%s)", rep.ID, detail)
			default:
				logf("debug", "scan %s: container %s %s", rep.ID, step, detail)
			}
		},
		Progress: func(p results.Progress) {
			v, msg := tracker.Update(p)
			progress(v, msg)
		},
		Host: func(h results.Host) {
			job.mu.Lock()
			job.hosts = append(job.hosts, h)
			job.mu.Unlock()
			progress(tracker.Current(), HostMessage(h))
		},
		Stderr: stderr,
	}
	err = m.sc.Execute(ctx, rep, obs)
	stderr.flush()
	status := rep.Status()
	if errors.Is(context.Cause(ctx), ErrCancelledByRequest) && status == store.Cancelled {
		rep.Record.Error = ErrCancelledByRequest.Error()
	}
	logf("info", "scan %s: %s in %.2f s", rep.ID, status, rep.Ended.Sub(rep.Started).Seconds())
	if err == nil {
		progress(100, fmt.Sprintf("done: %d hosts up", rep.Parsed.Stats.HostsUp))
	} else {
		progress(job.Snapshot().Percent, fmt.Sprintf("%s: %v", status, err))
	}
	job.set(status, 0, "")
}

func (m *Manager) takeShare(client string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.share[client] >= m.cfg.PerClient {
		return &ShareError{Client: client, Limit: m.cfg.PerClient}
	}
	m.share[client]++
	return nil
}

func (m *Manager) dropShare(client string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.share[client]--; m.share[client] <= 0 {
		delete(m.share, client)
	}
}

// Live returns a running or queued scan by id. With a client, another
// client's scan is not found.
func (m *Manager) Live(id, client string) (*Job, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.live[id]
	if ok && client != "" && j.Report.Record.Client != client {
		return nil, false
	}
	return j, ok
}

// Cancel stops a queued or running scan by id and waits (up to 10 s) until
// its record is final. It reports false when no such scan is live (for a
// client: no such scan of that client's).
func (m *Manager) Cancel(id, client string) bool {
	j, ok := m.Live(id, client)
	if !ok {
		return false
	}
	j.cancel(ErrCancelledByRequest)
	select {
	case <-j.done:
	case <-time.After(10 * time.Second):
	}
	return true
}

// Close cancels every live scan (their records say cancelled) and waits
// for them, or for ctx.
func (m *Manager) Close(ctx context.Context) error {
	m.bgCancel()
	m.mu.Lock()
	for _, j := range m.live {
		j.cancel(errors.New("the server is shutting down"))
	}
	m.mu.Unlock()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for scans to stop: %w", ctx.Err())
	}
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

// notifier serialises one call's notifications, so that they arrive in
// order and the percent never falls.
type notifier struct {
	mu      sync.Mutex
	job     *Job
	l       Listener
	started bool
}

func (n *notifier) start() {
	n.mu.Lock()
	n.started = true
	n.mu.Unlock()
}

// queued tells the place in line, unless the scan has left the line.
func (n *notifier) queued(pos int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.started {
		n.send(0, fmt.Sprintf("queued, position %d", pos))
	}
}

func (n *notifier) progress(p float64, msg string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.send(p, msg)
}

// send is progress with mu held.
func (n *notifier) send(p float64, msg string) {
	n.job.set("", p, msg)
	if n.l.Progress != nil {
		n.l.Progress(n.job.Snapshot().Percent, msg)
	}
}

func (n *notifier) logf(level, format string, a ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.l.Log != nil {
		n.l.Log(level, fmt.Sprintf(format, a...))
	}
}
