package kuberunner_test

// Issue 26: the test cluster's API server is killed mid-scan and started
// again (scripts/kube.sh apiserver stop|start). The scans target only a
// listener pod the test starts in the cluster (inside the cluster's own
// network namespace). Under -short they skip; under CI a missing cluster
// fails them (testkit.NeedKube).

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/kuberunner"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// restartScan runs about 30 s against the listener unless stopped.
func restartScan(ip string, ports string) sandbox.Spec {
	return spec(sandbox.Unprivileged, []string{ip}, 180*time.Second, "-sT", "-n", "-Pn", "-p", ports, "--scan-delay", "50ms",
		"--max-retries", "0", "--stats-every", "1s", "-oX", "-", ip)
}

// quickScanWorks runs a short scan of the listener's open port and says
// whether it found it open.
func quickScanWorks(t *testing.T, r *kuberunner.Runner, ip string) bool {
	t.Helper()
	res, err := r.Run(context.Background(), executor.Job{Spec: spec(sandbox.Unprivileged, []string{ip}, 60*time.Second,
		"-sT", "-n", "-Pn", "-p", "8080", "-oX", "-", ip)})
	if err != nil {
		t.Logf("scan after the restart: %v", err)
		return false
	}
	return portState(string(res.Stdout), "8080") == "open"
}

// The API server is killed while a scan runs and is back within the
// runner's API grace: the Job survived (etcd kept it, the kubelet ran the
// pod on), so the scan finishes with its whole output, read once; the Job
// is deleted and a new scan works.
func TestAPIServerRestartMidScanFinishes(t *testing.T) {
	k, ns, ip, r := setup(t)
	sp := restartScan(ip, "1-600,8080")
	name := strings.ToLower(sp.Name)
	done := runUntilProgress(t, k, r, sp)
	time.Sleep(3 * time.Second)
	k.StartAPIServer(t)
	back := time.Now()
	o := wait2(t, done, 120*time.Second)
	if o.err != nil {
		t.Fatalf("the scan whose Job survived did not finish: %v\nstderr: %s", o.err, o.res.Stderr)
	}
	xml := string(o.res.Stdout)
	if strings.Count(xml, "<nmaprun") != 1 || !strings.Contains(xml, "</nmaprun>") || portState(xml, "8080") != "open" {
		t.Errorf("output not whole or not once: %d <nmaprun, complete %v, 8080 %q", strings.Count(xml, "<nmaprun"),
			strings.Contains(xml, "</nmaprun>"), portState(xml, "8080"))
	}
	t.Logf("API answering again → scan finished: %s", time.Since(back).Round(time.Millisecond))
	jobGone(t, k, ns, name, 60*time.Second)
	t.Logf("API answering again → Job and pod gone: %s", time.Since(back).Round(time.Millisecond))
	if !quickScanWorks(t, r, ip) {
		t.Error("a scan after the API came back did not work")
	}
	t.Logf("API answering again → a new scan done: %s", time.Since(back).Round(time.Millisecond))
}

// The API server stays away longer than the runner's API grace: the scan
// ends as lost (*executor.LostError) with the output read until then; its
// Job, which the runner could not delete, is deleted once the API answers
// (retried with backoff), nothing is left, and a new scan works.
func TestAPIServerDownLongerThanGrace(t *testing.T) {
	k := testkit.NeedKube(t)
	ns := k.Namespace(t, nil)
	ip := k.Listener(t, ns, 8080)
	cfg := k.RunnerConfig(ns, instance)
	cfg.APIGrace = 3 * time.Second
	r, err := kuberunner.New(k.API, cfg, nil)
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
	sp := restartScan(ip, "1-65535")
	name := strings.ToLower(sp.Name)
	done := runUntilProgress(t, k, r, sp)
	start := time.Now()
	o := wait2(t, done, 60*time.Second)
	res, err := o.res, o.err
	var lost *executor.LostError
	if !errors.As(err, &lost) || !strings.Contains(err.Error(), "stopped answering") {
		t.Fatalf("err %v, want a lost scan", err)
	}
	if !strings.Contains(string(res.Stdout), "<nmaprun") || !strings.Contains(string(res.Stdout), "<taskprogress") {
		t.Errorf("partial output not kept: %q", res.Stdout)
	}
	t.Logf("lost after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if p := r.Pending(); len(p) != 1 || p[0] != name {
		t.Errorf("pending %v, want the Job's deletion retrying", p)
	}
	time.Sleep(2 * time.Second)
	k.StartAPIServer(t)
	back := time.Now()
	// A new scan right away, while the lost one's Job is being deleted.
	scanned := make(chan time.Duration, 1)
	go func() {
		if quickScanWorks(t, r, ip) {
			scanned <- time.Since(back)
		}
		close(scanned)
	}()
	if !testkit.Eventually(30*time.Second, func() bool {
		j, err := k.Client.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || err == nil && j.DeletionTimestamp != nil
	}) {
		t.Error("the runner did not delete the Job within 30 s of the API answering again")
	}
	t.Logf("API answering again → the runner's deletion of the Job accepted: %s", time.Since(back).Round(time.Millisecond))
	// The cluster's own controllers must come back too: the garbage
	// collector deletes the pod of a Job deleted in the foreground, and
	// the kubelet stops it.
	if !testkit.Eventually(150*time.Second, func() bool { return len(r.Pending()) == 0 }) {
		describe(t, k, ns, name)
		t.Fatalf("the Job's deletion still pending 150 s after the API came back: %v", r.Pending())
	}
	t.Logf("API answering again → Job gone (the runner saw it): %s", time.Since(back).Round(time.Millisecond))
	jobGone(t, k, ns, name, 30*time.Second)
	if d, ok := <-scanned; ok {
		t.Logf("API answering again → a new scan done: %s", d.Round(time.Millisecond))
	} else {
		t.Error("a scan after the API came back did not work")
	}
}

// runUntilProgress starts a run of sp and kills the API server once the
// scan reports progress; the run's outcome comes on the channel.
func runUntilProgress(t *testing.T, k *testkit.Kube, r *kuberunner.Runner, sp sandbox.Spec) <-chan outcome {
	t.Helper()
	progressed := make(chan struct{})
	progress := &watchWriter{seen: "<taskprogress", fire: func() { close(progressed) }}
	done := make(chan outcome, 1)
	go func() {
		res, err := r.Run(context.Background(), executor.Job{Spec: sp, Stdout: progress})
		done <- outcome{res, err}
	}()
	select {
	case <-progressed:
	case o := <-done:
		t.Fatalf("the scan ended before the API server was stopped: %v", o.err)
	case <-time.After(90 * time.Second):
		t.Fatal("no progress from the scan")
	}
	k.StopAPIServer(t)
	return done
}

// describe logs the state of a Job and its pod being deleted.
func describe(t *testing.T, k *testkit.Kube, ns, name string) {
	ctx := context.Background()
	j, err := k.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Logf("job: %v", err)
	} else {
		t.Logf("job: deletion %v finalizers %v conditions %d", j.DeletionTimestamp, j.Finalizers, len(j.Status.Conditions))
	}
	pods, err := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + name})
	if err != nil {
		t.Logf("pods: %v", err)
		return
	}
	for _, p := range pods.Items {
		t.Logf("pod %s: phase %s deletion %v finalizers %v", p.Name, p.Status.Phase, p.DeletionTimestamp, p.Finalizers)
	}
}

// wait2 waits for a run's outcome.
func wait2(t *testing.T, c <-chan outcome, within time.Duration) outcome {
	t.Helper()
	select {
	case o := <-c:
		return o
	case <-time.After(within):
		t.Fatalf("Run did not return within %s", within)
		return outcome{}
	}
}
