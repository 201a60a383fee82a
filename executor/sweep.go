package executor

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/nmap-mcp/nmap-mcp/internal/owner"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Sweep removes containers labelled sandbox.LabelManaged=true that no live
// server owns: their owner process on this host is gone, they carry no
// owner, or they are older than maxAge (longer than any scan may run).
// Containers of other live servers on this host are left alone. It
// returns the IDs it removed.
func (e *Executor) Sweep(ctx context.Context, maxAge time.Duration) ([]string, error) {
	list, err := e.engine.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", sandbox.LabelManaged+"=true")),
	})
	if err != nil {
		return nil, fmt.Errorf("list managed containers: %w", err)
	}
	var removed []string
	for _, c := range list {
		if !orphaned(c, maxAge) {
			continue
		}
		e.remove(c.ID)
		removed = append(removed, c.ID)
		e.log.Info("removed a container a previous server left behind", "container", shortID(c.ID),
			"scan", c.Labels[sandbox.LabelScanID], "state", c.State)
	}
	return removed, nil
}

func orphaned(c container.Summary, maxAge time.Duration) bool {
	if maxAge > 0 && time.Since(time.Unix(c.Created, 0)) > maxAge {
		return true
	}
	pid, err := strconv.Atoi(c.Labels[sandbox.LabelOwnerPID])
	if err != nil {
		return true
	}
	return owner.Orphaned(pid, c.Labels[sandbox.LabelOwnerHost])
}
