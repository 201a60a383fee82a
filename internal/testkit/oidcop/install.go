package oidcop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// CacheDir is the folder oidc-provider is installed in:
// NMAP_MCP_OIDC_PROVIDER when set, else nmap-mcp-oidcop in the user's
// cache folder ($XDG_CACHE_HOME, else ~/.cache), as scripts/test.sh has it.
func CacheDir() (string, error) {
	if d := os.Getenv("NMAP_MCP_OIDC_PROVIDER"); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache folder for oidc-provider (set NMAP_MCP_OIDC_PROVIDER): %w", err)
	}
	return filepath.Join(c, "nmap-mcp-oidcop"), nil
}

// installed reports whether dir holds oidc-provider at Version.
func installed(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "oidc-provider", "package.json"))
	if err != nil {
		return false
	}
	var pkg struct{ Version string }
	return json.Unmarshal(b, &pkg) == nil && pkg.Version == Version
}

// Install installs oidc-provider at Version into dir with npm unless it is
// there. An exclusive lock on dir/.install.lock keeps test packages that
// run at the same time from installing over each other.
func Install(ctx context.Context, dir string) error {
	if installed(dir) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("install oidc-provider: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("install oidc-provider: lock: %w", err)
	}
	defer lock.Close()
	if err := flock(ctx, lock); err != nil {
		return fmt.Errorf("install oidc-provider: lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if installed(dir) { // another package installed it while we waited
		return nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("install oidc-provider into %s: %w", dir, err)
	}
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error", "oidc-provider@"+Version)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm install oidc-provider@%s into %s: %w\n%s", Version, dir, err, out)
	}
	if !installed(dir) {
		return fmt.Errorf("npm install oidc-provider@%s into %s: done, but node_modules/oidc-provider/package.json does not say version %s", Version, dir, Version)
	}
	return nil
}

// flock takes an exclusive lock on f, giving up when ctx ends.
func flock(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for another installation: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
