package scans

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
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
)

// shardLine names one shard's blocks, e.g. "10.0.0.0/26 10.0.0.64/28".
func shardLine(blocks []netip.Prefix) string {
	parts := make([]string, len(blocks))
	for i, b := range blocks {
		parts[i] = b.String()
	}
	return strings.Join(parts, " ")
}

// runJob runs the scan's container, or its shards (see package shard).
func (r *run) runJob(ctx context.Context, job executor.Job) (*executor.Result, error) {
	if r.blocks != nil {
		return runShards(ctx, r.s.d.Runner, job, r.blocks, 0)
	}
	return r.s.d.Runner.Run(ctx, job)
}

// runShards runs job as one scan split into shards: shard i gets blocks[i] as
// its targets and, when the job is fenced, as its fence's allowlist; each
// is its own container (Docker) or Job (Kubernetes) through inner, named
// after the scan with "-sI" and labelled LabelShard; at most parallel run
// at once (0: all). Their XML reaches job.Stdout merged live (see Stream),
// their stderr line by line with a "[shard I/N]" prefix. Cancelling ctx
// cancels every shard; a shard that fails does not stop the others. The
// Result is the merged run's: the merged XML as Stdout (its first
// MaxOutput bytes, the rest counted in DroppedStdout), the earliest
// start and latest exit, TimedOut, Canceled and OOMKilled when any shard
// was; the error is nil only when every shard succeeded, otherwise the
// first failing shard's (errors.As finds its type), naming the shard and
// the blocks that are missing.
func runShards(ctx context.Context, inner executor.Runner, job executor.Job, blocks [][]netip.Prefix, parallel int) (*executor.Result, error) {
	n := len(blocks)
	before, _, ok := shard.SplitCommand(job.Spec.Command)
	if !ok || n < 2 {
		return nil, errors.New("shard: the job's command has no targets after \"--\" or fewer than two shards")
	}
	if parallel <= 0 || parallel > n {
		parallel = n
	}
	maxOut := job.MaxOutput
	if maxOut <= 0 {
		maxOut = 4 << 20 // the Docker runner's default bound per stream
	}
	merged := &shardBuffer{limit: maxOut}
	stdout := io.Writer(merged)
	if job.Stdout != nil {
		stdout = io.MultiWriter(merged, job.Stdout)
	}
	stream := shard.NewStream(stdout, blocks, maxOut)
	if len(job.Spec.Command) > 3 {
		// The run's args name every target, as one nmap's would.
		stream.SetArgs(strings.Join(job.Spec.Command[3:], " "))
	}
	var (
		mu            sync.Mutex
		results       = make([]*executor.Result, n)
		errs          = make([]error, n)
		started       int
		created, gone = make([]bool, n), make([]bool, n)
		goneSent      bool
		wg            sync.WaitGroup
		sem           = make(chan struct{}, parallel)
	)
	// allGone marks shard i's container gone and reports whether it was
	// the last (mu held): the scan's containers are gone, once.
	allGone := func(i int) bool {
		gone[i] = true
		if goneSent || slices.Contains(gone, false) {
			return false
		}
		goneSent = true
		return true
	}
	errw := &shardLines{w: job.Stderr}
	for i := range blocks {
		spec := job.Spec
		spec.Command = append(slices.Clone(before), blockStrings(blocks[i])...)
		spec.Name = fmt.Sprintf("%s-s%d", job.Spec.Name, i+1)
		spec.Labels = maps.Clone(job.Spec.Labels)
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		spec.Labels[shard.LabelShard] = fmt.Sprintf("%d-of-%d", i+1, n)
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
				case executor.StepCreated:
					created[i] = true
				case executor.StepRemoved, executor.StepAbandoned:
					forward = allGone(i) // gone when the last shard is
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
			// A shard that never made a container (refused fence, failed
			// create, cancelled while waiting) has none to wait for.
			last := !created[i] && !gone[i] && allGone(i)
			mu.Unlock()
			if last && job.OnEvent != nil {
				job.OnEvent(executor.Event{Step: executor.StepRemoved, Detail: "every shard's container is gone", At: time.Now()})
			}
		}(i)
	}
	wg.Wait()
	failed := make([]bool, n)
	for i, err := range errs {
		failed[i] = err != nil
	}
	mergeErr := stream.Close(failed)
	errw.flush()
	res := combineShards(results, merged.Bytes())
	res.DroppedStdout = merged.dropped
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
			return res, &ShardError{Shard: i + 1, Of: n, Missing: missing, Err: err}
		}
	}
	if mergeErr != nil {
		return res, fmt.Errorf("merge the shards' XML: %w", mergeErr)
	}
	return res, nil
}

// ShardError is a sharded scan's failure: the first failing shard's error, and
// every block whose shard did not finish. errors.As and errors.Is see the
// shard's error.
type ShardError struct {
	Shard, Of int
	Missing   []string
	Err       error
}

func (e *ShardError) Error() string {
	return fmt.Sprintf("shard %d of %d: %v; the finished shards' hosts are kept, missing blocks: %s",
		e.Shard, e.Of, e.Err, strings.Join(e.Missing, ", "))
}

func (e *ShardError) Unwrap() error { return e.Err }

// combineShards is the merged run's Result.
func combineShards(results []*executor.Result, xml []byte) *executor.Result {
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
		out.Created = earliestTime(out.Created, r.Created)
		out.Started = earliestTime(out.Started, r.Started)
		if r.Exited.After(out.Exited) {
			out.Exited = r.Exited
		}
	}
	out.ContainerID = strings.Join(ids, ",")
	return out
}

func earliestTime(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

func blockStrings(blocks []netip.Prefix) []string {
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

// shardBuffer keeps the first limit bytes written to it, counting the
// rest; it is safe for concurrent use.
type shardBuffer struct {
	mu      sync.Mutex
	b       []byte
	limit   int   // bytes kept, as the runner keeps MaxOutput of a stream
	dropped int64 // bytes past limit
}

func (s *shardBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := min(len(p), max(s.limit-len(s.b), 0))
	s.b = append(s.b, p[:keep]...)
	s.dropped += int64(len(p) - keep)
	return len(p), nil
}

func (s *shardBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.b)
}

// shardLines writes whole lines from several shards to one writer, each
// with its shard's prefix, so that lines never interleave mid-way.
type shardLines struct {
	mu   sync.Mutex
	w    io.Writer
	subs []*prefixedLine
}

type prefixedLine struct {
	s      *shardLines
	prefix string
	buf    []byte
}

func (l *shardLines) prefixed(p string) io.Writer {
	w := &prefixedLine{s: l, prefix: p}
	l.mu.Lock()
	l.subs = append(l.subs, w)
	l.mu.Unlock()
	return w
}

func (p *prefixedLine) Write(b []byte) (int, error) {
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
func (l *shardLines) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.subs {
		if len(p.buf) > 0 && l.w != nil {
			_, _ = io.WriteString(l.w, p.prefix+string(p.buf)+"\n")
		}
		p.buf = nil
	}
}
