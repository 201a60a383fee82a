// Package mcpserver is the MCP layer: it publishes the tools (nmap_scan,
// nmap_version, list_scans, get_scan, diff_scans, cancel_scan) and the scan
// resources
// (scan://{id}, scan://{id}/xml) over mcp-go, turns tool arguments into scan
// requests, and turns every failure into an isError result rather than a
// crash or a hung call. It is the only package besides cmd that imports
// mcp-go.
package mcpserver

import (
	"context"
	"log/slog"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

// Info is what nmap_version reports besides the version nmap prints.
type Info struct {
	ServerVersion string
	EngineVersion string
	// Engine, when set, is asked for the engine's version at each call
	// instead of EngineVersion; its error (the engine does not answer:
	// what to do) is the tool's error.
	Engine func(ctx context.Context) (string, error)
}

// Deps are what the MCP layer serves from.
type Deps struct {
	// Scans is the scans service: every tool and resource goes through it.
	Scans *scans.Service
	// Inventory, when set, adds find_hosts, inventory_changes and the
	// host:// and changes:// resources.
	Inventory *inventory.Inventory
	// Watches, when set, adds the watch tools and watch:// resources;
	// Subscriptions then tells subscribed sessions of changes.
	Watches       *watches.Service
	Subscriptions *Subscriptions
	// Delivery watches the transport's output so that every notification
	// is written before its call's result (see delivery.go); nil for a
	// transport it cannot watch.
	Delivery *Delivery
	Info     Info
	Log      *slog.Logger
	// TextCap bounds each result's text and structured hosts, in bytes
	// (default scans.DefaultTextCap).
	TextCap int
	// Refused, when set, counts refused calls by reason: validation,
	// scope, budget, queue_full or approval.
	Refused func(reason string)
	// ApprovalsURL is the web view's page of scans waiting for approval;
	// empty when the server has no web view, so that a scan an approval
	// rule asks for, from a client that cannot ask its user, is refused
	// instead of waiting for no one.
	ApprovalsURL string
	// Tasks advertises the tasks capability and task support on
	// nmap_scan; the transport must then pass requests through
	// Tasks.Handle (tasks.go).
	Tasks bool
}

// New returns an MCP server exposing the scanner and the scan history.
// Unknown arguments and schema violations are refused with isError
// results that say what to change (args.go).
func New(d Deps) *server.MCPServer {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Refused == nil {
		d.Refused = func(string) {}
	}
	if d.TextCap <= 0 {
		d.TextCap = scans.DefaultTextCap
	}
	hooks := &server.Hooks{}
	if d.Watches != nil && d.Subscriptions != nil {
		d.Subscriptions.hooks(hooks, d.Scans.Viewer)
	}
	opts := []server.ServerOption{}
	if d.Tasks {
		opts = append(opts, server.WithTaskCapabilities(true, true, true),
			server.WithExtensions(map[string]any{TasksExtension: map[string]any{}}))
		// On 2026-07-28 tasks are the extension only (SEP-2663): mcp-go
		// v1.2.1 also puts the 2025-11-25 capabilities.tasks slot in
		// server/discover, which that protocol forbids.
		hooks.AddAfterDiscover(func(_ context.Context, _ any, _ *mcp.DiscoverRequest, r *mcp.DiscoverResult) {
			if r != nil {
				r.Capabilities.Tasks = nil
			}
		})
	}
	s := server.NewMCPServer("nmap-mcp", d.Info.ServerVersion, append(opts,
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(d.Watches != nil && d.Subscriptions != nil, false),
		server.WithHooks(hooks),
		// Arguments are checked by each tool's wrapper (args.go), in words
		// a model can act on, not by mcp-go's schema validation.
		server.WithStrictInputSchemaDefault(),
		server.WithRecovery(),
		server.WithLogging(),
		server.WithResourceRecovery(),
		server.WithInstructions("Runs Nmap scans in a locked-down container and keeps their history. "+
			"Call nmap_scan with targets such as 127.0.0.1 or 192.168.1.0/24; for long scans pass wait: false and poll get_scan. "+
			"list_scans, get_scan and diff_scans read past scans; cancel_scan stops one; check_scope says, without scanning, whether targets are allowed (and whether a person must approve). "+
			"find_hosts answers what is on the network from every finished scan (by port, service, version, address block), inventory_changes what changed since a time; "+
			"watch_create rescans targets on a schedule and reports changes."),
	)...)
	h := &handlers{Deps: d}
	rules := d.Scans.Rules()
	maxT := map[string]int{"timeout_seconds": int(rules.MaxTimeout.Seconds())}
	st := scanTool(rules)
	if d.Tasks {
		st.Execution = &mcp.ToolExecution{TaskSupport: mcp.TaskSupportOptional}
	}
	s.AddTool(st, h.checked("nmap_scan", scanArgs{}, maxT, h.scan))
	s.AddTool(versionTool(), h.checked("nmap_version", struct{}{}, nil, h.version))
	s.AddTool(listTool(), h.checked("list_scans", listArgs{}, nil, h.list))
	s.AddTool(getTool(), h.checked("get_scan", idArgs{}, nil, h.get))
	s.AddTool(diffTool(), h.checked("diff_scans", diffArgs{}, nil, h.diff))
	s.AddTool(cancelTool(), h.checked("cancel_scan", idArgs{}, nil, h.cancel))
	s.AddTool(scopeTool(), h.checked("check_scope", scopeArgs{}, nil, h.checkScope))
	h.addResources(s)
	if d.Inventory != nil {
		h.addInventory(s)
	}
	if d.Watches != nil {
		watchTools(s, h)
		if d.Subscriptions != nil {
			d.Subscriptions.mu.Lock()
			d.Subscriptions.srv, d.Subscriptions.log = s, d.Log
			d.Subscriptions.mu.Unlock()
		}
	}
	return s
}

type handlers struct {
	Deps
}

func annotations(title string) []mcp.ToolOption {
	return []mcp.ToolOption{
		mcp.WithTitleAnnotation(title),
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
		mcp.WithIdempotentHintAnnotation(false),
		mcp.WithOpenWorldHintAnnotation(true),
	}
}

// historyAnnotations are for tools that only read the local history.
func historyAnnotations(title string) []mcp.ToolOption {
	return []mcp.ToolOption{
		mcp.WithTitleAnnotation(title),
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
		mcp.WithIdempotentHintAnnotation(true),
		mcp.WithOpenWorldHintAnnotation(false),
	}
}

// Sessions is how many sessions hold subscriptions now. A session that
// ends (DELETE, idle timeout, shutdown) is unregistered by its transport,
// and the OnUnregisterSession hook forgets its subscriptions.
func (r *Subscriptions) Sessions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.subs)
}
