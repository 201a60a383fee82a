package main

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// BenchmarkScanOverhead times the same 3-port loopback connect scan three
// ways, interleaved in each iteration: host nmap (when installed), docker
// run --rm with the sandbox's security flags, and nmap-mcp scan. It reports
// the median wall time of each and our overhead over host nmap as a fraction
// of docker run's (target: at most 0.75).
//
//	go test ./cmd/nmap-mcp -run '^$' -bench ScanOverhead -benchtime 20x
func BenchmarkScanOverhead(b *testing.B) {
	testkit.NeedEngine(b)
	open := testkit.TCPListener(b)
	closed := testkit.ClosedTCPPort(b)
	closed2 := testkit.ClosedTCPPort(b)
	ports := fmt.Sprintf("%d,%d,%d", open, closed, closed2)
	hostNmap, _ := exec.LookPath("nmap")
	docker, err := exec.LookPath("docker")
	if err != nil {
		b.Skip("no docker CLI for the docker run --rm comparison")
	}
	dockerArgs := []string{"run", "--rm", "--network", "host", "--user", "65532:65532", "--cap-drop", "ALL",
		"--security-opt", "no-new-privileges", "--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,size=16m",
		"--pids-limit", "128", "--memory", "512m", "--memory-swap", "512m", "--cpus", "1", "--log-driver", "none",
		env.Image.Tag, "-sT", "-p", ports, "--", "127.0.0.1"}
	oursArgs := []string{"scan", "--ports", ports, "127.0.0.1"}

	timeIt := func(name string, args ...string) time.Duration {
		// Start each run on a quiet engine: the previous scan's container
		// (removed by a detached reaper after nmap-mcp exits) is gone.
		testkit.Eventually(10*time.Second, func() bool {
			left, err := env.Leftovers(context.Background())
			return err == nil && len(left) == 0
		})
		time.Sleep(50 * time.Millisecond)
		cmd := exec.Command(name, args...)
		cmd.Env = serverEnv()
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return time.Since(start)
	}
	var host, dock, ours []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if hostNmap != "" {
			host = append(host, timeIt(hostNmap, "-sT", "-p", ports, "--", "127.0.0.1"))
		}
		dock = append(dock, timeIt(docker, dockerArgs...))
		ours = append(ours, timeIt(binary, oursArgs...))
	}
	b.StopTimer()
	h, d, o := medianMS(host), medianMS(dock), medianMS(ours)
	b.ReportMetric(h, "host-nmap-ms")
	b.ReportMetric(d, "docker-run-ms")
	b.ReportMetric(o, "nmap-mcp-ms")
	if h > 0 && d > h {
		b.ReportMetric((o-h)/(d-h), "overhead-ratio")
	}
	b.ReportMetric(0, "ns/op")
}

// medianMS is the median of d in milliseconds (0 for none).
func medianMS(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}
