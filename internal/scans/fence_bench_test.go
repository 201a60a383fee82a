package scans_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/executor/fencer"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// BenchmarkFencedScan times the same 3-port connect scan of a target
// container (on an --internal network the benchmark creates), interleaved
// in each iteration: `docker run --rm` on the host network with the
// sandbox's flags, a fenced scan through the scans service of a server
// (its pool keeps a fencer waiting), and a fenced scan that must start its
// own fencer (a one-shot CLI scan). It reports the medians and the ratio
// fenced / docker run (goal: at most 1.0).
//
//	go test ./internal/scans -run '^$' -bench FencedScan -benchtime 15x
func BenchmarkFencedScan(b *testing.B) {
	testkit.NeedEngine(b)
	docker, err := exec.LookPath("docker")
	if err != nil {
		b.Fatal("no docker CLI for the docker run --rm comparison")
	}
	n := env.Network(b, testkit.NetworkOptions{})
	tg := env.Target(b, n, 8080)
	ports := "8080,22,23"
	dockerArgs := []string{"run", "--rm", "--network", "host", "--user", "65532:65532", "--cap-drop", "ALL",
		"--security-opt", "no-new-privileges", "--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,size=16m",
		"--pids-limit", "128", "--memory", "512m", "--memory-swap", "512m", "--cpus", "1", "--log-driver", "none",
		env.Image.ID, "-oX", "-", "-n", "-sT", "-p", ports, "--", tg.IPv4.String()}

	service := func(warm int) (*scans.Service, *fencer.Pool) {
		st, err := store.Open(context.Background(), b.TempDir()+"/scans.db", 0)
		if err != nil {
			b.Fatal(err)
		}
		ex := executor.New(env.Client, nil)
		pool := fencer.NewPool(env.Client, fencer.Config{Image: env.Image.ID, Network: n.Name, Warm: warm, Refill: warm > 0,
			Labels: sandbox.OwnerLabels(env.Instance)}, nil)
		ex.SetFencer(pool)
		svc := scans.New(scans.Config{Sandbox: sandbox.Options{Network: n.Name, Limits: sandbox.DefaultLimits(), Instance: env.Instance},
			MaxAddresses: 16, Concurrency: 1}, scans.Deps{Runner: ex, Image: env.Image, Store: st})
		b.Cleanup(func() {
			_ = svc.Close(context.Background())
			_ = ex.Close(context.Background())
			st.Close()
		})
		pool.Start()
		return svc, pool
	}
	server, serverPool := service(1)
	oneShot, _ := service(0)
	quiet := func() {
		testkit.Eventually(10*time.Second, func() bool {
			left, err := env.Leftovers(context.Background())
			// The target and the server's waiting fencer are all that is left.
			return err == nil && len(left) <= 2 && serverPool.Ready()
		})
		time.Sleep(50 * time.Millisecond)
	}
	fenced := func(svc *scans.Service) time.Duration {
		quiet()
		start := time.Now()
		sc, err := svc.Submit(context.Background(), scanargs.Request{Targets: tg.IPv4.String(), Ports: ports}, scans.Options{})
		if err == nil {
			err = sc.Err()
		}
		d := time.Since(start)
		if err != nil {
			b.Fatalf("fenced scan: %v", err)
		}
		if rec := sc.Snapshot().Record; !rec.Limits.Fenced {
			b.Fatalf("scan not fenced: %+v", rec.Limits)
		}
		return d
	}
	dockerRun := func() time.Duration {
		quiet()
		start := time.Now()
		if out, err := exec.Command(docker, dockerArgs...).CombinedOutput(); err != nil {
			b.Fatalf("docker run: %v\n%s", err, out)
		}
		return time.Since(start)
	}
	var dock, warm, cold []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dock = append(dock, dockerRun())
		warm = append(warm, fenced(server))
		cold = append(cold, fenced(oneShot))
	}
	b.StopTimer()
	d, w, c := median(dock), median(warm), median(cold)
	b.ReportMetric(d, "docker-run-host-ms")
	b.ReportMetric(w, "fenced-ms")
	b.ReportMetric(c, "fenced-cold-ms")
	b.ReportMetric(w/d, "fenced/docker-run")
	b.ReportMetric(c/d, "cold/docker-run")
	b.ReportMetric(0, "ns/op")
	fmt.Printf("docker run --rm host %.0f ms, fenced (server) %.0f ms, fenced (own fencer) %.0f ms\n", d, w, c)
}

func median(d []time.Duration) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}
