package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/docker/docker/api/types/image"
)

// MakeBase makes the Debian bookworm base offline: debootstrap (minbase)
// from the Debian mirror into a temporary folder, then import that rootfs
// as BaseRef. It needs root and the debootstrap command on the host, and
// returns the new image's ID. The folder is removed afterwards.
func (m *Manager) MakeBase(ctx context.Context) (string, error) {
	deboot, err := exec.LookPath("debootstrap")
	if err != nil {
		return "", errors.New("no base image and no registry: making one needs debootstrap on the host (as root: apt-get install debootstrap), " +
			"or load a debian:bookworm image with docker load")
	}
	if os.Geteuid() != 0 {
		return "", errors.New("no base image and no registry: making one with debootstrap needs root; run once as root: nmap-mcp image build")
	}
	dir, err := os.MkdirTemp("", "nmap-mcp-rootfs-")
	if err != nil {
		return "", fmt.Errorf("make rootfs folder: %w", err)
	}
	defer os.RemoveAll(dir)

	start := time.Now()
	fmt.Fprintf(m.progress, "nmap-mcp: debootstrap --variant=minbase bookworm from %s (about a minute)\n", m.mirror)
	cmd := exec.CommandContext(ctx, deboot, "--variant=minbase", "bookworm", dir, m.mirror)
	cmd.Stdout, cmd.Stderr = m.progress, m.progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("debootstrap bookworm from %s: %w", m.mirror, err)
	}
	// The apt caches are not part of the image.
	_ = os.RemoveAll(dir + "/var/cache/apt/archives")

	tarCmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "-C", dir, "-c", ".")
	tarOut, err := tarCmd.StdoutPipe()
	if err != nil {
		return "", fmt.Errorf("pipe rootfs tar: %w", err)
	}
	tarCmd.Stderr = m.progress
	if err := tarCmd.Start(); err != nil {
		return "", fmt.Errorf("start rootfs tar: %w", err)
	}
	rc, err := m.engine.ImageImport(ctx, image.ImportSource{Source: tarOut, SourceName: "-"}, BaseRef,
		image.ImportOptions{Message: "debootstrap --variant=minbase bookworm " + m.mirror, Changes: []string{`CMD ["/bin/bash"]`}})
	if err != nil {
		_ = tarCmd.Process.Kill()
		_ = tarCmd.Wait()
		return "", fmt.Errorf("import rootfs as %s: %w", BaseRef, err)
	}
	err = followBuild(rc, io.Discard)
	rc.Close()
	if werr := tarCmd.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("tar rootfs: %w", werr)
	}
	if err != nil {
		return "", fmt.Errorf("import rootfs as %s: %w", BaseRef, err)
	}
	info, err := m.engine.ImageInspect(ctx, BaseRef)
	if err != nil {
		return "", fmt.Errorf("inspect imported base: %w", err)
	}
	fmt.Fprintf(m.progress, "nmap-mcp: made base %s (%.19s) in %.0fs\n", BaseRef, info.ID, time.Since(start).Seconds())
	return info.ID, nil
}
