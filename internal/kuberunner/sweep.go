package kuberunner

import (
	"context"
	"fmt"
	"os"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nmap-mcp/nmap-mcp/internal/owner"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Sweep deletes the Jobs of ours (every label of sandbox.OwnedBy) whose
// server is gone: made on this host by a process that no longer runs, or
// by an earlier server in this same process slot (a restarted container
// is pid 1 again, with another instance). Jobs of live servers and of
// other hosts are left alone: their activeDeadlineSeconds ends them and
// ttlSecondsAfterFinished removes them. It returns the names it deleted.
func (r *Runner) Sweep(ctx context.Context) ([]string, error) {
	list, err := r.client.ListJobs(ctx, r.cfg.Namespace, metav1.ListOptions{LabelSelector: sandbox.LabelManaged + "=true"})
	if err != nil {
		return nil, fmt.Errorf("list managed Jobs: %w", r.apiErr("list Jobs", err))
	}
	var removed []string
	for _, j := range list.Items {
		pid, host, ok := sandbox.OwnedBy(j.Labels)
		if !ok {
			continue
		}
		sameSlot := host == owner.Host() && pid == os.Getpid() && j.Labels[sandbox.LabelInstance] != r.cfg.Instance
		if !owner.Orphaned(pid, host) && !sameSlot {
			continue
		}
		if err := r.deleteJob(j.Name); err != nil {
			r.log.Warn("delete a Job a previous server left behind; its TTL or the next sweep will", "job", j.Name, "err", err)
			continue
		}
		removed = append(removed, j.Name)
		r.log.Info("deleted a Job a previous server left behind", "job", j.Name, "scan", j.Labels[sandbox.LabelScanID])
	}
	return removed, nil
}
