package kuberunner

// Unit tests of the Job's shape and of the pure helpers: no cluster. The
// Jobs really running are tested on the test cluster (kube_e2e_test.go).

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

const testImage = "registry.example/nmap-mcp/nmap@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func testSpec(priv sandbox.Privilege, fenced bool) sandbox.Spec {
	place := sandbox.Placement{Network: "host", Unfenced: "test"}
	if fenced {
		place = sandbox.Placement{Network: "nmap-mcp", Fence: &sandbox.Fence{Network: "nmap-mcp",
			Allow: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32")}}}
	}
	return sandbox.New(sandbox.Options{Limits: sandbox.DefaultLimits(), Instance: "i1"},
		sandbox.Scan{ID: "abcdef012345", Image: "x", Args: []string{"-sT", "10.1.2.3"}, Privilege: priv, Placement: place})
}

func TestJobForCarriesTheSandbox(t *testing.T) {
	cfg := Config{Namespace: "scans", Image: testImage, Instance: "i1", ServiceAccount: "scan", NodeSelector: map[string]string{"lab": "a"}}
	j, err := JobFor(cfg, testSpec(sandbox.RawSockets, true))
	if err != nil {
		t.Fatal(err)
	}
	if j.Name != "nmap-mcp-abcdef012345" || j.Namespace != "scans" || *j.Spec.BackoffLimit != 0 ||
		*j.Spec.ActiveDeadlineSeconds != 220+60 || *j.Spec.TTLSecondsAfterFinished != 600 {
		t.Errorf("job meta/spec: %s/%s backoff %d deadline %d ttl %d", j.Namespace, j.Name, *j.Spec.BackoffLimit,
			*j.Spec.ActiveDeadlineSeconds, *j.Spec.TTLSecondsAfterFinished)
	}
	p := j.Spec.Template.Spec
	if p.ServiceAccountName != "scan" || p.NodeSelector["lab"] != "a" || *p.AutomountServiceAccountToken ||
		*p.EnableServiceLinks || p.HostNetwork || *p.TerminationGracePeriodSeconds != 1 {
		t.Errorf("pod spec: %+v", p)
	}
	c := p.Containers[0]
	if c.Image != testImage || c.Command[0] != "/bin/sh" || c.Command[3] != sandbox.Program || c.Command[4] != "-sT" {
		t.Errorf("container image %s command %q", c.Image, c.Command)
	}
	if *c.SecurityContext.RunAsUser != 0 || len(c.SecurityContext.Capabilities.Add) != 1 || c.SecurityContext.Capabilities.Add[0] != "NET_RAW" {
		t.Errorf("raw scan security context: %+v", c.SecurityContext)
	}
	if len(p.InitContainers) != 1 || p.InitContainers[0].SecurityContext.Capabilities.Add[0] != "NET_ADMIN" {
		t.Errorf("fence init container: %+v", p.InitContainers)
	}
	rules := p.InitContainers[0].Env[0].Value
	if !strings.Contains(rules, "10.1.2.3") || !strings.Contains(rules, `hook egress device "eth0"`) {
		t.Errorf("fence rules: %s", rules)
	}
	if p.Volumes[0].EmptyDir == nil || p.Volumes[0].EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("/tmp is not a memory emptyDir: %+v", p.Volumes)
	}
	// Unprivileged and unfenced: non-root, no capabilities, no init.
	j, _ = JobFor(cfg, testSpec(sandbox.Unprivileged, false))
	p = j.Spec.Template.Spec
	sc := p.Containers[0].SecurityContext
	if *sc.RunAsUser != 65532 || !*sc.RunAsNonRoot || len(sc.Capabilities.Add) != 0 || len(p.InitContainers) != 0 {
		t.Errorf("connect scan: %+v init %d", sc, len(p.InitContainers))
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Image: testImage}, "kubernetes.namespace"},
		{Config{Namespace: "s", Image: "nmap-mcp/nmap:7.93"}, "pinned by digest"},
		{Config{Namespace: "s", Image: testImage, SeccompProfile: "/etc/x.json"}, "relative"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	if err := (Config{Namespace: "s", Image: testImage}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestDemuxSplitsStderr(t *testing.T) {
	var out, errb bytes.Buffer
	in := "<nmaprun>\n\x1fWarning: one\n<host/>\n\x1f\n\x1f\x1enmap-mcp-exit=0\nlast"
	if _, _, err := demux(strings.NewReader(in), &out, &errb); err != nil {
		t.Fatal(err)
	}
	if out.String() != "<nmaprun>\n<host/>\nlast" || errb.String() != "Warning: one\n\n\x1enmap-mcp-exit=0\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
}

func TestRefusedNamesTheCause(t *testing.T) {
	err := refused("scans", `Error creating: pods "x" is forbidden: violates PodSecurity "restricted:latest": unrestricted capabilities`)
	var re *RefusedError
	if !errors.As(err, &re) || re.Cause != "pod-security" || re.Level != "restricted:latest" ||
		!strings.Contains(err.Error(), `"privileged"`) {
		t.Errorf("%v", err)
	}
	err = refused("scans", `pods "x" is forbidden: exceeded quota: q, requested: cpu=1`)
	if !errors.As(err, &re) || re.Cause != "quota" {
		t.Errorf("%v", err)
	}
}

func TestCheckImage(t *testing.T) {
	r := &Runner{cfg: Config{Image: testImage}}
	digest := testImage[strings.Index(testImage, "@")+1:]
	if err := r.checkImage(&corev1.ContainerStatus{ImageID: "docker.io/x/nmap@" + digest}); err != nil {
		t.Error(err)
	}
	var pe *ImagePinError
	if err := r.checkImage(&corev1.ContainerStatus{ImageID: "docker.io/x/nmap@sha256:" + strings.Repeat("f", 64)}); !errors.As(err, &pe) {
		t.Errorf("another image accepted: %v", err)
	}
}

func TestShapeSaysWhatRuns(t *testing.T) {
	r := &Runner{cfg: Config{Image: testImage, SeccompProfile: "nmap-mcp.json"}}
	s := r.Shape(testSpec(sandbox.Unprivileged, true))
	if s.NetworkLine() != "network pod fenced to 1 address" || s.SeccompID != "localhost/nmap-mcp.json" || s.Image != testImage {
		t.Errorf("%s %s %s", s.NetworkLine(), s.SeccompID, s.Image)
	}
	s = (&Runner{cfg: Config{Image: testImage}}).Shape(testSpec(sandbox.Unprivileged, false))
	if s.NetworkLine() != "network pod not fenced" || s.SeccompID != RuntimeDefault {
		t.Errorf("%s %s", s.NetworkLine(), s.SeccompID)
	}
	// A loopback scan, host-fenced on Docker, is fenced to the pod's own
	// loopback: no host cgroup, no unfenced pod.
	loop := sandbox.New(sandbox.Options{Limits: sandbox.DefaultLimits()}, sandbox.Scan{ID: "abcdef012346", Image: "x",
		Placement: sandbox.Placement{Network: sandbox.Host, HostFence: true}})
	s = r.Shape(loop)
	if s.HostFence || s.CgroupParent != "" || s.Fence == nil || s.Unfenced != "" || !strings.HasPrefix(s.NetworkLine(), "network pod fenced to") {
		t.Errorf("loopback on Kubernetes: %+v %s", s.Fence, s.NetworkLine())
	}
	if _, err := JobFor(Config{Image: testImage, Namespace: "scans"}, s); err != nil {
		t.Errorf("a loopback pod's Job: %v", err)
	}
}

func TestLabelValues(t *testing.T) {
	for in, want := range map[string]string{
		"node-1.lab":                  "node-1.lab",
		"host_with space":             "host_with-space",
		strings.Repeat("a", 70) + ".": strings.Repeat("a", 63),
	} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// The advice of a Pod Security refusal is right about the levels: NET_RAW
// is not among "baseline"'s capabilities (pod-security-admission's
// capabilities_baseline check), so raw scans need "privileged"; connect and
// ping scans meet "restricted". (It said raw scans meet "baseline".)
func TestPodSecurityAdviceNamesTheRightLevels(t *testing.T) {
	err := refused("scans", `Error creating: pods "x" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (container "nmap" must not include "NET_RAW" in securityContext.capabilities.add)`)
	var re *RefusedError
	if !errors.As(err, &re) || re.Cause != "pod-security" || re.Level != "baseline:latest" {
		t.Fatalf("%v", err)
	}
	msg := err.Error()
	for _, want := range []string{`"baseline:latest"`, `NET_RAW`, `need "privileged"`, `meet "restricted"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("advice lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, `need "baseline"`) {
		t.Errorf("advice says a scan needs \"baseline\": %s", msg)
	}
}

// A refusal by a ValidatingAdmissionPolicy (deploy/kubernetes/admission.yaml)
// names the policy, its binding and the rule, not RBAC: the API returns it
// as "forbidden" too, and the runner used to advise the Role.
func TestRefusedByAdmissionPolicy(t *testing.T) {
	for _, msg := range []string{
		`jobs.batch "nmap-mcp-x" is forbidden: ValidatingAdmissionPolicy 'nmap-mcp-scans' with binding 'nmap-mcp-scans' denied request: every container must run the scanner image pinned in this policy (kubernetes.image): r/n@sha256:00`,
		`Error creating: pods "nmap-mcp-x-abcde" is forbidden: ValidatingAdmissionPolicy 'nmap-mcp-scans' with binding 'nmap-mcp-scans' denied request: every container must run the scanner image pinned in this policy (kubernetes.image): r/n@sha256:00`,
	} {
		err := refused("scans", msg)
		var re *RefusedError
		if !errors.As(err, &re) || re.Cause != "admission-policy" || re.Policy != "nmap-mcp-scans" {
			t.Fatalf("%v (%+v)", err, re)
		}
		s := err.Error()
		for _, want := range []string{"ValidatingAdmissionPolicy nmap-mcp-scans", "binding nmap-mcp-scans", "every container must run the scanner image", "admission.yaml"} {
			if !strings.Contains(s, want) {
				t.Errorf("%q lacks %q", s, want)
			}
		}
		if strings.Contains(s, "rbac.yaml") {
			t.Errorf("a policy refusal advises RBAC: %s", s)
		}
	}
}

// The pods of one sharded scan spread over nodes (a soft constraint on
// the scan's id); a whole scan's pod gets none; "none" turns it off; the
// node selector still applies. (Unit test; no cluster.)
func TestJobForSpreadsShards(t *testing.T) {
	cfg := Config{Namespace: "scans", Image: testImage, Instance: "i1", NodeSelector: map[string]string{"lab": "a"}}
	sp := testSpec(sandbox.Unprivileged, true)
	j, err := JobFor(cfg, sp)
	if err != nil || len(j.Spec.Template.Spec.TopologySpreadConstraints) != 0 {
		t.Fatalf("a whole scan: %v %+v", err, j.Spec.Template.Spec.TopologySpreadConstraints)
	}
	sp.Labels[shard.LabelShard] = "2-of-4"
	sp.Name += "-s2"
	j, err = JobFor(cfg, sp)
	if err != nil {
		t.Fatal(err)
	}
	c := j.Spec.Template.Spec.TopologySpreadConstraints
	if len(c) != 1 || c[0].TopologyKey != corev1.LabelHostname || c[0].WhenUnsatisfiable != corev1.ScheduleAnyway ||
		c[0].LabelSelector.MatchLabels[sandbox.LabelScanID] != "abcdef012345" || j.Spec.Template.Spec.NodeSelector["lab"] != "a" {
		t.Fatalf("shard spread: %+v", c)
	}
	cfg.ShardSpread = "none"
	if j, _ = JobFor(cfg, sp); len(j.Spec.Template.Spec.TopologySpreadConstraints) != 0 {
		t.Error(`shard_spread "none" still spreads`)
	}
}
