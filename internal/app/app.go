// Package app is nmap-mcp's composition root: from typed Options (see
// FromConfig) it connects the runner (the Docker engine or a Kubernetes
// cluster), opens the scan history and the audit trail, builds the policy
// and the scans service, and serves MCP over stdio or HTTP. cmd/nmap-mcp
// parses flags and calls it; tests import it to run a server in-process.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/audit"
	"github.com/nmap-mcp/nmap-mcp/internal/auth"
	"github.com/nmap-mcp/nmap-mcp/internal/config"
	"github.com/nmap-mcp/nmap-mcp/internal/httpapi"
	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/kuberunner"
	"github.com/nmap-mcp/nmap-mcp/internal/metrics"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Mode is how the App is used.
type Mode int

const (
	// Stdio serves MCP over stdio: one client, "local".
	Stdio Mode = iota
	// HTTP serves MCP over streamable HTTP.
	HTTP
	// OneShot is a CLI command (scan, watch add): the engine must answer
	// now, the start-up sweep runs beside the command, no fencer waits.
	OneShot
)

// Options are everything the App needs, in the types its parts take.
// FromConfig resolves them from the configuration.
type Options struct {
	// Mode is how the App is used.
	Mode Mode
	// Runner is "docker" or "kubernetes".
	Runner string
	// Kubeconfig and Kubernetes configure the Kubernetes runner.
	Kubeconfig string
	Kubernetes kuberunner.Config
	// Sandbox is the scans' network and limits. An empty Instance is
	// made up at random.
	Sandbox sandbox.Options
	// DebianMirror is used when the Docker runner builds the image.
	DebianMirror string
	// StorePath and MaxXML open the scan history; AuditPath the trail.
	StorePath string
	MaxXML    int
	AuditPath string
	// Keep is the retention rule applied hourly while serving.
	Keep store.Keep
	// Policy is the scope, techniques, scripts and budgets.
	Policy policy.Config
	// Approval says which scans need a person's yes (nil: none).
	Approval *approval.Rules
	// Results bound a decoded result.
	Results results.Limits
	// Queue bounds running and waiting scans; the sandbox, address bound
	// and result limits are filled in from the fields above.
	Queue scans.Config
	// Watches configures scheduled rescans.
	Watches watches.Config
	// Inventory configures the inventory built from every finished scan
	// (gone_after).
	Inventory inventory.Config
	// HTTP configures the HTTP front (its Addr is ServeHTTP's); Grace is
	// how long running scans may finish when it shuts down.
	HTTP  httpapi.Config
	Grace time.Duration
	// Auth, when set, is the lab's identity provider (serve --http is
	// then an OAuth 2.1 resource server); Login signs people in to the
	// web view through it; Standing is how long after their last valid
	// token a person's watches keep running.
	Auth     *auth.Config
	Login    *auth.LoginConfig
	Standing time.Duration
	// Listening, when set, is told the HTTP server's address once it
	// listens (a test serving on port 0 learns its port).
	Listening func(net.Addr)
	// Warnings are logged at start (config.Config.Warnings).
	Warnings []string
	// ConfigPath names the configuration file in errors.
	ConfigPath string
	// ServerVersion is nmap-mcp's release, for nmap_version.
	ServerVersion string
	// Log receives the logs (nil: discarded); Stderr the image build's
	// progress (nil: discarded).
	Log    *slog.Logger
	Stderr io.Writer
}

// FromConfig resolves the Options for mode from a validated
// configuration c, its resolved values r and the file it came from. The
// environment variable NMAP_MCP_INSTANCE, when set, names the instance.
func FromConfig(c *config.Config, r config.Resolved, path string, mode Mode) (Options, error) {
	storePath, err := c.StorePath()
	if err != nil {
		return Options{}, err
	}
	auditPath, err := c.AuditPath(store.DefaultPath)
	if err != nil {
		return Options{}, err
	}
	k := c.Kubernetes
	o := Options{
		Mode: mode, Runner: c.Runner, Kubeconfig: k.Kubeconfig,
		Kubernetes: kuberunner.Config{Namespace: k.Namespace, Image: k.Image, NodeSelector: k.NodeSelector,
			ServiceAccount: k.ServiceAccount, SeccompProfile: k.SeccompProfile, ShardSpread: k.ShardSpread},
		Sandbox:      sandbox.Options{Network: c.Sandbox.Network, FenceNetwork: c.Sandbox.FenceNetwork, Limits: r.Limits, Instance: os.Getenv("NMAP_MCP_INSTANCE")},
		DebianMirror: c.Image.DebianMirror,
		StorePath:    storePath, MaxXML: int(r.MaxXML), AuditPath: auditPath, Keep: r.Keep,
		Policy: r.Policy, Results: r.Results, Approval: r.Approval,
		Queue: scans.Config{Concurrency: 1, Sharding: r.Sharding},
		Watches: watches.Config{MinInterval: r.WatchMinInterval, MaxPerClient: c.Watches.MaxPerClient,
			WebhookAllow: c.Watches.WebhookAllow, WebhookSecret: c.Watches.WebhookSecret, ClientExists: ClientExists(c)},
		Grace: r.Grace, Warnings: c.Warnings(), ConfigPath: path, Inventory: r.Inventory,
	}
	if mode != OneShot {
		perClient := c.Queue.PerClient
		if perClient == 0 && (mode == Stdio || len(c.HTTP.Tokens) == 0 && r.Auth.Verifier == nil) {
			// One client only (stdio, or HTTP without tokens: "local"): no
			// share to keep; the queue's own bound applies.
			perClient = math.MaxInt32
		}
		o.Queue = scans.Config{Concurrency: r.Concurrency, QueueSize: c.Queue.Size, MaxQueueWait: r.QueueWait, PerClient: perClient, Sharding: r.Sharding}
	}
	hc := c.HTTP
	o.HTTP = httpapi.Config{TLSCert: hc.TLSCert, TLSKey: hc.TLSKey, Origins: hc.Origins, MaxBody: r.MaxBody,
		MaxConnections: hc.MaxConnections, MaxConnectionsPerAddress: hc.MaxConnectionsPerAddress,
		SessionIdle: r.SessionIdle, MaxSessions: hc.MaxSessions, MaxSessionsPerClient: hc.MaxSessionsPerClient}
	for _, t := range hc.Tokens {
		o.HTTP.Tokens = append(o.HTTP.Tokens, httpapi.Token{Name: t.Name, SHA256: t.SHA256, Admin: t.Admin, Approver: t.Approver})
	}
	if r.Auth.Verifier != nil {
		ac := *r.Auth.Verifier
		// A person may not take a static token's name (or local's).
		ac.Reserved = ClientExists(c)
		o.Auth, o.Login, o.Standing = &ac, r.Auth.Login, r.Auth.Standing
	}
	return o, nil
}

// ClientExists says whether a client is known to the configuration: the
// tokens' names (http.tokens) and "local", the stdio and CLI client. A
// watch of any other client is paused at its next run.
func ClientExists(c *config.Config) func(string) bool {
	known := map[string]bool{"local": true}
	for _, t := range c.HTTP.Tokens {
		known[t.Name] = true
	}
	return func(client string) bool { return known[client] }
}

// App is a running composition: the runner, the history, the audit trail,
// the policy and the scans service, and what serving adds (metrics,
// watches).
type App struct {
	opts    Options
	log     *slog.Logger
	be      backend
	store   *store.Store
	trail   *audit.Log
	scans   *scans.Service
	meters  *metrics.Metrics
	watches *watches.Service
	swept   chan struct{}
	// inventory is what every finished scan found, per client; it
	// follows the history while the App serves.
	inventory *inventory.Inventory
	// standing is the provider's people's standing (nil without a
	// provider).
	standing *auth.Standing
}

// New connects to the engine or cluster, ensures the image (building it
// on first use with Docker, saying so on Stderr), sweeps orphans and
// returns the App. A OneShot App sweeps beside the command instead of
// before it; a server sweeps before it serves. Close releases it.
func New(ctx context.Context, opts Options) (*App, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	log := opts.Log
	sb := opts.Sandbox
	if sb.Instance == "" {
		sb.Instance = newInstance()
	}
	// The history and the audit trail open while the engine answers.
	type local struct {
		st          *store.Store
		trail       *audit.Log
		interrupted []string
		err         error
	}
	localC := make(chan local, 1)
	go func() {
		var l local
		if l.st, l.err = store.Open(ctx, opts.StorePath, opts.MaxXML); l.err == nil {
			if l.trail, l.interrupted, l.err = audit.OpenWith(opts.AuditPath, audit.Options{Log: log}); l.err != nil {
				l.st.Close()
			}
		}
		localC <- l
	}()
	var (
		be  backend
		err error
	)
	if opts.Runner == "kubernetes" {
		be, err = newKube(ctx, &opts, sb.Instance)
	} else {
		be, err = newDocker(ctx, &opts, sb)
	}
	l := <-localC
	switch {
	case err != nil:
		if l.err == nil {
			l.st.Close()
			l.trail.Close()
		}
		return nil, err
	case l.err != nil:
		be.close()
		return nil, l.err
	}
	if len(l.interrupted) > 0 {
		log.Info("audit: closed scans a previous server left open", "count", len(l.interrupted))
	}
	for _, w := range opts.Warnings {
		log.Warn("config: " + w)
	}
	a := &App{opts: opts, log: log, be: be, store: l.st, trail: l.trail, swept: make(chan struct{})}
	sweep := func() {
		defer close(a.swept)
		removed, err := be.sweep(ctx)
		logSweep(log, removed, err)
		log.Debug("start-up sweep done")
	}
	if opts.Mode == OneShot {
		go sweep() // Close waits for it
	} else {
		sweep()
	}
	// The inventory's tables are made or migrated here; no row is read
	// before serving starts (Follow catches up in the background), except
	// by a migration that rebuilds indexes, once (inventory.New).
	if a.inventory, err = inventory.New(ctx, l.st, opts.Inventory); err != nil {
		a.Close()
		return nil, err
	}
	// The policy reads NSE categories from the image through the scans
	// service, made just after it: a closure over a.
	pol, err := policy.New(opts.Policy, net.DefaultResolver, func(ctx context.Context) (*policy.ScriptIndex, error) {
		return a.scans.ScriptIndex(ctx)
	})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("config %s: %w", opts.ConfigPath, err)
	}
	q := opts.Queue
	q.Sandbox, q.MaxAddresses, q.Limits, q.Client = sb, opts.Policy.MaxAddressesPerScan, opts.Results, "local"
	deps := scans.Deps{Runner: be.runner(), Image: be.image(), Store: l.st, Audit: l.trail, Policy: pol, Log: log,
		Advice: advice(opts.Runner), Ready: be.ready,
		ApprovalRules: opts.Approval, Approvals: approval.NewStore(opts.Approval.Limits(), nil)}
	// The metrics read the queue of the service made next: a closure over
	// a. A OneShot command serves no metrics and meters nothing.
	a.meters = metrics.New(func() (int, int) {
		if a.scans == nil {
			return 0, 0
		}
		return a.scans.QueueStats()
	})
	wcfg := opts.Watches
	if opts.Auth != nil {
		// A provider's person's watches run while the person stands.
		a.standing = auth.NewStanding(l.st, opts.Standing, log)
		static := wcfg.ClientExists
		wcfg.ClientExists = func(client string) bool {
			return (static == nil || static(client)) || a.standing.Holds(context.Background(), client)
		}
	}
	if opts.Mode != OneShot {
		deps.Meter = a.meters
		wcfg.WebhookOutcome = a.meters.Webhook
	}
	a.scans = scans.New(q, deps)
	a.watches = watches.New(l.st, a.scans, wcfg, log)
	return a, nil
}

// Scans is the scans service.
func (a *App) Scans() *scans.Service { return a.scans }

// Store is the scan history.
func (a *App) Store() *store.Store { return a.store }

// Inventory is what every finished scan found, per client.
func (a *App) Inventory() *inventory.Inventory { return a.inventory }

// Watches is the watches service (it runs while the App serves).
func (a *App) Watches() *watches.Service { return a.watches }

// Detach hands removals still under way to a detached reaper, so that a
// CLI command ends with its output; false when the scans service must be
// closed instead (nothing to hand off with this runner).
func (a *App) Detach() bool { return a.be.detach() }

// Close waits for the start-up sweep, then closes the history, the audit
// trail and the connection to the engine.
func (a *App) Close() {
	<-a.swept
	// The history and the trail close while the engine client does.
	done := make(chan struct{})
	go func() { a.store.Close(); a.trail.Close(); close(done) }()
	a.be.close()
	<-done
}

func newInstance() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
