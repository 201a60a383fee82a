package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Kinds of storage fault a *FaultError names.
const (
	ReadOnly = "read-only"
	Full     = "full"
	IOError  = "i/o error"
)

// MinFree is the free space on the trail's disk below which Ready
// refuses: room for a scan's admission line, its end and the head.
const MinFree = 64 << 10

// FaultError is a fault of the trail's storage: its disk is full, it or
// its folder is read-only, or the disk reported an I/O error. Nothing of
// the failed append is left in the trail. Its text names the file, the
// fault and what to do.
type FaultError struct {
	Path string
	Kind string // ReadOnly, Full or IOError
	Err  error
}

func (e *FaultError) Error() string {
	var what, todo string
	switch e.Kind {
	case Full:
		what = "its disk is full"
		todo = "free space on the disk that holds it"
	case ReadOnly:
		what = "the trail, its head or its folder is read-only"
		todo = fmt.Sprintf("make %s and the files in it writable again (remount the disk read-write, chattr -i, fix the owner)", filepath.Dir(e.Path))
	default:
		what = "the disk reported an I/O error"
		todo = "check the disk (dmesg, smartctl)"
	}
	return fmt.Sprintf("audit trail %s cannot be written: %s (%v); %s: scans are refused until the trail can be written, "+
		"and admitted again as soon as it can, no restart needed (the records already written are intact: nmap-mcp audit verify)", e.Path, what, e.Err, todo)
}

func (e *FaultError) Unwrap() error { return e.Err }

// Transient reports that the fault can go away by itself (space freed, a
// disk remounted), so that a write is worth retrying.
func (e *FaultError) Transient() bool { return true }

// fault wraps a storage error of the trail as a *FaultError, or returns it.
func (l *Log) fault(err error) error {
	if err == nil {
		return nil
	}
	var fe *FaultError
	if errors.As(err, &fe) {
		return err
	}
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return &FaultError{Path: l.path, Kind: Full, Err: err}
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return &FaultError{Path: l.path, Kind: ReadOnly, Err: err}
	case errors.Is(err, syscall.EIO):
		return &FaultError{Path: l.path, Kind: IOError, Err: err}
	}
	return err
}

// Ready says whether a scan's admission can be written now: the trail is
// not found tampered with, its folder, file and head can be written, and
// its disk has MinFree bytes free. It is asked before a scan spends its
// client's budget, so that a fault known beforehand refuses the scan with
// nothing spent or written. Its storage errors are *FaultError.
func (l *Log) Ready(_ context.Context) error {
	l.mu.Lock()
	broken := l.broken
	l.mu.Unlock()
	if broken != nil {
		return broken
	}
	dir := filepath.Dir(l.path)
	for _, p := range []string{dir, l.path, HeadPath(l.path)} {
		if err := syscall.Access(p, 2 /* W_OK */); err != nil && !errors.Is(err, syscall.ENOENT) {
			return l.fault(&os.PathError{Op: "access", Path: p, Err: err})
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return l.fault(&os.PathError{Op: "statfs", Path: dir, Err: err})
	}
	if free := st.Bavail * uint64(st.Bsize); free < MinFree {
		return &FaultError{Path: l.path, Kind: Full, Err: fmt.Errorf("%d bytes free on the disk of %s, fewer than the %d an admission needs: %w", free, dir, MinFree, syscall.ENOSPC)}
	}
	return nil
}
