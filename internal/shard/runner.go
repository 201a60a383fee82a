package shard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// LabelShard labels each shard's container or Job with its shard number
// ("2/4"); the scan id label is the scan's, shared by its shards.
const LabelShard = "nmap-mcp.shard"

// MaxShards bounds the shards of one scan.
const MaxShards = 64

// Config says when and how far a scan is split.
type Config struct {
	// Threshold: a scan of more addresses than this is split; 0 never
	// splits.
	Threshold uint64
	// Shards is how many workers a split scan uses (2..MaxShards).
	Shards int
}

// Validate checks c, naming the setting and the rule.
func (c Config) Validate() error {
	if c.Threshold == 0 {
		return nil
	}
	if c.Shards < 2 || c.Shards > MaxShards {
		return fmt.Errorf("sharding.shards %d: must be between 2 and %d when sharding.threshold is set", c.Shards, MaxShards)
	}
	return nil
}

// Plan returns the blocks spec's scan is split into under c, or nil when
// it runs whole: below the threshold, or targets that are not all
// addresses and CIDR blocks (a name is resolved by the server before the
// scan is placed, so fenced scans always qualify). Want, when above 0,
// asks for that many shards (the model's argument), bounded by c.Shards.
func (c Config) Plan(spec sandbox.Spec, want int) ([][]netip.Prefix, error) {
	if c.Threshold == 0 || want == 1 {
		return nil, nil
	}
	_, targets, ok := splitCommand(spec.Command)
	if !ok {
		return nil, nil
	}
	var blocks []netip.Prefix
	for _, t := range targets {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			a, aerr := netip.ParseAddr(t)
			if aerr != nil {
				return nil, nil // a name: it runs whole
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		blocks = append(blocks, p.Masked())
	}
	if Count(blocks) <= c.Threshold {
		return nil, nil
	}
	n := c.Shards
	if want > 0 {
		n = min(want, c.Shards)
	}
	shards, err := Split(blocks, n)
	if err != nil || len(shards) < 2 {
		return nil, err
	}
	return shards, nil
}

// splitCommand cuts the sandbox launcher's command at nmap's "--": the
// part before it and the targets after it.
func splitCommand(cmd []string) (before, targets []string, ok bool) {
	i := slices.Index(cmd, "--")
	if i < 0 || i == len(cmd)-1 {
		return nil, nil, false
	}
	return cmd[:i+1], cmd[i+1:], true
}

// Run runs job as one scan split into shards: shard i gets blocks[i] as
// its targets and, when the job is fenced, as its fence's allowlist; each
// is its own container (Docker) or Job (Kubernetes) through inner, named
// after the scan with "-sI" and labelled LabelShard; at most parallel run
// at once (0: all). Their XML reaches job.Stdout merged live (see Stream),
// their stderr line by line with a "[shard I/N]" prefix. Cancelling ctx
// cancels every shard; a shard that fails does not stop the others. The
// Result is the merged run's: the merged XML as Stdout, the earliest
// start and latest exit, TimedOut, Canceled and OOMKilled when any shard
// was; the error is nil only when every shard succeeded, otherwise the
// first failing shard's (errors.As finds its type), naming the shard and
// the blocks that are missing.
func Run(ctx context.Context, inner executor.Runner, job executor.Job, blocks [][]netip.Prefix, parallel int) (*executor.Result, error) {
	n := len(blocks)
	before, _, ok := splitCommand(job.Spec.Command)
	if !ok || n < 2 {
		return nil, errors.New("shard: the job's command has no targets after \"--\" or fewer than two shards")
	}
	if parallel <= 0 || parallel > n {
		parallel = n
	}
	var merged syncBuffer
	stdout := io.Writer(&merged)
	if job.Stdout != nil {
		stdout = io.MultiWriter(&merged, job.Stdout)
	}
	stream := NewStream(stdout, blocks, job.MaxOutput)
	if len(job.Spec.Command) > 3 {
		// The run's args name every target, as one nmap's would.
		stream.SetArgs(strings.Join(job.Spec.Command[3:], " "))
	}
	var (
		mu               sync.Mutex
		results          = make([]*executor.Result, n)
		errs             = make([]error, n)
		started, removed int
		wg               sync.WaitGroup
		sem              = make(chan struct{}, parallel)
	)
	errw := &lineSink{w: job.Stderr}
	for i := range blocks {
		spec := job.Spec
		spec.Command = append(slices.Clone(before), prefixStrings(blocks[i])...)
		spec.Name = fmt.Sprintf("%s-s%d", job.Spec.Name, i+1)
		spec.Labels = maps.Clone(job.Spec.Labels)
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		spec.Labels[LabelShard] = fmt.Sprintf("%d-of-%d", i+1, n)
		if job.Spec.Fence != nil {
			f := *job.Spec.Fence
			f.Allow = slices.Clone(blocks[i])
			spec.Fence = &f
		}
		tag := fmt.Sprintf("shard %d/%d", i+1, n)
		sub := executor.Job{
			Spec:      spec,
			Stdout:    stream.Part(i),
			Stderr:    errw.prefixed("[" + tag + "] "),
			MaxOutput: job.MaxOutput,
			OnEvent: func(ev executor.Event) {
				if job.OnEvent == nil {
					return
				}
				mu.Lock()
				forward := true
				switch ev.Step {
				case executor.StepStarted:
					started++
					forward = started == 1 // the scan starts with its first shard
				case executor.StepRemoved, executor.StepAbandoned:
					removed++
					forward = removed == n // gone when the last shard is
				}
				mu.Unlock()
				ev.Detail = strings.TrimSpace(tag + " " + ev.Detail)
				if forward || ev.Step != executor.StepStarted && ev.Step != executor.StepRemoved && ev.Step != executor.StepAbandoned {
					job.OnEvent(ev)
				}
			},
		}
		if i == 0 {
			sub.BeforeStart = job.BeforeStart
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
			}
			res, err := inner.Run(ctx, sub)
			if res == nil {
				res = &executor.Result{}
			}
			mu.Lock()
			results[i], errs[i] = res, err
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	failed := make([]bool, n)
	for i, err := range errs {
		failed[i] = err != nil
	}
	if err := stream.Close(failed); err != nil && job.Stdout != nil {
		errw.flush()
		return combine(results, merged.Bytes()), fmt.Errorf("merge the shards' XML: %w", err)
	}
	errw.flush()
	res := combine(results, merged.Bytes())
	for i, err := range errs {
		if err != nil {
			var missing []string
			for j, e := range errs {
				if e != nil {
					for _, b := range blocks[j] {
						missing = append(missing, b.String())
					}
				}
			}
			return res, &Error{Shard: i + 1, Of: n, Missing: missing, Err: err}
		}
	}
	return res, nil
}

// Error is a sharded scan's failure: the first failing shard's error, and
// every block whose shard did not finish. errors.As and errors.Is see the
// shard's error.
type Error struct {
	Shard, Of int
	Missing   []string
	Err       error
}

func (e *Error) Error() string {
	return fmt.Sprintf("shard %d of %d: %v; the finished shards' hosts are kept, missing blocks: %s",
		e.Shard, e.Of, e.Err, strings.Join(e.Missing, ", "))
}

func (e *Error) Unwrap() error { return e.Err }

// combine is the merged run's Result.
func combine(results []*executor.Result, xml []byte) *executor.Result {
	out := &executor.Result{Stdout: xml}
	var ids []string
	for _, r := range results {
		if r == nil {
			continue
		}
		if r.ContainerID != "" {
			ids = append(ids, r.ContainerID)
		}
		out.Stderr = append(out.Stderr, r.Stderr...)
		out.DroppedStdout += r.DroppedStdout
		out.DroppedStderr += r.DroppedStderr
		out.ExitCode = max(out.ExitCode, r.ExitCode)
		out.OOMKilled = out.OOMKilled || r.OOMKilled
		out.TimedOut = out.TimedOut || r.TimedOut
		out.Canceled = out.Canceled || r.Canceled
		out.Created = earliest(out.Created, r.Created)
		out.Started = earliest(out.Started, r.Started)
		if r.Exited.After(out.Exited) {
			out.Exited = r.Exited
		}
	}
	out.ContainerID = strings.Join(ids, ",")
	return out
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

func prefixStrings(blocks []netip.Prefix) []string {
	out := make([]string, len(blocks))
	for i, p := range blocks {
		if p.IsSingleIP() {
			out[i] = p.Addr().String()
		} else {
			out[i] = p.String()
		}
	}
	return out
}

// syncBuffer is a bytes buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.b)
}

// lineSink writes whole lines from several shards to one writer, each
// with its shard's prefix, so that lines never interleave mid-way.
type lineSink struct {
	mu   sync.Mutex
	w    io.Writer
	subs []*prefixed
}

type prefixed struct {
	s      *lineSink
	prefix string
	buf    []byte
}

func (l *lineSink) prefixed(p string) io.Writer {
	w := &prefixed{s: l, prefix: p}
	l.mu.Lock()
	l.subs = append(l.subs, w)
	l.mu.Unlock()
	return w
}

func (p *prefixed) Write(b []byte) (int, error) {
	l := p.s
	l.mu.Lock()
	defer l.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := slices.Index(p.buf, '\n')
		if i < 0 {
			break
		}
		if l.w != nil {
			_, _ = io.WriteString(l.w, p.prefix+string(p.buf[:i+1]))
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// flush writes what each shard left without a newline.
func (l *lineSink) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.subs {
		if len(p.buf) > 0 && l.w != nil {
			_, _ = io.WriteString(l.w, p.prefix+string(p.buf)+"\n")
		}
		p.buf = nil
	}
}
