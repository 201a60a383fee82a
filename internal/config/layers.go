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
// key in the file, its flag, its variable and its help.
type setting struct {
	key, flag, env, help string
	ptr                  func(c *Config) any
}

var settings = []setting{
	{"runner", "runner", "NMAP_MCP_RUNNER", "where scans run: docker (default) or kubernetes (one Job per scan)",
		func(c *Config) any { return &c.Runner }},
	{"kubernetes.namespace", "kube-namespace", "NMAP_MCP_KUBE_NAMESPACE", "namespace of scan Jobs (runner kubernetes)",
		func(c *Config) any { return &c.Kubernetes.Namespace }},
	{"kubernetes.kubeconfig", "kubeconfig", "NMAP_MCP_KUBECONFIG", "kubeconfig of the cluster (default: in-cluster, else KUBECONFIG, else ~/.kube/config)",
		func(c *Config) any { return &c.Kubernetes.Kubeconfig }},
	{"kubernetes.image", "kube-image", "NMAP_MCP_KUBE_IMAGE", "scanner image pinned by digest, REPO@sha256:... (runner kubernetes)",
		func(c *Config) any { return &c.Kubernetes.Image }},
	{"kubernetes.service_account", "kube-service-account", "NMAP_MCP_KUBE_SERVICE_ACCOUNT", "service account of scan pods (its token is never mounted)",
		func(c *Config) any { return &c.Kubernetes.ServiceAccount }},
	{"kubernetes.seccomp_profile", "kube-seccomp-profile", "NMAP_MCP_KUBE_SECCOMP_PROFILE", "the project's seccomp profile on the nodes, relative to the kubelet's seccomp directory (default: RuntimeDefault)",
		func(c *Config) any { return &c.Kubernetes.SeccompProfile }},
	{"sandbox.network", "network", "NMAP_MCP_NETWORK", "fenced (default), host (not fenced), none, or a Docker network for fenced scans",
		func(c *Config) any { return &c.Sandbox.Network }},
	{"sandbox.fence_network", "fence-network", "NMAP_MCP_FENCE_NETWORK", "Docker network of fenced scans, created on first use when missing",
		func(c *Config) any { return &c.Sandbox.FenceNetwork }},
	{"sandbox.cpus", "cpus", "NMAP_MCP_CPUS", "CPUs per scan container", func(c *Config) any { return &c.Sandbox.CPUs }},
	{"sandbox.memory", "memory", "NMAP_MCP_MEMORY", "memory per scan container, e.g. 512m or 1g; no swap",
		func(c *Config) any { return &c.Sandbox.Memory }},
	{"sandbox.pids", "pids", "NMAP_MCP_PIDS", "process limit per scan container", func(c *Config) any { return &c.Sandbox.Pids }},
	{"sandbox.timeout_seconds", "timeout", "NMAP_MCP_TIMEOUT", "default wall clock of a scan in seconds",
		func(c *Config) any { return &c.Sandbox.TimeoutSeconds }},
	{"sandbox.max_timeout_seconds", "max-timeout", "NMAP_MCP_MAX_TIMEOUT", "largest timeout_seconds a caller may ask for, at most 600",
		func(c *Config) any { return &c.Sandbox.MaxTimeoutSeconds }},
	{"budgets.max_addresses_per_scan", "max-addresses", "NMAP_MCP_MAX_ADDRESSES", "most addresses per scan after CIDR expansion and name resolution",
		func(c *Config) any { return &c.Budgets.MaxAddressesPerScan }},
	{"watches.min_interval_seconds", "watch-min-interval", "NMAP_MCP_WATCH_MIN_INTERVAL", "shortest interval of a watch, in seconds",
		func(c *Config) any { return &c.Watches.MinIntervalSeconds }},
	{"watches.webhook_secret", "webhook-secret", "NMAP_MCP_WEBHOOK_SECRET", "key of the watch webhooks' HMAC-SHA256 signatures",
		func(c *Config) any { return &c.Watches.WebhookSecret }},
	{"log.file", "log-file", "NMAP_MCP_LOG_FILE", "append logs to this file instead of stderr", func(c *Config) any { return &c.Log.File }},
	{"log.level", "log-level", "NMAP_MCP_LOG_LEVEL", "debug, info, warn or error", func(c *Config) any { return &c.Log.Level }},
	{"store.path", "store", "NMAP_MCP_STORE", "scan history database (default $XDG_STATE_HOME/nmap-mcp/scans.db)",
		func(c *Config) any { return &c.Store.Path }},
	{"store.max_xml", "max-xml", "NMAP_MCP_MAX_XML", "raw XML kept per scan in the history, e.g. 4m", func(c *Config) any { return &c.Store.MaxXML }},
	{"queue.max_concurrent", "max-concurrent", "NMAP_MCP_MAX_CONCURRENT", "scans running at once (0: the number of CPUs)",
		func(c *Config) any { return &c.Queue.MaxConcurrent }},
	{"queue.size", "queue-size", "NMAP_MCP_QUEUE_SIZE", "scans that may wait for a slot; more are refused at once",
		func(c *Config) any { return &c.Queue.Size }},
	{"queue.timeout_seconds", "queue-timeout", "NMAP_MCP_QUEUE_TIMEOUT", "seconds a scan may wait in the queue; 0 for no bound",
		func(c *Config) any { return &c.Queue.TimeoutSeconds }},
	{"image.debian_mirror", "debian-mirror", "NMAP_MCP_DEBIAN_MIRROR", "Debian mirror for making the base image offline",
		func(c *Config) any { return &c.Image.DebianMirror }},
	{"audit.path", "audit", "NMAP_MCP_AUDIT", "audit trail (default: audit.jsonl beside the store)", func(c *Config) any { return &c.Audit.Path }},
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
