package fencer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/system"

	"github.com/nmap-mcp/nmap-mcp/internal/fence"
	"github.com/nmap-mcp/nmap-mcp/internal/lifecycle"
)

// # The host fence
//
// A scan of the host's own loopback must run on the host's network (no
// other namespace reaches it), where no per-scan namespace can be fenced.
// The host fence keeps such scans to loopback all the same: every scan
// container on the host network is started under one dedicated cgroup
// (HostCgroupParent), and one nftables table in the host's network
// namespace drops, at the inet output hook, every packet whose socket
// belongs to that cgroup's tree and that goes anywhere but loopback
// (127.0.0.0/8, ::1, device lo). Frames sent on a packet socket skip that
// hook; the host scans' seccomp profile refuses those sends
// (sandbox.HostSeccompProfile). No resolver is reachable either: scan
// containers get an empty resolv.conf and the image resolves from
// /etc/hosts only.
//
// The table is installed, and installed again before every host scan, by a
// warden: one container per server on the host network with NET_ADMIN as
// its only capability (seccomp, read-only root, no-new-privileges), which
// itself sits in the fenced cgroup (so the cgroup exists while the rule
// names it) and sees the host's cgroup tree read-only (nft resolves the
// cgroup path to its id when the rule is loaded). Each request re-applies
// the whole table in one transaction (about 10 ms), so a table that was
// flushed, or a cgroup that was re-created, is repaired before the scan
// starts. Where it cannot be installed (no cgroup v2 hierarchy, no
// nftables, an engine on another host), host scans are refused with the
// reason; sandbox.network: host is the explicit, unfenced opt-out.

// Names of the host fence.
const (
	// HostCgroupParent is the cgroup (cgroupfs driver) under which scan
	// containers on the host network run; HostCgroupSlice is its name
	// under the systemd driver.
	HostCgroupParent = "/nmap-mcp-scans"
	HostCgroupSlice  = "nmap_mcp_scans.slice"
	// RoleHostFence labels the warden container.
	RoleHostFence = "host-fence"
)

// HostEngine is the part of the Docker client the host fence uses;
// *client.Client satisfies it.
type HostEngine interface {
	Containers
	Info(ctx context.Context) (system.Info, error)
}

// HostConfig shapes a HostFence.
type HostConfig struct {
	// Image is the scanner image (by ID); it has nft.
	Image string
	// Labels are the owner labels the warden carries (sandbox.OwnerLabels).
	Labels map[string]string
}

// HostError says that a host-network scan could not be fenced to
// loopback; nmap was not started.
type HostError struct {
	Err error
}

func (e *HostError) Error() string {
	return "the host fence (which keeps a scan of this machine's loopback to loopback) could not be installed, so nmap was not started: " +
		e.Err.Error() + "; to scan loopback without it, set sandbox.network: host (explicit opt-out: those scans are not fenced)"
}

func (e *HostError) Unwrap() error { return e.Err }

// HostFence installs and re-checks the host fence through its warden. Its
// methods are safe for concurrent use.
type HostFence struct {
	engine HostEngine
	cfg    HostConfig
	log    *slog.Logger

	mu     sync.Mutex // serialises requests to the warden
	w      *warden
	closed bool
	// track holds the wardens not yet removed and their removals; Close
	// ends the removal retries of discarded wardens.
	track *lifecycle.Tracker
}

// NewHostFence returns a host fence; the warden starts on the first Ensure.
// log may be nil.
func NewHostFence(engine HostEngine, cfg HostConfig, log *slog.Logger) *HostFence {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &HostFence{engine: engine, cfg: cfg, log: log, track: lifecycle.New()}
}

// cgroupPlace says where the host scans' cgroup is for the engine's cgroup
// driver and version: the parent to give containers, and the path and
// level nft names it by.
func cgroupPlace(info system.Info) (parent, path string, level int, err error) {
	switch {
	case info.CgroupDriver == "cgroupfs" && info.CgroupVersion == "2":
		return HostCgroupParent, strings.TrimPrefix(HostCgroupParent, "/"), 1, nil
	case info.CgroupDriver == "cgroupfs":
		// cgroup v1: the v2 hierarchy, where it is mounted, is "unified".
		return HostCgroupParent, "unified" + HostCgroupParent, 1, nil
	case info.CgroupDriver == "systemd" && info.CgroupVersion == "2":
		return HostCgroupSlice, HostCgroupSlice, 1, nil
	case info.CgroupDriver == "systemd":
		return HostCgroupSlice, "unified/" + HostCgroupSlice, 1, nil
	}
	return "", "", 0, fmt.Errorf("the engine's cgroup driver %q (cgroup v%s) is not one the host fence knows", info.CgroupDriver, info.CgroupVersion)
}

// Ensure makes sure the host fence is in place (installing it again, see
// the package doc) and returns the cgroup parent the scan's container
// must be started under. Any failure is a *HostError: the scan must not
// start.
func (h *HostFence) Ensure(ctx context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return "", &HostError{Err: errors.New("the server is shutting down")}
	}
	for attempt := 0; ; attempt++ {
		if h.w == nil || h.w.dead() {
			if h.w != nil {
				h.discard(h.w)
				h.w = nil
			}
			w, err := h.start(ctx)
			if err != nil {
				return "", &HostError{Err: err}
			}
			h.w = w
			go h.watch(w)
		}
		err := h.w.apply(ctx)
		if err == nil {
			return h.w.parent, nil
		}
		// A warden lost to an engine restart is replaced once; an nft
		// refusal is final.
		if !h.w.dead() || attempt > 0 || ctx.Err() != nil {
			return "", &HostError{Err: err}
		}
	}
}

// watch removes the warden as soon as it exits unasked (the engine
// stopped or restarted: its container is left behind, stopped), so that
// nothing of ours stays on the engine; the next Ensure starts another.
func (h *HostFence) watch(w *warden) {
	<-w.done
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w == w && !h.closed {
		h.log.Warn("the host fence's warden exited (did the engine stop?); it is removed and the next host scan starts another", "container", w.id[:12])
		h.w = nil
		h.discard(w)
	}
}

// Pending lists the warden containers not yet removed, for a hand-off to a
// reaper.
func (h *HostFence) Pending() []string {
	return h.track.Pending()
}

// Close removes the warden (the table stays: it only matches the scans'
// cgroup, which is then empty) and waits until it is gone or ctx ends.
func (h *HostFence) Close(ctx context.Context) error {
	// Removals still retrying (the engine is away) try once more and give
	// up: the next start-up sweep removes what is left.
	h.mu.Lock()
	h.closed = true
	if h.w != nil {
		h.discard(h.w)
		h.w = nil
	}
	h.mu.Unlock()
	return h.track.Wait(ctx, "the host fence's warden to be removed")
}

// wardenScript re-applies the ruleset ($0) for each request line on stdin
// and answers "ok" or "err <nft's message>"; it ends when stdin does (the
// server went away).
const wardenScript = `set -u
while read -r req; do
  if out=$(printf '%s\n' "$0" | nft -f - 2>&1) && out=$(nft list table inet ` + fence.TableHost + ` 2>&1); then
    printf 'ok\n'
  else
    printf 'err %s\n' "$(printf '%s' "$out" | tr '\n' ' ' | cut -c1-600)"
  fi
done`

// warden is one started warden container.
type warden struct {
	*attached
	parent string
}

// apply asks the warden to re-apply the table and waits for its answer.
func (w *warden) apply(ctx context.Context) error {
	if _, err := io.WriteString(w.conn.Conn, "apply\n"); err != nil {
		return fmt.Errorf("ask the warden to apply the host fence: %w", err)
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case line, ok := <-w.lines:
		if !ok {
			<-w.done
			if msg := strings.TrimSpace(w.stderr.String()); msg != "" {
				return fmt.Errorf("the warden exited: %s", clip(msg, 600))
			}
			return errors.New("the warden exited")
		}
		if line == "ok" {
			return nil
		}
		return fmt.Errorf("nft: %s", strings.TrimPrefix(line, "err "))
	case <-t.C:
		return errors.New("no answer from the host fence's warden in 30s")
	case <-ctx.Done():
		return fmt.Errorf("waiting for the host fence's warden: %w", ctx.Err())
	}
}

// start creates, attaches and starts a warden. As for fencers, the engine
// calls run to their end on a context of their own.
func (h *HostFence) start(ctx context.Context) (*warden, error) {
	stepCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	info, err := h.engine.Info(stepCtx)
	if err != nil {
		return nil, fmt.Errorf("ask the engine for its cgroup driver: %w", err)
	}
	parent, path, level, err := cgroupPlace(info)
	if err != nil {
		return nil, err
	}
	rules, err := fence.HostRuleset(path, level)
	if err != nil {
		return nil, err
	}
	id, cfg, hc := helperConfig(h.cfg.Image, h.cfg.Labels, RoleHostFence, "host-fence-", wardenScript, rules, "host")
	hc.CgroupParent = parent
	// nft resolves the cgroup's path under /sys/fs/cgroup: the host's
	// tree, read-only, in place of the container's own view.
	hc.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: "/sys/fs/cgroup", Target: "/sys/fs/cgroup", ReadOnly: true,
		BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate}}}
	w := &warden{parent: parent}
	err = startAttached(stepCtx, h.engine, "the host fence's warden (cgroup parent "+parent+")", "nmap-mcp-host-fence-"+id, cfg, hc,
		func(a *attached) {
			w.attached = a
			h.track.Add(a.id)
		})
	if err != nil {
		if w.attached != nil {
			h.discard(w)
		}
		return nil, err
	}
	return w, nil
}

// discard closes a warden's stream and removes its container in the
// background.
func (h *HostFence) discard(w *warden) {
	h.track.Go(func() {
		w.remove(h.engine, h.track.Stopping(), h.log, "the host fence's warden", func() { h.track.Gone(w.id) })
	})
}
