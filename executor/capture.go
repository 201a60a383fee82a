package executor

import (
	"io"
	"sync"
)

// capture keeps the first limit bytes written to it, counts the rest, and
// copies everything to an optional live writer.
type capture struct {
	mu      sync.Mutex
	limit   int
	buf     []byte
	dropped int64
	live    io.Writer
	liveErr error
}

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.limit - len(c.buf)
	if room > 0 {
		n := min(room, len(p))
		c.buf = append(c.buf, p[:n]...)
		c.dropped += int64(len(p) - n)
	} else {
		c.dropped += int64(len(p))
	}
	if c.live != nil && c.liveErr == nil {
		// A failing live writer must not stop the capture of the output.
		_, c.liveErr = c.live.Write(p)
	}
	return len(p), nil
}

func (c *capture) result() ([]byte, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf...), c.dropped
}
