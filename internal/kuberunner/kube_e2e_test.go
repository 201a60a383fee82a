package kuberunner_test

// These tests run scans as Jobs on the real test cluster that
// scripts/kube.sh brings up (scripts/test.sh does). They scan only pods
// the tests start in it. Under -short they skip; under CI a missing
// cluster fails them.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/kuberunner"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

func TestMain(m *testing.M) {
	os.Exit(testkit.KubeMain(m.Run()))
}

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

const instance = "kubetest"

// spec is a scan of args; fenced to allow when it is not empty.
func spec(priv sandbox.Privilege, allow []string, deadline time.Duration, args ...string) sandbox.Spec {
	lim := sandbox.DefaultLimits()
	lim.Memory = 128 << 20
	lim.CPUs = 0.5
	if deadline > 0 {
		lim.Timeout = deadline
	}
	place := sandbox.Placement{Network: "pod", Unfenced: "test"}
	if len(allow) > 0 {
		var p []netip.Prefix
		for _, a := range allow {
			p = append(p, netip.PrefixFrom(netip.MustParseAddr(a), 32))
		}
		place = sandbox.Placement{Network: "pod", Fence: &sandbox.Fence{Network: "pod", Allow: p}}
	}
	return sandbox.New(sandbox.Options{Limits: lim, Instance: instance},
		sandbox.Scan{ID: newID(), Image: "unused", Args: args, Privilege: priv, Placement: place})
}

func runner(t *testing.T, k *testkit.Kube, ns string) *kuberunner.Runner {
	t.Helper()
	r, err := kuberunner.New(k.API, k.RunnerConfig(ns, instance), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("close runner: %v", err)
		}
	})
	return r
}

// setup gives a test a namespace of the test cluster, a listener pod on
// port 8080 in it, and a runner for it.
func setup(t *testing.T) (*testkit.Kube, string, string, *kuberunner.Runner) {
	t.Helper()
	k := testkit.NeedKube(t)
	ns := k.Namespace(t, nil)
	ip := k.Listener(t, ns, 8080)
	return k, ns, ip, runner(t, k, ns)
}

func portState(xml string, port string) string {
	m := regexp.MustCompile(`portid="` + port + `"><state state="([a-z|]+)"`).FindStringSubmatch(xml)
	if m == nil {
		return ""
	}
	return m[1]
}

// Connect and SYN scans of a listener pod find the open port and the
// closed one, fenced to the listener: the fence's init container runs
// first and a second listener outside the fence is not reached.
func TestScanAsJobFindsOpenAndClosed(t *testing.T) {
	k := testkit.NeedKube(t)
	ns := k.Namespace(t, nil)
	ip := k.Listener(t, ns, 8080)
	other := k.Listener(t, ns, 8080)
	r := runner(t, k, ns)
	for _, tc := range []struct {
		name string
		priv sandbox.Privilege
		flag string
	}{{"connect", sandbox.Unprivileged, "-sT"}, {"syn", sandbox.RawSockets, "-sS"}} {
		t.Run(tc.name, func(t *testing.T) {
			var events []string
			var mu sync.Mutex
			res, err := r.Run(context.Background(), executor.Job{
				Spec: spec(tc.priv, []string{ip}, 60*time.Second, tc.flag, "-n", "-Pn", "-p", "8080,8081", "-oX", "-", ip, other),
				OnEvent: func(ev executor.Event) {
					mu.Lock()
					events = append(events, string(ev.Step))
					mu.Unlock()
				},
			})
			if err != nil {
				t.Fatalf("run: %v\nstderr: %s", err, res.Stderr)
			}
			xml := string(res.Stdout)
			if strings.Contains(xml, sandbox.ExitMarker) || strings.Contains(string(res.Stderr), sandbox.ExitMarker) {
				t.Errorf("the exit marker leaked into the output")
			}
			hosts := strings.Split(xml, "<host ")
			var mine, fenced string
			for _, h := range hosts[1:] {
				if strings.Contains(h, `addr="`+ip+`"`) {
					mine = h
				}
				if strings.Contains(h, `addr="`+other+`"`) {
					fenced = h
				}
			}
			if got := portState(mine, "8080"); got != "open" {
				t.Errorf("%s 8080: %q, want open\n%s", ip, got, xml)
			}
			if got := portState(mine, "8081"); got != "closed" {
				t.Errorf("%s 8081: %q, want closed\n%s", ip, got, xml)
			}
			if got := portState(fenced, "8080"); got == "open" || got == "closed" {
				t.Errorf("%s outside the fence answered: 8080 %q\n%s", other, got, xml)
			}
			if !strings.Contains(xml, "</nmaprun>") || res.ExitCode != 0 {
				t.Errorf("exit %d, xml complete %v", res.ExitCode, strings.Contains(xml, "</nmaprun>"))
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.Join(events, ",") == "" || events[0] != "created" {
				t.Errorf("events %v", events)
			}
		})
	}
}

// The Job and its pod, read back from the API, carry the whole sandbox.
func TestJobCarriesTheSandbox(t *testing.T) {
	k, ns, ip, r := setup(t)
	for _, priv := range []sandbox.Privilege{sandbox.Unprivileged, sandbox.RawSockets} {
		t.Run(priv.String(), func(t *testing.T) {
			sp := spec(priv, []string{ip}, 45*time.Second, "-sT", "-n", "-Pn", "-p", "8080", "-oX", "-", ip)
			name := strings.ToLower(sp.Name)
			var job *batchv1.Job
			var pod *corev1.Pod
			_, err := r.Run(context.Background(), executor.Job{Spec: sp, OnEvent: func(ev executor.Event) {
				if ev.Step != "started" {
					return
				}
				ctx := context.Background()
				job, _ = k.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
				pods, _ := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + name})
				if pods != nil && len(pods.Items) == 1 {
					pod = &pods.Items[0]
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			if job == nil || pod == nil {
				t.Fatalf("job %v pod %v not read back", job != nil, pod != nil)
			}
			js := job.Spec
			if *js.BackoffLimit != 0 || *js.ActiveDeadlineSeconds != 45+60 || js.TTLSecondsAfterFinished == nil || *js.TTLSecondsAfterFinished <= 0 {
				t.Errorf("job spec: backoff %d deadline %d ttl %v", *js.BackoffLimit, *js.ActiveDeadlineSeconds, js.TTLSecondsAfterFinished)
			}
			for _, l := range []string{sandbox.LabelManaged, sandbox.LabelScanID, sandbox.LabelInstance, sandbox.LabelOwnerPID, sandbox.LabelOwnerHost} {
				if job.Labels[l] == "" || pod.Labels[l] == "" {
					t.Errorf("label %s missing (job %q, pod %q)", l, job.Labels[l], pod.Labels[l])
				}
			}
			ps := pod.Spec
			if ps.HostNetwork || *ps.AutomountServiceAccountToken || *ps.EnableServiceLinks || ps.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("pod: hostNetwork %v automount %v serviceLinks %v restart %s", ps.HostNetwork, *ps.AutomountServiceAccountToken, *ps.EnableServiceLinks, ps.RestartPolicy)
			}
			if len(ps.Containers) != 1 || len(ps.InitContainers) != 1 {
				t.Fatalf("containers %d init %d", len(ps.Containers), len(ps.InitContainers))
			}
			c := ps.Containers[0]
			sc := c.SecurityContext
			wantUID, wantCaps := int64(65532), ""
			if priv == sandbox.RawSockets {
				wantUID, wantCaps = 0, "NET_RAW"
			}
			var add []string
			for _, a := range sc.Capabilities.Add {
				add = append(add, string(a))
			}
			if *sc.RunAsUser != wantUID || *sc.RunAsNonRoot != (wantUID != 0) || strings.Join(add, ",") != wantCaps ||
				len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
				t.Errorf("scan container: uid %d nonroot %v add %v drop %v", *sc.RunAsUser, *sc.RunAsNonRoot, add, sc.Capabilities.Drop)
			}
			if *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || *sc.Privileged || sc.SeccompProfile == nil ||
				sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("scan container: escalation %v rofs %v privileged %v seccomp %v", *sc.AllowPrivilegeEscalation, *sc.ReadOnlyRootFilesystem, *sc.Privileged, sc.SeccompProfile)
			}
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
				if req.IsZero() || req.Cmp(lim) != 0 {
					t.Errorf("%s: request %s limit %s, want equal and set", res, req.String(), lim.String())
				}
			}
			in := ps.InitContainers[0]
			if in.Name != kuberunner.FenceContainer || len(in.SecurityContext.Capabilities.Add) != 1 || in.SecurityContext.Capabilities.Add[0] != "NET_ADMIN" {
				t.Errorf("init container %s caps %v", in.Name, in.SecurityContext.Capabilities)
			}
			for _, a := range sc.Capabilities.Add {
				if a == "NET_ADMIN" {
					t.Errorf("the scan container holds NET_ADMIN")
				}
			}
			if st := pod.Status.ContainerStatuses; len(st) != 1 || !strings.Contains(st[0].ImageID, k.Image[strings.LastIndex(k.Image, "@")+1:]) {
				t.Errorf("image ID %v, want digest of %s", st, k.Image)
			}
		})
	}
}

// slowScan scans many ports of the listener with a delay, so that it runs
// for minutes unless it is stopped.
func slowScan(ip string, deadline time.Duration) sandbox.Spec {
	return spec(sandbox.Unprivileged, []string{ip}, deadline, "-sT", "-n", "-Pn", "-p", "1-65535", "--scan-delay", "50ms",
		"--max-retries", "0", "--stats-every", "1s", "-oX", "-", ip)
}

// jobGone waits until the Job and its pod are gone, and says how long
// it took.
func jobGone(t *testing.T, k *testkit.Kube, ns, name string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx := context.Background()
	if !testkit.Eventually(within, func() bool {
		_, err := k.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		pods, perr := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + name})
		return apierrors.IsNotFound(err) && perr == nil && len(pods.Items) == 0
	}) {
		t.Errorf("job %s or its pod still there after %s", name, within)
	}
	return time.Since(start)
}

// Cancelling a running scan removes its Job and pod within 5 s and keeps
// the output read so far.
func TestCancelRemovesJobAndPod(t *testing.T) {
	k, ns, ip, r := setup(t)
	sp := slowScan(ip, 120*time.Second)
	name := strings.ToLower(sp.Name)
	ctx, cancel := context.WithCancel(context.Background())
	var cancelled time.Time
	progress := &watchWriter{seen: "<taskprogress", fire: func() { cancelled = time.Now(); cancel() }}
	res, err := r.Run(ctx, executor.Job{Spec: sp, Stdout: progress})
	returned := time.Since(cancelled)
	if err == nil || !errors.Is(err, context.Canceled) || !res.Canceled {
		t.Fatalf("err %v canceled %v", err, res.Canceled)
	}
	if !strings.Contains(string(res.Stdout), "<nmaprun") || !strings.Contains(string(res.Stdout), "<taskprogress") {
		t.Errorf("partial output not kept: %q", res.Stdout)
	}
	jobGone(t, k, ns, name, time.Second)
	t.Logf("cancel → Run returned with Job and pod gone: %s", returned)
	if returned > 5*time.Second {
		t.Errorf("Job and pod gone %s after the cancel, want within 5 s", returned)
	}
}

// The wall clock ends a scan the same way, as a *TimeoutError with the
// output so far.
func TestDeadlineEndsTheJob(t *testing.T) {
	k, ns, ip, r := setup(t)
	sp := slowScan(ip, 4*time.Second)
	res, err := r.Run(context.Background(), executor.Job{Spec: sp})
	var te *executor.TimeoutError
	if !errors.As(err, &te) || !res.TimedOut {
		t.Fatalf("err %v timedOut %v", err, res.TimedOut)
	}
	if !strings.Contains(string(res.Stdout), "<nmaprun") {
		t.Errorf("partial output not kept: %q", res.Stdout)
	}
	if d := res.Duration(); d < 4*time.Second || d > 12*time.Second {
		t.Errorf("ran %s for a 4 s deadline", d)
	}
	jobGone(t, k, ns, strings.ToLower(sp.Name), time.Second)
}

// A namespace that enforces Pod Security "restricted" runs an unfenced
// connect scan and refuses a SYN scan with an error naming the level.
func TestPodSecurityRestricted(t *testing.T) {
	k := testkit.NeedKube(t)
	ns := k.Namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	ip := k.Listener(t, ns, 8080)
	r := runner(t, k, ns)
	res, err := r.Run(context.Background(), executor.Job{Spec: spec(sandbox.Unprivileged, nil, 60*time.Second,
		"-sT", "-n", "-Pn", "-p", "8080", "-oX", "-", ip)})
	if err != nil {
		t.Fatalf("connect scan in a restricted namespace: %v", err)
	}
	if got := portState(string(res.Stdout), "8080"); got != "open" {
		t.Errorf("8080: %q", got)
	}
	start := time.Now()
	sp := spec(sandbox.RawSockets, nil, 60*time.Second, "-sS", "-n", "-Pn", "-p", "8080", "-oX", "-", ip)
	_, err = r.Run(context.Background(), executor.Job{Spec: sp})
	var re *kuberunner.RefusedError
	if !errors.As(err, &re) || re.Cause != "pod-security" || !strings.Contains(err.Error(), `"restricted`) {
		t.Fatalf("SYN scan in a restricted namespace: %v", err)
	}
	t.Logf("refused in %s: %v", time.Since(start), err)
	jobGone(t, k, ns, strings.ToLower(sp.Name), time.Second)
}

// watchWriter calls fire once when it has seen a string.
type watchWriter struct {
	mu    sync.Mutex
	buf   strings.Builder
	seen  string
	fire  func()
	fired bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.fired && strings.Contains(w.buf.String(), w.seen) {
		w.fired = true
		go w.fire()
	}
	return len(p), nil
}

// With kubernetes.seccomp_profile the pods run under the project's own
// profile as a Localhost profile (fence and scan alike); a profile the
// node lacks is an error that names the cause, and nothing runs.
func TestLocalhostSeccompProfile(t *testing.T) {
	k := testkit.NeedKube(t)
	if k.Seccomp == "" {
		t.Fatal("the test cluster names no installed seccomp profile (scripts/kube.sh up installs nmap-mcp.json)")
	}
	ns := k.Namespace(t, nil)
	ip := k.Listener(t, ns, 8080)
	for _, tc := range []struct {
		profile string
		ok      bool
	}{{k.Seccomp, true}, {"missing-profile.json", false}} {
		t.Run(tc.profile, func(t *testing.T) {
			cfg := k.RunnerConfig(ns, instance)
			cfg.SeccompProfile = tc.profile
			r, err := kuberunner.New(k.API, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close(context.Background())
			if got := r.Shape(sandbox.Spec{}).SeccompID; got != "localhost/"+tc.profile {
				t.Errorf("recorded seccomp %q", got)
			}
			var podProfile *corev1.SeccompProfile
			sp := spec(sandbox.RawSockets, []string{ip}, 60*time.Second, "-sS", "-n", "-Pn", "-p", "8080", "-oX", "-", ip)
			res, err := r.Run(context.Background(), executor.Job{Spec: sp, OnEvent: func(ev executor.Event) {
				if ev.Step != "created" {
					return
				}
				j, err := k.Client.BatchV1().Jobs(ns).Get(context.Background(), strings.ToLower(sp.Name), metav1.GetOptions{})
				if err == nil {
					podProfile = j.Spec.Template.Spec.Containers[0].SecurityContext.SeccompProfile
				}
			}})
			if podProfile == nil || podProfile.Type != corev1.SeccompProfileTypeLocalhost || *podProfile.LocalhostProfile != tc.profile {
				t.Errorf("pod seccomp profile %+v", podProfile)
			}
			if tc.ok {
				if err != nil || portState(string(res.Stdout), "8080") != "open" {
					t.Fatalf("scan under the project's profile: %v\n%s", err, res.Stderr)
				}
				return
			}
			var re *kuberunner.RefusedError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), "seccomp") {
				t.Fatalf("missing profile: %v", err)
			}
			t.Logf("missing profile: %v", err)
			if !res.Started.IsZero() {
				t.Errorf("nmap started")
			}
		})
	}
}

// Start-up removes the Jobs of ours whose server is gone, and only those:
// one made by a dead process here goes, one of a live server stays, and so
// does one without every label of ours. The Jobs are suspended: no pod
// runs.
func TestSweepRemovesOrphanedJobs(t *testing.T) {
	k := testkit.NeedKube(t)
	ns := k.Namespace(t, nil)
	r := runner(t, k, ns)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(pid int, drop string) string {
		sp := spec(sandbox.Unprivileged, nil, 30*time.Second, "-sT", "-p", "1", "-oX", "-", "10.210.0.250")
		sp.Labels[sandbox.LabelOwnerPID] = strconv.Itoa(pid)
		delete(sp.Labels, drop)
		j, err := kuberunner.JobFor(k.RunnerConfig(ns, instance), sp)
		if err != nil {
			t.Fatal(err)
		}
		suspend := true
		j.Spec.Suspend = &suspend
		if _, err := k.Client.BatchV1().Jobs(ns).Create(context.Background(), j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			bg := metav1.DeletePropagationBackground
			_ = k.Client.BatchV1().Jobs(ns).Delete(context.Background(), j.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
		})
		return j.Name
	}
	orphan := mk(dead.Process.Pid, "")
	live := mk(os.Getpid(), "")
	foreign := mk(dead.Process.Pid, sandbox.LabelInstance)
	removed, err := r.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != orphan {
		t.Fatalf("swept %v, want only %s", removed, orphan)
	}
	jobGone(t, k, ns, orphan, 10*time.Second)
	for _, name := range []string{live, foreign} {
		if _, err := k.Client.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("job %s was swept: %v", name, err)
		}
	}
}

// An image the node does not have (and cannot pull: the test cluster
// reaches no registry) and a pod no node takes are errors that name
// their cause; nothing runs and the Job is gone.
func TestClusterProblemsAreNamed(t *testing.T) {
	k := testkit.NeedKube(t)
	ns := k.Namespace(t, nil)
	quotaNS := k.Namespace(t, nil)
	for _, tc := range []struct {
		name  string
		shape func(*kuberunner.Config)
		check func(error) bool
	}{
		{"missing image", func(c *kuberunner.Config) {
			c.Image = "docker.io/nmap-mcp/nmap@sha256:" + strings.Repeat("0", 64)
		}, func(err error) bool {
			var ie *executor.ImageError
			return errors.As(err, &ie) && strings.Contains(err.Error(), "ErrImagePull")
		}},
		{"quota", func(c *kuberunner.Config) {
			quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "tiny"},
				Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceLimitsMemory: resource.MustParse("1Mi")}}}
			if _, err := k.Client.CoreV1().ResourceQuotas(quotaNS).Create(context.Background(), quota, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			c.Namespace = quotaNS
		}, func(err error) bool {
			var re *kuberunner.RefusedError
			return errors.As(err, &re) && re.Cause == "quota"
		}},
		{"forbidden", func(c *kuberunner.Config) {
			c.Namespace = quotaNS // the default account may do nothing there
		}, func(err error) bool {
			var re *kuberunner.RefusedError
			return errors.As(err, &re) && re.Cause == "forbidden" && strings.Contains(err.Error(), "rbac.yaml")
		}},
		{"unschedulable", func(c *kuberunner.Config) {
			c.NodeSelector = map[string]string{"nmap-mcp.test/no-such-node": "true"}
			c.UnschedulableGrace = 2 * time.Second
		}, func(err error) bool {
			var re *kuberunner.RefusedError
			return errors.As(err, &re) && re.Cause == "unschedulable" && strings.Contains(err.Error(), "node affinity/selector")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := k.RunnerConfig(ns, instance)
			tc.shape(&cfg)
			client := k.API
			if tc.name == "forbidden" {
				client = k.APIAs(t, "system:serviceaccount:"+quotaNS+":default")
			}
			r, err := kuberunner.New(client, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			sp := spec(sandbox.Unprivileged, nil, 30*time.Second, "-sT", "-n", "-Pn", "-p", "1", "-oX", "-", "10.210.0.250")
			res, err := r.Run(context.Background(), executor.Job{Spec: sp})
			t.Logf("%v", err)
			if !tc.check(err) || !res.Started.IsZero() {
				t.Fatalf("err %v, started %v", err, res.Started)
			}
			jobGone(t, k, cfg.Namespace, strings.ToLower(sp.Name), 10*time.Second)
			_ = r.Close(context.Background())
		})
	}
}
