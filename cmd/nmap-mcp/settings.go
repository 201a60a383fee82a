package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"

	"github.com/nmap-mcp/nmap-mcp/internal/config"
	"github.com/nmap-mcp/nmap-mcp/internal/scan"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// settings are the deployment settings shared by serve and scan. Each has a
// flag and an environment variable; the flag wins.
type settings struct {
	network      string
	cpus         float64
	memory       string
	pids         int64
	timeout      int
	maxTimeout   int
	maxAddresses uint64
	logFile      string
	logLevel     string
	mirror       string
	storePath    string
	maxXML       string
	concurrent   int
	queueSize    int
	queueWait    int
	auditPath    string
	configPath   string

	// file is the configuration file's content (defaults when none).
	file config.Config
}

// loadConfig reads the configuration file named by --config in args, or
// NMAP_MCP_CONFIG, or the default path if it exists.
func loadConfig(args []string) (config.Config, string, error) {
	path, required := configPath(args)
	c, err := config.Load(path, required)
	return c, path, err
}

// configPath finds the configuration file: --config in args, else
// NMAP_MCP_CONFIG, else the default path (which may be missing).
func configPath(args []string) (path string, required bool) {
	required = true
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, p := range []string{"--config=", "-config="} {
			if v, ok := strings.CutPrefix(a, p); ok {
				path = v
			}
		}
		if (a == "--config" || a == "-config") && i+1 < len(args) {
			path = args[i+1]
		}
	}
	if path == "" {
		path = os.Getenv("NMAP_MCP_CONFIG")
	}
	if path == "" {
		path, required = config.DefaultPath(), false
	}
	return path, required
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// register reads the configuration file and adds the shared flags to fs,
// with defaults from the file overridden by the environment.
func (s *settings) register(fs *flag.FlagSet, args []string) error {
	file, path, err := loadConfig(args)
	if err != nil {
		return err
	}
	s.file = file
	fs.StringVar(&s.configPath, "config", path, "configuration file (env NMAP_MCP_CONFIG)")
	c := file
	concurrent := c.Queue.MaxConcurrent
	if concurrent <= 0 {
		concurrent = runtime.NumCPU()
	}
	fs.StringVar(&s.network, "network", envOr("NMAP_MCP_NETWORK", c.Sandbox.Network),
		"container network: host, bridge, none or a Docker network name (env NMAP_MCP_NETWORK)")
	fs.Float64Var(&s.cpus, "cpus", envFloat("NMAP_MCP_CPUS", c.Sandbox.CPUs), "CPUs per scan container (env NMAP_MCP_CPUS)")
	fs.StringVar(&s.memory, "memory", envOr("NMAP_MCP_MEMORY", c.Sandbox.Memory), "memory per scan container, e.g. 512m or 1g; no swap (env NMAP_MCP_MEMORY)")
	fs.Int64Var(&s.pids, "pids", int64(envFloat("NMAP_MCP_PIDS", float64(c.Sandbox.Pids))), "process limit per scan container (env NMAP_MCP_PIDS)")
	fs.IntVar(&s.timeout, "timeout", int(envFloat("NMAP_MCP_TIMEOUT", float64(c.Sandbox.TimeoutSeconds))), "default wall clock of a scan in seconds (env NMAP_MCP_TIMEOUT)")
	fs.IntVar(&s.maxTimeout, "max-timeout", int(envFloat("NMAP_MCP_MAX_TIMEOUT", float64(c.Sandbox.MaxTimeoutSeconds))), "largest timeout_seconds a caller may ask for, at most 600 (env NMAP_MCP_MAX_TIMEOUT)")
	fs.Uint64Var(&s.maxAddresses, "max-addresses", uint64(envFloat("NMAP_MCP_MAX_ADDRESSES", float64(c.Budgets.MaxAddressesPerScan))), "most addresses per scan after CIDR expansion (env NMAP_MCP_MAX_ADDRESSES)")
	fs.StringVar(&s.logFile, "log-file", envOr("NMAP_MCP_LOG_FILE", c.Log.File), "append logs to this file instead of stderr (env NMAP_MCP_LOG_FILE)")
	fs.StringVar(&s.logLevel, "log-level", envOr("NMAP_MCP_LOG_LEVEL", c.Log.Level), "debug, info, warn or error (env NMAP_MCP_LOG_LEVEL)")
	fs.StringVar(&s.storePath, "store", envOr("NMAP_MCP_STORE", c.Store.Path), "scan history database (default $XDG_STATE_HOME/nmap-mcp/scans.db) (env NMAP_MCP_STORE)")
	fs.StringVar(&s.maxXML, "max-xml", envOr("NMAP_MCP_MAX_XML", c.Store.MaxXML), "raw XML kept per scan in the history, e.g. 4m (env NMAP_MCP_MAX_XML)")
	fs.IntVar(&s.concurrent, "max-concurrent", int(envFloat("NMAP_MCP_MAX_CONCURRENT", float64(concurrent))), "scans running at once (env NMAP_MCP_MAX_CONCURRENT)")
	fs.IntVar(&s.queueSize, "queue-size", int(envFloat("NMAP_MCP_QUEUE_SIZE", float64(c.Queue.Size))), "scans that may wait for a slot; more are refused at once (env NMAP_MCP_QUEUE_SIZE)")
	fs.IntVar(&s.queueWait, "queue-timeout", int(envFloat("NMAP_MCP_QUEUE_TIMEOUT", float64(c.Queue.TimeoutSeconds))), "seconds a scan may wait in the queue; 0 for no bound (env NMAP_MCP_QUEUE_TIMEOUT)")
	fs.StringVar(&s.mirror, "debian-mirror", envOr("NMAP_MCP_DEBIAN_MIRROR", c.Image.DebianMirror), "Debian mirror for making the base image offline (env NMAP_MCP_DEBIAN_MIRROR)")
	fs.StringVar(&s.auditPath, "audit", envOr("NMAP_MCP_AUDIT", c.Audit.Path), "audit trail (default: audit.jsonl beside the store) (env NMAP_MCP_AUDIT)")
	return nil
}

// auditFile is the audit trail's path: as set, or beside the store.
func (s *settings) auditFile() (string, error) {
	if s.auditPath != "" {
		return s.auditPath, nil
	}
	dir := filepath.Dir(s.storePath)
	if s.storePath == "" {
		p, err := store.DefaultPath()
		if err != nil {
			return "", err
		}
		dir = filepath.Dir(p)
	}
	return filepath.Join(dir, "audit.jsonl"), nil
}

func envFloat(name string, def float64) float64 {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
		fmt.Fprintf(os.Stderr, "nmap-mcp: ignoring %s=%q: not a number\n", name, v)
	}
	return def
}

// sandboxOptions checks the limits and returns the sandbox options.
func (s *settings) sandboxOptions(instance string) (sandbox.Options, error) {
	mem, err := units.RAMInBytes(s.memory)
	if err != nil {
		return sandbox.Options{}, fmt.Errorf("memory %q: not a size such as 512m or 1g: %w", s.memory, err)
	}
	lim := sandbox.DefaultLimits()
	lim.CPUs, lim.Memory, lim.Pids = s.cpus, mem, s.pids
	lim.Timeout = time.Duration(s.timeout) * time.Second
	lim.MaxTimeout = time.Duration(s.maxTimeout) * time.Second
	if lim.Timeout > lim.MaxTimeout {
		lim.Timeout = lim.MaxTimeout
	}
	if err := lim.Validate(); err != nil {
		return sandbox.Options{}, fmt.Errorf("sandbox limits: %w", err)
	}
	if s.maxAddresses == 0 {
		return sandbox.Options{}, fmt.Errorf("max-addresses 0: must be at least 1")
	}
	return sandbox.Options{Network: s.network, Limits: lim, Instance: instance}, nil
}

// logger returns the logger and a closer for the log file, if any.
func (s *settings) logger(stderr io.Writer) (*slog.Logger, func(), error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(s.logLevel)); err != nil {
		return nil, nil, fmt.Errorf("log-level %q: must be debug, info, warn or error", s.logLevel)
	}
	w, closer := stderr, func() {}
	if s.logFile != "" {
		// O_NOFOLLOW: a symlink planted at the log path cannot redirect
		// the server's writes to another file.
		f, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open log file: %w", err)
		}
		w, closer = f, func() { f.Close() }
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})), closer, nil
}

// rules returns the validation bounds the settings imply.
func (s *settings) rules() scan.Rules {
	return scan.Rules{MaxAddresses: s.maxAddresses, DefaultTimeout: time.Duration(s.timeout) * time.Second,
		MaxTimeout: time.Duration(s.maxTimeout) * time.Second}
}

// openStore opens the scan history named by the settings.
func (s *settings) openStore(ctx context.Context) (*store.Store, error) {
	return openStoreAt(ctx, s.storePath, s.maxXML)
}

func openStoreAt(ctx context.Context, path, maxXML string) (*store.Store, error) {
	if path == "" {
		p, err := store.DefaultPath()
		if err != nil {
			return nil, err
		}
		path = p
	}
	limit, err := units.RAMInBytes(maxXML)
	if err != nil || limit <= 0 {
		return nil, fmt.Errorf("max-xml %q: not a size such as 4m", maxXML)
	}
	return store.Open(ctx, path, int(limit))
}
