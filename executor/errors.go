package executor

import (
	"fmt"
	"time"
)

// TimeoutError means the container was killed at its wall-clock limit.
type TimeoutError struct{ After time.Duration }

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("timed out after %d s and was killed; the output so far is kept",
		int(e.After.Round(time.Second)/time.Second))
}

// OOMError means the kernel killed the container for its memory limit.
type OOMError struct{ Limit int64 }

func (e *OOMError) Error() string {
	return fmt.Sprintf("killed for exceeding the memory limit of %d MiB",
		e.Limit>>20)
}

// PidsError means a process or thread could not be created under the pids limit.
type PidsError struct {
	Limit  int64
	Stderr string
}

func (e *PidsError) Error() string {
	return fmt.Sprintf("ran out of processes under the pids limit of %d (%s)",
		e.Limit, firstLine(e.Stderr))
}

// ExitError means the program in the container exited with a non-zero code.
type ExitError struct {
	Code   int
	Stderr string // the tail of stderr
}

func (e *ExitError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("nmap exited with code %d and wrote nothing to stderr", e.Code)
	}
	return fmt.Sprintf("nmap exited with code %d: %s", e.Code, e.Stderr)
}

// ImageError means the image to run is missing or unusable.
type ImageError struct {
	Image string
	Err   error
}

func (e *ImageError) Error() string {
	return fmt.Sprintf("scanner image %s is missing or unusable: %v", e.Image, e.Err)
}

func (e *ImageError) Unwrap() error { return e.Err }

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
