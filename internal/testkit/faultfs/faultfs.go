// Package faultfs injects storage faults for tests, for real: a small
// tmpfs a test fills (a full disk), a read-only bind mount of a folder
// over itself (a read-only disk, root's writes too), and a database page
// overwritten with garbage (DamagePage, no mount). Mounts go through
// mount(2) (no host process), live under the test's temporary folder, and
// are removed in t.Cleanup even when the test fails. They need root: a
// test skips without it, except under CI, where it fails.
package faultfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NeedRoot skips t when not root (mounting needs it), or fails it under
// CI, where every fault must be injected.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := fmt.Sprintf("mounting a tmpfs or a read-only bind mount needs root (euid %d)", os.Geteuid())
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; it is required under CI")
		}
		t.Skip(msg)
	}
}

// Mounted reports whether something is mounted at dir.
func Mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// unmountAll unmounts everything stacked at dir; a mount still busy (a
// file open through it, e.g. on a failed test's path) is detached and goes
// when the last file closes.
func unmountAll(t testing.TB, dir string) {
	for i := 0; Mounted(dir) && i < 50; i++ {
		if err := syscall.Unmount(dir, 0); err != nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	for i := 0; Mounted(dir) && i < 20; i++ {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	if Mounted(dir) {
		t.Errorf("%s is still mounted", dir)
	}
}

// Tmpfs mounts a tmpfs of size (e.g. "8m") on a new temporary folder and
// returns it.
func Tmpfs(t testing.TB, size string) string {
	t.Helper()
	NeedRoot(t)
	dir := t.TempDir() // removed after the unmount (cleanups run last first)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs of %s on %s: %v", size, dir, err)
	}
	t.Cleanup(func() { unmountAll(t, dir) })
	return dir
}

// ReadOnlyBind makes dir read-only for every open from now on, root's too:
// a read-only bind mount of dir over itself (files already open stay
// writable; the kernel refuses to remount a disk read-only while files on
// it are open for writing). The returned func makes it writable again, as
// an administrator would; the bind mount is removed in t.Cleanup.
func ReadOnlyBind(t testing.TB, dir string) (writable func()) {
	t.Helper()
	NeedRoot(t)
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount %s over itself: %v", dir, err)
	}
	t.Cleanup(func() { unmountAll(t, dir) })
	if err := syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", dir, err)
	}
	return func() {
		if err := syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT, ""); err != nil {
			t.Fatalf("remount %s read-write: %v", dir, err)
		}
	}
}

// Fill writes a file named filler in dir until its disk is full, then
// frees keep bytes of it; it returns the file's path.
func Fill(t testing.TB, dir string, keep int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	var n int64
	for {
		w, err := f.Write(chunk)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if keep > 0 {
		if err := f.Truncate(max(n-keep, 0)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// ReadOnlyDisk remounts the tmpfs at dir (from Tmpfs) read-only, as a disk
// gone read-only; it fails while a file on it is open for writing. The
// returned func remounts it read-write.
func ReadOnlyDisk(t testing.TB, dir string) (writable func()) {
	t.Helper()
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", dir, err)
	}
	return func() {
		if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT, ""); err != nil {
			t.Fatalf("remount %s read-write: %v", dir, err)
		}
	}
}

// DamagePage writes to dst a copy of the SQLite database src whose page
// holding marker is overwritten with garbage, as a failing disk leaves
// it; dst may be src. It returns the damaged page's index, the number of
// pages and the page size.
func DamagePage(t testing.TB, src, marker, dst string) (page, pages, pageSize int) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 100 {
		t.Fatalf("%s: not a SQLite database", src)
	}
	pageSize = int(b[16])<<8 | int(b[17])
	at := bytes.Index(b, []byte(marker))
	if at < 0 || pageSize < 512 {
		t.Fatalf("%s: marker %q at %d, page size %d", src, marker, at, pageSize)
	}
	page = at / pageSize
	for i := page * pageSize; i < (page+1)*pageSize && i < len(b); i++ {
		b[i] = 0xA5
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return page, len(b) / pageSize, pageSize
}
