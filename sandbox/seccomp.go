package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
)

// traced are the system calls nmap, the launcher (/bin/sh), the NSE
// script index (sh, cat, grep) and the fencer (sh, nft, sleep) were seen
// to make in the scanner image, by scripts/trace-syscalls.sh over -sT,
// -sS, -sU, -sn, -O, -sV with the default and safe NSE categories,
// --traceroute, IPv6 (-6 -sT, -sS, -sn), the index and nft -f -.
var traced = []string{
	"access", "arch_prctl", "bind", "brk", "clock_nanosleep", "clone", "close", "connect", "dup2",
	"epoll_create", "epoll_ctl", "epoll_wait", "eventfd2", "execve", "exit_group", "fadvise64", "fcntl",
	"futex", "getcwd", "getdents64", "getegid", "geteuid", "getgid", "getpgrp", "getpid", "getppid",
	"getrandom", "getsockname", "getsockopt", "getuid", "ioctl", "lseek", "mmap", "mprotect", "munmap",
	"newfstatat", "openat", "pipe2", "poll", "prctl", "pread64", "prlimit64", "pselect6", "read",
	"readlink", "recvfrom", "recvmsg", "rseq", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
	"sendmmsg", "sendmsg", "sendto", "set_robust_list", "set_tid_address", "setsockopt", "socket",
	"statfs", "statx", "sysinfo", "uname", "vfork", "wait4", "write",
}

// harmless are calls not seen in the traces that the same programs can
// make on other paths (other NSE scripts, other libc code paths, the
// runtime's own exec) and that reach nothing beyond the process itself:
// time, memory, signals to itself, file status, socket shutdown.
var harmless = []string{
	"chdir", "clock_getres", "clock_gettime", "close_range", "copy_file_range", "fchdir", "dup", "dup3", "epoll_create1", "epoll_pwait",
	"exit", "faccessat", "faccessat2", "fstat", "fstatfs", "getitimer", "getpeername", "getresgid",
	"getresuid", "getrlimit", "getrusage", "gettid", "gettimeofday", "lstat", "madvise", "mremap",
	"nanosleep", "pipe", "ppoll", "pwrite64", "readlinkat", "readv", "recvmmsg", "restart_syscall",
	"rt_sigsuspend", "rt_sigtimedwait", "sched_getaffinity", "sched_yield", "select", "setitimer",
	"shutdown", "sigaltstack", "socketpair", "stat", "tgkill", "time", "times", "writev",
}

// profile is Docker's seccomp profile format (the subset used here).
type profile struct {
	DefaultAction   string        `json:"defaultAction"`
	DefaultErrnoRet *uint         `json:"defaultErrnoRet,omitempty"`
	ArchMap         []archMap     `json:"archMap"`
	Syscalls        []syscallRule `json:"syscalls"`
}

type archMap struct {
	Arch      string   `json:"architecture"`
	SubArches []string `json:"subArchitectures"`
}

type syscallRule struct {
	Names    []string `json:"names"`
	Action   string   `json:"action"`
	ErrnoRet *uint    `json:"errnoRet,omitempty"`
	Comment  string   `json:"comment,omitempty"`
}

// seccompOnce builds the profile once per process: it is a pure function
// of the lists above.
var seccompOnce = sync.OnceValues(func() ([]byte, string) {
	eperm, enosys := uint(1), uint(38)
	p := profile{
		DefaultAction:   "SCMP_ACT_ERRNO",
		DefaultErrnoRet: &eperm,
		// Only the native architecture: 32-bit and x32 calls get EPERM.
		ArchMap: []archMap{
			{Arch: "SCMP_ARCH_X86_64", SubArches: []string{}},
			{Arch: "SCMP_ARCH_AARCH64", SubArches: []string{}},
		},
		Syscalls: []syscallRule{
			{Names: append(append([]string{}, traced...), harmless...), Action: "SCMP_ACT_ALLOW",
				Comment: "nmap, its launcher and the fencer; everything else fails with EPERM"},
			// glibc falls back from clone3 to clone only on ENOSYS.
			{Names: []string{"clone3"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: &enosys, Comment: "glibc falls back to clone"},
		},
	}
	b, _ := json.Marshal(p) // strings and pointers to uint: cannot fail
	sum := sha256.Sum256(b)
	return b, "sha256:" + hex.EncodeToString(sum[:])[:12]
})

// SeccompProfile is the default-deny seccomp profile (Docker's JSON
// format) applied to every container nmap-mcp starts: the calls nmap, its
// launcher and the fencer were traced making plus a few harmless ones are
// allowed; every other call fails with EPERM.
func SeccompProfile() []byte {
	b, _ := seccompOnce()
	return b
}

// SeccompID names the profile by the start of its SHA-256, e.g.
// "sha256:1a2b3c4d5e6f"; it changes whenever the profile does.
func SeccompID() string {
	_, id := seccompOnce()
	return id
}
