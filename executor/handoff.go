package executor

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// ReapCommand is the hidden subcommand of the nmap-mcp binary that Detach
// starts: "nmap-mcp reap --owner PID CONTAINER... [--fences FENCER...]".
const ReapCommand = "reap"

// FencesFlag separates the scan containers from the fencers in the
// reaper's arguments.
const FencesFlag = "--fences"

// Detach hands the containers whose removal is still under way to a
// detached "nmap-mcp reap" process (this binary), so that a short-lived
// caller such as the CLI can exit as soon as its result is out. That
// process removes only containers labelled with this process as their
// owner, once this process is gone (see Reap). It reports false when it
// could not start one; the caller must then Close and wait.
func (e *Executor) Detach() bool {
	ids := e.track.Pending()
	var fences []string
	if e.fencer != nil {
		fences = e.fencer.Pending()
	}
	if e.hostFence != nil {
		fences = append(fences, e.hostFence.Pending()...)
	}
	if len(ids) == 0 && len(fences) == 0 {
		return true
	}
	if len(fences) > 0 {
		ids = append(append(ids, FencesFlag), fences...)
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
