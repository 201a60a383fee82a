package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// wire records, in order, every message the client reads and writes.
type wire struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *wire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// reads returns the messages read from the server, in arrival order.
func (w *wire) reads(t *testing.T) []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(w.buf.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "read: ")
		if !ok {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad message %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// progressLog collects progress notifications by token, as the client's
// handler receives them.
type progressLog struct {
	mu   sync.Mutex
	cond *sync.Cond
	got  map[string][]*mcp.ProgressNotificationParams
	logs []string
}

func newProgressLog() *progressLog {
	p := &progressLog{got: map[string][]*mcp.ProgressNotificationParams{}}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *progressLog) add(n *mcp.ProgressNotificationParams) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tok := fmt.Sprint(n.ProgressToken)
	p.got[tok] = append(p.got[tok], n)
	p.cond.Broadcast()
}

// waitFor waits until token has n notifications, or d passes.
func (p *progressLog) waitFor(token string, n int, d time.Duration) []*mcp.ProgressNotificationParams {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() { p.mu.Lock(); p.cond.Broadcast(); p.mu.Unlock() })
	defer timer.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.got[token]) < n && time.Now().Before(deadline) {
		p.cond.Wait()
	}
	return append([]*mcp.ProgressNotificationParams(nil), p.got[token]...)
}

// connectObserved starts a server and a client that records the wire and
// the progress notifications.
func connectObserved(t *testing.T, extraEnv ...string) (*mcp.ClientSession, *wire, *progressLog) {
	t.Helper()
	cmd := exec.Command(binary, "serve")
	cmd.Env = serverEnv(append([]string{"NMAP_MCP_STORE=" + filepath.Join(t.TempDir(), "scans.db")}, extraEnv...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	w := &wire{}
	plog := newProgressLog()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) { plog.add(r.Params) },
		LoggingMessageHandler: func(_ context.Context, r *mcp.LoggingMessageRequest) {
			plog.mu.Lock()
			plog.logs = append(plog.logs, fmt.Sprint(r.Params.Level, " ", r.Params.Data))
			plog.mu.Unlock()
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sess, err := client.Connect(ctx, &mcp.LoggingTransport{Transport: &mcp.CommandTransport{Command: cmd}, Writer: w}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() {
		sess.Close()
		if t.Failed() {
			t.Logf("server stderr:\n%s", stderr.String())
		}
	})
	return sess, w, plog
}

func callWithToken(ctx context.Context, s *mcp.ClientSession, token string, args map[string]any) (*mcp.CallToolResult, error) {
	// The log level goes in each request's _meta (protocol 2026-07-28);
	// older protocols use logging/setLevel.
	p := &mcp.CallToolParams{Name: "nmap_scan", Arguments: args, Meta: mcp.Meta{mcp.MetaKeyLogLevel: "info"}}
	p.SetProgressToken(token)
	return s.CallTool(ctx, p)
}

// checkOrder asserts that for every response to a tools/call, each
// progress notification for its token arrived before it, and returns the
// count per token as seen on the wire.
func checkOrder(t *testing.T, msgs []map[string]any, tokenOfID map[string]string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	answered := map[string]bool{}
	for _, m := range msgs {
		if m["method"] == "notifications/progress" {
			tok := fmt.Sprint(m["params"].(map[string]any)["progressToken"])
			if answered[tok] {
				t.Fatalf("progress for %s arrived after its result: %v", tok, m)
			}
			counts[tok]++
		}
		if id, ok := m["id"]; ok && m["result"] != nil {
			if tok, ok := tokenOfID[fmt.Sprint(id)]; ok {
				answered[tok] = true
			}
		}
	}
	return counts
}

// A slowed scan reports progress that rises to 100, and every progress
// notification arrives before the result.
func TestProgressRisesBeforeResult(t *testing.T) {
	testkit.NeedEngine(t)
	s, w, plog := connectObserved(t)
	t.Logf("protocol %s", s.InitializeResult().ProtocolVersion)
	port := testkit.TCPListener(t)
	res, err := callWithToken(context.Background(), s, "slow", map[string]any{
		"targets": "127.0.0.1", "ports": fmt.Sprintf("1-15,%d", port), "timing": "T2"})
	if err != nil || res.IsError {
		t.Fatalf("scan: %v %+v", err, res)
	}
	wireMsgs := w.reads(t)
	counts := checkOrder(t, wireMsgs, requestTokens(t, w))
	waitStart := time.Now()
	got := plog.waitFor("slow", counts["slow"], 10*time.Second)
	t.Logf("handler caught up %v after the result", time.Since(waitStart))
	if len(got) != counts["slow"] || len(got) < 4 {
		t.Fatalf("handler got %d progress notifications, wire had %d", len(got), counts["slow"])
	}
	last := -1.0
	sawTask := false
	for _, n := range got {
		if n.Progress < last {
			t.Fatalf("progress fell from %.1f to %.1f (%q)", last, n.Progress, n.Message)
		}
		last = n.Progress
		if strings.Contains(n.Message, "Connect Scan") {
			sawTask = true
		}
	}
	if last != 100 || !sawTask {
		t.Fatalf("progress ended at %.1f, saw a Connect Scan task: %v; messages: %v", last, sawTask, messages(got))
	}
	// The result came after every notification, on the wire.
	resultAt, lastNote := -1, -1
	for i, m := range wireMsgs {
		if m["method"] == "notifications/progress" || m["method"] == "notifications/message" {
			lastNote = i
		}
		if r, ok := m["result"].(map[string]any); ok && r["structuredContent"] != nil {
			resultAt = i
		}
	}
	if resultAt < 0 || lastNote > resultAt {
		t.Fatalf("result at message %d, last notification at %d", resultAt, lastNote)
	}
	var logLines []string
	for _, m := range wireMsgs {
		if m["method"] == "notifications/message" {
			logLines = append(logLines, fmt.Sprint(m["params"]))
		}
	}
	logs := strings.Join(logLines, "\n")
	for _, want := range []string{"container started", "container exited, exit code 0"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log notifications lack %q:\n%s", want, logs)
		}
	}
}

func messages(ns []*mcp.ProgressNotificationParams) []string {
	var out []string
	for _, n := range ns {
		out = append(out, fmt.Sprintf("%.0f %s", n.Progress, n.Message))
	}
	return out
}

// Over 200 calls, no notification is lost and none arrives after its
// call's result (the mcp-go v1.2.1 race).
func TestNoNotificationAfterResult(t *testing.T) {
	testkit.NeedEngine(t)
	if testing.Short() {
		t.Skip("200 scans")
	}
	// 200 scans are over the default per-client budget (120 an hour).
	s, w, plog := connectObserved(t, "NMAP_MCP_MAX_CONCURRENT=2", "NMAP_MCP_CONFIG="+writeConfig(t, "budgets:\n  scans_per_client: 0\n"))
	port := testkit.TCPListener(t)
	const calls, parallel = 200, 4
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	errs := make(chan error, calls)
	for i := 0; i < calls; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res, err := callWithToken(context.Background(), s, fmt.Sprintf("c%d", i), map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(port)})
			if err == nil && res.IsError {
				err = fmt.Errorf("call %d: isError", i)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	msgs := w.reads(t)
	// Map response ids to tokens through the requests the client wrote.
	tokenOfID := requestTokens(t, w)
	counts := checkOrder(t, msgs, tokenOfID)
	total := 0
	for i := 0; i < calls; i++ {
		tok := fmt.Sprintf("c%d", i)
		got := plog.waitFor(tok, counts[tok], 10*time.Second)
		if counts[tok] < 3 || len(got) != counts[tok] || got[len(got)-1].Progress != 100 {
			t.Fatalf("%s: wire %d, handler %d, messages %v", tok, counts[tok], len(got), messages(got))
		}
		total += counts[tok]
	}
	t.Logf("%d calls, %d progress notifications, all before their results", calls, total)
}

// requestTokens maps the ids of the tools/call requests the client wrote
// to their progress tokens.
func requestTokens(t *testing.T, w *wire) map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(w.buf.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "write: ")
		if !ok {
			continue
		}
		var m struct {
			ID     any    `json:"id"`
			Method string `json:"method"`
			Params struct {
				Meta map[string]any `json:"_meta"`
			} `json:"params"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Method == "tools/call" && m.Params.Meta["progressToken"] != nil {
			out[fmt.Sprint(m.ID)] = fmt.Sprint(m.Params.Meta["progressToken"])
		}
	}
	return out
}

// writeConfig writes a configuration file for a server under test.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
