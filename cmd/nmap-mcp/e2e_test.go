package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// These tests build the real binary and drive it as a client would: over
// stdio with the official Go SDK client (not mcp-go's own), against the real
// engine. A fake "nmap" first on the server's PATH records any attempt to
// run nmap on the host.

var (
	env         *testkit.Env
	binary      string // the built nmap-mcp
	marker      string // created by the fake host nmap if it ever runs
	fakeNmapDir string
	storeDir    string // a world-writable folder for the default test store
)

func TestMain(m *testing.M) {
	if listenHelper() {
		return
	}
	dir, err := os.MkdirTemp("", "nmap-mcp-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		// World-readable, so that an unprivileged user can run the binary.
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		binary = filepath.Join(dir, "nmap-mcp")
		if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build nmap-mcp: %v\n%s", err, out)
			return 1
		}
		storeDir = filepath.Join(dir, "store")
		if err := os.Mkdir(storeDir, 0o777); err != nil || os.Chmod(storeDir, 0o777) != nil {
			fmt.Fprintln(os.Stderr, "make store folder:", err)
			return 1
		}
		fakeNmapDir = filepath.Join(dir, "fakebin")
		marker = filepath.Join(dir, "host-nmap-ran")
		if err := os.Mkdir(fakeNmapDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		script := "#!/bin/sh\ntouch " + marker + "\nexit 99\n"
		if err := os.WriteFile(filepath.Join(fakeNmapDir, "nmap"), []byte(script), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		code := testkit.KubeMain(testkit.Main(m, "e2e", func(e *testkit.Env) { env = e }))
		if _, err := os.Stat(marker); err == nil {
			fmt.Fprintln(os.Stderr, "e2e: nmap was executed on the host")
			return 1
		}
		return code
	}()
	os.Exit(code)
}

// serverEnv is the environment of a server process under test.
func serverEnv(extra ...string) []string {
	instance := "e2e-short" // -short runs without an engine, and so without env
	if env != nil {
		instance = env.Instance
	}
	e := append(os.Environ(),
		"NMAP_MCP_STORE="+filepath.Join(storeDir, "scans.db"),
		"PATH="+fakeNmapDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"NMAP_MCP_INSTANCE="+instance,
		"NMAP_MCP_LOG_LEVEL=debug",
	)
	return append(e, extra...)
}

// connect starts "nmap-mcp serve" and returns a client session on it.
func connect(t *testing.T, extraEnv ...string) *mcp.ClientSession {
	t.Helper()
	cmd := exec.Command(binary, "serve")
	cmd.Env = serverEnv(extraEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sess, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect: %v\nserver stderr:\n%s", err, stderr.String())
	}
	t.Cleanup(func() {
		sess.Close()
		if t.Failed() {
			t.Logf("server stderr:\n%s", stderr.String())
		}
	})
	return sess
}

// call calls a tool and returns the result and its text.
func call(t testing.TB, s *mcp.ClientSession, name string, args map[string]any) (*mcp.CallToolResult, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return res, b.String()
}

func TestToolsAreListed(t *testing.T) {
	testkit.NeedEngine(t)
	s := connect(t)
	res, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		names[tool.Name] = tool
	}
	scanTool := names["nmap_scan"]
	if scanTool == nil || names["nmap_version"] == nil {
		t.Fatalf("tools = %v", names)
	}
	a := scanTool.Annotations
	if a == nil || !a.ReadOnlyHint || a.DestructiveHint == nil || *a.DestructiveHint || a.IdempotentHint ||
		a.OpenWorldHint == nil || !*a.OpenWorldHint {
		t.Fatalf("annotations = %+v", a)
	}
	schema := fmt.Sprint(scanTool.InputSchema)
	for _, want := range []string{"targets", "scan_type", "top_ports", "extra_timing", "timeout_seconds", "additionalProperties:false"} {
		if !strings.Contains(schema, want) {
			t.Errorf("input schema lacks %q: %s", want, schema)
		}
	}
}

func TestScanListener(t *testing.T) {
	testkit.NeedEngine(t)
	s := connect(t)
	open := testkit.TCPListener(t)
	closed := testkit.ClosedTCPPort(t)
	res, text := call(t, s, "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": fmt.Sprintf("%d,%d", open, closed)})
	if res.IsError {
		t.Fatalf("isError: %s", text)
	}
	for _, want := range []string{fmt.Sprintf("%d/tcp open", open), "1 open, 1 closed", "uid 65532, caps none", "fenced to loopback"} {
		if !strings.Contains(text, want) {
			t.Fatalf("result lacks %q:\n%s", want, text)
		}
	}
	// The command and the full sandbox line are in the structured result
	// (the text is lean).
	out := res.StructuredContent.(map[string]any)
	if cmd, sb := out["command"].(string), out["sandbox"].(string); !strings.Contains(cmd, "-sT -n -p") || !strings.Contains(sb, "image nmap-mcp/nmap:7.93-") {
		t.Fatalf("structured command %q, sandbox %q", cmd, sb)
	}
	res, text = call(t, s, "nmap_version", nil)
	if res.IsError || !strings.Contains(text, "Nmap version 7.93") || !strings.Contains(text, env.Image.ID) {
		t.Fatalf("nmap_version: %s", text)
	}
}

// Bad input is refused before anything runs. The server runs with the
// container network "none", so even a broken validator could not send a
// packet anywhere.
func TestBadInputIsRefused(t *testing.T) {
	testkit.NeedEngine(t)
	s := connect(t, "NMAP_MCP_NETWORK=none")
	cases := []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"targets": "-iL=/etc/passwd"}, `invalid targets "-iL=/etc/passwd"`},
		{map[string]any{"targets": "--script=vuln"}, `invalid targets "--script=vuln"`},
		{map[string]any{"targets": "10.0.0.0/8"}, "more than 4096 addresses"},
		{map[string]any{"targets": "127.0.0.1", "script": "vuln"}, "script"},
		{map[string]any{"targets": "127.0.0.1", "scan_type": "xmas"}, "scan_type"},
		{map[string]any{"targets": "127.0.0.1", "ports": "80", "top_ports": 10}, "top_ports"},
		{map[string]any{"targets": "127.0.0.1", "timeout_seconds": 0}, "timeout_seconds"},
		{map[string]any{}, "targets"},
		{map[string]any{"targets": "169.254.169.254"}, "out of scope: it is denied by 169.254.169.254/32"},
		{map[string]any{"targets": "fd00:ec2::254"}, "scope.deny"},
		{map[string]any{"targets": "127.0.0.1", "scripts": "vuln"}, `category "vuln" is refused`},
		{map[string]any{"targets": "127.0.0.1", "scripts": "http-title", "script_args": "userdb=/etc/passwd"}, "script_args"},
		// Security review 2, item 1, against the real image's scripts.
		{map[string]any{"targets": "127.0.0.1", "scripts": "ftp-bounce"}, "contacts third parties"},
		{map[string]any{"targets": "127.0.0.1", "scripts": "http-title", "script_args": "ftp-bounce.checkhost=exfil.example"}, "carries a host name"},
		{map[string]any{"targets": "127.0.0.1", "scripts": "http-title", "script_args": "http-title.nosuch=1"}, `documents the argument "http-title.nosuch"`},
	}
	for _, c := range cases {
		res, text := call(t, s, "nmap_scan", c.args)
		if !res.IsError || !strings.Contains(text, c.want) {
			t.Errorf("%v: isError=%v text=%q; want an error naming %q", c.args, res.IsError, text, c.want)
		}
	}
	left, err := env.Leftovers(context.Background())
	if err != nil || len(left) > 0 {
		t.Fatalf("containers after refusals: %v %v", left, err)
	}
}

// A SYN scan driven by a host user who is not root but may use the Docker
// socket: the raw socket lives inside the container only.
func TestSYNScanWithoutHostRoot(t *testing.T) {
	testkit.NeedEngine(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	grp, err := user.LookupGroup("docker")
	if err != nil {
		t.Skipf("no docker group: %v", err)
	}
	gid, _ := strconv.Atoi(grp.Gid)
	open := testkit.TCPListener(t)
	closed := testkit.ClosedTCPPort(t)
	cmd := exec.Command(binary, "scan", "--type", "syn", "--ports", fmt.Sprintf("%d,%d", open, closed), "127.0.0.1")
	// A store of its own (the shared one belongs to root), in the
	// world-writable test folder.
	// A SYN scan of loopback needs the explicit opt-out of fencing (the host
	// fence allows no packet socket).
	cmd.Env = serverEnv("HOME=/nonexistent", "NMAP_MCP_STORE="+filepath.Join(storeDir, "nobody.db"), "NMAP_MCP_AUDIT="+filepath.Join(storeDir, "nobody-audit.jsonl"),
		"NMAP_MCP_NETWORK=host")
	cmd.Dir = "/"
	// nobody (65534), with the docker group for the socket only.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{uint32(gid)}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scan as uid 65534: %v\n%s", err, out)
	}
	for _, want := range []string{fmt.Sprintf("%d/tcp open", open), "1 open, 1 closed", "-sS", "caps NET_RAW"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCLIRefusesBeforeTouchingTheEngine(t *testing.T) {
	cmd := exec.Command(binary, "scan", "--", "-iL=/etc/passwd")
	// An unreachable engine: a refusal must not need one.
	cmd.Env = serverEnv("DOCKER_HOST=unix:///nonexistent.sock")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `invalid targets "-iL=/etc/passwd"`) {
		t.Fatalf("err %v, output:\n%s", err, out)
	}
}

// A managed container whose server died is removed when a server starts.
func TestStartupSweepsOrphans(t *testing.T) {
	testkit.NeedEngine(t)
	ctx := context.Background()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	cfg, hc := executor.DockerConfig(sandbox.New(env.Options(sandbox.DefaultLimits()), sandbox.Scan{ID: "orphan", Image: env.Image.Tag, Args: []string{"--version"}, Placement: testkit.HostPlacement}))
	cfg.Labels[sandbox.LabelOwnerPID] = strconv.Itoa(dead.ProcessState.Pid())
	c, err := env.Client.ContainerCreate(ctx, cfg, hc, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}) })
	s := connect(t)
	if _, err := s.ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if !env.ContainerGone(ctx, c.ID) {
		t.Fatalf("orphan %.12s survived the server's start-up", c.ID)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"scan", "--help"}, {"image", "--help"}, {"version"}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil || len(out) == 0 {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

// A hostname is resolved by the server and the scan pinned to the vetted
// address; the result still shows the name.
func TestHostnamePinned(t *testing.T) {
	testkit.NeedEngine(t)
	s := connect(t)
	port := testkit.TCPListener(t)
	res, text := call(t, s, "nmap_scan", map[string]any{"targets": "localhost", "ports": fmt.Sprint(port)})
	if res.IsError {
		t.Fatal(text)
	}
	cmd := res.StructuredContent.(map[string]any)["command"].(string)
	if !strings.HasSuffix(cmd, "-- 127.0.0.1") || !strings.Contains(text, "127.0.0.1 (localhost) up") {
		t.Fatalf("not pinned (%s), or the name is lost:\n%s", cmd, text)
	}
}

// Regression (scans-service issue): scans list|show read the history that
// the config file names (store.path), like serve and scan; config check
// rejects a bad value naming the key and line, and exits non-zero. Needs
// no engine.
func TestCLIHonoursConfigFile(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "elsewhere.db")
	st, err := store.Open(context.Background(), db, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := &store.Record{ID: "cafe0123beef", Targets: "127.0.0.1", ScanType: "connect", Argv: []string{"nmap"}}
	if err := st.Begin(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cfg := writeConfig(t, "store:\n  path: "+db+"\n  max_xml: 1m\n")
	cmd := exec.Command(binary, "scans", "list", "--config", cfg)
	cmd.Env = append(os.Environ(), "NMAP_MCP_STORE=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cafe0123beef") {
		t.Fatalf("scans list with store.path: %v\n%s", err, out)
	}
	// A standalone HTML page, with the flag after the id as users write it.
	cmd = exec.Command(binary, "scans", "show", "cafe0123beef", "--html", "--config", cfg)
	cmd.Env = append(os.Environ(), "NMAP_MCP_STORE=")
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<!doctype html>") || !strings.Contains(string(out), "cafe0123beef") ||
		!strings.Contains(string(out), "default-src 'none'") || strings.Contains(string(out), "<script") {
		t.Fatalf("scans show --html: %v\n%s", err, out)
	}
	// Warnings for a valid config that weakens the sandbox.
	host := writeConfig(t, "sandbox:\n  network: host\n")
	if out, err := exec.Command(binary, "config", "check", host).CombinedOutput(); err != nil || !strings.Contains(string(out), "warning: sandbox.network: host") {
		t.Fatalf("config check of host mode: %v\n%s", err, out)
	}
	bad := writeConfig(t, "sandbox:\n  memory: lots\n")
	out, err = exec.Command(binary, "config", "check", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `line 2: sandbox.memory "lots"`) {
		t.Fatalf("config check of a bad file: %v\n%s", err, out)
	}
}

// check_scope answers for allowed, denied and resolving names without
// scanning: no record and no container. The server runs with network none.
func TestCheckScope(t *testing.T) {
	testkit.NeedEngine(t)
	s := connect(t, "NMAP_MCP_NETWORK=none", "NMAP_MCP_STORE="+filepath.Join(t.TempDir(), "scans.db"))
	res, text := call(t, s, "check_scope", map[string]any{"targets": "127.0.0.1, 169.254.169.254, localhost, 8.8.8.8"})
	if res.IsError {
		t.Fatal(text)
	}
	for _, want := range []string{"127.0.0.1: allowed by allow 127.0.0.0/8", "169.254.169.254: refused by deny", "scope.deny",
		"localhost: allowed by allow localhost; resolves to 127.0.0.1", "8.8.8.8: refused by no allow rule"} {
		if !strings.Contains(text, want) {
			t.Errorf("check_scope lacks %q:\n%s", want, text)
		}
	}
	_, text = call(t, s, "list_scans", map[string]any{})
	if !strings.Contains(text, "no scans match") {
		t.Fatalf("check_scope left a record: %s", text)
	}
	if n := len(ourContainers(t)); n != 0 {
		t.Fatalf("%d containers", n)
	}
}

// Over MCP, as a small model sends them: an array of targets, an enum in
// capitals and a port as a number are read with a note; a misnamed
// argument is refused with the name to use. Scans only a loopback listener.
func TestModelArgumentsOverMCP(t *testing.T) {
	testkit.NeedEngine(t)
	s := connect(t)
	port := testkit.TCPListener(t)
	res, text := call(t, s, "nmap_scan", map[string]any{"targets": []any{"127.0.0.1"}, "scan_type": "CONNECT", "ports": port})
	if res.IsError || !strings.Contains(text, `note: scan_type "CONNECT" read as "connect"`) ||
		!strings.Contains(text, `note: targets given as an array; read as "127.0.0.1"`) || !strings.Contains(text, fmt.Sprintf("%d/tcp open", port)) {
		t.Fatalf("coerced scan: %s", text)
	}
	res, text = call(t, s, "nmap_scan", map[string]any{"target": "127.0.0.1"})
	if !res.IsError || !strings.Contains(text, `unknown argument "target" — did you mean "targets"?`) || strings.Contains(text, "&{") {
		t.Fatalf("misnamed argument: %s", text)
	}
}
