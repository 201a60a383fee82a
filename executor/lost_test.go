package executor_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/executor/fencer"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// deadEngine is a fake engine (no Docker needed: these tests run under
// -short) that dies while the container runs, as a SIGKILLed dockerd does:
// the attach stream and the wait end with "unexpected EOF" after some
// output, and every later call fails to connect until up is set.
type deadEngine struct {
	up       atomic.Bool
	removes  atomic.Int32
	removed  atomic.Bool
	outW     *io.PipeWriter
	waitC    chan container.WaitResponse
	waitErrC chan error
	// stopped: the engine stops gracefully instead, killing the
	// container (exit 137) while its API still answers.
	stopped bool
}

var errConn = errors.New("Cannot connect to the Docker daemon at unix:///tmp/x.sock. Is the docker daemon running?")

func (f *deadEngine) ContainerCreate(context.Context, *container.Config, *container.HostConfig, *network.NetworkingConfig, *ocispec.Platform, string) (container.CreateResponse, error) {
	return container.CreateResponse{ID: "0123456789abcdef0123456789abcdef"}, nil
}

func (f *deadEngine) ContainerAttach(context.Context, string, container.AttachOptions) (types.HijackedResponse, error) {
	r, w := io.Pipe()
	f.outW = w
	c, _ := net.Pipe()
	return types.HijackedResponse{Conn: c, Reader: bufio.NewReader(r)}, nil
}

func (f *deadEngine) ContainerWait(context.Context, string, container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	f.waitC, f.waitErrC = make(chan container.WaitResponse, 1), make(chan error, 1)
	return f.waitC, f.waitErrC
}

func (f *deadEngine) ContainerStart(context.Context, string, container.StartOptions) error {
	go func() {
		sw := stdcopy.NewStdWriter(f.outW, stdcopy.Stdout)
		_, _ = sw.Write([]byte("<nmaprun>\n<host>partial</host>\n"))
		time.Sleep(20 * time.Millisecond)
		if f.stopped {
			f.outW.Close()
			f.waitC <- container.WaitResponse{StatusCode: 137}
			return
		}
		f.outW.CloseWithError(io.ErrUnexpectedEOF) // the engine dies
		f.waitErrC <- io.ErrUnexpectedEOF
	}()
	return nil
}

func (f *deadEngine) ContainerKill(context.Context, string, string) error { return f.down() }

func (f *deadEngine) ContainerInspect(context.Context, string) (container.InspectResponse, error) {
	if f.stopped {
		return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{State: &container.State{ExitCode: 137}}}, nil
	}
	return container.InspectResponse{}, f.down()
}

func (f *deadEngine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return nil, f.down()
}

func (f *deadEngine) ContainerRemove(context.Context, string, container.RemoveOptions) error {
	f.removes.Add(1)
	if err := f.down(); err != nil {
		return err
	}
	f.removed.Store(true)
	return nil
}

func (f *deadEngine) down() error {
	if f.up.Load() {
		return nil
	}
	return errConn
}

// A container lost to an engine restart: Run ends with a *LostError that
// keeps the output received, and the container's removal is retried until
// the engine answers again (before, it was tried once and left behind).
func TestLostContainerIsRemovedOnceTheEngineIsBack(t *testing.T) {
	eng := &deadEngine{}
	ex := executor.New(eng, nil)
	var mu sync.Mutex
	var steps []string
	j := executor.Job{Spec: sandbox.Spec{Image: "img", Name: "lost", Command: []string{"nmap"}}, OnEvent: func(ev executor.Event) {
		mu.Lock()
		steps = append(steps, string(ev.Step))
		mu.Unlock()
	}}
	res, err := ex.Run(context.Background(), j)
	var lost *executor.LostError
	if !errors.As(err, &lost) {
		t.Fatalf("err = %v; want *LostError", err)
	}
	if !strings.Contains(err.Error(), "engine stopped or restarted") || !strings.Contains(string(res.Stdout), "partial") {
		t.Fatalf("err %q, output %q", err, res.Stdout)
	}
	time.Sleep(300 * time.Millisecond) // a few retries while the engine is down
	if eng.removed.Load() || eng.removes.Load() < 2 {
		t.Fatalf("removal while the engine is down: removed %v after %d attempts", eng.removed.Load(), eng.removes.Load())
	}
	eng.up.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ex.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !eng.removed.Load() {
		t.Fatal("the lost container was never removed")
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(steps, ","); got != "created,started,exited,removed" {
		t.Fatalf("events %s", got)
	}
}

// Close stops the retries (one last try): the engine never came back, and
// Close names the container it leaves to the next start-up sweep.
func TestLostContainerRetriesEndWithClose(t *testing.T) {
	eng := &deadEngine{}
	ex := executor.New(eng, nil)
	if _, err := ex.Run(context.Background(), executor.Job{Spec: sandbox.Spec{Image: "img", Name: "lost", Command: []string{"nmap"}}}); err == nil {
		t.Fatal("no error")
	}
	time.Sleep(300 * time.Millisecond) // a few retries
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ex.Close(ctx); err == nil || !strings.Contains(err.Error(), "0123456789ab") || !strings.Contains(err.Error(), "start-up sweep") {
		t.Fatalf("Close: %v; want the container left to the sweep named", err)
	}
	n := eng.removes.Load()
	time.Sleep(fencer.RetryMax + time.Second) // longer than the largest backoff step
	if m := eng.removes.Load(); m > n+1 {
		t.Fatalf("removal retried after Close gave up: %d attempts, then %d", n, m)
	}
}

// An engine that stops gracefully kills its containers itself (exit 137)
// while its API still answers: that too is a lost container, not a
// failure of nmap (before: "nmap exited with code 137").
func TestContainerKilledByStoppingEngineIsLost(t *testing.T) {
	eng := &deadEngine{stopped: true}
	eng.up.Store(true)
	ex := executor.New(eng, nil)
	res, err := ex.Run(context.Background(), executor.Job{Spec: sandbox.Spec{Image: "img", Name: "lost", Command: []string{"nmap"}}})
	var lost *executor.LostError
	if !errors.As(err, &lost) || !strings.Contains(err.Error(), "killed from outside (exit code 137)") || !strings.Contains(string(res.Stdout), "partial") {
		t.Fatalf("err = %v, output %q; want *LostError keeping the output", err, res.Stdout)
	}
	if err := ex.Close(context.Background()); err != nil || !eng.removed.Load() {
		t.Fatalf("Close %v, removed %v", err, eng.removed.Load())
	}
}
