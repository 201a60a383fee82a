// Package sandbox is the one place that turns a validated scan into a
// runner-neutral container Spec: user, capabilities, limits, network
// placement (fenced or not, see Place), seccomp profile, filesystem and
// labels. Each runner renders a Spec in its own terms (the Docker runner:
// executor.DockerConfig; the Kubernetes runner: a Job's pod).
// Whatever the scan, the container is never privileged, has
// no-new-privileges, a default-deny seccomp profile, a read-only root
// filesystem, no host mounts and no Docker socket.
package sandbox

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

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

// OwnerLabels are the labels that tie a container to this server process
// (managed, instance, owner pid and host); a scan container adds its scan
// ID. A sweep removes containers whose owner is gone.
func OwnerLabels(instance string) map[string]string {
	return map[string]string{
		LabelManaged:   "true",
		LabelInstance:  instance,
		LabelOwnerPID:  strconv.Itoa(os.Getpid()),
		LabelOwnerHost: owner.Host(),
	}
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
var launcher = `"$0" "$@"; s=$?; ` + ExitReport("") + `; exit "$s"`

// ExitReport is the shell that prints the exit line (a newline, then
// ExitMarker and the status in $s) on stdout and on stderr, for every
// runner's launcher. stderrMark, when set, starts each line written to
// stderr (a runner whose log merges both streams marks stderr's lines).
func ExitReport(stderrMark string) string {
	marker, mark := printfText(ExitMarker), printfText(stderrMark)
	line := `\n` + marker + `%d\n`
	errLine := mark + `\n` + mark + marker + `%d\n`
	return `printf '` + line + `' "$s"; printf '` + errLine + `' "$s" >&2`
}

// printfText writes s for a single-quoted printf format: control bytes,
// quotes, backslashes and percent signs as octal escapes.
func printfText(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c < 0x20 || c == '\'' || c == '\\' || c == '%' || c >= 0x7f {
			fmt.Fprintf(&b, `\%03o`, c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ResolvConf is where the container's resolver configuration lives; every
// scan container gets an empty, read-only one (no nameserver).
const ResolvConf = "/etc/resolv.conf"

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
	// Network is Fenced (the default when empty), Host, None, or the name
	// of a Docker network for fenced scans.
	Network string
	// FenceNetwork is the Docker network of fenced scans when Network is
	// Fenced; empty: ManagedNetwork.
	FenceNetwork string
	Limits       Limits
	// Instance identifies the server instance in labels.
	Instance string
}

// Scan is what the sandbox needs to know about one scan.
type Scan struct {
	ID        string
	Image     string
	Args      []string
	Privilege Privilege
	// Placement is where the scan runs (see Place); the zero value means
	// no network.
	Placement Placement
}

// Spec is one scan container, described so that any runner can express
// it: Docker (Docker, below) or a Kubernetes pod. Every capability is
// dropped but CapAdd; the root filesystem is read-only and privileges can
// never be gained (no-new-privileges / allowPrivilegeEscalation: false).
type Spec struct {
	Name    string
	Image   string   // an image ID or a reference pinned by digest
	Command []string // the full command line: program first
	UID     int
	GID     int
	CapAdd  []string
	Network string // "host", "none" or a network name; a runner sets "container:ID" for a fence
	// Fence, when set, is the allowlist the container's network namespace
	// must enforce before the container starts; a runner that cannot
	// install it must refuse the spec. Nil: not fenced.
	Fence *Fence
	// Unfenced says why the container is not fenced, when Fence is nil.
	Unfenced string
	// HostFence: the container runs on the host network inside the host
	// fence (loopback only): a runner must install that fence first and
	// put the container in CgroupParent, or refuse the spec. Its seccomp
	// profile also refuses packet sockets that could send on any device
	// (HostSeccompProfile).
	HostFence bool
	// CgroupParent is the cgroup the runner puts the container under; the
	// host fence matches that cgroup's sockets. Empty: the engine's default.
	CgroupParent string
	// Seccomp is the seccomp profile (JSON) applied to the container.
	Seccomp []byte
	// SeccompID names that profile (see SeccompID).
	SeccompID string
	CPUs      float64
	Memory    int64 // bytes; no swap
	Pids      int64
	// TmpfsBytes sizes the noexec, nosuid /tmp.
	TmpfsBytes int64
	// Deadline is the wall clock from the container's start; 0: none.
	Deadline time.Duration
	Labels   map[string]string
	// Sysctls are namespaced kernel settings (tests enable IPv6 with them).
	Sysctls map[string]string
}

// New returns the spec of one scan: the only place where a scan's
// privileges become container settings.
func New(opts Options, s Scan) Spec {
	lim := opts.Limits
	network := s.Placement.Network
	if network == "" {
		network = None
	}
	spec := Spec{
		Name:       "nmap-mcp-" + s.ID,
		Image:      s.Image,
		Command:    append([]string{"/bin/sh", "-c", launcher, Program}, s.Args...),
		UID:        65532,
		GID:        65532,
		Network:    network,
		Fence:      s.Placement.Fence,
		Unfenced:   s.Placement.Unfenced,
		HostFence:  s.Placement.HostFence,
		Seccomp:    SeccompProfile(),
		SeccompID:  SeccompID(),
		CPUs:       lim.CPUs,
		Memory:     lim.Memory,
		Pids:       lim.Pids,
		TmpfsBytes: max(lim.TmpfsBytes, 1<<20),
		Deadline:   lim.Timeout,
		Labels:     OwnerLabels(opts.Instance),
	}
	spec.Labels[LabelScanID] = s.ID
	if spec.HostFence {
		spec.Seccomp, spec.SeccompID = HostSeccompProfile(), HostSeccompID()
	}
	if s.Privilege == RawSockets {
		spec.UID, spec.GID = 0, 0
		spec.CapAdd = []string{"NET_RAW"}
	}
	return spec
}

// Describe is a one-line summary of the sandbox for a result header.
func (spec Spec) Describe() string {
	caps := "none"
	if len(spec.CapAdd) > 0 {
		caps = strings.Join(spec.CapAdd, ",")
	}
	seccomp := "docker's default seccomp"
	if spec.SeccompID != "" {
		seccomp = "seccomp " + spec.SeccompID
	}
	return fmt.Sprintf("uid %d, caps %s, %s, %g CPU, %d MiB, %d pids, read-only rootfs, no-new-privileges, %s",
		spec.UID, caps, spec.NetworkLine(), spec.CPUs, spec.Memory>>20, spec.Pids, seccomp)
}

// NetworkLine says where the container sits and whether it is fenced,
// e.g. "network nmap-mcp fenced to 2 addresses" or "network host, not
// fenced".
func (spec Spec) NetworkLine() string {
	if spec.HostFence {
		return "network host fenced to loopback"
	}
	if f := spec.Fence; f != nil {
		n := f.Addresses()
		unit := "addresses"
		if n == 1 {
			unit = "address"
		}
		return fmt.Sprintf("network %s fenced to %d %s", f.Network, n, unit)
	}
	if spec.Network == None {
		return "network none"
	}
	return fmt.Sprintf("network %s not fenced", spec.Network)
}

// Describe is a one-line summary of the sandbox of one scan.
func Describe(opts Options, s Scan) string { return New(opts, s).Describe() }

var digestRef = regexp.MustCompile(`^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$`)

// PinnedByDigest reports whether ref names an image by digest
// (REPO@sha256:<64 hex>), as a runner that pulls by name needs.
func PinnedByDigest(ref string) bool { return digestRef.MatchString(ref) }
