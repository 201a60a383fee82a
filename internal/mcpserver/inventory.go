package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// The inventory tools answer from what past scans found, without
// scanning: find_hosts and inventory_changes, and the host://{address}
// and changes://recent resources. A client sees only its own inventory;
// an admin sees every client's (as list_scans).

// findArgs are find_hosts' arguments.
type findArgs struct {
	Address      string `json:"address,omitempty" maxLength:"64" desc:"An IP address or a CIDR block. Example: 10.1.0.0/16"`
	Port         int    `json:"port,omitempty" min:"1" max:"65535" desc:"Only hosts where this port was listed. Example: 3389"`
	Protocol     string `json:"protocol,omitempty" enum:"tcp|udp|sctp" desc:"Port protocol. Example: tcp"`
	State        string `json:"state,omitempty" desc:"Port state as last seen. Example: open"`
	Service      string `json:"service,omitempty" maxLength:"64" desc:"nmap's service name, exact. Example: ms-wbt-server"`
	Product      string `json:"product,omitempty" maxLength:"128" desc:"Product, exact, any case (needs service detection in the scans). Example: OpenSSH"`
	Version      string `json:"version,omitempty" maxLength:"64" desc:"Version comparison, numeric-aware: <9.0, >=8.0,<9.0, 9.2 (begins with), =9.2p1 (exact). Example: <9.0"`
	SeenSince    string `json:"seen_since,omitempty" maxLength:"64" desc:"Only what a scan saw since this RFC 3339 time or this long ago. Example: 24h"`
	ChangedSince string `json:"changed_since,omitempty" maxLength:"64" desc:"Only what changed since this RFC 3339 time or this long ago. Example: 168h"`
	Gone         string `json:"gone,omitempty" enum:"no|yes|any" default:"no" desc:"Hosts and ports not seen for the configured time: no (leave out), yes (only those), any. Example: yes"`
	Limit        int    `json:"limit,omitempty" min:"1" max:"200" default:"20" desc:"At most this many hosts. Example: 50"`
	Offset       int    `json:"offset,omitempty" min:"0" max:"100000" desc:"Skip this many hosts (paging). Example: 20"`
}

// changesArgs are inventory_changes' arguments.
type changesArgs struct {
	Address string `json:"address,omitempty" maxLength:"64" desc:"An IP address or a CIDR block. Example: 10.1.0.0/16"`
	Port    int    `json:"port,omitempty" min:"1" max:"65535" desc:"Only changes of this port. Example: 22"`
	Since   string `json:"since,omitempty" maxLength:"64" default:"24h" desc:"From this RFC 3339 time or this long ago. Example: 168h"`
	Until   string `json:"until,omitempty" maxLength:"64" desc:"Before this RFC 3339 time or this long ago (default: now). Example: 2026-12-01T00:00:00Z"`
	Kind    string `json:"kind,omitempty" enum:"host_appeared|host_gone|hostnames|os|port_appeared|port_gone|state|service|product|version|cpe|changes_omitted" desc:"Only changes of this kind. Example: port_appeared"`
	Limit   int    `json:"limit,omitempty" min:"1" max:"200" default:"50" desc:"At most this many changes. Example: 100"`
	Offset  int    `json:"offset,omitempty" min:"0" max:"10000" desc:"Skip this many changes (paging). Example: 50"`
}

func findHostsTool() mcp.Tool {
	opts := append(historyAnnotations("Find hosts"),
		mcp.WithDescription("Find hosts and ports in the inventory of what past scans found, without scanning: by address or CIDR, port, state, service, product, version (<9.0). "+
			"Each fact says which scan last saw it and when. Example: {\"address\": \"10.1.0.0/16\", \"port\": 3389, \"state\": \"open\"}."),
		withInput(findArgs{}, func(props map[string]any) {
			props["state"].(map[string]any)["enum"] = inventory.States
		}),
		withOutput(inventory.Found{}),
	)
	return mcp.NewTool("find_hosts", opts...)
}

func changesTool() mcp.Tool {
	opts := append(historyAnnotations("Inventory changes"),
		mcp.WithDescription("What changed on the network, from the inventory of past scans, without scanning: hosts and ports that appeared or went, "+
			"state, service, product and version changes, in an address range and a time window, newest first. Example: {\"address\": \"10.1.0.0/16\", \"since\": \"168h\"}."),
		withInput(changesArgs{}, nil),
		withOutput(inventory.Changes{}),
	)
	return mcp.NewTool("inventory_changes", opts...)
}

// addInventory registers the inventory's tools and resources.
func (h *handlers) addInventory(s *server.MCPServer) {
	s.AddTool(findHostsTool(), h.checked("find_hosts", findArgs{}, nil, h.findHosts))
	s.AddTool(changesTool(), h.checked("inventory_changes", changesArgs{}, nil, h.inventoryChanges))
	s.AddResourceTemplate(mcp.NewResourceTemplate("host://{address}", "host",
		mcp.WithTemplateDescription("One address in the inventory: what past scans found (every port, gone ones too), each fact with its scan and time, and its change log."),
		mcp.WithTemplateMIMEType("application/json")), h.readHost)
	s.AddResource(mcp.NewResource("changes://recent", "recent-changes",
		mcp.WithResourceDescription("The inventory's changes of the last 24 hours, newest first (at most 200)."),
		mcp.WithMIMEType("application/json")), h.readRecentChanges)
}

// catchUp ingests scans finished since the inventory last looked, so
// that an answer includes a scan that just ended, for at most
// inventory.CatchUpWait (a long backfill, or another catch-up ingesting
// a big scan, is left to the background follower: one client's big scan
// does not hold another's answer).
// It reports whether finished scans may be left to ingest (the answer
// says so: catching_up).
func (h *handlers) catchUp(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, inventory.CatchUpWait)
	defer cancel()
	n, err := h.Inventory.CatchUp(ctx, catchUpMax)
	if err != nil && ctx.Err() == nil {
		h.Log.Warn("inventory: catching up before an answer failed", "err", err)
	}
	return ctx.Err() != nil || n >= catchUpMax
}

// catchingUpNote tells the model that scans that finished are not in an
// answer yet.
const catchingUpNote = "Scans that finished were still being ingested as this answer was made: ask again in a few seconds to include them.\n"

// catchUpMax bounds the scans an answer ingests first.
const catchUpMax = 20

func parseWhen(field, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := store.ParseSince(v, now)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid %s %q: must be an RFC 3339 time (2026-01-31T12:00:00Z) or a duration such as 24h", field, v)
	}
	return t, nil
}

func (h *handlers) findHosts(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a := findArgs{Limit: 20}
	if err := req.BindArguments(&a); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	now := time.Now()
	q := inventory.Query{Client: h.Scans.Viewer(ctx), Address: a.Address, Port: a.Port, Protocol: a.Protocol, State: a.State,
		Service: a.Service, Product: a.Product, Version: a.Version, Gone: a.Gone, Limit: a.Limit, Offset: a.Offset}
	var err error
	if q.SeenSince, err = parseWhen("seen_since", a.SeenSince, now); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if q.ChangedSince, err = parseWhen("changed_since", a.ChangedSince, now); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	behind := h.catchUp(ctx)
	f, err := h.Inventory.Find(ctx, q)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	f.CatchingUp = behind
	return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(FoundText(f, h.TextCap))}, StructuredContent: f}, nil
}

// FoundText renders an inventory answer in a few lines per host, each
// fact with the scan that last saw it and when, within limit bytes.
func FoundText(f *inventory.Found, limit int) string {
	var b strings.Builder
	more := ""
	if f.TotalCapped {
		more = "+"
	}
	fmt.Fprintf(&b, "%d%s hosts match (showing %d from %d); from the inventory of past scans, not a new scan.\n", f.Total, more, len(f.Hosts), f.Offset)
	if f.CatchingUp {
		b.WriteString(catchingUpNote)
	}
	for i, h := range f.Hosts {
		if limit > 0 && b.Len() > limit {
			fmt.Fprintf(&b, "… %d more hosts in structuredContent\n", len(f.Hosts)-i)
			break
		}
		name := h.Address
		if len(h.Hostnames) > 0 {
			name += " (" + h.Hostnames[0] + ")"
		}
		gone := ""
		if h.Gone {
			gone = ", gone since " + h.GoneAt
		}
		client := ""
		if h.Client != "" {
			client = " [" + h.Client + "]"
		}
		fmt.Fprintf(&b, "%s%s: last seen %s by scan %s%s", name, client, h.LastSeen, h.LastScan, gone)
		if h.OS != "" {
			fmt.Fprintf(&b, "; OS %q", h.OS)
		}
		b.WriteString("\n")
		for _, p := range h.Ports {
			fmt.Fprintf(&b, "  %d/%s %s", p.Port, p.Protocol, p.State)
			if p.Service != "" {
				b.WriteString(" " + p.Service)
			}
			if p.Product != "" {
				fmt.Fprintf(&b, " %q", strings.TrimSpace(p.Product+" "+p.Version))
			}
			fmt.Fprintf(&b, " (seen %s by %s; state since %s", p.LastSeen, p.LastScan, p.StateChanged)
			if p.Gone {
				b.WriteString("; gone")
			}
			b.WriteString(")\n")
		}
		if h.PortsOmitted > 0 {
			fmt.Fprintf(&b, "  … %d more ports\n", h.PortsOmitted)
		}
	}
	if f.More {
		fmt.Fprintf(&b, "More hosts match: ask again with offset %d.\n", f.Offset+len(f.Hosts))
	}
	return b.String()
}

func (h *handlers) inventoryChanges(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a := changesArgs{Limit: 50, Since: "24h"}
	if err := req.BindArguments(&a); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	now := time.Now()
	q := inventory.ChangeQuery{Client: h.Scans.Viewer(ctx), Address: a.Address, Port: a.Port, Limit: a.Limit, Offset: a.Offset}
	if a.Kind != "" {
		q.Kinds = []string{a.Kind}
	}
	var err error
	if q.Since, err = parseWhen("since", a.Since, now); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if q.Until, err = parseWhen("until", a.Until, now); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	behind := h.catchUp(ctx)
	c, err := h.Inventory.Changes(ctx, q)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	c.CatchingUp = behind
	return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(ChangesText(c, h.TextCap))}, StructuredContent: c}, nil
}

// ChangesText renders a change list, one line per change with its scan
// and time, within limit bytes.
func ChangesText(c *inventory.Changes, limit int) string {
	var b strings.Builder
	more := ""
	if c.TotalCapped {
		more = "+"
	}
	fmt.Fprintf(&b, "%d%s changes (showing %d from %d), newest first; from the inventory of past scans.\n", c.Total, more, len(c.Changes), c.Offset)
	if c.CatchingUp {
		b.WriteString(catchingUpNote)
	}
	for i, x := range c.Changes {
		if limit > 0 && b.Len() > limit {
			fmt.Fprintf(&b, "… %d more changes in structuredContent\n", len(c.Changes)-i)
			break
		}
		where := x.Address
		if x.Port != 0 {
			where = fmt.Sprintf("%s %d/%s", x.Address, x.Port, x.Protocol)
		}
		by := "sweep (not seen for the configured time)"
		if x.Scan != "" {
			by = "scan " + x.Scan
		}
		fmt.Fprintf(&b, "%s %s %s: %q -> %q (%s)\n", x.At, where, x.Kind, x.From, x.To, by)
	}
	if c.More {
		fmt.Fprintf(&b, "More changes match: ask again with offset %d.\n", c.Offset+len(c.Changes))
	}
	return b.String()
}

// readHost serves host://{address}.
func (h *handlers) readHost(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	uri := req.Params.URI
	addr, ok := strings.CutPrefix(uri, "host://")
	if !ok || addr == "" {
		return nil, fmt.Errorf("resource %q: not a host:// URI", uri)
	}
	addr = strings.Trim(addr, "[]/")
	_ = h.catchUp(ctx)
	tl, err := h.Inventory.Host(ctx, h.Scans.Viewer(ctx), addr)
	if err != nil {
		return nil, err
	}
	if len(tl.Hosts) == 0 {
		return nil, fmt.Errorf("no host %s in the inventory; find_hosts lists the known ones", addr)
	}
	return jsonResource(uri, tl)
}

// readRecentChanges serves changes://recent.
func (h *handlers) readRecentChanges(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	behind := h.catchUp(ctx)
	c, err := h.Inventory.Changes(ctx, inventory.ChangeQuery{Client: h.Scans.Viewer(ctx), Since: time.Now().Add(-24 * time.Hour), Limit: 200})
	if err != nil {
		return nil, err
	}
	c.CatchingUp = behind
	return jsonResource(req.Params.URI, c)
}

func jsonResource(uri string, v any) ([]mcp.ResourceContents, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", uri, err)
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "application/json", Text: string(b)}}, nil
}
