package executor

import (
	"io"
)

// Output collects one job's stdout and stderr as Run does: each stream is
// kept up to the job's MaxOutput and copied live to the job's writers, and
// the launcher's exit line (sandbox.ExitMarker) is taken out of it and
// reported. Another runner (Kubernetes) feeds it what it reads.
type Output struct {
	stdout, stderr     *capture
	outWatch, errWatch *exitWatch
}

// NewOutput returns the output collector of job.
func NewOutput(job Job) *Output {
	maxOut := job.MaxOutput
	if maxOut <= 0 {
		maxOut = defaultMaxOutput
	}
	o := &Output{
		stdout: &capture{limit: maxOut, live: job.Stdout},
		stderr: &capture{limit: maxOut, live: job.Stderr},
	}
	o.outWatch, o.errWatch = newExitWatch(o.stdout), newExitWatch(o.stderr)
	return o
}

// Stdout and Stderr are where the container's streams are written.
func (o *Output) Stdout() io.Writer { return o.outWatch }

// Stderr is where the container's stderr is written.
func (o *Output) Stderr() io.Writer { return o.errWatch }

// Flush passes on what is held back, at the end of the streams.
func (o *Output) Flush() {
	o.outWatch.flush()
	o.errWatch.flush()
}

// Reported delivers the exit status the launcher printed, once both
// streams carried it; it gives up when stop closes.
func (o *Output) Reported(stop <-chan struct{}) <-chan int {
	return bothDone(o.outWatch, o.errWatch, stop)
}

// Fill copies the kept output and the dropped counts into res.
func (o *Output) Fill(res *Result) {
	res.Stdout, res.DroppedStdout = o.stdout.result()
	res.Stderr, res.DroppedStderr = o.stderr.result()
}

// StderrTail is the last 2 KiB of stderr kept so far, trimmed.
func (o *Output) StderrTail() string {
	kept, _ := o.stderr.result()
	return tail(kept)
}
