// Package sandbox is the one place that turns a validated scan into
// container configuration: user, capabilities, limits, network, filesystem
// and labels. Whatever the scan, the container is never privileged, has
// no-new-privileges, a read-only root filesystem, no host mounts and no
// Docker socket.
package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/nmap-mcp/nmap-mcp/internal/owner"
)

// Privilege is what a scan needs from the kernel.
type Privilege int

const (
	// Unprivileged scans (connect, ping) run as uid 65532 with no capabilities.
	Unprivileged Privilege = iota
	// RawSockets scans (SYN, UDP, OS detection) run as uid 0 inside the
	// container with NET_RAW as the only capability.
	RawSockets
)

func (p Privilege) String() string {
	if p == RawSockets {
		return "raw-sockets"
	}
	return "unprivileged"
}

// Labels put on every container this project creates.
const (
	LabelManaged   = "nmap-mcp.managed"    // always "true"
	LabelScanID    = "nmap-mcp.scan-id"    // the scan's ID
	LabelInstance  = "nmap-mcp.instance"   // the server instance that made it
	LabelOwnerPID  = "nmap-mcp.owner-pid"  // the pid of that server process
	LabelOwnerHost = "nmap-mcp.owner-host" // the hostname it ran on
)

// OwnedBy reads the owner of a container from its labels. ok is false
// unless the container carries every label this package sets (managed,
// scan id, instance, owner pid and host), so that nothing else is ever
// taken for ours.
func OwnedBy(labels map[string]string) (pid int, host string, ok bool) {
	if labels[LabelManaged] != "true" || labels[LabelScanID] == "" || labels[LabelInstance] == "" || labels[LabelOwnerHost] == "" {
		return 0, "", false
	}
	pid, err := strconv.Atoi(labels[LabelOwnerPID])
	if err != nil || pid <= 0 {
		return 0, "", false
	}
	return pid, labels[LabelOwnerHost], true
}

// UnprivilegedUser is the image's non-root user.
const UnprivilegedUser = "65532:65532"

// Program is the nmap binary inside the image.
const Program = "/usr/bin/nmap"

// ExitMarker starts the line the launcher prints on stdout and on stderr
// after nmap exits, followed by nmap's exit status and a newline (the line
// is preceded by an extra newline). It lets the executor know the scan is
// complete as soon as the output arrives, instead of waiting ~80 ms for the
// engine to process the exit. \x1e never appears in nmap's output.
const ExitMarker = "\x1enmap-mcp-exit="

// launcher runs nmap with the user's arguments as positional parameters
// (never parsed by the shell) and then reports its exit status in-band.
const launcher = `"$0" "$@"; s=$?; printf '\n\036nmap-mcp-exit=%d\n' "$s"; printf '\n\036nmap-mcp-exit=%d\n' "$s" >&2; exit "$s"`

// Limits are the resources one scan container may use.
type Limits struct {
	CPUs       float64       // CPU share, e.g. 1 = one core
	Memory     int64         // bytes; swap is set equal, so no swap
	Pids       int64         // maximum number of processes and threads
	Timeout    time.Duration // default wall clock of a scan
	MaxTimeout time.Duration // largest wall clock a caller may ask for
	TmpfsBytes int64         // size of the /tmp tmpfs
}

// DefaultLimits are 1 CPU, 512 MiB, 128 pids, 220 s (600 s at most).
func DefaultLimits() Limits {
	return Limits{CPUs: 1, Memory: 512 << 20, Pids: 128, Timeout: 220 * time.Second,
		MaxTimeout: 600 * time.Second, TmpfsBytes: 16 << 20}
}

// MinMemory is the smallest memory limit the engine accepts.
const MinMemory = 6 << 20

// Validate checks the limits, naming the bad one.
func (l Limits) Validate() error {
	switch {
	case l.CPUs <= 0 || l.CPUs > 64:
		return fmt.Errorf("cpus %v: must be more than 0 and at most 64", l.CPUs)
	case l.Memory < MinMemory:
		return fmt.Errorf("memory %d bytes: must be at least %d (6 MiB)", l.Memory, MinMemory)
	case l.Pids < 8:
		return fmt.Errorf("pids %d: must be at least 8", l.Pids)
	case l.MaxTimeout <= 0 || l.MaxTimeout > 600*time.Second:
		return fmt.Errorf("max timeout %s: must be more than 0 and at most 600s", l.MaxTimeout)
	case l.Timeout <= 0 || l.Timeout > l.MaxTimeout:
		return fmt.Errorf("timeout %s: must be more than 0 and at most the max timeout %s", l.Timeout, l.MaxTimeout)
	}
	return nil
}

// Options are the deployment's sandbox settings.
type Options struct {
	// Network is "host" (default: the vantage point of nmap on the host),
	// "bridge", "none" or the name of a Docker network.
	Network string
	Limits  Limits
	// Instance identifies the server instance in labels.
	Instance string
}

// Scan is what the sandbox needs to know about one scan.
type Scan struct {
	ID        string
	Image     string
	Args      []string
	Privilege Privilege
}

// Config returns the container and host configuration for one scan.
func Config(opts Options, s Scan) (*container.Config, *container.HostConfig) {
	lim := opts.Limits
	network := opts.Network
	if network == "" {
		network = "host"
	}
	cfg := &container.Config{
		Image:           s.Image,
		Entrypoint:      []string{"/bin/sh", "-c", launcher, Program},
		Cmd:             append([]string(nil), s.Args...),
		User:            UnprivilegedUser,
		NetworkDisabled: network == "none",
		AttachStdout:    true,
		AttachStderr:    true,
		Labels: map[string]string{
			LabelManaged:   "true",
			LabelScanID:    s.ID,
			LabelInstance:  opts.Instance,
			LabelOwnerPID:  strconv.Itoa(os.Getpid()),
			LabelOwnerHost: owner.Host(),
		},
	}
	hc := &container.HostConfig{
		NetworkMode:    container.NetworkMode(network),
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": fmt.Sprintf("rw,noexec,nosuid,nodev,size=%d", max(lim.TmpfsBytes, 1<<20))},
		Privileged:     false,
		AutoRemove:     false,
		Init:           new(bool),
		Resources: container.Resources{
			NanoCPUs:   int64(lim.CPUs * 1e9),
			Memory:     lim.Memory,
			MemorySwap: lim.Memory,
			PidsLimit:  &lim.Pids,
		},
		LogConfig: container.LogConfig{Type: "none"},
	}
	if s.Privilege == RawSockets {
		cfg.User = "0:0"
		hc.CapAdd = []string{"NET_RAW"}
	}
	return cfg, hc
}

// Describe is a one-line summary of the sandbox for a result header.
func Describe(opts Options, s Scan) string {
	cfg, hc := Config(opts, s)
	caps := "none"
	if len(hc.CapAdd) > 0 {
		caps = strings.Join(hc.CapAdd, ",")
	}
	return fmt.Sprintf("uid %s, caps %s, network %s, %g CPU, %d MiB, %d pids, read-only rootfs, no-new-privileges",
		strings.Split(cfg.User, ":")[0], caps, hc.NetworkMode, opts.Limits.CPUs, opts.Limits.Memory>>20, opts.Limits.Pids)
}
