package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
)

// reapWait bounds how long the reaper waits for a container to stop.
const reapWait = 30 * time.Second

// cmdReap waits for the process --owner to exit and the given containers
// to stop, and removes those that carry our labels naming that process.
// It is started by executor.Detach, not by users.
func cmdReap(ctx context.Context, args []string, stderr io.Writer) error {
	var pid int
	if len(args) >= 2 && args[0] == "--owner" {
		pid, _ = strconv.Atoi(args[1])
		args = args[2:]
	}
	ids, fences := args, []string(nil)
	if i := slices.Index(args, executor.FencesFlag); i >= 0 {
		ids, fences = args[:i], args[i+1:]
	}
	if len(ids)+len(fences) == 0 || pid <= 0 {
		fmt.Fprintln(stderr, "Usage: nmap-mcp reap --owner PID CONTAINER...  (internal: removes containers a finished CLI scan handed off)")
		return &exitCode{2}
	}
	cli, err := executor.Connect(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	executor.New(cli, nil).Reap(context.WithoutCancel(ctx), ids, fences, pid, reapWait)
	return nil
}
