package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Fault injection against a second Docker engine that these tests start,
// kill and start again themselves (testkit.StartEngine): never the user's
// engine. Scans target only the tests' own 127.0.0.1 listeners.

// faultEngine starts a second engine with the scanner image in it.
func faultEngine(t testing.TB) *testkit.Engine {
	t.Helper()
	eng := testkit.StartEngine(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := eng.LoadImage(ctx, env.Client, env.Image.Tag, images.BaseRef); err != nil {
		t.Fatal(err)
	}
	t.Logf("scanner image copied to the second engine (docker save | docker load) in %s", time.Since(start).Round(time.Millisecond))
	return eng
}

// faultServer is a stdio server on the second engine, with its own
// history and audit trail.
type faultServer struct {
	sess      *mcp.ClientSession
	cmd       *exec.Cmd
	auditPath string
	stderr    *bytes.Buffer
}

func startFaultServer(t testing.TB, eng *testkit.Engine) *faultServer {
	t.Helper()
	dir := t.TempDir()
	fs := &faultServer{auditPath: filepath.Join(dir, "audit.jsonl"), stderr: &bytes.Buffer{}}
	fs.cmd = exec.Command(binary, "serve")
	fs.cmd.Env = serverEnv("DOCKER_HOST="+eng.Host, "NMAP_MCP_STORE="+filepath.Join(dir, "scans.db"), "NMAP_MCP_AUDIT="+fs.auditPath)
	fs.cmd.Stderr = fs.stderr
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-faults", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sess, err := client.Connect(ctx, &mcp.CommandTransport{Command: fs.cmd, TerminateDuration: 20 * time.Second}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, fs.stderr)
	}
	fs.sess = sess
	t.Cleanup(func() {
		_ = sess.Close()
		if t.Failed() {
			t.Logf("server stderr:\n%s", fs.stderr)
		}
	})
	return fs
}

// engineContainers lists every container on the engine.
func engineContainers(t testing.TB, cli *client.Client, label string) []container.Summary {
	t.Helper()
	opts := container.ListOptions{All: true}
	if label != "" {
		opts.Filters = filters.NewArgs(filters.Arg("label", label))
	}
	list, err := cli.ContainerList(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func readXML(t testing.TB, s *mcp.ClientSession, id string) string {
	t.Helper()
	res, err := s.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "scan://" + id + "/xml"})
	if err != nil || len(res.Contents) == 0 {
		t.Fatalf("read scan://%s/xml: %v", id, err)
	}
	return res.Contents[0].Text
}

// killMidScan starts a slow scan, stops the engine with stop (Kill or
// Stop) once the scan's container runs and nmap has printed, calls
// whileDown (when set), and starts the engine again. It returns the
// scan's id and when the engine answered again.
func killMidScan(t testing.TB, eng *testkit.Engine, cli *client.Client, fs *faultServer, stop func(), whileDown func()) (string, time.Time) {
	t.Helper()
	port := testkit.TCPListener(t)
	res, text := call(t, fs.sess, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprintf("1-60,%d", port), "timing": "T2", "wait": false})
	if res.IsError {
		t.Fatal(text)
	}
	id := res.StructuredContent.(map[string]any)["scan_id"].(string)
	if !testkit.Eventually(60*time.Second, func() bool {
		list := engineContainers(t, cli, sandbox.LabelScanID+"="+id)
		return len(list) == 1 && list[0].State == "running"
	}) {
		t.Fatal("the scan's container never ran")
	}
	time.Sleep(1500 * time.Millisecond) // nmap prints its header and first progress
	stop()
	if whileDown != nil {
		whileDown()
	}
	time.Sleep(2 * time.Second)
	eng.Start()
	return id, time.Now()
}

// The engine is killed (SIGKILL) mid-scan and started again: the scan's
// record says its container was lost, with the output received until then
// and advice; no container is left on the engine once it is back (the
// lost scan's and the host fence's dead warden are removed while the
// server runs); the audit chain verifies; the server serves a new scan
// without a restart.
//
// While the engine is down, a scan fails at once with the advice.
func TestEngineKilledMidScan(t *testing.T) {
	for _, c := range []struct {
		name string
		stop func(*testkit.Engine)
	}{{"SIGKILL", (*testkit.Engine).Kill}, {"SIGTERM", (*testkit.Engine).Stop}} {
		t.Run(c.name, func(t *testing.T) { engineLostMidScan(t, c.stop) })
	}
}

func engineLostMidScan(t *testing.T, stop func(*testkit.Engine)) {
	eng := faultEngine(t)
	cli := eng.Client()
	fs := startFaultServer(t, eng)
	id, back := killMidScan(t, eng, cli, fs, func() { stop(eng) }, func() {
		open := testkit.TCPListener(t)
		res, text := call(t, fs.sess, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(open)})
		if !res.IsError || !strings.Contains(text, "start the Docker engine") || !strings.Contains(text, "no restart needed") {
			t.Errorf("scan while the engine is down: %s", text)
		}
	})

	var text string
	if !testkit.Eventually(60*time.Second, func() bool {
		_, text = call(t, fs.sess, "get_scan", map[string]any{"id": id})
		return strings.Contains(text, "interrupted")
	}) {
		t.Fatalf("record after the engine restart: %s", text)
	}
	for _, want := range []string{"was lost", "engine stopped or restarted", "run the scan again"} {
		if !strings.Contains(text, want) {
			t.Errorf("record lacks %q:\n%s", want, text)
		}
	}
	if xml := readXML(t, fs.sess, id); !strings.Contains(xml, "<nmaprun") {
		t.Errorf("partial output lost: %q", xml)
	}
	var left []container.Summary
	if !testkit.Eventually(30*time.Second, func() bool { left = engineContainers(t, cli, ""); return len(left) == 0 }) {
		t.Fatalf("containers left on the engine after it came back: %+v", left)
	}
	t.Logf("lost container and warden removed %s after the engine answered again", time.Since(back).Round(time.Millisecond))
	// Admitted and ended: the lost scan, and the one refused while the
	// engine was down (it was admitted, then failed to start).
	if rep, err := audit.Verify(fs.auditPath); err != nil || rep.Records != 4 {
		t.Fatalf("audit verify: %+v %v", rep, err)
	}
	open := testkit.TCPListener(t)
	res, text := call(t, fs.sess, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(open)})
	if res.IsError || !strings.Contains(text, fmt.Sprintf("%d/tcp open", open)) {
		t.Fatalf("scan after the engine restart: %s", text)
	}
	if rep, err := audit.Verify(fs.auditPath); err != nil || rep.Records != 6 {
		t.Fatalf("audit verify after the new scan: %+v %v", rep, err)
	}
}

// A server started while the engine is down (stdio and HTTP) starts,
// lists its tools, refuses scans saying what to do, and nmap_version and
// /healthz say the engine does not answer; once the engine is started,
// scans work and /healthz is 200, without restarting the server.
func TestServerStartsWithoutEngine(t *testing.T) {
	eng := faultEngine(t)
	eng.Stop()
	fs := startFaultServer(t, eng)
	hs := startHTTPNoWait(t, "DOCKER_HOST="+eng.Host)

	tools, err := fs.sess.ListTools(context.Background(), nil)
	if err != nil || len(tools.Tools) == 0 {
		t.Fatalf("tools: %v", err)
	}
	res, text := call(t, fs.sess, "nmap_version", nil)
	if !res.IsError || !strings.Contains(text, "not answering") || !strings.Contains(text, "DOCKER_HOST") {
		t.Fatalf("nmap_version without the engine: %s", text)
	}
	open := testkit.TCPListener(t)
	args := map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(open)}
	res, text = call(t, fs.sess, "nmap_scan", args)
	for _, want := range []string{"nothing was run", "start the Docker engine", "docker group", "DOCKER_HOST", "no restart needed"} {
		if !res.IsError || !strings.Contains(text, want) {
			t.Fatalf("scan without the engine lacks %q: %s", want, text)
		}
	}
	if code, body := hs.healthz(t); code != http.StatusServiceUnavailable || !strings.Contains(body, "unreachable") {
		t.Fatalf("/healthz without the engine: %d %s", code, body)
	}

	eng.Start()
	res, text = call(t, fs.sess, "nmap_scan", args)
	if res.IsError || !strings.Contains(text, fmt.Sprintf("%d/tcp open", open)) {
		t.Fatalf("scan once the engine answers: %s", text)
	}
	if res, text = call(t, fs.sess, "nmap_version", nil); res.IsError || !strings.Contains(text, "Docker engine: 20.") {
		t.Fatalf("nmap_version once the engine answers: %s", text)
	}
	if !testkit.Eventually(30*time.Second, func() bool { code, _ := hs.healthz(t); return code == http.StatusOK }) {
		code, body := hs.healthz(t)
		t.Fatalf("/healthz once the engine answers: %d %s", code, body)
	}
}

// startHTTPNoWait starts `serve --http` (no tokens, loopback) and waits
// only until it listens.
func startHTTPNoWait(t testing.TB, extraEnv ...string) *httpServer {
	t.Helper()
	s := launchHTTP(t, append([]string{"NMAP_MCP_STORE=" + filepath.Join(t.TempDir(), "scans.db")}, extraEnv...)...)
	if !testkit.Eventually(30*time.Second, func() bool { code, _ := s.healthz(t); return code != 0 }) {
		t.Fatalf("http server did not listen:\n%s", s.stderr.String())
	}
	return s
}

// healthz returns /healthz's status and body (0 when nothing answers).
func (s *httpServer) healthz(t testing.TB) (int, string) {
	resp, err := http.Get(s.url + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// BenchmarkEngineRestart measures, per kill-and-restart of the engine
// mid-scan: the time from the engine answering again to the lost
// container's removal (ms-to-removal) and to the first successful scan
// (ms-to-first-scan), against a second engine; ms-scan-engine-up is the
// same scan's time with the engine up, for comparison.
//
//	go test ./cmd/nmap-mcp -run '^$' -bench EngineRestart -benchtime 3x
func BenchmarkEngineRestart(b *testing.B) {
	eng := faultEngine(b)
	cli := eng.Client()
	fs := startFaultServer(b, eng)
	open := testkit.TCPListener(b)
	var removal, first, baseline time.Duration
	for b.Loop() {
		// The same scan with the engine up, for comparison.
		start := time.Now()
		if res, text := call(b, fs.sess, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(open)}); res.IsError {
			b.Fatal(text)
		}
		baseline += time.Since(start)
		id, back := killMidScan(b, eng, cli, fs, eng.Kill, nil)
		done := make(chan time.Duration, 1)
		go func() {
			for time.Since(back) < time.Minute {
				if len(engineContainers(b, cli, sandbox.LabelScanID+"="+id)) == 0 {
					done <- time.Since(back)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			done <- -1
		}()
		for {
			res, text := call(b, fs.sess, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprint(open)})
			if !res.IsError {
				break
			}
			b.Logf("scan %s after the engine's return failed: %.300s", time.Since(back).Round(time.Millisecond), text)
			if time.Since(back) > time.Minute {
				b.Fatal("no successful scan within a minute of the engine's return")
			}
		}
		first += time.Since(back)
		d := <-done
		if d < 0 {
			b.Fatal("the lost container was not removed within a minute")
		}
		removal += d
	}
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "ms-to-first-scan")
	b.ReportMetric(float64(removal.Milliseconds())/float64(b.N), "ms-to-removal")
	b.ReportMetric(float64(baseline.Milliseconds())/float64(b.N), "ms-scan-engine-up")
	b.ReportMetric(0, "ns/op")
}
