package config

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	units "github.com/docker/go-units"

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Resolved is the configuration converted once, by Resolve, into the
// types its users take: sizes in bytes, durations, and the limits, rules
// and policy scans are held to. Nothing else parses a setting again.
type Resolved struct {
	// Limits are the scan containers' limits (sandbox.*).
	Limits sandbox.Limits
	// Rules are the bounds a scan request is checked against
	// (budgets.max_addresses_per_scan, sandbox.*timeout_seconds).
	Rules scanargs.Rules
	// Policy is the scope, techniques, scripts and budgets, with the
	// sandbox's network and the per-scan address bound.
	Policy policy.Config
	// Results bound a decoded result (store.max_hosts, store.max_ports,
	// store.max_script_output).
	Results results.Limits
	// MaxXML is store.max_xml in bytes.
	MaxXML int64
	// Keep is store.keep; the zero Keep keeps everything.
	Keep store.Keep
	// Inventory is the inventory section: gone_after and changes_keep.
	Inventory inventory.Config
	// QueueWait is queue.timeout_seconds; 0: no bound.
	QueueWait time.Duration
	// Concurrency is queue.max_concurrent, 0 resolved to the number of
	// CPUs.
	Concurrency int
	// MaxBody is http.max_body in bytes.
	MaxBody int64
	// Grace is http.grace_seconds.
	Grace time.Duration
	// SessionIdle is http.session_idle_seconds.
	SessionIdle time.Duration
	// WatchMinInterval is watches.min_interval_seconds.
	WatchMinInterval time.Duration
	// LogLevel is log.level.
	LogLevel slog.Level
	// Sharding is sharding.*, checked.
	Sharding shard.Config
	// Approval is the approval section, compiled; with no rules nothing
	// needs approval.
	Approval *approval.Rules
	// Auth is the auth section, checked against http.
	Auth AuthResolved
}

// Resolve checks every value (see Validate) and converts it once into
// the types its users take. A bad value is a *KeyError naming its key,
// its value and the rule (the policy's own errors name theirs).
func (c Config) Resolve() (Resolved, error) {
	var r Resolved
	if err := c.check(); err != nil {
		return Resolved{}, err
	}
	sb := c.Sandbox
	mem, err := size("sandbox.memory", sb.Memory, sandbox.MinMemory)
	if err != nil {
		return Resolved{}, err
	}
	r.Limits = sandbox.DefaultLimits()
	r.Limits.CPUs, r.Limits.Memory, r.Limits.Pids = sb.CPUs, mem, sb.Pids
	r.Limits.Timeout = seconds(sb.TimeoutSeconds)
	r.Limits.MaxTimeout = seconds(sb.MaxTimeoutSeconds)
	if err := r.Limits.Validate(); err != nil {
		// check holds the same rules; this is a guard against drift.
		return Resolved{}, &KeyError{Key: "sandbox", Value: fmt.Sprintf("%+v", sb), Rule: err.Error()}
	}
	r.Sharding = shard.Config{Threshold: c.Sharding.Threshold, Shards: c.Sharding.Shards}
	if err := r.Sharding.Validate(); err != nil {
		return Resolved{}, &KeyError{Key: "sharding.shards", Value: fmt.Sprint(c.Sharding.Shards),
			Rule: fmt.Sprintf("must be from 2 to %d when sharding.threshold is set (0 turns sharding off)", shard.MaxShards)}
	}
	r.Rules = scanargs.NewRules(c.Budgets.MaxAddressesPerScan, r.Limits.Timeout, r.Limits.MaxTimeout, r.Sharding.Width())
	if r.MaxXML, err = size("store.max_xml", c.Store.MaxXML, 1); err != nil {
		return Resolved{}, err
	}
	if err := c.checkWatches(); err != nil {
		return Resolved{}, err
	}
	if r.Inventory.ChangesKeep, err = inventory.ParseChangesKeep(c.Inventory.ChangesKeep); err != nil {
		return Resolved{}, &KeyError{Key: "inventory.changes_keep", Value: c.Inventory.ChangesKeep,
			Rule: "give a number of days (365d) or a duration of at least an hour (8760h), or leave it empty to keep every change log entry"}
	}
	if r.Inventory.GoneAfter, err = inventory.ParseGoneAfter(c.Inventory.GoneAfter); err != nil {
		return Resolved{}, &KeyError{Key: "inventory.gone_after", Value: c.Inventory.GoneAfter,
			Rule: "give a number of days (30d) or a duration of at least an hour (720h), or leave it empty for 30 days"}
	}
	if r.Keep, err = store.ParseKeep(c.Store.Keep); err != nil {
		return Resolved{}, &KeyError{Key: "store.keep", Value: c.Store.Keep,
			Rule: "give a count of scans (10000) or an age of at least an hour (90d, 720h), or leave it empty to keep everything"}
	}
	r.Results = results.DefaultLimits()
	if c.Store.MaxHosts > 0 {
		r.Results.MaxHosts = c.Store.MaxHosts
	}
	if c.Store.MaxPorts > 0 {
		r.Results.MaxPorts = c.Store.MaxPorts
	}
	if c.Store.MaxScriptOutput != "" {
		n, err := size("store.max_script_output", c.Store.MaxScriptOutput, 1)
		if err != nil {
			return Resolved{}, err
		}
		r.Results.MaxScriptBytes = int(n)
	}
	if r.MaxBody, err = size("http.max_body", c.HTTP.MaxBody, 1); err != nil {
		return Resolved{}, err
	}
	if err := r.LogLevel.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return Resolved{}, &KeyError{Key: "log.level", Value: c.Log.Level, Rule: "must be debug, info, warn or error"}
	}
	window, err := c.Window()
	if err != nil {
		return Resolved{}, err
	}
	if err := c.checkTokens(); err != nil {
		return Resolved{}, err
	}
	if r.Auth, err = c.resolveAuth(); err != nil {
		return Resolved{}, err
	}
	r.Policy = c.Policy()
	r.Policy.Window = window
	r.Policy.HostNetwork = sb.Network == "" || sb.Network == sandbox.Host
	r.Policy.MaxAddressesPerScan = c.Budgets.MaxAddressesPerScan
	if _, err := policy.New(r.Policy, nil, nil); err != nil {
		return Resolved{}, err
	}
	r.QueueWait = seconds(c.Queue.TimeoutSeconds)
	r.Concurrency = c.Concurrency()
	r.Grace = seconds(c.HTTP.GraceSeconds)
	r.SessionIdle = seconds(c.HTTP.SessionIdleSeconds)
	r.WatchMinInterval = seconds(c.Watches.MinIntervalSeconds)
	if r.Approval, err = approval.Compile(c.Approval); err != nil {
		var ae *approval.Error
		if errors.As(err, &ae) {
			return Resolved{}, &KeyError{Key: "approval." + ae.Key, Value: ae.Value, Rule: ae.Rule}
		}
		return Resolved{}, err
	}
	return r, nil
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// size parses a size such as 512m of at least min bytes.
func size(key, v string, min int64) (int64, error) {
	n, err := units.RAMInBytes(v)
	if err != nil || n < min {
		return 0, &KeyError{Key: key, Value: v, Rule: fmt.Sprintf("not a size of at least %s, such as 512m or 1g", units.BytesSize(float64(min)))}
	}
	return n, nil
}

// StorePath is the scan history's path: store.path, or
// store.DefaultPath when it is empty.
func (c *Config) StorePath() (string, error) {
	if c.Store.Path != "" {
		return c.Store.Path, nil
	}
	return store.DefaultPath()
}
