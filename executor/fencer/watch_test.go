package fencer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dyingEngine is a fake engine (no Docker: runs under -short) whose
// fencers report one interface and wait, until the engine dies: their
// streams end and every call fails until up is set again.
type dyingEngine struct {
	up      atomic.Bool
	mu      sync.Mutex
	n       int
	streams map[string]*io.PipeWriter
	removed []string
}

var errDown = errors.New("Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?")

func (f *dyingEngine) ContainerCreate(context.Context, *container.Config, *container.HostConfig, *network.NetworkingConfig, *ocispec.Platform, string) (container.CreateResponse, error) {
	if !f.up.Load() {
		return container.CreateResponse{}, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return container.CreateResponse{ID: fmt.Sprintf("fencer%06d%050d", f.n, 0)}, nil
}

func (f *dyingEngine) ContainerAttach(_ context.Context, id string, _ container.AttachOptions) (types.HijackedResponse, error) {
	r, w := io.Pipe()
	f.mu.Lock()
	f.streams[id] = w
	f.mu.Unlock()
	c, _ := net.Pipe()
	return types.HijackedResponse{Conn: c, Reader: bufio.NewReader(r)}, nil
}

func (f *dyingEngine) ContainerStart(_ context.Context, id string, _ container.StartOptions) error {
	f.mu.Lock()
	w := f.streams[id]
	f.mu.Unlock()
	go func() { _, _ = stdcopy.NewStdWriter(w, stdcopy.Stdout).Write([]byte("ifaces eth0\n")) }()
	return nil
}

func (f *dyingEngine) ContainerRemove(_ context.Context, id string, _ container.RemoveOptions) error {
	if !f.up.Load() {
		return errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, id)
	return nil
}

func (f *dyingEngine) NetworkInspect(context.Context, string, network.InspectOptions) (network.Inspect, error) {
	if !f.up.Load() {
		return network.Inspect{}, errDown
	}
	return network.Inspect{Driver: "bridge", ID: "0123456789abcdef"}, nil
}

func (f *dyingEngine) NetworkCreate(context.Context, string, network.CreateOptions) (network.CreateResponse, error) {
	return network.CreateResponse{}, errors.New("not used")
}

// die ends every fencer's stream, as a killed engine does.
func (f *dyingEngine) die() {
	f.up.Store(false)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.streams {
		w.CloseWithError(io.ErrUnexpectedEOF)
	}
}

// A waiting fencer that dies with the engine is removed once the engine
// answers again, while the server runs (before, it stayed on the engine
// until a fenced scan took it; the next fenced scan starts a fresh one).
func TestDeadWaitingFencerIsRemoved(t *testing.T) {
	eng := &dyingEngine{streams: map[string]*io.PipeWriter{}}
	eng.up.Store(true)
	p := NewPool(eng, Config{Image: "img", Network: "scans", Warm: 1, Refill: true}, nil)
	defer func() {
		eng.up.Store(true)
		_ = p.Close(context.Background())
	}()
	p.Start()
	waitFor(t, "a warm fencer", p.Ready)
	first := p.Pending()
	eng.die()
	time.Sleep(300 * time.Millisecond) // removal retried while the engine is down
	eng.up.Store(true)
	waitFor(t, "the dead fencer's removal", func() bool {
		eng.mu.Lock()
		defer eng.mu.Unlock()
		return slices.Contains(eng.removed, first[0])
	})
	// The pool forgets it just after the engine's answer.
	waitFor(t, "the removed fencer to leave Pending", func() bool { return !slices.Contains(p.Pending(), first[0]) })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("no %s", what)
}
