package scans_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// These run against the fake runner: no engine needed (-short).

// A scan whose container was lost to an engine restart is recorded as
// interrupted, says why, keeps its partial output, and carries the
// edge's advice.
func TestLostContainerRecordedAsInterrupted(t *testing.T) {
	f := newFixture(t, scans.Config{}, nil)
	sc := f.submit(t, req(22))
	id := f.started(t)
	f.runner.end(id) <- runEnd{err: &executor.LostError{ContainerID: "c-" + id, Err: fmt.Errorf("the Docker engine stopped or restarted (%w)", io.ErrUnexpectedEOF)}}
	wait(t, sc)
	rec := f.stored(t, sc.ID, store.Interrupted, "admitted:", "ended:interrupted")
	if !strings.Contains(rec.Error, "engine stopped or restarted") || rec.Result == nil || !rec.Result.Partial || len(rec.Result.Hosts) != 1 {
		t.Fatalf("record: error %q, result %+v", rec.Error, rec.Result)
	}
	if raw, err := f.store.RawXML(context.Background(), sc.ID, ""); err != nil || !strings.Contains(string(raw), "<host>") {
		t.Fatalf("raw output lost: %q %v", raw, err)
	}
}

// With Deps.Ready (an engine that was down when the server started), a
// call is refused with Ready's error while the engine is away, nothing is
// recorded, and once Ready succeeds the scan runs with the image it
// returned (before, the image was fixed when the service was made).
func TestScansWaitForReadyEngine(t *testing.T) {
	st, trail := testkit.OpenHistory(t)
	runner := newFakeRunner()
	var up atomic.Bool
	down := &executor.UnreachableError{Host: "unix:///nowhere", Err: errors.New("connection refused")}
	cfg := scans.Config{MaxAddresses: 16}
	cfg.Sandbox.Limits = sandbox.DefaultLimits()
	svc := scans.New(cfg, scans.Deps{Runner: runner, Store: st, Audit: trail,
		Ready: func(context.Context) (images.Info, error) {
			if !up.Load() {
				return images.Info{}, down
			}
			return images.Info{ID: "sha256:late", Tag: "nmap-mcp/nmap:late"}, nil
		}})
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	if _, err := svc.Submit(context.Background(), req(22), scans.Options{Detach: true}); !errors.As(err, &down) {
		t.Fatalf("submit while the engine is down: %v", err)
	}
	if list, err := st.List(context.Background(), store.Filter{}); err != nil || len(list) != 0 {
		t.Fatalf("records after a refusal: %d %v", len(list), err)
	}
	up.Store(true)
	sc, err := svc.Submit(context.Background(), req(22), scans.Options{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-runner.start:
		runner.finish(id)
	case <-time.After(10 * time.Second):
		t.Fatal("no scan started")
	}
	rec := wait(t, sc)
	if rec.Status != store.Done || rec.ImageID != "sha256:late" || svc.Image().Tag != "nmap-mcp/nmap:late" {
		t.Fatalf("status %s image %s / %s", rec.Status, rec.ImageID, svc.Image().Tag)
	}
}
