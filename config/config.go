// Package config reads nmap-mcp's one YAML configuration file, strictly:
// an unknown key or a value of the wrong type is an error with its line
// number. It holds every setting of the other packages: sandbox limits,
// queue, store, logging, scope, techniques, scripts, budgets and audit.
// Environment variables and flags override the file (see cmd/nmap-mcp).
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nmap-mcp/nmap-mcp/policy"
)

// Config is the whole configuration.
type Config struct {
	Sandbox    Sandbox    `yaml:"sandbox"`
	Queue      Queue      `yaml:"queue"`
	Store      Store      `yaml:"store"`
	Log        Log        `yaml:"log"`
	Image      Image      `yaml:"image"`
	Scope      Scope      `yaml:"scope"`
	Techniques Techniques `yaml:"techniques"`
	Scripts    Scripts    `yaml:"scripts"`
	Budgets    Budgets    `yaml:"budgets"`
	Audit      Audit      `yaml:"audit"`
	HTTP       HTTP       `yaml:"http"`
}

// HTTP configures `serve --http`.
type HTTP struct {
	Addr         string   `yaml:"addr"`
	TLSCert      string   `yaml:"tls_cert"`
	TLSKey       string   `yaml:"tls_key"`
	Origins      []string `yaml:"origins"`
	Tokens       []Token  `yaml:"tokens"`
	MaxBody      string   `yaml:"max_body"`
	GraceSeconds int      `yaml:"grace_seconds"`
}

// Token is a named bearer token, stored as its SHA-256 (hex).
type Token struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
}

// Sandbox holds the container limits.
type Sandbox struct {
	Network           string  `yaml:"network"`
	CPUs              float64 `yaml:"cpus"`
	Memory            string  `yaml:"memory"`
	Pids              int64   `yaml:"pids"`
	TimeoutSeconds    int     `yaml:"timeout_seconds"`
	MaxTimeoutSeconds int     `yaml:"max_timeout_seconds"`
}

// Queue bounds concurrent and waiting scans.
type Queue struct {
	MaxConcurrent  int `yaml:"max_concurrent"`
	Size           int `yaml:"size"`
	TimeoutSeconds int `yaml:"timeout_seconds"`
}

// Store locates the scan history.
type Store struct {
	Path   string `yaml:"path"`
	MaxXML string `yaml:"max_xml"`
}

// Log says where logs go.
type Log struct {
	File  string `yaml:"file"`
	Level string `yaml:"level"`
}

// Image configures the scanner image build.
type Image struct {
	DebianMirror string `yaml:"debian_mirror"`
}

// Scope lists what may be scanned.
type Scope struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
}

// Techniques switches scan techniques on or off.
type Techniques struct {
	SYN             bool `yaml:"syn"`
	UDP             bool `yaml:"udp"`
	OSDetection     bool `yaml:"os_detection"`
	ServiceVersions bool `yaml:"service_versions"`
}

// Scripts is the NSE allowlist.
type Scripts struct {
	Categories []string `yaml:"categories"`
	Names      []string `yaml:"names"`
}

// Budgets bound what each client may use.
type Budgets struct {
	MaxAddressesPerScan uint64 `yaml:"max_addresses_per_scan"`
	Window              string `yaml:"window"`
	ScansPerClient      int    `yaml:"scans_per_client"`
	AddressesPerClient  uint64 `yaml:"addresses_per_client"`
}

// Audit locates the audit trail.
type Audit struct {
	Path string `yaml:"path"`
}

//go:embed default.yaml
var defaultYAML []byte

// Init is the fully commented default configuration file.
func Init() []byte { return bytes.Clone(defaultYAML) }

// Default returns the built-in defaults (the values in Init).
func Default() Config {
	var c Config
	if err := decode(defaultYAML, &c); err != nil {
		// default.yaml is part of the binary and tested; this cannot happen
		// in a released build.
		return Config{}
	}
	return c
}

// DefaultPath is $XDG_CONFIG_HOME/nmap-mcp/config.yaml, or
// ~/.config/nmap-mcp/config.yaml.
func DefaultPath() string {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "nmap-mcp", "config.yaml")
}

// Load reads path over the defaults. A missing file at the default path
// (required false) gives the defaults; any other problem is an error that
// names the file and, for content errors, the line.
func Load(path string, required bool) (Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !required {
			return c, nil
		}
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	if err := decode(data, &c); err != nil {
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

func decode(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Validate checks what the YAML types cannot: durations and the policy's
// lists. Limits are checked where they are applied.
func (c Config) Validate() error {
	if _, err := c.Window(); err != nil {
		return err
	}
	if _, err := policy.New(c.Policy(), nil, nil); err != nil {
		return err
	}
	return nil
}

// Window is budgets.window as a duration.
func (c Config) Window() (time.Duration, error) {
	if c.Budgets.Window == "" {
		return time.Hour, nil
	}
	d, err := time.ParseDuration(c.Budgets.Window)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("budgets.window %q: must be a duration such as 1h or 30m", c.Budgets.Window)
	}
	return d, nil
}

// Policy is the policy part of the configuration.
func (c Config) Policy() policy.Config {
	w, _ := c.Window()
	return policy.Config{
		Allow: c.Scope.Allow, Deny: c.Scope.Deny,
		SYN: c.Techniques.SYN, UDP: c.Techniques.UDP, OSDetection: c.Techniques.OSDetection, ServiceVersions: c.Techniques.ServiceVersions,
		ScriptCategories: c.Scripts.Categories, ScriptNames: c.Scripts.Names,
		Window: w, ScansPerClient: c.Budgets.ScansPerClient, AddressesPerClient: c.Budgets.AddressesPerClient,
	}
}

// YAML renders the effective configuration.
func (c Config) YAML() ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	return b, nil
}
