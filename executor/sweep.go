package executor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/nmap-mcp/nmap-mcp/internal/owner"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Sweep removes containers that carry every label of ours
// (sandbox.OwnedBy) and whose owner process on this host is gone. A
// container with only some of our labels (another tool's, or one made by
// hand) and one of a live server, here or on another host, are left
// alone. It returns the IDs it removed.
func (e *Executor) Sweep(ctx context.Context) ([]string, error) {
	list, err := e.engine.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", sandbox.LabelManaged+"=true")),
	})
	if err != nil {
		return nil, fmt.Errorf("list managed containers: %w", err)
	}
	var removed []string
	for _, c := range list {
		pid, host, ok := sandbox.OwnedBy(c.Labels)
		if !ok || !owner.Orphaned(pid, host) {
			continue
		}
		e.remove(c.ID)
		removed = append(removed, c.ID)
		e.log.Info("removed a container a previous server left behind", "container", shortID(c.ID),
			"scan", c.Labels[sandbox.LabelScanID], "state", c.State)
	}
	return removed, nil
}

// Reap removes containers that a CLI scan (process ownerPID) handed off
// when it exited: each must carry our full label set naming ownerPID on
// this host, and is removed only once that process is gone and the
// container has stopped (killed after d). Then the fencers are removed
// (they never stop by themselves), with the same label check. Any other
// id is left alone, so reap cannot be used to remove a live server's
// containers.
func (e *Executor) Reap(ctx context.Context, ids, fences []string, ownerPID int, d time.Duration) {
	deadline := time.Now().Add(d)
	for owner.Alive(ownerPID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if owner.Alive(ownerPID) {
		e.log.Warn("reap: the scan's process is still alive; its containers are left to it", "pid", ownerPID)
		return
	}
	ours := func(id string) bool {
		info, err := e.engine.ContainerInspect(ctx, id)
		if err != nil || info.Config == nil {
			return false
		}
		pid, host, ok := sandbox.OwnedBy(info.Config.Labels)
		if !ok || pid != ownerPID || host != owner.Host() {
			e.log.Warn("reap: not a container of the process that handed it off; left alone", "container", shortID(id))
			return false
		}
		return true
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		if !ours(id) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, cancel := context.WithTimeout(ctx, time.Until(deadline))
			defer cancel()
			waitC, errC := e.engine.ContainerWait(wctx, id, container.WaitConditionNotRunning)
			select {
			case <-waitC:
			case <-errC:
			}
			e.remove(id)
		}()
	}
	wg.Wait()
	for _, id := range fences {
		if ours(id) {
			wg.Add(1)
			go func() { defer wg.Done(); e.remove(id) }()
		}
	}
	wg.Wait()
}
