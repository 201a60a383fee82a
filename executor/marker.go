package executor

import (
	"bytes"
	"io"
	"strconv"
	"sync"

	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// exitWatch passes a stream through to dst, except for the launcher's
// exit line (see sandbox.ExitMarker), which it removes and reports on done.
// It holds back a few bytes at a time so that a marker split across writes
// never reaches dst.
type exitWatch struct {
	mu     sync.Mutex
	dst    io.Writer
	hold   []byte
	found  bool
	status int
	done   chan struct{}
}

var markerLine = []byte("\n" + sandbox.ExitMarker)

func newExitWatch(dst io.Writer) *exitWatch {
	return &exitWatch{dst: dst, done: make(chan struct{})}
}

func (w *exitWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.found {
		return len(p), nil
	}
	w.hold = append(w.hold, p...)
	if i := bytes.Index(w.hold, markerLine); i >= 0 {
		rest := w.hold[i+len(markerLine):]
		if j := bytes.IndexByte(rest, '\n'); j >= 0 {
			if st, err := strconv.Atoi(string(rest[:j])); err == nil {
				_, _ = w.dst.Write(w.hold[:i])
				w.hold, w.found, w.status = nil, true, st
				close(w.done)
				return len(p), nil
			}
		}
		// A marker still arriving: pass what comes before it.
		_, _ = w.dst.Write(w.hold[:i])
		w.hold = append(w.hold[:0], w.hold[i:]...)
		return len(p), nil
	}
	// Keep a tail that could be the start of a marker line.
	if keep := len(markerLine) + 12; len(w.hold) > keep {
		n := len(w.hold) - keep
		_, _ = w.dst.Write(w.hold[:n])
		w.hold = append(w.hold[:0], w.hold[n:]...)
	}
	return len(p), nil
}

// flush passes on whatever is held back, at the end of the stream.
func (w *exitWatch) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.found && len(w.hold) > 0 {
		_, _ = w.dst.Write(w.hold)
		w.hold = nil
	}
}

// bothDone delivers the reported status once both streams carried it,
// and gives up when stop closes.
func bothDone(a, b *exitWatch, stop <-chan struct{}) <-chan int {
	ch := make(chan int, 1)
	go func() {
		for _, w := range []*exitWatch{a, b} {
			select {
			case <-w.done:
			case <-stop:
				return
			}
		}
		ch <- a.status
	}()
	return ch
}
