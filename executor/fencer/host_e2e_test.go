package fencer_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/executor/fencer"
	"github.com/nmap-mcp/nmap-mcp/internal/fence"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// The host fence, on the real engine: scans on the host's network (scans
// of loopback) reach loopback and nothing else. The sink is a container
// this test starts on an --internal network it creates; the host reaches
// it through the network's bridge, as it would reach any address off the
// host. The sink counts every frame it receives. Each fenced run has an
// unfenced control with the same arguments, which proves that the frames
// would arrive without the fence. Nothing here sends a packet anywhere
// else: the sink's address is the only non-loopback destination.

type hostRig struct {
	ex   *executor.Executor
	hf   *fencer.HostFence
	opts sandbox.Options
}

func newHostRig(t *testing.T) *hostRig {
	t.Helper()
	hf := fencer.NewHostFence(env.Client, fencer.HostConfig{Image: env.Image.ID, Labels: sandbox.OwnerLabels(env.Instance)}, nil)
	ex := executor.New(env.Client, nil)
	ex.SetHostFence(hf)
	t.Cleanup(func() {
		if err := ex.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	lim := sandbox.DefaultLimits()
	lim.Timeout = 60 * time.Second
	return &hostRig{ex: ex, hf: hf, opts: sandbox.Options{Limits: lim, Instance: env.Instance}}
}

// run runs nmap args on the host network: inside the host fence, or (fenced
// false) unfenced, the control. extra shapes the spec further.
func (r *hostRig) run(t *testing.T, fenced bool, priv sandbox.Privilege, extra func(*sandbox.Spec), args ...string) (string, error) {
	t.Helper()
	place := sandbox.Placement{Network: sandbox.Host, HostFence: true}
	if !fenced {
		place = sandbox.Placement{Network: sandbox.Host, Unfenced: "test control"}
	}
	spec := sandbox.New(r.opts, sandbox.Scan{ID: newID(), Image: env.Image.ID, Args: args, Privilege: priv, Placement: place})
	if extra != nil {
		extra(&spec)
	}
	res, err := r.ex.Run(context.Background(), executor.Job{Spec: spec})
	if res == nil {
		return "", err
	}
	return string(res.Stdout) + string(res.Stderr), err
}

// v4Frames waits for the sink's frame log to settle and returns its IPv4
// and ARP frames: what a scan of its IPv4 address sends. (IPv6 multicast
// listener reports, which the bridge and the sink send by themselves, are
// not counted.)
func v4Frames(t *testing.T, sink *testkit.Target) int {
	t.Helper()
	settle(t, sink)
	n := 0
	for _, f := range sink.Frames(t) {
		if f.Type == "0x0800" || f.Type == "0x0806" {
			n++
		}
	}
	return n
}

// framesAfter is how many IPv4 and ARP frames the sink has received since
// it had before.
func framesAfter(t *testing.T, sink *testkit.Target, before int) int {
	t.Helper()
	return v4Frames(t, sink) - before
}

func TestHostFenceKeepsHostScansOnLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the engine")
	}
	n := env.Network(t, testkit.NetworkOptions{})
	sink := env.Target(t, n, 8080)
	bridge := "br-" + n.ID[:12]
	r := newHostRig(t)
	dst := sink.IPv4.String()

	// A loopback connect scan still works inside the fence; a raw one
	// cannot open its packet capture (the service refuses it before it
	// gets here).
	port := fmt.Sprint(testkit.TCPListener(t))
	out, err := r.run(t, true, sandbox.Unprivileged, nil, "-sT", "-Pn", "-n", "-oX", "-", "-p", port, "--", "127.0.0.1")
	if err != nil || !strings.Contains(out, `portid="`+port+`"><state state="open"`) {
		t.Fatalf("loopback connect scan inside the host fence: %v\n%s", err, out)
	}
	if out, err := r.run(t, true, sandbox.RawSockets, nil, "-sS", "-Pn", "-n", "-oX", "-", "-p", port, "--", "127.0.0.1"); err == nil {
		t.Fatalf("a SYN scan ran inside the host fence, so it opened a packet socket:\n%s", out)
	}

	cases := []struct {
		name string
		priv sandbox.Privilege
		args []string
	}{
		{"connect", sandbox.Unprivileged, []string{"-sT", "-Pn", "-n", "-p", "8080", "--", dst}},
		{"syn", sandbox.RawSockets, []string{"-sS", "-Pn", "-n", "-p", "8080", "--", dst}},
		{"udp", sandbox.RawSockets, []string{"-sU", "-Pn", "-n", "-p", "53", "--", dst}},
		// Ethernet frames on a packet socket skip the inet hook: the host
		// profile's seccomp refuses the send.
		{"send-eth", sandbox.RawSockets, []string{"-sS", "-Pn", "-n", "--send-eth", "-e", bridge, "-p", "8080", "--", dst}},
		// nmap's own resolver sends DNS queries itself, to a server the
		// arguments name: the DNS exfiltration path without libc (127.0.0.2:
		// not in /etc/hosts, so nmap asks the server).
		{"dns", sandbox.Unprivileged, []string{"-sn", "-Pn", "-R", "--dns-servers", dst, "--", "127.0.0.2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := v4Frames(t, sink)
			out, err := r.run(t, false, c.priv, nil, c.args...)
			if err != nil && !errors.As(err, new(*executor.ExitError)) {
				t.Fatalf("control: %v\n%s", err, out)
			}
			if got := framesAfter(t, sink, before); got == 0 {
				t.Fatalf("the unfenced control sent no frame to the sink: the test proves nothing\n%s\n%s", out, sink.Log(t))
			}
			before = v4Frames(t, sink)
			out, err = r.run(t, true, c.priv, nil, c.args...)
			if err != nil && !errors.As(err, new(*executor.ExitError)) {
				t.Fatalf("fenced: %v\n%s", err, out)
			}
			if got := framesAfter(t, sink, before); got != 0 {
				t.Fatalf("the sink received %d frames from a scan inside the host fence\n%s\n%s", got, out, sink.Log(t))
			}
		})
	}
}

// Regression (red-team review of the host fence): a packet socket sends
// past the IP-level fence with any call (sendto with a longer address,
// sendmsg, write on a bound socket), so inside the host fence none can be
// opened, nor a UNIX socket (the host's abstract sockets); IPv4 can. The
// control (the per-scan profile, same user and capability) opens them.
func TestHostFenceRefusesPacketAndUnixSockets(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the engine")
	}
	bin := filepath.Join(t.TempDir(), "sockprobe")
	build := exec.Command("go", "build", "-o", bin, "./testdata/sockprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sockprobe: %v\n%s", err, out)
	}
	r := newHostRig(t)
	parent, err := r.hf.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, fenced := range []bool{true, false} {
		place := sandbox.Placement{Network: sandbox.Host, HostFence: true}
		if !fenced {
			place = sandbox.Placement{Network: sandbox.Host, Unfenced: "test control"}
		}
		spec := sandbox.New(r.opts, sandbox.Scan{ID: newID(), Image: env.Image.ID, Privilege: sandbox.RawSockets, Placement: place})
		if fenced {
			spec.CgroupParent = parent
		}
		cfg, hc := executor.DockerConfig(spec)
		cfg.Entrypoint, cfg.Cmd = []string{"/sockprobe"}, nil
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: bin, Target: "/sockprobe", ReadOnly: true})
		hc.LogConfig = container.LogConfig{Type: "json-file"} // its lines are read back
		cfg.Labels[testkit.LabelTest] = env.Instance
		out := runContainer(t, cfg, hc)
		for _, name := range []string{"packet-raw", "packet-raw-0", "packet-dgram", "unix-stream", "unix-dgram"} {
			refused := strings.Contains(out, name+" error operation not permitted")
			if refused != fenced {
				t.Errorf("fenced=%v: %s refused=%v\n%s", fenced, name, refused, out)
			}
		}
		if !strings.Contains(out, "inet-stream ok") {
			t.Errorf("fenced=%v: an IPv4 socket was refused\n%s", fenced, out)
		}
	}
}

// runContainer runs a container to its end and returns its output.
func runContainer(t *testing.T, cfg *container.Config, hc *container.HostConfig) string {
	t.Helper()
	ctx := context.Background()
	created, err := env.Client.ContainerCreate(ctx, cfg, hc, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Client.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	wait, errc := env.Client.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := env.Client.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wait:
	case err := <-errc:
		t.Fatal(err)
	}
	rc, err := env.Client.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "(no logs: " + err.Error() + "; the log driver may be none)"
	}
	defer rc.Close()
	var b strings.Builder
	_, _ = stdcopy.StdCopy(&b, &b, rc)
	return b.String()
}

// ftp-bounce (default, safe) resolves a check host the caller may name
// through the host's resolver. In the sandbox the resolver is gone (an
// empty resolv.conf, hosts from /etc/hosts only) and the host fence drops
// anything off loopback: with a hostile FTP service on loopback, the
// script runs, with its default check host, a chosen name and the sink's
// address, and nothing reaches the sink.
func TestHostFenceFTPBounceResolvesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the engine")
	}
	n := env.Network(t, testkit.NetworkOptions{})
	sink := env.Target(t, n, 8080)
	r := newHostRig(t)
	ftp := hostileFTP(t)

	// The container's resolver configuration is the empty one.
	out, err := r.run(t, true, sandbox.Unprivileged, func(s *sandbox.Spec) {
		s.Command = []string{"/bin/sh", "-c", "wc -c < /etc/resolv.conf; grep '^hosts:' /etc/nsswitch.conf"}
	})
	if err != nil || !strings.Contains(out, "0\n") || !strings.Contains(out, "hosts:          files") {
		t.Fatalf("resolver configuration in the scan container: %v\n%s", err, out)
	}

	before := v4Frames(t, sink)
	for _, checkhost := range []string{"", "exfil-marker.example", sink.IPv4.String()} {
		args := []string{"-sT", "-sV", "-Pn", "-n", "-oX", "-", "-p", ftp, "--script", "ftp-bounce"}
		if checkhost != "" {
			args = append(args, "--script-args", "ftp-bounce.checkhost="+checkhost)
		}
		args = append(args, "--", "127.0.0.1")
		out, err := r.run(t, true, sandbox.Unprivileged, nil, args...)
		if err != nil && !errors.As(err, new(*executor.ExitError)) {
			t.Fatalf("ftp-bounce checkhost %q: %v\n%s", checkhost, err, out)
		}
		if !strings.Contains(out, `id="ftp-bounce"`) {
			t.Errorf("ftp-bounce checkhost %q did not run against the hostile FTP service\n%s", checkhost, out)
		}
	}
	if got := framesAfter(t, sink, before); got != 0 {
		t.Fatalf("the sink received %d frames (DNS queries or bounces) from ftp-bounce inside the host fence\n%s", got, sink.Log(t))
	}
}

// The warden installs the table again before each scan: a table deleted
// behind the server's back is back before the next host scan starts.
func TestHostFenceRepairsADeletedTable(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the engine")
	}
	n := env.Network(t, testkit.NetworkOptions{})
	sink := env.Target(t, n, 8080)
	r := newHostRig(t)
	args := []string{"-sT", "-Pn", "-n", "-p", "8080", "--", sink.IPv4.String()}
	if _, err := r.run(t, true, sandbox.Unprivileged, nil, args...); err != nil {
		t.Fatal(err)
	}
	hostNft(t, "delete table inet "+fence.TableHost)
	before := v4Frames(t, sink)
	out, err := r.run(t, true, sandbox.Unprivileged, nil, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := framesAfter(t, sink, before); got != 0 {
		t.Fatalf("after the table was deleted, the sink received %d frames from a fenced scan\n%s", got, out)
	}
}

// hostNft runs nft in the host's network namespace (a throwaway container
// with NET_ADMIN), as someone tampering with the host's rules would.
func hostNft(t *testing.T, cmd string) {
	t.Helper()
	ctx := context.Background()
	cfg := &container.Config{Image: env.Image.ID, User: "0:0", Entrypoint: []string{"nft"}, Cmd: strings.Fields(cmd),
		Labels: map[string]string{testkit.LabelTest: env.Instance, sandbox.LabelManaged: "true", sandbox.LabelInstance: env.Instance}}
	hc := &container.HostConfig{NetworkMode: "host", CapDrop: []string{"ALL"}, CapAdd: []string{"NET_ADMIN"}}
	created, err := env.Client.ContainerCreate(ctx, cfg, hc, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Client.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	wait, errc := env.Client.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := env.Client.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-wait:
		if w.StatusCode != 0 {
			t.Fatalf("nft %s: exit %d", cmd, w.StatusCode)
		}
	case err := <-errc:
		t.Fatal(err)
	}
}

// hostileFTP is an FTP service on loopback that lets anyone in and accepts
// any PORT command, as a bounce-friendly server would; it returns its port.
func hostileFTP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				fmt.Fprint(c, "220 hostile FTP ready\r\n")
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					cmd := strings.ToUpper(strings.Fields(sc.Text() + " x")[0])
					switch cmd {
					case "USER":
						fmt.Fprint(c, "331 password please\r\n")
					case "PASS":
						fmt.Fprint(c, "230 logged in\r\n")
					case "PORT":
						fmt.Fprint(c, "200 PORT command successful\r\n")
					case "QUIT":
						fmt.Fprint(c, "221 bye\r\n")
						return
					default:
						fmt.Fprint(c, "200 ok\r\n")
					}
				}
			}()
		}
	}()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// BenchmarkHostFence is the cost of the host fence on a loopback connect
// scan: the warden re-applying the table before the scan, against the
// same scan unfenced (go test -bench HostFence -run ^$ ./fence).
func BenchmarkHostFence(b *testing.B) {
	port := fmt.Sprint(testkit.TCPListener(b))
	hf := fencer.NewHostFence(env.Client, fencer.HostConfig{Image: env.Image.ID, Labels: sandbox.OwnerLabels(env.Instance)}, nil)
	ex := executor.New(env.Client, nil)
	ex.SetHostFence(hf)
	defer ex.Close(context.Background())
	lim := sandbox.DefaultLimits()
	opts := sandbox.Options{Limits: lim, Instance: env.Instance}
	for _, c := range []struct {
		name  string
		place sandbox.Placement
	}{
		{"fenced", sandbox.Placement{Network: sandbox.Host, HostFence: true}},
		{"unfenced", sandbox.Placement{Network: sandbox.Host, Unfenced: "benchmark control"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				spec := sandbox.New(opts, sandbox.Scan{ID: newID(), Image: env.Image.ID, Args: []string{"-sT", "-Pn", "-n", "-p", port, "--", "127.0.0.1"}, Placement: c.place})
				if _, err := ex.Run(context.Background(), executor.Job{Spec: spec}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.StopTimer()
	start := time.Now()
	if _, err := hf.Ensure(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Logf("one re-apply of the host fence: %s", time.Since(start))
}
