package fencer

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// attached is a helper container of the fence (a fencer, or the host
// fence's warden) that reads requests on its stdin and answers line by
// line on its stdout.
type attached struct {
	id     string
	conn   types.HijackedResponse
	lines  chan string // stdout lines; closed at the stream's end
	stderr *syncBuffer
	done   chan struct{} // closed when the stream ends (the container exited)
}

// dead reports whether the container's stream has ended.
func (a *attached) dead() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// startAttached creates a container (what names it in errors), hands it
// to track as soon as it exists (so that the caller removes it whatever
// fails next), attaches its stdin, stdout and stderr, and starts it. The
// engine calls run on ctx, which the caller makes outlive its own (a call
// cut short on our side can still land on the engine's). On an error after
// the container was created, the caller is responsible for removing it.
func startAttached(ctx context.Context, engine Containers, what, name string, cfg *container.Config, hc *container.HostConfig, track func(*attached)) error {
	created, err := engine.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	if err != nil {
		return fmt.Errorf("create %s: %w", what, err)
	}
	a := &attached{id: created.ID, lines: make(chan string, 4), stderr: &syncBuffer{}, done: make(chan struct{})}
	track(a)
	a.conn, err = engine.ContainerAttach(ctx, a.id, container.AttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		a.conn = types.HijackedResponse{}
		return fmt.Errorf("attach to %s: %w", what, err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, _ = stdcopy.StdCopy(pw, a.stderr, a.conn.Reader)
		pw.Close()
	}()
	go func() {
		defer close(a.done)
		defer close(a.lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			a.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	if err := engine.ContainerStart(ctx, a.id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start %s: %w", what, err)
	}
	return nil
}

// remove closes the container's stream and removes the container,
// retrying until the engine answers (a container lost to an engine restart
// is removed once it is back) or stop is closed; forget is called once it
// is gone. what names it in the log. It blocks: callers run it in the
// background.
func (a *attached) remove(engine Containers, stop <-chan struct{}, log *slog.Logger, what string, forget func()) {
	if a.conn.Conn != nil {
		a.conn.Close()
	}
	err := RemoveRetrying(engine, a.id, stop, 30*time.Second, func(n int, err error) {
		if n == 1 {
			log.Warn("remove "+what+"; retrying until the engine answers", "container", a.id[:12], "err", err)
		}
	})
	if err != nil {
		log.Error("remove "+what+"; the next start-up sweep will retry", "container", a.id[:12], "err", err)
		return
	}
	forget()
}

// helperConfig is the configuration of a fence helper container (a
// fencer, or the host fence's warden): the scanner image, root with
// NET_ADMIN as its only capability, no-new-privileges, the scan seccomp
// profile, a read-only root, half a CPU, 64 MiB and 16 pids, no logs, its
// stdin attached; script runs with arg as $0 on network. Its labels are
// base's plus role and a fresh id (idPrefix + 12 hex digits), which it
// returns to name the container.
func helperConfig(image string, base map[string]string, role, idPrefix, script, arg string, network container.NetworkMode) (string, *container.Config, *container.HostConfig) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	labels := maps.Clone(base)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[sandbox.LabelScanID] = idPrefix + id
	labels[LabelRole] = role
	pids := int64(16)
	cfg := &container.Config{
		Image:       image,
		Entrypoint:  []string{"/bin/sh", "-c", script},
		Cmd:         []string{arg},
		User:        "0:0",
		OpenStdin:   true,
		StdinOnce:   true,
		AttachStdin: true, AttachStdout: true, AttachStderr: true,
		Labels: labels,
	}
	hc := &container.HostConfig{
		NetworkMode:    network,
		CapDrop:        []string{"ALL"},
		CapAdd:         []string{"NET_ADMIN"},
		SecurityOpt:    []string{"no-new-privileges", "seccomp=" + string(sandbox.SeccompProfile())},
		ReadonlyRootfs: true,
		Init:           new(bool),
		Resources:      container.Resources{NanoCPUs: 5e8, Memory: 64 << 20, MemorySwap: 64 << 20, PidsLimit: &pids},
		LogConfig:      container.LogConfig{Type: "none"},
	}
	return id, cfg, hc
}
