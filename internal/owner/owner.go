// Package owner tells whether the process that made a container or a scan
// record is still alive, so that leftovers of a dead server can be cleaned
// up without touching those of a live one.
package owner

import (
	"errors"
	"os"
	"syscall"
)

// Host is this machine's hostname ("" when unknown).
func Host() string {
	h, _ := os.Hostname()
	return h
}

// Alive reports whether pid names a live process on this host.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Orphaned reports whether something owned by pid on host has no live
// owner: the pid is gone on this host. Another host's owner is never
// judged dead.
func Orphaned(pid int, host string) bool {
	if pid <= 0 {
		return true
	}
	return host == Host() && !Alive(pid)
}
