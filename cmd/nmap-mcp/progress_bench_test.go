package main

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// BenchmarkFirstProgress measures, with the image present and a server
// running, the time from sending nmap_scan to the first progress
// notification, and to the first one sent after the container started
// (target: at most 1.5 s).
//
//	go test ./cmd/nmap-mcp -run '^$' -bench FirstProgress -benchtime 20x
func BenchmarkFirstProgress(b *testing.B) {
	testkit.NeedEngine(b)
	port := testkit.TCPListener(b)
	cmdEnv := serverEnv()
	var mu sync.Mutex
	first := map[string]time.Time{}
	started := map[string]time.Time{}
	client := firstProgressClient(&mu, first, started)
	sess := benchConnect(b, client, cmdEnv)
	var toFirst, toStarted []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok := fmt.Sprintf("b%d", i)
		sent := time.Now()
		if _, err := callWithToken(context.Background(), sess, tok, map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)}); err != nil {
			b.Fatal(err)
		}
		testkit.Eventually(5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return !started[tok].IsZero() })
		mu.Lock()
		toFirst = append(toFirst, first[tok].Sub(sent))
		toStarted = append(toStarted, started[tok].Sub(sent))
		mu.Unlock()
	}
	b.StopTimer()
	b.ReportMetric(medianMS(toFirst), "first-progress-ms")
	b.ReportMetric(medianMS(toStarted), "container-started-ms")
	b.ReportMetric(0, "ns/op")
}

// firstProgressClient is a client that notes, per progress token, when
// its first progress notification arrived, and when the one saying the
// container started did (started may be nil).
func firstProgressClient(mu *sync.Mutex, first, started map[string]time.Time) *mcp.Client {
	return mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			now := time.Now()
			tok := fmt.Sprint(r.Params.ProgressToken)
			mu.Lock()
			defer mu.Unlock()
			if _, ok := first[tok]; !ok {
				first[tok] = now
			}
			if _, ok := started[tok]; !ok && started != nil && r.Params.Message == "container started" {
				started[tok] = now
			}
		},
	})
}

func benchConnect(b *testing.B, client *mcp.Client, env []string) *mcp.ClientSession {
	b.Helper()
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(env, "NMAP_MCP_STORE="+b.TempDir()+"/scans.db")
	sess, err := client.Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sess.Close() })
	return sess
}
