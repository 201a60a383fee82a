package kuberunner

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/nmap-mcp/nmap-mcp/internal/fence"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Container names in a scan's pod.
const (
	ScanContainer  = "nmap"
	FenceContainer = "fence"
)

// RuntimeDefault names the container runtime's default seccomp profile,
// used when no Localhost profile is configured.
const RuntimeDefault = "RuntimeDefault"

// Config shapes the Jobs a Runner creates.
type Config struct {
	// Namespace is where Jobs run (required).
	Namespace string
	// Image is the scanner image pinned by digest (REPO@sha256:…); the
	// pod's image ID must carry the same digest.
	Image string
	// NodeSelector, when set, is the pods' node selector.
	NodeSelector map[string]string
	// ServiceAccount, when set, is the pods' service account (its token
	// is never mounted).
	ServiceAccount string
	// SeccompProfile is the project's profile installed on the nodes,
	// relative to the kubelet's seccomp directory (e.g. "nmap-mcp.json",
	// see sandbox.SeccompProfile); empty: the runtime's default.
	SeccompProfile string
	// TTL is ttlSecondsAfterFinished, the cluster's own clean-up should
	// this server die before it deletes a Job; default 10 minutes.
	TTL time.Duration
	// Instance identifies this server in labels.
	Instance string
	// UnschedulableGrace is how long a pod may wait for a node before the
	// scan fails with the scheduler's reason; default 15 s.
	UnschedulableGrace time.Duration
	// APIGrace is how long a running scan waits for an API server that
	// stopped answering (a restart) before it ends as lost
	// (*executor.LostError, the output read so far kept); the Job's pod
	// runs on meanwhile, and the scan resumes when the API answers within
	// it. Default 60 s.
	APIGrace time.Duration
	// ShardSpread is the topology key over which the pods of one sharded
	// scan spread (a soft topology spread constraint: ScheduleAnyway);
	// empty: kubernetes.io/hostname, "none": no constraint.
	ShardSpread string
}

// deadlineSlack is added to the scan's wall clock for the Job's
// activeDeadlineSeconds, which counts from the Job's start (scheduling
// and the fence included): the runner enforces the exact deadline from the
// scan container's start, the Job's is the cluster's safety net.
const deadlineSlack = 60 * time.Second

// Validate checks the configuration, naming the setting at fault.
func (c Config) Validate() error {
	if c.Namespace == "" {
		return fmt.Errorf("kubernetes.namespace: must be set")
	}
	if !sandbox.PinnedByDigest(c.Image) {
		return fmt.Errorf("kubernetes.image %q: must be an image pinned by digest, e.g. registry.example/nmap-mcp/nmap@sha256:<64 hex> (see docs/kubernetes.md)", c.Image)
	}
	if c.SeccompProfile != "" && (strings.HasPrefix(c.SeccompProfile, "/") || strings.Contains(c.SeccompProfile, "..")) {
		return fmt.Errorf("kubernetes.seccomp_profile %q: must be a path relative to the kubelet's seccomp directory", c.SeccompProfile)
	}
	return nil
}

// Digest is the sha256 digest the image is pinned to.
func (c Config) Digest() string {
	if i := strings.LastIndex(c.Image, "@"); i >= 0 {
		return c.Image[i+1:]
	}
	return ""
}

// SeccompID names the seccomp profile the pods get: "localhost/FILE" or
// RuntimeDefault.
func (c Config) SeccompID() string {
	if c.SeccompProfile != "" {
		return "localhost/" + c.SeccompProfile
	}
	return RuntimeDefault
}

// stderrMark starts every line the pod's launcher copies from nmap's
// stderr: a pod's log stream interleaves both streams line by line, and
// the mark splits them again. \x1f never appears in nmap's XML.
const stderrMark = '\x1f'

// launcher runs nmap with the user's arguments as positional parameters,
// marks each stderr line, and reports the exit status in-band on both
// streams as the Docker launcher does (sandbox.ExitMarker). nmap runs in
// the background so that the shell, pid 1 of the pod, can act on SIGTERM:
// it exits at once, and the kernel then kills everything else in the pod,
// instead of the kubelet waiting out the grace period.
var launcher = `trap 'exit 143' TERM INT
exec 3>&1
( { "$0" "$@" 2>&1 1>&3 3>&-; echo $? >/tmp/.nmap-mcp-exit; } | sed -u 's/^/` + string(stderrMark) + `/' >&2 3>&- ) &
wait $!
s=$(cat /tmp/.nmap-mcp-exit 2>/dev/null || echo 125)
` + sandbox.ExitReport(string(stderrMark)) + `
exit "$s"`

// fenceScript installs the ruleset in $NMAP_MCP_FENCE in the pod's network
// namespace, adding the default gateways as neighbours and the pod's own
// IPv4 addresses (its local /32 routes in /proc/net/fib_trie but
// loopback's: the only sender address its ARP may carry), in one nft
// transaction; then checks that it is in place. Any surprise fails the
// init container, and so the pod, closed: nmap never starts.
var fenceScript = `set -eu
[ -e /sys/class/net/eth0 ] || { echo "fence: the pod has no eth0" >&2; exit 1; }
for d in $(ls /sys/class/net); do
	case "$d" in lo|eth0) ;; *) echo "fence: unexpected interface $d; refusing to fence" >&2; exit 1 ;; esac
done
gws=$(perl -ane 'next if $. == 1 || $F[2] eq "00000000"; print join(".", reverse unpack("C4", pack("H8", $F[2]))), "\n"' /proc/net/route | sort -u)
own=$(perl -ne '$a = $1 if /\|-- (\d+\.\d+\.\d+\.\d+)$/; print "$a\n" if m{^\s*/32 host LOCAL} && $a !~ /^127\./' /proc/net/fib_trie | sort -u)
{
	printf '%s\n' "$NMAP_MCP_FENCE"
	for g in $gws; do
		echo "add element inet nmap_mcp nbr4 { $g }"
		echo "add element netdev nmap_mcp_dev0 nbr4 { $g }"
	done
	for a in $own; do
		echo "add element netdev nmap_mcp_dev0 own4 { $a }"
	done
} | nft -f -
devs=eth0
` + fence.Verify + `
echo "fence: installed for eth0 ($(echo $own)); gateways: $(echo $gws)"`

// PodNetwork names the network of every scan pod in records.
const PodNetwork = "pod"

// Shape returns spec as a Job runs it (executor.Shaper): on the pod's
// network (never the host's), with the cluster's seccomp profile and the
// pinned image, so that the scan's record says what really ran.
func (r *Runner) Shape(spec sandbox.Spec) sandbox.Spec {
	spec.Image = r.cfg.Image
	spec.Seccomp, spec.SeccompID = nil, r.cfg.SeccompID()
	spec.Network = PodNetwork
	if spec.HostFence {
		// Loopback targets are the pod's own loopback: the pod's fence
		// keeps such a scan to it, as the host fence does on Docker.
		spec.HostFence, spec.CgroupParent, spec.Unfenced = false, "", ""
		spec.Fence = &sandbox.Fence{Network: PodNetwork, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	} else if spec.Fence != nil {
		f := *spec.Fence
		f.Network = PodNetwork
		spec.Fence = &f
	} else {
		spec.Unfenced = "sandbox.network is not fenced"
	}
	return spec
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// jobName is the Job's name for a spec: a DNS label.
func jobName(spec sandbox.Spec) (string, error) {
	n := strings.ToLower(spec.Name)
	if len(n) > 63 || !dnsLabel.MatchString(n) {
		return "", fmt.Errorf("job name %q: must be a DNS label of at most 63 characters", n)
	}
	return n, nil
}

// JobFor returns the Job that runs spec: the one place where a scan's
// sandbox becomes Kubernetes settings.
func JobFor(cfg Config, spec sandbox.Spec) (*batchv1.Job, error) {
	name, err := jobName(spec)
	if err != nil {
		return nil, err
	}
	if len(spec.Command) < 4 || spec.Command[0] != "/bin/sh" || spec.Command[1] != "-c" {
		return nil, fmt.Errorf("spec %s: command must be the sandbox launcher (/bin/sh -c LAUNCHER PROGRAM ARGS...)", spec.Name)
	}
	// The same program and arguments, under the pod's launcher.
	command := append([]string{"/bin/sh", "-c", launcher}, spec.Command[3:]...)

	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = labelValue(v)
	}
	seccomp := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	if cfg.SeccompProfile != "" {
		p := cfg.SeccompProfile
		seccomp = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &p}
	}
	uid, gid := int64(spec.UID), int64(spec.GID)
	nonRoot := uid != 0
	caps := &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
	for _, c := range spec.CapAdd {
		caps.Add = append(caps.Add, corev1.Capability(strings.TrimPrefix(strings.ToUpper(c), "CAP_")))
	}
	cpu := resource.NewMilliQuantity(int64(math.Ceil(spec.CPUs*1000)), resource.DecimalSI)
	mem := resource.NewQuantity(spec.Memory, resource.BinarySI)
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: *cpu, corev1.ResourceMemory: *mem},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: *cpu, corev1.ResourceMemory: *mem},
	}
	tmp := resource.NewQuantity(max(spec.TmpfsBytes, 1<<20), resource.BinarySI)
	scan := corev1.Container{
		Name:            ScanContainer,
		Image:           cfg.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         command,
		Resources:       res,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &uid,
			RunAsGroup:               &gid,
			RunAsNonRoot:             &nonRoot,
			Capabilities:             caps,
			AllowPrivilegeEscalation: ptr(false),
			Privileged:               ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			SeccompProfile:           seccomp,
		},
		VolumeMounts:             []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	}
	pod := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		TerminationGracePeriodSeconds: ptr(int64(1)),
		AutomountServiceAccountToken:  ptr(false),
		EnableServiceLinks:            ptr(false),
		HostNetwork:                   false,
		HostPID:                       false,
		HostIPC:                       false,
		ServiceAccountName:            cfg.ServiceAccount,
		NodeSelector:                  cfg.NodeSelector,
		SecurityContext:               &corev1.PodSecurityContext{SeccompProfile: seccomp},
		Containers:                    []corev1.Container{scan},
		Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{
			EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: tmp}}}},
	}
	if spread := cfg.ShardSpread; spec.Labels[shard.LabelShard] != "" && spread != "none" {
		// The shards of one scan spread over nodes, as far as they can.
		if spread == "" {
			spread = corev1.LabelHostname
		}
		pod.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: spread, WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{sandbox.LabelScanID: labels[sandbox.LabelScanID]}},
		}}
	}
	for k, v := range spec.Sysctls {
		pod.SecurityContext.Sysctls = append(pod.SecurityContext.Sysctls, corev1.Sysctl{Name: k, Value: v})
	}
	if spec.Fence != nil {
		init, err := fenceContainer(cfg, spec.Fence, seccomp)
		if err != nil {
			return nil, err
		}
		pod.InitContainers = []corev1.Container{init}
	}
	deadline := int64(math.Ceil((spec.Deadline + deadlineSlack).Seconds()))
	ttl := cfg.TTL
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cfg.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr(int32(0)),
			Completions:             ptr(int32(1)),
			Parallelism:             ptr(int32(1)),
			ActiveDeadlineSeconds:   &deadline,
			TTLSecondsAfterFinished: ptr(int32(ttl.Seconds())),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       pod,
			},
		},
	}, nil
}

// fenceContainer is the init container that fences the pod's network:
// root with NET_ADMIN as its only capability, same image, same limits on
// privilege escalation and the root filesystem.
func fenceContainer(cfg Config, f *sandbox.Fence, seccomp *corev1.SeccompProfile) (corev1.Container, error) {
	allow := make([]netip.Prefix, 0, len(f.Allow))
	allow = append(allow, f.Allow...)
	rules, err := fence.Rules{Allow: allow, Devices: []string{"eth0"}}.Ruleset()
	if err != nil {
		return corev1.Container{}, &fence.Error{Err: err}
	}
	small := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("100m"),
		corev1.ResourceMemory: resource.MustParse("32Mi"),
	}
	return corev1.Container{
		Name:            FenceContainer,
		Image:           cfg.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"/bin/sh", "-c", fenceScript},
		Env:             []corev1.EnvVar{{Name: "NMAP_MCP_FENCE", Value: rules}},
		Resources:       corev1.ResourceRequirements{Requests: small, Limits: small},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(int64(0)),
			RunAsNonRoot:             ptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_ADMIN"}},
			AllowPrivilegeEscalation: ptr(false),
			Privileged:               ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			SeccompProfile:           seccomp,
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}, nil
}

func ptr[T any](v T) *T { return &v }

var notLabelChar = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// labelValue makes v a valid label value (a hostname may be longer than
// 63 characters or hold other characters): such a Job is then never taken
// for this host's by the sweep, and its TTL removes it.
func labelValue(v string) string {
	if len(validation.IsValidLabelValue(v)) == 0 {
		return v
	}
	v = notLabelChar.ReplaceAllString(v, "-")
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "-._")
}
