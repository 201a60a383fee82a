package executor

import (
	"fmt"
	"maps"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// DockerConfig returns the Docker container and host configuration of a
// runner-neutral spec (see package sandbox for what each field means).
func DockerConfig(spec sandbox.Spec) (*container.Config, *container.HostConfig) {
	pids := spec.Pids
	cfg := &container.Config{
		Image:           spec.Image,
		Entrypoint:      spec.Command[:1],
		Cmd:             append([]string(nil), spec.Command[1:]...),
		User:            fmt.Sprintf("%d:%d", spec.UID, spec.GID),
		NetworkDisabled: spec.Network == sandbox.None,
		AttachStdout:    true,
		AttachStderr:    true,
		Labels:          maps.Clone(spec.Labels),
	}
	hc := &container.HostConfig{
		NetworkMode:    container.NetworkMode(spec.Network),
		CapDrop:        []string{"ALL"},
		CapAdd:         append([]string(nil), spec.CapAdd...),
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": fmt.Sprintf("rw,noexec,nosuid,nodev,size=%d", spec.TmpfsBytes)},
		Privileged:     false,
		AutoRemove:     false,
		Init:           new(bool),
		Resources: container.Resources{
			NanoCPUs:   int64(spec.CPUs * 1e9),
			Memory:     spec.Memory,
			MemorySwap: spec.Memory,
			PidsLimit:  &pids,
			// The host fence matches the sockets of this cgroup's tree.
			CgroupParent: spec.CgroupParent,
		},
		LogConfig: container.LogConfig{Type: "none"},
		Sysctls:   maps.Clone(spec.Sysctls),
		// No resolver: an empty, read-only resolv.conf (the image resolves
		// host names from /etc/hosts only), so neither libc nor NSE's DNS
		// library can send a query, whatever network the scan is on.
		Mounts: []mount.Mount{{Type: mount.TypeBind, Source: "/dev/null", Target: sandbox.ResolvConf, ReadOnly: true}},
	}
	if len(hc.CapAdd) == 0 {
		hc.CapAdd = nil
	}
	if len(spec.Seccomp) > 0 {
		hc.SecurityOpt = append(hc.SecurityOpt, "seccomp="+string(spec.Seccomp))
	}
	return cfg, hc
}
