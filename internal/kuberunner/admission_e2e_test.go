package kuberunner_test

// The admission policy of deploy/kubernetes/admission.yaml and the Pod
// Security levels, on the real test cluster (scripts/kube.sh). Scans
// target only listener pods the tests start there.

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/kuberunner"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

const admissionFile = "../../deploy/kubernetes/admission.yaml"

// policed is a scans' namespace under the shipped admission policy (its
// image set to the test cluster's scanner image), the server's account
// bound to the shipped Role there, and a listener pod in a third
// namespace (the policy would refuse the listener: it is not a scan).
type policed struct {
	k      *testkit.Kube
	scans  string
	policy string
	as     kubernetes.Interface // the server's ServiceAccount
	ip     string               // the listener's
}

func newPoliced(t *testing.T) *policed {
	t.Helper()
	k := testkit.NeedKube(t)
	server := k.Namespace(t, nil)
	scans := k.Namespace(t, nil)
	targets := k.Namespace(t, nil)
	p := &policed{k: k, scans: scans}
	p.as = serverAccount(t, k, server, scans)
	p.policy = k.AdmissionPolicy(t, admissionFile, k.Image, scans)
	p.ip = k.Listener(t, targets, 8080)
	return p
}

func (p *policed) config() kuberunner.Config {
	cfg := p.k.RunnerConfig(p.scans, instance)
	cfg.ServiceAccount = "nmap-mcp-scan"
	return cfg
}

// refusedByPolicy says whether err is the policy's refusal; rule, when
// set, must be in its message.
func (p *policed) refusedByPolicy(err error, rule string) bool {
	return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+p.policy+"'") &&
		strings.Contains(err.Error(), rule)
}

// With the policy in place the runner's own Jobs still run, as the
// server's account: fenced connect and SYN scans (the fence's NET_ADMIN
// init container, NET_RAW in the scan container), an unfenced connect
// scan, and one under the project's Localhost seccomp profile.
func TestAdmissionPolicyAdmitsTheRunnersScans(t *testing.T) {
	p := newPoliced(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		priv    sandbox.Privilege
		fenced  bool
		seccomp bool
		flag    string
	}{
		{"fenced connect", sandbox.Unprivileged, true, false, "-sT"},
		{"fenced syn", sandbox.RawSockets, true, false, "-sS"},
		{"unfenced connect", sandbox.Unprivileged, false, false, "-sT"},
		{"fenced syn localhost seccomp", sandbox.RawSockets, true, true, "-sS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := p.config()
			if tc.seccomp {
				if p.k.Seccomp == "" {
					t.Fatal("the test cluster names no installed seccomp profile")
				}
				cfg.SeccompProfile = p.k.Seccomp
			}
			r, err := kuberunner.New(&testkit.ClientsetAPI{Clientset: p.as}, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close(context.Background())
			var allow []string
			if tc.fenced {
				allow = []string{p.ip}
			}
			res, err := r.Run(ctx, executor.Job{Spec: spec(tc.priv, allow, 60*time.Second,
				tc.flag, "-n", "-Pn", "-p", "8080", "-oX", "-", p.ip)})
			if err != nil {
				t.Fatalf("scan under the policy: %v\nstderr: %s", err, res.Stderr)
			}
			if got := portState(string(res.Stdout), "8080"); got != "open" {
				t.Errorf("8080: %q, want open\n%s", got, res.Stdout)
			}
		})
	}
}

// hostile is a Job that takes over the node: root with SYS_ADMIN, the
// host's network and pids, the host's root filesystem mounted, the token
// mounted, privileged when asked. Its image is the pinned scanner image, so
// that the pin is not what refuses it.
func hostile(image string, privileged bool) *batchv1.Job {
	root := int64(0)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "takeover"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			HostNetwork:   true,
			HostPID:       true,
			Containers: []corev1.Container{{
				Name: "nmap", Image: image, Command: []string{"chroot", "/host", "sh"},
				SecurityContext: &corev1.SecurityContext{RunAsUser: &root, Privileged: &privileged,
					Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "host", MountPath: "/host"}},
			}},
			Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}},
		}}},
	}
}

// The policy refuses, as the server's account, a Job that takes over the
// node, and each single thing the runner's Jobs never hold; a Pod made
// directly meets the same rules (the account may not create Pods at all:
// RBAC; the cluster's administrator, who may, is refused by the policy),
// and so does an ephemeral container added later. Every refusal names
// the policy. The runner turns a refusal into an error that names it.
func TestAdmissionPolicyRefusesWhatTheRunnerNeverMakes(t *testing.T) {
	p := newPoliced(t)
	ctx := context.Background()
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	jobs := p.as.BatchV1().Jobs(p.scans)

	// The node takeover, created for real: refused, nothing made.
	_, err := jobs.Create(ctx, hostile(p.k.Image, false), metav1.CreateOptions{})
	if !p.refusedByPolicy(err, "no host namespaces") || !apierrors.IsForbidden(err) {
		t.Fatalf("host-mount Job as the server's account: %v", err)
	}
	t.Logf("host-mount Job: %v", err)
	// privileged: true. The test cluster's API server runs with
	// --allow-privileged=false, which refuses it in validation, before
	// admission; on a cluster that allows privileged pods the policy does.
	_, err = jobs.Create(ctx, hostile(p.k.Image, true), metav1.CreateOptions{})
	if err == nil || !(p.refusedByPolicy(err, "") || strings.Contains(err.Error(), "disallowed by cluster policy")) {
		t.Fatalf("privileged host-mount Job as the server's account: %v", err)
	}
	t.Logf("privileged host-mount Job: %v", err)
	if _, err := jobs.Get(ctx, "takeover", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the refused Job exists: %v", err)
	}

	// One thing at a time, on the runner's own fenced SYN scan Job.
	base, err := kuberunner.JobFor(p.config(), spec(sandbox.RawSockets, []string{p.ip}, 30*time.Second,
		"-sS", "-n", "-Pn", "-p", "8080", "-oX", "-", p.ip))
	if err != nil {
		t.Fatal(err)
	}
	connect, err := kuberunner.JobFor(p.config(), spec(sandbox.Unprivileged, nil, 30*time.Second,
		"-sT", "-n", "-Pn", "-p", "8080", "-oX", "-", p.ip))
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range []*batchv1.Job{base, connect} {
		if _, err := jobs.Create(ctx, j, dry); err != nil {
			t.Fatalf("the runner's own Job is refused: %v", err)
		}
	}
	tr, other := true, p.k.Image[:strings.LastIndex(p.k.Image, "@")]+"@sha256:"+strings.Repeat("1", 64)
	scanC := func(s *corev1.PodSpec) *corev1.Container { return &s.Containers[0] }
	fenceC := func(s *corev1.PodSpec) *corev1.Container { return &s.InitContainers[0] }
	for _, tc := range []struct {
		name string
		job  *batchv1.Job
		edit func(*batchv1.Job, *corev1.PodSpec)
		rule string
	}{
		{"hostNetwork", base, func(_ *batchv1.Job, s *corev1.PodSpec) { s.HostNetwork = true }, "no host namespaces"},
		{"hostPID", base, func(_ *batchv1.Job, s *corev1.PodSpec) { s.HostPID = true }, "no host namespaces"},
		{"hostIPC", base, func(_ *batchv1.Job, s *corev1.PodSpec) { s.HostIPC = true }, "no host namespaces"},
		{"hostPath", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		}, "only emptyDir volumes"},
		{"secret volume", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{
				Secret: &corev1.SecretVolumeSource{SecretName: "nmap-mcp-config"}}})
		}, "only emptyDir volumes"},
		{"another image", base, func(_ *batchv1.Job, s *corev1.PodSpec) { scanC(s).Image = other }, "scanner image"},
		{"another image in the fence", base, func(_ *batchv1.Job, s *corev1.PodSpec) { fenceC(s).Image = other }, "scanner image"},
		{"SYS_ADMIN", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			scanC(s).SecurityContext.Capabilities.Add = append(scanC(s).SecurityContext.Capabilities.Add, "SYS_ADMIN")
		}, "NET_RAW only"},
		{"NET_ADMIN in the scan container", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			scanC(s).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}, "NET_RAW only"},
		{"capabilities not dropped", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			scanC(s).SecurityContext.Capabilities.Drop = nil
		}, "NET_RAW only"},
		{"NET_RAW in the fence", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			fenceC(s).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN", "NET_RAW"}
		}, "NET_ADMIN only"},
		{"root connect scan", connect, func(_ *batchv1.Job, s *corev1.PodSpec) {
			root := int64(0)
			scanC(s).SecurityContext.RunAsNonRoot, scanC(s).SecurityContext.RunAsUser = nil, &root
		}, "runAsNonRoot"},
		{"service-account token", base, func(_ *batchv1.Job, s *corev1.PodSpec) { s.AutomountServiceAccountToken = &tr }, "service-account token"},
		{"privilege escalation", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			scanC(s).SecurityContext.AllowPrivilegeEscalation = &tr
		}, "allowPrivilegeEscalation"},
		{"writable root", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			f := false
			fenceC(s).SecurityContext.ReadOnlyRootFilesystem = &f
		}, "readOnlyRootFilesystem"},
		{"unconfined seccomp", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			scanC(s).SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}, "seccomp"},
		{"second container", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			c := *scanC(s)
			c.Name = "extra"
			s.Containers = append(s.Containers, c)
		}, "one container named nmap"},
		{"sidecar fence", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			always := corev1.ContainerRestartPolicyAlways
			fenceC(s).RestartPolicy = &always
		}, "not a sidecar"},
		{"hostPort", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			scanC(s).Ports = []corev1.ContainerPort{{ContainerPort: 22, HostPort: 2222}}
		}, "no container ports"},
		{"secret in env", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			scanC(s).Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "nmap-mcp-config"}, Key: "config.yaml"}}}}
		}, "no env from Secrets"},
		{"no limits", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			scanC(s).Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
		}, "cpu and memory limits"},
		{"sysctl", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			s.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}}
		}, "no sysctls"},
		{"SELinux options", base, func(_ *batchv1.Job, s *corev1.PodSpec) {
			s.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: "spc_t"}
		}, "no SELinux options"},
		{"shared pids", base, func(_ *batchv1.Job, s *corev1.PodSpec) { s.ShareProcessNamespace = &tr }, "no shared process namespace"},
		{"parallel", base, func(j *batchv1.Job, _ *corev1.PodSpec) {
			n := int32(50)
			j.Spec.Parallelism, j.Spec.Completions = &n, &n
		}, "runs one pod once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := tc.job.DeepCopy()
			tc.edit(j, &j.Spec.Template.Spec)
			_, err := jobs.Create(ctx, j, dry)
			if !p.refusedByPolicy(err, tc.rule) {
				t.Fatalf("want the policy's refusal naming %q, got %v", tc.rule, err)
			}
		})
	}

	// Pods made directly: the server's account may not (RBAC, before
	// the policy); the administrator may, and meets the policy.
	takeover := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "takeover"}, Spec: hostile(p.k.Image, false).Spec.Template.Spec}
	_, err = p.as.CoreV1().Pods(p.scans).Create(ctx, takeover, metav1.CreateOptions{})
	if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `cannot create resource "pods"`) {
		t.Fatalf("host-mount Pod as the server's account: %v", err)
	}
	pods := p.k.Client.CoreV1().Pods(p.scans)
	if _, err = pods.Create(ctx, takeover, metav1.CreateOptions{}); !p.refusedByPolicy(err, "no host namespaces") {
		t.Fatalf("host-mount Pod as the administrator: %v", err)
	}
	t.Logf("host-mount Pod: %v", err)
	own := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "own"}, Spec: *base.Spec.Template.Spec.DeepCopy()}
	if _, err := pods.Create(ctx, own, dry); err != nil {
		t.Fatalf("the runner's own pod, made directly: %v", err)
	}
	// AppArmor by the old annotation: the API server copies it to the
	// field, which the policy reads.
	own.Annotations = map[string]string{"container.apparmor.security.beta.kubernetes.io/nmap": "unconfined"}
	if _, err := pods.Create(ctx, own, dry); !p.refusedByPolicy(err, "unconfined AppArmor") {
		t.Fatalf("a pod with an unconfined AppArmor annotation: %v", err)
	}
	own.Annotations = nil
	own.Spec.Containers[0].Image = other
	if _, err := pods.Create(ctx, own, dry); !p.refusedByPolicy(err, "scanner image") {
		t.Fatalf("a pod of another image, made directly: %v", err)
	}

	// An ephemeral container added to an admitted pod (one that no node
	// takes, so nothing runs).
	pending := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pending"}, Spec: *base.Spec.Template.Spec.DeepCopy()}
	pending.Spec.NodeSelector = map[string]string{"nmap-mcp.test/no-such-node": "true"}
	created, err := pods.Create(ctx, pending, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pods.Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: "debug", Image: p.k.Image, Command: []string{"sh"}}}}
		_, err = pods.UpdateEphemeralContainers(ctx, cur.Name, cur, metav1.UpdateOptions{})
		return err
	})
	if !p.refusedByPolicy(err, "no ephemeral containers") {
		t.Fatalf("ephemeral container: %v", err)
	}
	_ = pods.Delete(ctx, created.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})

	// The runner pinned to another image than the policy: the scan fails
	// with an error that names the policy, and nothing is left.
	cfg := p.config()
	cfg.Image = other
	r, err := kuberunner.New(&testkit.ClientsetAPI{Clientset: p.as}, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	sp := spec(sandbox.Unprivileged, []string{p.ip}, 30*time.Second, "-sT", "-n", "-Pn", "-p", "8080", "-oX", "-", p.ip)
	res, err := r.Run(ctx, executor.Job{Spec: sp})
	var re *kuberunner.RefusedError
	if !errors.As(err, &re) || re.Cause != "admission-policy" || re.Policy != p.policy ||
		!strings.Contains(err.Error(), "ValidatingAdmissionPolicy "+p.policy) || !res.Started.IsZero() {
		t.Fatalf("runner pinned to another image: %v (%+v)", err, re)
	}
	t.Logf("runner pinned to another image: %v", err)
	jobGone(t, p.k, p.scans, strings.ToLower(sp.Name), time.Second)
}

// A namespace that enforces Pod Security "baseline" refuses a SYN scan
// (NET_RAW is not among baseline's capabilities), and a fenced connect
// scan (the fence's NET_ADMIN), with errors that name the level and say
// that they need "privileged"; an unfenced connect scan runs there.
func TestPodSecurityBaselineRefusesRawScans(t *testing.T) {
	k := testkit.NeedKube(t)
	ns := k.Namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "baseline"})
	ip := k.Listener(t, ns, 8080)
	r := runner(t, k, ns)
	ctx := context.Background()
	res, err := r.Run(ctx, executor.Job{Spec: spec(sandbox.Unprivileged, nil, 60*time.Second,
		"-sT", "-n", "-Pn", "-p", "8080", "-oX", "-", ip)})
	if err != nil || portState(string(res.Stdout), "8080") != "open" {
		t.Fatalf("unfenced connect scan in a baseline namespace: %v\n%s", err, res.Stdout)
	}
	for _, tc := range []struct {
		name  string
		priv  sandbox.Privilege
		allow []string
		flag  string
		cap   string
	}{
		{"syn", sandbox.RawSockets, nil, "-sS", "NET_RAW"},
		{"fenced connect", sandbox.Unprivileged, []string{ip}, "-sT", "NET_ADMIN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := spec(tc.priv, tc.allow, 60*time.Second, tc.flag, "-n", "-Pn", "-p", "8080", "-oX", "-", ip)
			res, err := r.Run(ctx, executor.Job{Spec: sp})
			var re *kuberunner.RefusedError
			if !errors.As(err, &re) || re.Cause != "pod-security" || !strings.HasPrefix(re.Level, "baseline") ||
				!strings.Contains(err.Error(), `"baseline`) || !strings.Contains(err.Error(), tc.cap) ||
				!strings.Contains(err.Error(), `need "privileged"`) || !res.Started.IsZero() {
				t.Fatalf("%s scan in a baseline namespace: %v", tc.name, err)
			}
			t.Logf("refused: %v", err)
			jobGone(t, k, ns, strings.ToLower(sp.Name), time.Second)
		})
	}
}

// typeCheck creates policy (no binding: it is never enforced) and returns
// the API server's type-checking warnings about it.
func typeCheck(t *testing.T, k *testkit.Kube, policy *admissionv1.ValidatingAdmissionPolicy) []admissionv1.ExpressionWarning {
	t.Helper()
	ctx := context.Background()
	api := k.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies()
	policy.ObjectMeta = metav1.ObjectMeta{GenerateName: "nmap-mcp-typecheck-", Labels: map[string]string{testkit.LabelTest: "true"}}
	created, err := api.Create(ctx, policy, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create policy: %v", err)
	}
	defer api.Delete(ctx, created.Name, metav1.DeleteOptions{})
	var status admissionv1.ValidatingAdmissionPolicyStatus
	if !testkit.Eventually(30*time.Second, func() bool {
		v, err := api.Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		status = v.Status
		return v.Status.ObservedGeneration == v.Generation && v.Status.TypeChecking != nil
	}) {
		t.Fatalf("policy %s not type-checked after 30 s: %+v", created.Name, status)
	}
	return status.TypeChecking.ExpressionWarnings
}

// The API server type-checks the policy's CEL against the OpenAPI schemas
// of what it matches, but not through variables (it types them dyn), and
// the shipped policy reads the pod's spec of a Job or a Pod through dyn
// too. So the same rules, with every variable written out in place, are
// checked here once against Jobs (the pod's spec at
// object.spec.template.spec) and once against Pods (object.spec): a field
// name the API does not have (which an optional ?.field would silently
// read as absent) is a warning, and fails the test.
func TestAdmissionPolicyTypeChecks(t *testing.T) {
	k := testkit.NeedKube(t)
	shipped, _ := testkit.ReadAdmissionPolicy(t, admissionFile)
	if w := typeCheck(t, k, shipped.DeepCopy()); len(w) != 0 {
		t.Errorf("the shipped policy: %+v", w)
	}
	for _, tc := range []struct {
		resource, group, pod string
	}{
		{"jobs", "batch", "object.spec.template.spec"},
		{"pods", "", "object.spec"},
	} {
		t.Run(tc.resource, func(t *testing.T) {
			p := shipped.DeepCopy()
			var rules []admissionv1.NamedRuleWithOperations
			for _, r := range p.Spec.MatchConstraints.ResourceRules {
				if r.APIGroups[0] == tc.group {
					r.Resources = []string{tc.resource}
					rules = append(rules, r)
				}
			}
			if len(rules) != 1 {
				t.Fatalf("the shipped policy has no rule for %s", tc.resource)
			}
			p.Spec.MatchConstraints.ResourceRules = rules
			typed := func(expr string) string {
				if tc.resource == "jobs" {
					expr = strings.ReplaceAll(expr, "dyn(object)", "object")
				}
				return expr
			}
			// Each variable, written out in the later ones and the rules;
			// containers (the scan's and the init ones: two list types
			// the checker will not add) as the same test over each.
			inline := func(expr string) string { return expr }
			for _, v := range p.Spec.Variables {
				expr := inline(v.Expression)
				if v.Name == "pod" {
					expr = tc.pod
				}
				if v.Name == "containers" {
					if expr != "("+tc.pod+").containers + (("+tc.pod+").?initContainers.orValue([]))" {
						t.Fatalf("variable containers is %q: teach this test its new form", v.Expression)
					}
					prev := inline
					inline = func(e string) string {
						return eachOf(t, prev(e), "variables.containers.all(", "("+tc.pod+").containers.all(", "("+tc.pod+").?initContainers.orValue([]).all(")
					}
					continue
				}
				prev, re := inline, regexp.MustCompile(`variables\.`+v.Name+`\b`)
				inline = func(e string) string { return re.ReplaceAllLiteralString(prev(e), "("+expr+")") }
			}
			p.Spec.Variables = nil
			for i, v := range p.Spec.Validations {
				p.Spec.Validations[i].Expression = typed(inline(v.Expression))
				if v.MessageExpression != "" {
					p.Spec.Validations[i].MessageExpression = typed(inline(v.MessageExpression))
				}
				if strings.Contains(p.Spec.Validations[i].Expression+p.Spec.Validations[i].MessageExpression, "variables.") {
					t.Fatalf("validation %d: a variable left: %s", i, p.Spec.Validations[i].Expression)
				}
			}
			for _, w := range typeCheck(t, k, p) {
				// The checker's schema has no resources.limits (a map of
				// Quantity); the runtime reads it: the runner's Jobs pass
				// and one without limits is refused (tests above).
				if undefinedLimits.ReplaceAllString(w.Warning, "") == "" {
					continue
				}
				t.Errorf("%s: %s", w.FieldRef, w.Warning)
			}
		})
	}
}

var undefinedLimits = regexp.MustCompile(`(?m)^(\S+, Kind=\w+: )?ERROR: <input>:\d+:\d+: undefined field 'limits'\n( \|.*\n)*`)

// eachOf rewrites every call LIST.all(ARGS) in expr, LIST being call's
// prefix, as (a ARGS) && b ARGS): the same test over each of two lists.
func eachOf(t *testing.T, expr, call, a, b string) string {
	t.Helper()
	for {
		i := strings.Index(expr, call)
		if i < 0 {
			return expr
		}
		depth, j := 1, i+len(call)
		for ; j < len(expr) && depth > 0; j++ {
			switch expr[j] {
			case '(':
				depth++
			case ')':
				depth--
			case '\'', '"':
				k := strings.IndexByte(expr[j+1:], expr[j])
				if k < 0 {
					t.Fatalf("unterminated string in %s", expr)
				}
				j += k + 1
			}
		}
		if depth != 0 {
			t.Fatalf("unbalanced %s in %s", call, expr)
		}
		args := expr[i+len(call) : j] // "c, P)"
		expr = expr[:i] + "(" + a + args + " && " + b + args + ")" + expr[j:]
	}
}
