package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
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
	Args     []arg    `json:"args,omitempty"`
	ErrnoRet *uint    `json:"errnoRet,omitempty"`
	Comment  string   `json:"comment,omitempty"`
}

// arg is one condition on a system call's argument (all of a rule's
// conditions must hold).
type arg struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo"`
	Op       string `json:"op"`
}

// Socket families a scan on the host network may open (x86-64 and arm64
// agree on them): IPv4, IPv6 and netlink (interface and route discovery).
// Not AF_PACKET (17), whose sends no IP-level fence sees, nor AF_UNIX (1),
// which reaches the host's abstract sockets.
var hostFamilies = []uint64{2, 10, 16}

// buildProfile renders the profile. For host-network scans (host true)
// socket() is allowed only for hostFamilies: the host fence filters IP at
// the inet output hook, which frames sent on a packet socket skip (with
// any call: sendto, sendmsg, or write on a bound socket), so a scan inside
// it may not open one at all; nor a UNIX socket, which no network fence
// sees. Such scans are therefore unprivileged (no libpcap capture): the
// scans service refuses raw-socket scans of loopback.
func buildProfile(host bool) ([]byte, string) {
	eperm, enosys := uint(1), uint(38)
	allow := append(append([]string{}, traced...), harmless...)
	var extra []syscallRule
	if host {
		allow = slices.DeleteFunc(allow, func(n string) bool { return n == "socket" })
		for _, f := range hostFamilies {
			extra = append(extra, syscallRule{Names: []string{"socket"}, Action: "SCMP_ACT_ALLOW",
				Args: []arg{{Index: 0, Value: f, Op: "SCMP_CMP_EQ"}}, Comment: "host network: IPv4, IPv6 and netlink sockets only"})
		}
	}
	p := profile{
		DefaultAction:   "SCMP_ACT_ERRNO",
		DefaultErrnoRet: &eperm,
		// Only the native architecture: 32-bit and x32 calls get EPERM.
		ArchMap: []archMap{
			{Arch: "SCMP_ARCH_X86_64", SubArches: []string{}},
			{Arch: "SCMP_ARCH_AARCH64", SubArches: []string{}},
		},
		Syscalls: append([]syscallRule{
			{Names: allow, Action: "SCMP_ACT_ALLOW",
				Comment: "nmap, its launcher and the fencer; everything else fails with EPERM"},
			// glibc falls back from clone3 to clone only on ENOSYS.
			{Names: []string{"clone3"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: &enosys, Comment: "glibc falls back to clone"},
		}, extra...),
	}
	b, _ := json.Marshal(p) // strings, numbers and pointers to uint: cannot fail
	sum := sha256.Sum256(b)
	return b, "sha256:" + hex.EncodeToString(sum[:])[:12]
}

// The profiles are pure functions of the lists above, built once per
// process.
var (
	seccompOnce     = sync.OnceValues(func() ([]byte, string) { return buildProfile(false) })
	hostSeccompOnce = sync.OnceValues(func() ([]byte, string) { return buildProfile(true) })
)

// HostSeccompProfile is SeccompProfile for scans on the host network
// fenced to loopback: it also refuses packet-socket sends (see
// buildProfile), which the host fence cannot see.
func HostSeccompProfile() []byte {
	b, _ := hostSeccompOnce()
	return b
}

// HostSeccompID names HostSeccompProfile as SeccompID names the default.
func HostSeccompID() string {
	_, id := hostSeccompOnce()
	return id
}

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
