package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// KeyError is a configuration value that breaks a rule. It names the key
// (as in the file), the value and the rule; Load adds the file and line,
// and a value from the environment or a flag says which.
type KeyError struct {
	Key   string
	Value string
	Rule  string
	// From is "" for the file, else the variable or flag that set it.
	From string
}

func (e *KeyError) Error() string {
	from := ""
	if e.From != "" {
		from = " (from " + e.From + ")"
	}
	return fmt.Sprintf("%s %q%s: %s", e.Key, e.Value, from, e.Rule)
}

// setting is one value that the environment and a flag may override: its
// key in the file, its flag, its variable, its help (--help) and its
// line in the docs' settings table.
type setting struct {
	key, flag, env string
	// help is the flag's usage text.
	help string
	// doc is the meaning column of the docs' table (Markdown).
	doc string
	// def is the default column of the docs' table when the default value
	// does not say it (0 meaning the CPUs, an empty path meaning a place);
	// empty: the default value itself.
	def string
	ptr func(c *Config) any
}

// settings is the one table of the settings the environment and flags may
// override; docs/configuration.md shows it (TestSettingsTable keeps the two
// equal: go test ./internal/config -run TestSettingsTable -update rewrites
// the docs).
var settings = []setting{
	{key: "runner", flag: "runner", env: "NMAP_MCP_RUNNER",
		help: "where scans run: docker (default) or kubernetes (one Job per scan)",
		doc:  "`docker` (a container per scan on the local engine) or `kubernetes` (a Job per scan; see [kubernetes.md](kubernetes.md))",
		ptr:  func(c *Config) any { return &c.Runner }},
	{key: "kubernetes.namespace", flag: "kube-namespace", env: "NMAP_MCP_KUBE_NAMESPACE",
		help: "namespace of scan Jobs (runner kubernetes)",
		doc:  "namespace of scan Jobs (required for `kubernetes`)",
		ptr:  func(c *Config) any { return &c.Kubernetes.Namespace }},
	{key: "kubernetes.kubeconfig", flag: "kubeconfig", env: "NMAP_MCP_KUBECONFIG",
		help: "kubeconfig of the cluster (default: in-cluster, else KUBECONFIG, else ~/.kube/config)",
		doc:  "the cluster",
		def:  "in-cluster, else `KUBECONFIG`, else `~/.kube/config`",
		ptr:  func(c *Config) any { return &c.Kubernetes.Kubeconfig }},
	{key: "kubernetes.image", flag: "kube-image", env: "NMAP_MCP_KUBE_IMAGE",
		help: "scanner image pinned by digest, REPO@sha256:... (runner kubernetes)",
		doc:  "the scanner image pinned by digest, `REPO@sha256:…` (required for `kubernetes`)",
		ptr:  func(c *Config) any { return &c.Kubernetes.Image }},
	{key: "kubernetes.service_account", flag: "kube-service-account", env: "NMAP_MCP_KUBE_SERVICE_ACCOUNT",
		help: "service account of scan pods (its token is never mounted)",
		doc:  "service account of scan pods (its token is never mounted)",
		def:  "the namespace's default",
		ptr:  func(c *Config) any { return &c.Kubernetes.ServiceAccount }},
	{key: "kubernetes.seccomp_profile", flag: "kube-seccomp-profile", env: "NMAP_MCP_KUBE_SECCOMP_PROFILE",
		help: "the project's seccomp profile on the nodes, relative to the kubelet's seccomp directory (default: RuntimeDefault)",
		doc:  "the project's profile on the nodes, relative to the kubelet's seccomp directory",
		def:  "`RuntimeDefault`",
		ptr:  func(c *Config) any { return &c.Kubernetes.SeccompProfile }},
	{key: "sandbox.network", flag: "network", env: "NMAP_MCP_NETWORK",
		help: "fenced (default), host (not fenced), none, or a Docker network for fenced scans",
		doc:  "`fenced` (each scan fenced to its targets in its own namespace; loopback-only scans on the host network inside the host fence), `host` (nothing fenced: opt-out), `none`, or the name of a Docker network for fenced scans (see [security.md](security.md#picking-a-network))",
		ptr:  func(c *Config) any { return &c.Sandbox.Network }},
	{key: "sandbox.fence_network", flag: "fence-network", env: "NMAP_MCP_FENCE_NETWORK",
		help: "Docker network of fenced scans, created on first use when missing",
		doc:  "the Docker network of fenced scans under `fenced`; created (a labelled bridge) on first use when missing",
		ptr:  func(c *Config) any { return &c.Sandbox.FenceNetwork }},
	{key: "sandbox.cpus", flag: "cpus", env: "NMAP_MCP_CPUS",
		help: "CPUs per scan container",
		doc:  "CPUs per scan container",
		ptr:  func(c *Config) any { return &c.Sandbox.CPUs }},
	{key: "sandbox.memory", flag: "memory", env: "NMAP_MCP_MEMORY",
		help: "memory per scan container, e.g. 512m or 1g; no swap",
		doc:  "memory per scan container; swap is set equal, so none",
		ptr:  func(c *Config) any { return &c.Sandbox.Memory }},
	{key: "sandbox.pids", flag: "pids", env: "NMAP_MCP_PIDS",
		help: "process limit per scan container",
		doc:  "processes and threads per scan container",
		ptr:  func(c *Config) any { return &c.Sandbox.Pids }},
	{key: "sandbox.timeout_seconds", flag: "timeout", env: "NMAP_MCP_TIMEOUT",
		help: "default wall clock of a scan in seconds",
		doc:  "default wall clock of a scan, seconds",
		ptr:  func(c *Config) any { return &c.Sandbox.TimeoutSeconds }},
	{key: "sandbox.max_timeout_seconds", flag: "max-timeout", env: "NMAP_MCP_MAX_TIMEOUT",
		help: "largest timeout_seconds a caller may ask for, at most 600",
		doc:  "largest `timeout_seconds` accepted (at most 600)",
		ptr:  func(c *Config) any { return &c.Sandbox.MaxTimeoutSeconds }},
	{key: "budgets.max_addresses_per_scan", flag: "max-addresses", env: "NMAP_MCP_MAX_ADDRESSES",
		help: "most addresses per scan after CIDR expansion and name resolution",
		doc:  "addresses per scan, counted after CIDR expansion and name resolution",
		ptr:  func(c *Config) any { return &c.Budgets.MaxAddressesPerScan }},
	{key: "sharding.threshold", flag: "shard-threshold", env: "NMAP_MCP_SHARD_THRESHOLD",
		help: "split a scan of more addresses than this into sharding.shards workers (0: never)",
		doc:  "a scan of more addresses than this is split into workers, each fenced to its own blocks (0: never)",
		ptr:  func(c *Config) any { return &c.Sharding.Threshold }},
	{key: "sharding.shards", flag: "shards", env: "NMAP_MCP_SHARDS",
		help: "workers of a split scan, 2 to 64 (the model may ask for fewer)",
		doc:  "workers of a split scan, 2–64 (nmap_scan's `shards` may ask for fewer)",
		ptr:  func(c *Config) any { return &c.Sharding.Shards }},
	{key: "watches.min_interval_seconds", flag: "watch-min-interval", env: "NMAP_MCP_WATCH_MIN_INTERVAL",
		help: "shortest interval of a watch, in seconds",
		doc:  "shortest interval of a watch, seconds",
		ptr:  func(c *Config) any { return &c.Watches.MinIntervalSeconds }},
	{key: "watches.webhook_secret", flag: "webhook-secret", env: "NMAP_MCP_WEBHOOK_SECRET",
		help: "key of the watch webhooks' HMAC-SHA256 signatures",
		doc:  "key of the watch webhooks' HMAC-SHA256 signatures",
		ptr:  func(c *Config) any { return &c.Watches.WebhookSecret }},
	{key: "log.file", flag: "log-file", env: "NMAP_MCP_LOG_FILE",
		help: "append logs to this file instead of stderr",
		doc:  "where logs go; stdout carries only the protocol",
		def:  "stderr",
		ptr:  func(c *Config) any { return &c.Log.File }},
	{key: "log.level", flag: "log-level", env: "NMAP_MCP_LOG_LEVEL",
		help: "debug, info, warn or error",
		doc:  "`debug`, `info`, `warn` or `error`; `debug` adds container lifecycle steps",
		ptr:  func(c *Config) any { return &c.Log.Level }},
	{key: "store.path", flag: "store", env: "NMAP_MCP_STORE",
		help: "scan history database (default $XDG_STATE_HOME/nmap-mcp/scans.db)",
		doc:  "scan history database",
		def:  "`$XDG_STATE_HOME/nmap-mcp/scans.db` (else `~/.local/state/…`)",
		ptr:  func(c *Config) any { return &c.Store.Path }},
	{key: "store.max_xml", flag: "max-xml", env: "NMAP_MCP_MAX_XML",
		help: "raw XML kept per scan in the history, e.g. 4m",
		doc:  "raw XML kept per scan in the history",
		ptr:  func(c *Config) any { return &c.Store.MaxXML }},
	{key: "queue.max_concurrent", flag: "max-concurrent", env: "NMAP_MCP_MAX_CONCURRENT",
		help: "scans running at once (0: the number of CPUs)",
		doc:  "scans running at once (serve)",
		def:  "CPUs",
		ptr:  func(c *Config) any { return &c.Queue.MaxConcurrent }},
	{key: "queue.size", flag: "queue-size", env: "NMAP_MCP_QUEUE_SIZE",
		help: "scans that may wait for a slot; more are refused at once",
		doc:  "scans waiting for a slot; more are refused at once (serve)",
		ptr:  func(c *Config) any { return &c.Queue.Size }},
	{key: "queue.timeout_seconds", flag: "queue-timeout", env: "NMAP_MCP_QUEUE_TIMEOUT",
		help: "seconds a scan may wait in the queue; 0 for no bound",
		doc:  "seconds a scan may wait in the queue; 0 for no bound (serve)",
		ptr:  func(c *Config) any { return &c.Queue.TimeoutSeconds }},
	{key: "image.debian_mirror", flag: "debian-mirror", env: "NMAP_MCP_DEBIAN_MIRROR",
		help: "Debian mirror for making the base image offline",
		doc:  "mirror for the offline base image",
		def:  "deb.debian.org",
		ptr:  func(c *Config) any { return &c.Image.DebianMirror }},
	{key: "audit.path", flag: "audit", env: "NMAP_MCP_AUDIT",
		help: "audit trail (default: audit.jsonl beside the store)",
		doc:  "audit trail",
		def:  "`audit.jsonl` beside the store",
		ptr:  func(c *Config) any { return &c.Audit.Path }},
}

// Find names the configuration file: --config in args, else
// NMAP_MCP_CONFIG, else the default path (which may be missing: required
// is then false).
func Find(args []string) (path string, required bool) {
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
		path, required = DefaultPath(), false
	}
	return path, required
}

// Layers is the one configuration load every subcommand uses: the
// defaults, then the file, then the environment (NMAP_MCP_*), then the
// flags, into one Config. Register it on a flag set, parse the flags,
// then call Done, which validates every value.
type Layers struct {
	Config Config
	// Path is the configuration file read (it may not exist).
	Path string
	// Resolved is Config converted into typed values, set by Done.
	Resolved Resolved
	setBy    map[string]string // key -> the variable or flag that set it last
	fs       *flag.FlagSet
	values   map[string]*string
}

// Register reads the file named by args (see Find) over the defaults,
// applies the environment, and adds --config and one flag per setting to
// fs. A bad file or variable is an error naming it.
func Register(fs *flag.FlagSet, args []string) (*Layers, error) {
	path, required := Find(args)
	c, err := Load(path, required)
	if err != nil {
		return nil, err
	}
	l := &Layers{Config: c, Path: path, setBy: map[string]string{}, fs: fs, values: map[string]*string{}}
	for _, s := range settings {
		if v, ok := os.LookupEnv(s.env); ok && v != "" {
			if err := set(s.ptr(&l.Config), v); err != nil {
				return nil, &KeyError{Key: s.key, Value: v, Rule: err.Error(), From: s.env}
			}
			l.setBy[s.key] = s.env
		}
	}
	fs.StringVar(&l.Path, "config", path, "configuration file (env NMAP_MCP_CONFIG)")
	for _, s := range settings {
		v := new(string)
		l.values[s.flag] = v
		fs.StringVar(v, s.flag, current(s.ptr(&l.Config)), s.help+" (config "+s.key+", env "+s.env+")")
	}
	return l, nil
}

// Done applies the flags that were given, validates the whole
// configuration and resolves it (Layers.Resolved).
func (l *Layers) Done() (*Config, error) {
	var err error
	l.fs.Visit(func(f *flag.Flag) {
		for _, s := range settings {
			if s.flag != f.Name || err != nil {
				continue
			}
			if serr := set(s.ptr(&l.Config), *l.values[s.flag]); serr != nil {
				err = &KeyError{Key: s.key, Value: *l.values[s.flag], Rule: serr.Error(), From: "--" + s.flag}
			}
			l.setBy[s.key] = "--" + s.flag
		}
	})
	if err != nil {
		return nil, err
	}
	r, err := l.Config.Resolve()
	if err != nil {
		var ke *KeyError
		if errors.As(err, &ke) && ke.From == "" {
			ke.From = l.setBy[ke.Key]
		}
		return nil, err
	}
	l.Resolved = r
	return &l.Config, nil
}

func current(p any) string {
	switch v := p.(type) {
	case *string:
		return *v
	case *int:
		return strconv.Itoa(*v)
	case *int64:
		return strconv.FormatInt(*v, 10)
	case *uint64:
		return strconv.FormatUint(*v, 10)
	case *float64:
		return strconv.FormatFloat(*v, 'g', -1, 64)
	}
	return ""
}

func set(p any, s string) error {
	switch v := p.(type) {
	case *string:
		*v = s
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return errors.New("not a whole number")
		}
		*v = n
	case *int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return errors.New("not a whole number")
		}
		*v = n
	case *uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return errors.New("not a whole number of 0 or more")
		}
		*v = n
	case *float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return errors.New("not a number")
		}
		*v = n
	}
	return nil
}

// Concurrency is queue.max_concurrent, with 0 meaning the number of CPUs.
func (c *Config) Concurrency() int {
	if c.Queue.MaxConcurrent <= 0 {
		return runtime.NumCPU()
	}
	return c.Queue.MaxConcurrent
}

// AuditPath is the audit trail's path: as set, or beside the store.
func (c *Config) AuditPath(defaultStore func() (string, error)) (string, error) {
	if c.Audit.Path != "" {
		return c.Audit.Path, nil
	}
	p := c.Store.Path
	if p == "" {
		var err error
		if p, err = defaultStore(); err != nil {
			return "", err
		}
	}
	return filepath.Join(filepath.Dir(p), "audit.jsonl"), nil
}

// lineOf finds the line of a dotted key in a YAML document (0: not found).
func lineOf(data []byte, key string) int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return 0
	}
	n := doc.Content[0]
	line := 0
	for _, part := range strings.Split(key, ".") {
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line, n, found = n.Content[i].Line, n.Content[i+1], true
				break
			}
		}
		if !found {
			return 0
		}
	}
	return line
}

// Where says how to change a setting, e.g. "sandbox.memory in the config
// file, --memory or NMAP_MCP_MEMORY", for fix-it advice at the edge.
func Where(key string) string {
	for _, s := range settings {
		if s.key == key {
			return fmt.Sprintf("%s in the config file, --%s or %s", key, s.flag, s.env)
		}
	}
	return key + " in the config file"
}
