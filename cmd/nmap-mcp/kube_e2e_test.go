package main

// The Kubernetes runner behind the MCP server, on the real test cluster
// that scripts/kube.sh brings up (scripts/test.sh does): scans target only
// a listener pod the test starts in the cluster's own network namespace.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// kubeEnv is the server environment that selects the Kubernetes runner
// on namespace ns of the test cluster.
func kubeEnv(k *testkit.Kube, ns string) []string {
	return []string{"NMAP_MCP_RUNNER=kubernetes", "NMAP_MCP_KUBECONFIG=" + k.Kubeconfig,
		"NMAP_MCP_KUBE_NAMESPACE=" + ns, "NMAP_MCP_KUBE_IMAGE=" + k.Image}
}

// nmap_scan through the Kubernetes runner: progress rises to 100 before
// the result, the result finds the open and the closed port, and the
// record says the scan ran fenced on the pod network, from the pinned
// image.
func TestKubeRunnerOverMCP(t *testing.T) {
	k := testkit.NeedKube(t)
	ns := k.Namespace(t, nil)
	ip := k.Listener(t, ns, 8080)
	s, w, plog := connectObserved(t, kubeEnv(k, ns)...)
	for _, scanType := range []string{"connect", "syn"} {
		t.Run(scanType, func(t *testing.T) {
			tok := "kube-" + scanType
			res, err := callWithToken(context.Background(), s, tok, map[string]any{
				"targets": ip, "ports": "1-12,8080,8081", "scan_type": scanType, "timing": "T2"})
			if err != nil || res.IsError {
				t.Fatalf("scan: %v %+v", err, res)
			}
			counts := checkOrder(t, w.reads(t), requestTokens(t, w))
			got := plog.waitFor(tok, counts[tok], 10*time.Second)
			last := -1.0
			for _, n := range got {
				if n.Progress < last {
					t.Fatalf("progress fell from %.1f to %.1f", last, n.Progress)
				}
				last = n.Progress
			}
			if len(got) < 3 || last != 100 {
				t.Fatalf("%d progress notifications ending at %.1f: %v", len(got), last, messages(got))
			}
			raw, _ := json.Marshal(res.StructuredContent)
			var sc struct {
				Status string `json:"status"`
				Result struct {
					Hosts []struct {
						Ports []struct {
							Port  int    `json:"port"`
							State string `json:"state"`
						} `json:"ports"`
					} `json:"hosts"`
				} `json:"result"`
				Sandbox string `json:"sandbox"`
			}
			if err := json.Unmarshal(raw, &sc); err != nil {
				t.Fatal(err)
			}
			states := map[int]string{}
			for _, h := range sc.Result.Hosts {
				for _, p := range h.Ports {
					states[p.Port] = p.State
				}
			}
			if sc.Status != "done" || states[8080] != "open" || states[8081] != "closed" {
				t.Fatalf("status %s, ports %v\n%s", sc.Status, states, raw)
			}
			if !strings.Contains(sc.Sandbox, "network pod fenced to 1 address") || !strings.Contains(sc.Sandbox, k.Image) {
				t.Errorf("the result does not say it ran fenced on the pod network from the pinned image: %s", sc.Sandbox)
			}
		})
	}
}

// BenchmarkKubeVsDocker compares a 3-port scan through the Kubernetes
// runner (a listener pod on the test cluster) with the Docker runner (a
// loopback listener): call → first progress notification and call →
// result, medians. Goal: first progress within 3 s on the test cluster.
//
//	go test ./cmd/nmap-mcp -run '^$' -bench KubeVsDocker -benchtime 10x
func BenchmarkKubeVsDocker(b *testing.B) {
	testkit.NeedEngine(b)
	k := testkit.NeedKube(b)
	ns := k.Namespace(b, nil)
	ip := k.Listener(b, ns, 8080)
	port := testkit.TCPListener(b)
	type timing struct{ first, result []time.Duration }
	runs := map[string]*timing{"kubernetes": {}, "docker": {}}
	var mu sync.Mutex
	first := map[string]time.Time{}
	client := firstProgressClient(&mu, first, nil)
	kube := benchConnect(b, client, serverEnv(kubeEnv(k, ns)...))
	docker := benchConnect(b, client, serverEnv())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Interleaved, so that both see the same machine.
		for _, c := range []struct {
			name    string
			sess    *mcp.ClientSession
			targets string
			ports   string
		}{{"kubernetes", kube, ip, "8080,8081,8082"}, {"docker", docker, "127.0.0.1", fmt.Sprintf("%d,%d,%d", port, port+1, port+2)}} {
			tok := fmt.Sprintf("%s-%d", c.name, i)
			sent := time.Now()
			res, err := callWithToken(context.Background(), c.sess, tok, map[string]any{"targets": c.targets, "ports": c.ports})
			took := time.Since(sent)
			if err != nil || res.IsError {
				b.Fatalf("%s: %v %+v", c.name, err, res)
			}
			mu.Lock()
			runs[c.name].first = append(runs[c.name].first, first[tok].Sub(sent))
			runs[c.name].result = append(runs[c.name].result, took)
			mu.Unlock()
		}
	}
	b.StopTimer()
	for name, r := range runs {
		b.ReportMetric(medianMS(r.first), name+"-first-progress-ms")
		b.ReportMetric(medianMS(r.result), name+"-result-ms")
	}
	b.ReportMetric(0, "ns/op")
}
