// Package scanner runs one scan end to end: validated request, sandbox
// profile, container run through the executor, and a report that keeps the
// outcome and all output kept, whether the scan succeeded or not. The MCP
// layer and the CLI both call it, so both validate and sandbox alike.
package scanner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/results"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
	"github.com/nmap-mcp/nmap-mcp/scan"
)

// Config is what a Scanner needs besides the engine.
type Config struct {
	Sandbox sandbox.Options
	// MaxAddresses bounds addresses per scan after CIDR expansion.
	MaxAddresses uint64
	// MaxOutput bounds the bytes kept per output stream.
	MaxOutput int
	Log       *slog.Logger
}

// Scanner runs validated scans in sandboxed containers.
type Scanner struct {
	cfg   Config
	exec  *executor.Executor
	image images.Info
}

// New returns a scanner that runs image through exec.
func New(exec *executor.Executor, image images.Info, cfg Config) *Scanner {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Scanner{cfg: cfg, exec: exec, image: image}
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

// Report is the record of one scan, complete or not.
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
	Started   time.Time
	Ended     time.Time
}

// Observer is told about a running scan as nmap reports; any field may be nil.
type Observer struct {
	Host     func(results.Host)
	Progress func(results.Progress)
	// Stderr receives nmap's stderr lines as they arrive.
	Stderr io.Writer
}

// Outcome is "completed", "timed out", "cancelled" or "failed".
func (r *Report) Outcome() string {
	var te *executor.TimeoutError
	switch {
	case r.Err == nil:
		return "completed"
	case errors.As(r.Err, &te):
		return "timed out"
	case errors.Is(r.Err, context.Canceled) || errors.Is(r.Err, context.DeadlineExceeded) || (r.Result != nil && r.Result.Canceled):
		return "cancelled"
	default:
		return "failed"
	}
}

// Prepare validates req and describes the scan it would run, without
// running anything. Validation errors are *scan.FieldError.
func (s *Scanner) Prepare(req scan.Request) (*Report, error) {
	plan, err := req.Plan(s.Rules())
	if err != nil {
		return nil, err
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	r := &Report{ID: id, Plan: plan, Image: s.image}
	r.Argv = append([]string{"nmap"}, plan.Args()...)
	r.Sandbox = sandbox.Describe(s.options(plan), s.sandboxScan(r))
	return r, nil
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
	return sandbox.Scan{ID: r.ID, Image: s.image.Tag, Args: r.Argv[1:], Privilege: priv}
}

// Run validates and runs one scan, telling obs as it goes. A validation
// error returns (nil, *scan.FieldError) and nothing runs; otherwise the
// report is always returned, and its Err (also returned) says how the scan
// ended.
func (s *Scanner) Run(ctx context.Context, req scan.Request, obs Observer) (*Report, error) {
	r, err := s.Prepare(req)
	if err != nil {
		return nil, err
	}
	return r, s.Execute(ctx, r, obs)
}

// Execute runs a prepared report's scan, decoding nmap's XML as it streams,
// and fills in the report.
func (s *Scanner) Execute(ctx context.Context, r *Report, obs Observer) error {
	opts := s.options(r.Plan)
	cfg, hc := sandbox.Config(opts, s.sandboxScan(r))
	log := s.cfg.Log.With("scan", r.ID)
	r.Started = time.Now()
	log.Info("scan start", "targets", r.Plan.TargetList(), "addresses", r.Plan.Addresses,
		"argv", strings.Join(r.Argv, " "), "image", s.image.Tag, "timeout_s", int(r.Plan.Timeout.Seconds()))
	xmlR, xmlW := io.Pipe()
	type decoded struct {
		res *results.Result
		err error
	}
	decodedC := make(chan decoded, 1)
	go func() {
		res, err := results.Decode(xmlR, results.Handlers{Host: obs.Host, Progress: obs.Progress})
		// Keep reading after a decode error so the stream never blocks.
		_, _ = io.Copy(io.Discard, xmlR)
		decodedC <- decoded{res, err}
	}()
	res, err := s.exec.Run(ctx, executor.Job{
		Name:       "nmap-mcp-" + r.ID,
		Config:     cfg,
		HostConfig: hc,
		Timeout:    r.Plan.Timeout,
		Stdout:     xmlW,
		Stderr:     obs.Stderr,
		MaxOutput:  s.cfg.MaxOutput,
		OnEvent: func(ev executor.Event) {
			log.Debug("container "+ev.Step, "container", shortID(ev.ContainerID), "detail", ev.Detail)
		},
	})
	xmlW.Close()
	d := <-decodedC
	r.Ended = time.Now()
	r.Result, r.Err = res, err
	r.Parsed, r.DecodeErr = d.res, d.err
	if err != nil {
		r.Parsed.Partial = true
	}
	if err == nil && d.err != nil {
		// nmap exited 0 but its XML is unusable: report, do not hide it.
		r.Err = fmt.Errorf("nmap's XML output could not be read: %w", d.err)
		err = r.Err
	}
	attrs := []any{"targets", r.Plan.TargetList(), "argv", strings.Join(r.Argv, " "),
		"outcome", r.Outcome(), "duration_ms", r.Ended.Sub(r.Started).Milliseconds()}
	if res != nil {
		attrs = append(attrs, "exit_code", res.ExitCode)
	}
	if err != nil {
		log.Warn("scan end", append(attrs, "err", err)...)
	} else {
		log.Info("scan end", attrs...)
	}
	return err
}

// Version runs "nmap --version" in the sandbox, with no network, and
// returns its first line.
func (s *Scanner) Version(ctx context.Context) (string, error) {
	opts := s.cfg.Sandbox
	opts.Network = "none"
	opts.Limits.Timeout = 30 * time.Second
	id, err := newID()
	if err != nil {
		return "", err
	}
	cfg, hc := sandbox.Config(opts, sandbox.Scan{ID: id, Image: s.image.Tag, Args: []string{"--version"}})
	res, err := s.exec.Run(ctx, executor.Job{Name: "nmap-mcp-" + id, Config: cfg, HostConfig: hc, Timeout: 30 * time.Second})
	if err != nil {
		return "", fmt.Errorf("run nmap --version in the sandbox: %w", err)
	}
	out := strings.TrimSpace(string(res.Stdout))
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
