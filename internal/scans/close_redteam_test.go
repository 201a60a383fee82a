package scans_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// closeRecorder is the fake runner, telling whether Close was called.
type closeRecorder struct {
	*fakeRunner
	closed atomic.Bool
}

func (c *closeRecorder) Close(ctx context.Context) error {
	c.closed.Store(true)
	return c.fakeRunner.Close(ctx)
}

// A careless operator leaves a sqlite3 shell holding the history's write
// lock and stops the server while a scan ends: the scan's end is retried
// (FinalRetry) past Service.Close's bound (serve gives it 10 s), so Close
// returns "wait for scans to stop" — and never calls Runner.Close. The
// Docker runner's Close is what discards the fencer pool's warm fencers
// and the host fence's warden and waits for container removals: all of
// them are left running after the server exits (until the next start-up
// sweep). Close should still close the runner when its wait times out.
// (Fake runner, real store locked by a second connection; no engine:
// -short.)
func TestRedteamCloseTimeoutStillClosesRunner(t *testing.T) {
	st, trail := testkit.OpenHistory(t)
	r := &closeRecorder{fakeRunner: newFakeRunner()}
	svc := scans.New(scans.Config{Sandbox: sandbox.Options{Limits: sandbox.DefaultLimits()}, MaxAddresses: 16},
		scans.Deps{Runner: r, Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"}, Store: st, Audit: trail})
	sc, err := svc.Submit(context.Background(), req(22), scans.Options{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	select {
	case id = <-r.start:
	case <-time.After(10 * time.Second):
		t.Fatal("no scan started")
	}
	release := lockDB(t, st.Path())
	r.finish(id) // the scan ends while the lock is held: its end is retried
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	cerr := svc.Close(ctx)
	cancel()
	closed := r.closed.Load()
	release()
	wait(t, sc)
	if cerr == nil {
		t.Fatal("Close did not time out (the scan's end was not retried?)")
	}
	if !closed {
		t.Fatalf("Close gave up waiting (%v) and never closed the runner: its fencers, warden and removals are left", cerr)
	}
}
