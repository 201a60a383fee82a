package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/nmap-mcp/nmap-mcp/engine"
	"github.com/nmap-mcp/nmap-mcp/executor"
)

// reapWait bounds how long the reaper waits for a container to stop.
const reapWait = 30 * time.Second

// handOff passes containers whose removal is still under way to a detached
// "nmap-mcp reap" process, so that a CLI scan can exit as soon as its
// result is printed. It returns false when it could not start one; the
// caller must then wait for the removals itself.
func handOff(ids []string) bool {
	if len(ids) == 0 {
		return true
	}
	self, err := os.Executable()
	if err != nil {
		return false
	}
	cmd := exec.Command(self, append([]string{"reap"}, ids...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		return false
	}
	_ = cmd.Process.Release()
	return true
}

// cmdReap waits for the given containers to stop and removes them. It is
// started by handOff, not by users.
func cmdReap(ctx context.Context, ids []string, stderr io.Writer) error {
	if len(ids) == 0 {
		fmt.Fprintln(stderr, "Usage: nmap-mcp reap CONTAINER...  (internal: removes containers a finished CLI scan handed off)")
		return &exitCode{2}
	}
	cli, err := engine.Connect(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	executor.New(cli, nil).Reap(context.WithoutCancel(ctx), ids, reapWait)
	return nil
}
