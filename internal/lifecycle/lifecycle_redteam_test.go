package lifecycle

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// Red-team tests of Tracker (pure, no engine: -short).

// Close (Wait) racing a runner that still starts background work (Go) —
// a removal started by a Run that ends while the runner closes — must not
// panic or race, and Wait called twice (double Close) must return.
// FAILS under -race today (passes without it): Go's wg.Add from zero
// runs concurrently with Wait's wg.Wait, the misuse sync.WaitGroup
// documents; reachable when the fencer pool's watch goroutine (not
// tracked) discards a dead warm fencer while Pool.Close waits, or a Run
// still in flight starts its removal while its runner closes.
func TestRedteamGoDuringWaitAndDoubleWait(t *testing.T) {
	for range 200 {
		tr := New()
		var ran atomic.Int32
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 5 {
				tr.Go(func() { ran.Add(1) })
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := tr.Wait(ctx, "x"); err != nil {
			t.Fatal(err)
		}
		if err := tr.Wait(ctx, "x"); err != nil {
			t.Fatal(err)
		}
		cancel()
		<-done
		select {
		case <-tr.Stopping():
		default:
			t.Fatal("Stopping not closed after Wait")
		}
	}
}
