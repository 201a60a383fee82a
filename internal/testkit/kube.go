package testkit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nmap-mcp/nmap-mcp/internal/kuberunner"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// KubeStateEnv is the file scripts/kube.sh up writes: the test cluster's
// kubeconfig and the scanner image pinned by digest.
const KubeStateEnv = "/var/lib/nmap-mcp-kube/env"

// Kube is the real test cluster that scripts/kube.sh brings up in its own
// network namespace. Scans in tests target only pods the tests start in it
// (and so addresses inside that namespace).
type Kube struct {
	Kubeconfig string
	Image      string // the scanner image pinned by digest
	// Seccomp is the project's seccomp profile as installed on the node,
	// relative to the kubelet's seccomp directory.
	Seccomp string
	// Client is a full clientset of the cluster, for the tests' own
	// set-up and checks; API is the runner's client (kuberunner.Connect).
	Client kubernetes.Interface
	API    kuberunner.API
}

// NeedKube returns the test cluster. Under -short it skips; under CI a
// cluster that is not up is a failure, never a silent skip; elsewhere the
// test skips with how to enable it.
func NeedKube(t testing.TB) *Kube {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the test Kubernetes cluster; runs without -short (scripts/test.sh brings it up)")
	}
	k, err := kubeFromEnv()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the test Kubernetes cluster is required under CI: %v", err)
		}
		t.Skipf("no test Kubernetes cluster (%v); run: scripts/kube.sh up (scripts/test.sh does)", err)
	}
	return k
}

func kubeFromEnv() (*Kube, error) {
	vals := map[string]string{}
	if f, err := os.Open(KubeStateEnv); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok {
				vals[k] = v
			}
		}
		f.Close()
	}
	get := func(k string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return vals[k]
	}
	k := &Kube{Kubeconfig: get("NMAP_MCP_TEST_KUBECONFIG"), Image: get("NMAP_MCP_TEST_KUBE_IMAGE"), Seccomp: get("NMAP_MCP_TEST_KUBE_SECCOMP")}
	if k.Kubeconfig == "" || k.Image == "" {
		return nil, fmt.Errorf("neither NMAP_MCP_TEST_KUBECONFIG/NMAP_MCP_TEST_KUBE_IMAGE nor %s name it", KubeStateEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	api, err := kuberunner.Connect(ctx, k.Kubeconfig, nil)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", k.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", k.Kubeconfig, err)
	}
	k.Client, k.API = c, api
	return k, nil
}

// As returns a client of the test cluster that acts as user (e.g.
// "system:serviceaccount:NS:NAME"), to prove what a Role allows.
func (k *Kube) As(t testing.TB, user string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ClientsetAPI is the runner's API over a clientset: a real one (e.g.
// Kube.As, to run the runner as another account) or client-go's fake, for
// tests without a cluster. Logs, when set, replaces the clientset's pod
// log stream (the fake's is a fixed string that ends at once).
type ClientsetAPI struct {
	Clientset kubernetes.Interface
	Logs      func(ctx context.Context, namespace, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error)
}

var _ kuberunner.API = (*ClientsetAPI)(nil)

// CreateJob implements kuberunner.API.
func (a *ClientsetAPI) CreateJob(ctx context.Context, ns string, job *batchv1.Job) (*batchv1.Job, error) {
	return a.Clientset.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
}

// GetJob implements kuberunner.API.
func (a *ClientsetAPI) GetJob(ctx context.Context, ns, name string) (*batchv1.Job, error) {
	return a.Clientset.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
}

// ListJobs implements kuberunner.API.
func (a *ClientsetAPI) ListJobs(ctx context.Context, ns string, opts metav1.ListOptions) (*batchv1.JobList, error) {
	return a.Clientset.BatchV1().Jobs(ns).List(ctx, opts)
}

// DeleteJob implements kuberunner.API.
func (a *ClientsetAPI) DeleteJob(ctx context.Context, ns, name string, opts metav1.DeleteOptions) error {
	return a.Clientset.BatchV1().Jobs(ns).Delete(ctx, name, opts)
}

// WatchPods implements kuberunner.API.
func (a *ClientsetAPI) WatchPods(ctx context.Context, ns string, opts metav1.ListOptions) (watch.Interface, error) {
	return a.Clientset.CoreV1().Pods(ns).Watch(ctx, opts)
}

// WatchEvents implements kuberunner.API.
func (a *ClientsetAPI) WatchEvents(ctx context.Context, ns string, opts metav1.ListOptions) (watch.Interface, error) {
	return a.Clientset.CoreV1().Events(ns).Watch(ctx, opts)
}

// PodLogs implements kuberunner.API.
func (a *ClientsetAPI) PodLogs(ctx context.Context, ns, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
	if a.Logs != nil {
		return a.Logs(ctx, ns, pod, opts)
	}
	return a.Clientset.CoreV1().Pods(ns).GetLogs(pod, opts).Stream(ctx)
}

// ServerVersion implements kuberunner.API.
func (a *ClientsetAPI) ServerVersion(ctx context.Context) (*version.Info, error) {
	return a.Clientset.Discovery().ServerVersion()
}

// APIAs is the runner's API acting as user (see As).
func (k *Kube) APIAs(t testing.TB, user string) kuberunner.API {
	t.Helper()
	return &ClientsetAPI{Clientset: k.As(t, user)}
}

// Dynamic returns a dynamic client and a REST mapper of the test cluster,
// for applying manifests.
func (k *Kube) Dynamic(t testing.TB) (dynamic.Interface, meta.RESTMapper) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(k.Client.Discovery())
	if err != nil {
		t.Fatal(err)
	}
	return dc, restmapper.NewDiscoveryRESTMapper(groups)
}

// Namespace creates a namespace for one test, with extra labels (e.g. Pod
// Security), and deletes it when the test ends, waiting until it is gone.
func (k *Kube) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	ls := map[string]string{LabelTest: "true"}
	for key, v := range labels {
		ls[key] = v
	}
	ctx := context.Background()
	ns, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "nmap-mcp-test-", Labels: ls}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create test namespace: %v", err)
	}
	t.Cleanup(func() {
		bg := metav1.DeletePropagationBackground
		_ = k.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
		if !Eventually(60*time.Second, func() bool {
			_, err := k.Client.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}) {
			t.Errorf("test namespace %s not gone after 60 s", ns.Name)
		}
	})
	// The namespace's default ServiceAccount must exist before pods.
	if !Eventually(30*time.Second, func() bool {
		_, err := k.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}) {
		t.Fatalf("namespace %s has no default ServiceAccount after 30 s", ns.Name)
	}
	return ns.Name
}

// Listener starts a pod in ns that accepts TCP connections on ports (a
// perl loop in the scanner image, as uid 65532, meeting Pod Security
// "restricted") and returns its IP once it listens.
func (k *Kube) Listener(t testing.TB, ns string, ports ...int) string {
	t.Helper()
	var socks []string
	for _, p := range ports {
		socks = append(socks, fmt.Sprintf("IO::Socket::INET->new(LocalPort=>%d,Listen=>16,ReuseAddr=>1) or die", p))
	}
	script := "use IO::Socket::INET; use IO::Select; my $sel = IO::Select->new(" + strings.Join(socks, ", ") +
		"); $| = 1; print qq(listening\\n); while (1) { for my $s ($sel->can_read) { my $c = $s->accept; close $c if $c } }"
	f, tr := false, true
	uid := int64(65532)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "listener-", Labels: map[string]string{LabelTest: "listener"}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  &f,
			EnableServiceLinks:            &f,
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "listen", Image: k.Image, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"perl", "-e", script},
				SecurityContext: &corev1.SecurityContext{
					RunAsUser: &uid, RunAsNonRoot: &tr, AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &tr,
					Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}},
		},
	}
	ctx := context.Background()
	created, err := k.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create listener pod: %v", err)
	}
	var ip, phase, logs string
	if !Eventually(60*time.Second, func() bool {
		p, err := k.Client.CoreV1().Pods(ns).Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		phase = string(p.Status.Phase)
		raw, _ := k.Client.CoreV1().Pods(ns).GetLogs(created.Name, &corev1.PodLogOptions{}).Do(ctx).Raw()
		ip, logs = p.Status.PodIP, string(raw)
		return p.Status.Phase == corev1.PodRunning && ip != "" && strings.Contains(logs, "listening")
	}) {
		t.Fatalf("listener pod %s/%s not listening after 60 s: phase %s, log %q", ns, created.Name, phase, logs)
	}
	return ip
}

// PolicyImagePlaceholder is the scanner image that
// deploy/kubernetes/admission.yaml ships with, for the deployer to replace.
const PolicyImagePlaceholder = "registry.example/nmap-mcp/nmap@sha256:0000000000000000000000000000000000000000000000000000000000000000"

// ReadAdmissionPolicy reads the ValidatingAdmissionPolicy and its binding
// from file (deploy/kubernetes/admission.yaml).
func ReadAdmissionPolicy(t testing.TB, file string) (*admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var policy *admissionv1.ValidatingAdmissionPolicy
	var binding *admissionv1.ValidatingAdmissionPolicyBinding
	docs := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		switch tm.Kind {
		case "ValidatingAdmissionPolicy":
			policy = &admissionv1.ValidatingAdmissionPolicy{}
			err = yaml.UnmarshalStrict(doc, policy)
		case "ValidatingAdmissionPolicyBinding":
			binding = &admissionv1.ValidatingAdmissionPolicyBinding{}
			err = yaml.UnmarshalStrict(doc, binding)
		}
		if err != nil {
			t.Fatalf("%s: %s: %v", file, tm.Kind, err)
		}
	}
	if policy == nil || binding == nil || binding.Spec.PolicyName != policy.Name {
		t.Fatalf("%s: want a ValidatingAdmissionPolicy and its binding", file)
	}
	return policy, binding
}

// AdmissionPolicy applies the ValidatingAdmissionPolicy and its binding
// from file (deploy/kubernetes/admission.yaml) as the test cluster's
// administrator: the policy under a name of this test's, its image set to
// image, bound to namespace ns only. It returns the policy's name once the
// API server enforces it in ns, and deletes both when the test ends.
func (k *Kube) AdmissionPolicy(t testing.TB, file, image, ns string) string {
	t.Helper()
	policy, binding := ReadAdmissionPolicy(t, file)
	placeholder := false
	for i, v := range policy.Spec.Variables {
		if v.Name == "image" {
			placeholder = v.Expression == "'"+PolicyImagePlaceholder+"'"
			policy.Spec.Variables[i].Expression = "'" + image + "'"
		}
	}
	if !placeholder {
		t.Fatalf("%s: no variable image = '%s' to set", file, PolicyImagePlaceholder)
	}
	name := ns + "-" + policy.Name
	labels := map[string]string{LabelTest: "true"}
	policy.ObjectMeta = metav1.ObjectMeta{Name: name, Labels: labels}
	binding.ObjectMeta = metav1.ObjectMeta{Name: name, Labels: labels}
	binding.Spec.PolicyName = name
	binding.Spec.MatchResources.NamespaceSelector = &metav1.LabelSelector{
		MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	ctx := context.Background()
	api := k.Client.AdmissionregistrationV1()
	if _, err := api.ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the admission policy: %v", err)
	}
	t.Cleanup(func() { _ = api.ValidatingAdmissionPolicies().Delete(ctx, name, metav1.DeleteOptions{}) })
	if _, err := api.ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the admission policy's binding: %v", err)
	}
	t.Cleanup(func() { _ = api.ValidatingAdmissionPolicyBindings().Delete(ctx, name, metav1.DeleteOptions{}) })
	// The API server picks policies up from an informer: wait until a
	// pod on the host's network is refused in ns by this policy.
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "policy-probe"}, Spec: corev1.PodSpec{
		HostNetwork: true, Containers: []corev1.Container{{Name: "nmap", Image: image}}}}
	var last error
	if !Eventually(30*time.Second, func() bool {
		_, last = k.Client.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return last != nil && strings.Contains(last.Error(), "ValidatingAdmissionPolicy '"+name+"'")
	}) {
		t.Fatalf("admission policy %s not enforced in %s after 30 s (last: %v)", name, ns, last)
	}
	return name
}

// RunnerConfig is a kuberunner configuration for namespace ns of the
// test cluster.
func (k *Kube) RunnerConfig(ns, instance string) kuberunner.Config {
	return kuberunner.Config{Namespace: ns, Image: k.Image, Instance: instance}
}

// Leftovers lists what of ours is left in the cluster: Jobs and pods
// with the managed label, in any namespace.
func (k *Kube) Leftovers(ctx context.Context) ([]string, error) {
	sel := metav1.ListOptions{LabelSelector: sandbox.LabelManaged + "=true"}
	jobs, err := k.Client.BatchV1().Jobs("").List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list Jobs: %w", err)
	}
	pods, err := k.Client.CoreV1().Pods("").List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	var left []string
	for _, j := range jobs.Items {
		left = append(left, "job "+j.Namespace+"/"+j.Name)
	}
	for _, p := range pods.Items {
		left = append(left, "pod "+p.Namespace+"/"+p.Name)
	}
	return left, nil
}

// KubeMain runs a package's tests and, when the cluster was used, fails
// the run if anything of ours (Jobs, pods, test namespaces, test admission
// policies and their bindings) is left.
func KubeMain(code int) int {
	if testing.Short() || code != 0 {
		return code
	}
	k, err := kubeFromEnv()
	if err != nil {
		return code // the tests already failed or skipped as they must
	}
	ctx := context.Background()
	var left []string
	Eventually(30*time.Second, func() bool {
		left, err = k.Leftovers(ctx)
		if err == nil {
			nss, lerr := k.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: LabelTest + "=true"})
			if lerr != nil {
				err = lerr
			} else {
				for _, n := range nss.Items {
					left = append(left, "namespace "+n.Name)
				}
			}
			test := metav1.ListOptions{LabelSelector: LabelTest + "=true"}
			api := k.Client.AdmissionregistrationV1()
			if ps, perr := api.ValidatingAdmissionPolicies().List(ctx, test); perr != nil {
				err = perr
			} else {
				for _, p := range ps.Items {
					left = append(left, "admission policy "+p.Name)
				}
			}
			if bs, berr := api.ValidatingAdmissionPolicyBindings().List(ctx, test); berr != nil {
				err = berr
			} else {
				for _, b := range bs.Items {
					left = append(left, "admission policy binding "+b.Name)
				}
			}
		}
		return err == nil && len(left) == 0
	})
	if err != nil || len(left) > 0 {
		fmt.Fprintf(os.Stderr, "testkit: LEAK in the test cluster: %v %v\n", left, err)
		return 1
	}
	return code
}

// kubeScript is scripts/kube.sh of this checkout.
func kubeScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "kube.sh")
}

// StopAPIServer kills the test cluster's API server (as a crash); the
// rest of the cluster runs on. It is started again when the test ends if
// the test did not (StartAPIServer).
func (k *Kube) StopAPIServer(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("bash", kubeScript(), "apiserver", "stop").CombinedOutput(); err != nil {
		t.Fatalf("stop the API server: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("bash", kubeScript(), "apiserver", "start").CombinedOutput(); err != nil {
			t.Errorf("start the API server again: %v: %s", err, out)
		}
	})
}

// StartAPIServer starts the test cluster's API server again, as
// scripts/kube.sh up does, and returns once it is ready.
func (k *Kube) StartAPIServer(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("bash", kubeScript(), "apiserver", "start").CombinedOutput(); err != nil {
		t.Fatalf("start the API server: %v: %s", err, out)
	}
}
