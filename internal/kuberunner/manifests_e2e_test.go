package kuberunner_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/kuberunner"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// manifests reads every object of deploy/kubernetes/*.yaml.
func manifests(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob("../../deploy/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if m != nil {
				objs = append(objs, &unstructured.Unstructured{Object: m})
			}
		}
	}
	return objs
}

// localize moves a namespaced object, a RoleBinding's subjects and an
// admission policy binding's namespace from the namespaces the manifests
// name to the test's.
func localize(o *unstructured.Unstructured, rename map[string]string) {
	if o.GetNamespace() != "" {
		o.SetNamespace(rename[o.GetNamespace()])
	}
	if o.GetKind() == "ValidatingAdmissionPolicyBinding" {
		path := []string{"spec", "matchResources", "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name"}
		if ns, ok, _ := unstructured.NestedString(o.Object, path...); ok {
			_ = unstructured.SetNestedField(o.Object, rename[ns], path...)
		}
	}
	if o.GetKind() != "RoleBinding" {
		return
	}
	subs, _, _ := unstructured.NestedSlice(o.Object, "subjects")
	for _, s := range subs {
		sm := s.(map[string]any)
		sm["namespace"] = rename[sm["namespace"].(string)]
	}
	_ = unstructured.SetNestedSlice(o.Object, subs, "subjects")
}

// The manifests pass the real API server's server-side dry-run (schema,
// admission, Pod Security of their namespaces), each namespaced object in
// a test namespace standing for the one it names.
func TestManifestsPassServerSideDryRun(t *testing.T) {
	k := testkit.NeedKube(t)
	server := k.Namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	scans := k.Namespace(t, nil)
	rename := map[string]string{"nmap-mcp": server, "nmap-mcp-scans": scans}
	dc, mapper := k.Dynamic(t)
	kinds := map[string]int{}
	for _, o := range manifests(t) {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		kinds[gvk.Kind]++
		ri := dc.Resource(m.Resource)
		var err2 error
		localize(o, rename)
		if o.GetNamespace() != "" {
			_, err2 = ri.Namespace(o.GetNamespace()).Create(context.Background(), o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		} else {
			_, err2 = ri.Create(context.Background(), o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		}
		if err2 != nil {
			t.Errorf("%s %s: %v", gvk.Kind, o.GetName(), err2)
		}
	}
	for _, want := range []string{"Namespace", "ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment", "Service",
		"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		if kinds[want] == 0 {
			t.Errorf("no %s among the manifests (%v)", want, kinds)
		}
	}
}

// The Role of deploy/kubernetes/rbac.yaml is enough for the runner: a
// scan, a Pod Security refusal and a cancellation run as the server's
// service account, bound to that Role in the scans' namespace.
func TestRoleIsEnoughForTheRunner(t *testing.T) {
	k := testkit.NeedKube(t)
	server := k.Namespace(t, nil)
	scans := k.Namespace(t, nil)
	as := serverAccount(t, k, server, scans)
	ip := k.Listener(t, scans, 8080)
	cfg := k.RunnerConfig(scans, instance)
	cfg.ServiceAccount = "nmap-mcp-scan"
	r, err := kuberunner.New(&testkit.ClientsetAPI{Clientset: as}, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	res, err := r.Run(context.Background(), executor.Job{Spec: spec(sandbox.RawSockets, []string{ip}, 60*time.Second,
		"-sS", "-n", "-Pn", "-p", "8080", "-oX", "-", ip)})
	if err != nil || portState(string(res.Stdout), "8080") != "open" {
		t.Fatalf("scan as the server's account: %v\n%s", err, res.Stdout)
	}
	// The account may do nothing outside its Role.
	if _, err := as.CoreV1().Secrets(scans).List(context.Background(), metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("the runner's account may list secrets: %v", err)
	}
	if _, err := as.BatchV1().Jobs(server).List(context.Background(), metav1.ListOptions{}); err == nil {
		t.Errorf("the runner's account may list Jobs outside the scans' namespace")
	}
	if removed, err := r.Sweep(context.Background()); err != nil {
		t.Errorf("sweep as the server's account: %v (%v)", err, removed)
	}
}

// serverAccount creates the ServiceAccounts, the Role and its binding of
// deploy/kubernetes/rbac.yaml in the test's namespaces standing for the
// server's and the scans', and returns a client acting as the server's
// account.
func serverAccount(t *testing.T, k *testkit.Kube, server, scans string) kubernetes.Interface {
	t.Helper()
	rename := map[string]string{"nmap-mcp": server, "nmap-mcp-scans": scans}
	dc, mapper := k.Dynamic(t)
	for _, o := range manifests(t) {
		switch o.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding":
		default:
			continue
		}
		localize(o, rename)
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Resource(m.Resource).Namespace(o.GetNamespace()).Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	return k.As(t, "system:serviceaccount:"+server+":nmap-mcp")
}
