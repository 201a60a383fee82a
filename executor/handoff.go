package executor

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// ReapCommand is the hidden subcommand of the nmap-mcp binary that Detach
// starts: "nmap-mcp reap --owner PID CONTAINER...".
const ReapCommand = "reap"

// Detach hands the containers whose removal is still under way to a
// detached "nmap-mcp reap" process (this binary), so that a short-lived
// caller such as the CLI can exit as soon as its result is out. That
// process removes only containers labelled with this process as their
// owner, once this process is gone (see Reap). It reports false when it
// could not start one; the caller must then Close and wait.
func (e *Executor) Detach() bool {
	ids := e.pendingIDs()
	if len(ids) == 0 {
		return true
	}
	self, err := os.Executable()
	if err != nil {
		return false
	}
	cmd := exec.Command(self, append([]string{ReapCommand, "--owner", strconv.Itoa(os.Getpid())}, ids...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		return false
	}
	_ = cmd.Process.Release()
	return true
}
