package testkit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// Engine is a second Docker engine that a fault-injection test starts,
// stops and kills itself, never the user's: its own dockerd (and the
// containerd it manages) with its own data root, exec root, pid file and
// socket under a temporary folder, no bridge (--bridge=none) and no
// iptables rules, so that it changes nothing on the host but its own
// folder. Its containers can use the host network and none: scans of the
// test's loopback listeners.
type Engine struct {
	Dir  string // everything of the engine lives here
	Host string // DOCKER_HOST of the engine (unix://…)

	t    testing.TB
	cmd  *exec.Cmd
	log  *os.File
	exit chan struct{} // closed when the current dockerd has exited
}

// NeedDockerd skips the test when dockerd is not installed, except under
// CI, where it fails: a fault-injection test must not skip silently there.
func NeedDockerd(t testing.TB) {
	t.Helper()
	NeedEngine(t)
	if _, err := exec.LookPath("dockerd"); err != nil || os.Geteuid() != 0 {
		msg := fmt.Sprintf("a second Docker engine needs dockerd and root (dockerd: %v, euid %d)", err, os.Geteuid())
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; it is required under CI")
		}
		t.Skip(msg)
	}
}

// StartEngine starts a second engine and registers its removal (its
// containers, processes, mounts and folder) with t.Cleanup, which runs
// even when the test fails. The engine answers when it returns.
func StartEngine(t testing.TB) *Engine {
	t.Helper()
	NeedDockerd(t)
	// Short: containerd's sockets live under the exec root.
	dir, err := os.MkdirTemp("/tmp", "nme-")
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{Dir: dir, Host: "unix://" + filepath.Join(dir, "s.sock"), t: t}
	t.Cleanup(e.remove)
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if e.log, err = os.Create(filepath.Join(dir, "dockerd.log")); err != nil {
		t.Fatal(err)
	}
	e.Start()
	return e
}

// Client returns a client of the engine, closed when the test ends.
func (e *Engine) Client() *client.Client {
	e.t.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost(e.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cli.Close() })
	return cli
}

// Start starts dockerd (again) and waits until it answers.
func (e *Engine) Start() {
	e.t.Helper()
	e.StartNoWait()
	if err := e.WaitUp(60 * time.Second); err != nil {
		e.t.Fatal(err)
	}
}

// StartNoWait starts dockerd (again) without waiting for it to answer.
func (e *Engine) StartNoWait() {
	e.t.Helper()
	cmd := exec.Command("dockerd", "--config-file", filepath.Join(e.Dir, "daemon.json"),
		"--data-root", filepath.Join(e.Dir, "d"), "--exec-root", filepath.Join(e.Dir, "x"),
		"--pidfile", filepath.Join(e.Dir, "pid"), "-H", e.Host,
		"--bridge=none", "--iptables=false", "--ip-masq=false", "--userland-proxy=false")
	cmd.Stdout, cmd.Stderr = e.log, e.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start dockerd: %v", err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exit) }()
	e.cmd, e.exit = cmd, exit
}

// WaitUp waits until the engine answers a ping.
func (e *Engine) WaitUp(d time.Duration) error {
	cli, err := client.NewClientWithOpts(client.WithHost(e.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	end := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-e.exit:
			return fmt.Errorf("the second dockerd exited: %s", e.logTail())
		default:
		}
		if time.Now().After(end) {
			return fmt.Errorf("the second dockerd did not answer in %s: %v; %s", d, err, e.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill sends SIGKILL to dockerd (its containerd follows it) and waits for
// it to exit: the engine crashed.
func (e *Engine) Kill() { e.signal(syscall.SIGKILL) }

// Stop stops dockerd with SIGTERM and waits for it to exit.
func (e *Engine) Stop() { e.signal(syscall.SIGTERM) }

func (e *Engine) signal(sig syscall.Signal) {
	e.t.Helper()
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(sig)
	select {
	case <-e.exit:
	case <-time.After(60 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.exit
	}
	e.cmd = nil
	// Wait for its containerd too (it dies with dockerd); the shims of
	// running containers stay until the engine is back.
	Eventually(10*time.Second, func() bool { return len(e.daemons()) == 0 })
}

// LoadImage copies images (tags keep their names) from the client from
// into this engine (docker save | docker load).
func (e *Engine) LoadImage(ctx context.Context, from *client.Client, images ...string) error {
	rc, err := from.ImageSave(ctx, images)
	if err != nil {
		return fmt.Errorf("save %s: %w", images, err)
	}
	defer rc.Close()
	cli := e.Client()
	resp, err := cli.ImageLoad(ctx, rc)
	if err != nil {
		return fmt.Errorf("load %s: %w", images, err)
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// remove removes every container of the engine, stops it, kills what of
// it is left (processes whose command line names its folder), unmounts
// its mounts and removes its folder.
func (e *Engine) remove() {
	if e.cmd != nil {
		cli, err := client.NewClientWithOpts(client.WithHost(e.Host), client.WithAPIVersionNegotiation())
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if list, err := cli.ContainerList(ctx, container.ListOptions{All: true}); err == nil {
				for _, c := range list {
					_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
				}
			}
			// Networks a test made (a bridge is a host interface).
			if nets, err := cli.NetworkList(ctx, network.ListOptions{}); err == nil {
				for _, n := range nets {
					if n.Name != "host" && n.Name != "none" && n.Name != "bridge" {
						_ = cli.NetworkRemove(ctx, n.ID)
					}
				}
			}
			cancel()
			cli.Close()
		}
		e.signal(syscall.SIGTERM)
	}
	for _, pid := range e.processes() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	Eventually(10*time.Second, func() bool { return len(e.processes()) == 0 })
	if left := e.processes(); len(left) > 0 {
		e.t.Errorf("LEAK: processes of the second engine left: %v", left)
	}
	mounts := e.mounts()
	slices.Reverse(mounts) // deepest first
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			e.t.Errorf("unmount %s: %v", m, err)
		}
	}
	if e.log != nil {
		if e.t.Failed() {
			e.t.Logf("second dockerd log (tail):\n%s", e.logTail())
		}
		e.log.Close()
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		e.t.Errorf("LEAK: remove the second engine's folder: %v", err)
	}
}

// daemons lists the engine's dockerd and containerd processes.
func (e *Engine) daemons() []int {
	var out []int
	for _, pid := range e.processes() {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if !strings.HasPrefix(filepath.Base(strings.SplitN(string(b), "\x00", 2)[0]), "containerd-shim") {
			out = append(out, pid)
		}
	}
	return out
}

// processes lists the pids whose command line names the engine's folder
// (dockerd, its containerd, container shims).
func (e *Engine) processes() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), e.Dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mounts lists the mount points under the engine's folder, in mount order.
func (e *Engine) mounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == e.Dir || strings.HasPrefix(fields[4], e.Dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

func (e *Engine) logTail() string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "dockerd.log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
