package mcpserver

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// listArgs are list_scans' arguments.
type listArgs struct {
	Target string `json:"target,omitempty" maxLength:"253" desc:"Only scans that listed this target. Example: 192.168.1.10"`
	Status string `json:"status,omitempty" enum:"pending-approval|queued|running|done|failed|timed-out|cancelled|interrupted|denied" desc:"Only scans with this status. Example: done"`
	Since  string `json:"since,omitempty" maxLength:"64" desc:"Only scans started since this RFC 3339 time or this long ago. Example: 24h"`
	Limit  int    `json:"limit,omitempty" min:"1" max:"200" default:"20" desc:"At most this many scans. Example: 10"`
}

// idArgs are the arguments of tools that take one scan id.
type idArgs struct {
	ID string `json:"id" minLength:"1" maxLength:"64" desc:"Scan id from nmap_scan or list_scans. Example: 3f2a9c0b1d4e"`
}

// diffArgs are diff_scans' arguments.
type diffArgs struct {
	IDA    string `json:"id_a,omitempty" maxLength:"64" desc:"Older scan id. Example: 3f2a9c0b1d4e"`
	IDB    string `json:"id_b,omitempty" maxLength:"64" desc:"Newer scan id. Example: 9b1e7d2c4a60"`
	Target string `json:"target,omitempty" maxLength:"253" desc:"Compare this target's latest two finished scans. Example: 192.168.1.10"`
}

func listTool() mcp.Tool {
	opts := append(historyAnnotations("List scans"),
		mcp.WithDescription("List past scans, newest first. Example: {\"target\": \"127.0.0.1\", \"limit\": 5}."),
		withInput(listArgs{}, nil),
		withOutput(listOutput{}),
	)
	return mcp.NewTool("list_scans", opts...)
}

func cancelTool() mcp.Tool {
	opts := []mcp.ToolOption{
		mcp.WithTitleAnnotation("Cancel scan"),
		mcp.WithReadOnlyHintAnnotation(false),
		mcp.WithDestructiveHintAnnotation(false),
		mcp.WithIdempotentHintAnnotation(true),
		mcp.WithOpenWorldHintAnnotation(false),
		mcp.WithDescription("Stop a queued or running scan by id; its record keeps the hosts finished so far. Example: {\"id\": \"3f2a9c0b1d4e\"}."),
		withInput(idArgs{}, nil),
	}
	return mcp.NewTool("cancel_scan", opts...)
}

func (h *handlers) cancel(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var a idArgs
	if err := req.BindArguments(&a); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	id := a.ID
	cancelled := h.Scans.Cancel(ctx, id)
	snap, err := h.Scans.Get(ctx, id)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if cancelled {
		text, _ := scans.BriefText(snap.Record, h.TextCap)
		return mcp.NewToolResultText("Cancelled.\n" + text), nil
	}
	return mcp.NewToolResultError(fmt.Sprintf("scan %s is not running: it is %s", id, snap.Record.Status)), nil
}

func getTool() mcp.Tool {
	opts := append(historyAnnotations("Get scan"),
		mcp.WithDescription("Get one past scan's result by its id. Example: {\"id\": \"3f2a9c0b1d4e\"}."),
		withInput(idArgs{}, nil),
		withOutput(scanOutput{}),
	)
	return mcp.NewTool("get_scan", opts...)
}

func diffTool() mcp.Tool {
	opts := append(historyAnnotations("Diff scans"),
		mcp.WithDescription("Show what changed between two scans: hosts, port states, services. Give id_a and id_b, or a target to compare its latest two finished scans. Example: {\"target\": \"127.0.0.1\"}."),
		withInput(diffArgs{}, nil),
		withOutput(diffOutput{}),
	)
	return mcp.NewTool("diff_scans", opts...)
}

// listOutput is list_scans' structuredContent.
type listOutput struct {
	Scans []listItem `json:"scans" desc:"scans, newest first"`
}

type listItem struct {
	ScanID          string  `json:"scan_id" desc:"scan id"`
	Status          string  `json:"status" desc:"scan status"`
	Targets         string  `json:"targets" desc:"targets"`
	ScanType        string  `json:"scan_type" desc:"scan type"`
	StartedAt       string  `json:"started_at" desc:"RFC 3339 start time"`
	DurationSeconds float64 `json:"duration_seconds" desc:"run time"`
	HostsUp         int     `json:"hosts_up" desc:"hosts up"`
	OpenPorts       int     `json:"open_ports" desc:"open ports over all hosts"`
}

func (h *handlers) list(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a := listArgs{Limit: 20}
	if err := req.BindArguments(&a); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	f := store.Filter{Target: a.Target, Status: a.Status, Limit: a.Limit}
	if a.Since != "" {
		since, err := store.ParseSince(a.Since, time.Now())
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		f.Since = since
	}
	recs, err := h.Scans.List(ctx, f)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	items := make([]listItem, 0, len(recs))
	var b strings.Builder
	for _, r := range recs {
		it := listItem{ScanID: r.ID, Status: r.Status, Targets: r.Targets, ScanType: r.ScanType,
			DurationSeconds: r.Duration().Seconds()}
		if !r.StartedAt.IsZero() {
			it.StartedAt = r.StartedAt.Format(time.RFC3339)
		}
		it.HostsUp, it.OpenPorts = r.HostsUp, r.OpenPorts
		items = append(items, it)
		fmt.Fprintf(&b, "%s %s %s %s [%s] %d up, %d open ports\n", it.ScanID, it.StartedAt, it.Status, it.ScanType, it.Targets, it.HostsUp, it.OpenPorts)
	}
	if len(items) == 0 {
		b.WriteString("no scans match\n")
	}
	return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(b.String())},
		StructuredContent: listOutput{Scans: items}}, nil
}

func (h *handlers) get(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var a idArgs
	if err := req.BindArguments(&a); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	id := a.ID
	snap, err := h.Scans.Get(ctx, id)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if snap.Live {
		return h.liveResult(snap, "Scan "+id+" is not finished yet."), nil
	}
	return h.recordResult(snap.Record, false), nil
}

type diffOutput struct {
	Before string       `json:"before" desc:"older scan id"`
	After  string       `json:"after" desc:"newer scan id"`
	Diff   results.Diff `json:"diff" desc:"what changed between two scans"`
}

func (h *handlers) diff(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var args diffArgs
	if err := req.BindArguments(&args); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	a, b, err := h.Scans.Pair(ctx, args.IDA, args.IDB, args.Target)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	d := results.Compare(a.Result, b.Result)
	text := fmt.Sprintf("Changes from scan %s (%s) to scan %s (%s):\n%s", a.ID, a.StartedAt.Format(time.RFC3339),
		b.ID, b.StartedAt.Format(time.RFC3339), results.DiffText(d))
	return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(text)},
		StructuredContent: diffOutput{Before: a.ID, After: b.ID, Diff: d}}, nil
}

// scopeArgs are check_scope's arguments.
type scopeArgs struct {
	Targets string `json:"targets" minLength:"1" maxLength:"4096" desc:"IPs, CIDR blocks or hostnames to check, as for nmap_scan. Example: 192.168.1.0/24, scanme.nmap.org"`
	// The rest describe the scan, as for nmap_scan, to learn whether it
	// would need a person's approval.
	ScanType        string `json:"scan_type,omitempty" enum:"connect|syn|udp|ping" desc:"As for nmap_scan, to learn whether the scan needs approval. Example: udp"`
	Ports           string `json:"ports,omitempty" maxLength:"2048" desc:"As for nmap_scan. Example: 1-65535"`
	TopPorts        *int   `json:"top_ports,omitempty" min:"1" max:"65535" desc:"As for nmap_scan. Example: 1000"`
	Timing          string `json:"timing,omitempty" enum:"T0|T1|T2|T3|T4|T5" desc:"As for nmap_scan. Example: T4"`
	Scripts         string `json:"scripts,omitempty" maxLength:"1024" desc:"As for nmap_scan. Example: vuln"`
	ServiceVersions bool   `json:"service_versions,omitempty" desc:"As for nmap_scan. Example: true"`
	OSDetection     bool   `json:"os_detection,omitempty" desc:"As for nmap_scan. Example: true"`
}

// scopeOutput is check_scope's structuredContent.
type scopeOutput struct {
	Decisions []policy.Decision `json:"decisions" desc:"one decision per target, in the order given"`
	Approval  scopeApproval     `json:"approval" desc:"whether nmap_scan with these arguments would need a person's approval, and which rule asks"`
}

// scopeApproval is check_scope's answer about approval.
type scopeApproval struct {
	Needed       bool   `json:"needed" desc:"true when an approval rule asks for this scan"`
	Rule         string `json:"rule" desc:"the rule that asks; empty when none"`
	SecondPerson bool   `json:"second_person" desc:"true when someone other than this client must approve"`
	Text         string `json:"text" desc:"the scan in plain words, as a person would be asked"`
}

func scopeTool() mcp.Tool {
	opts := append(historyAnnotations("Check scope"),
		mcp.WithDescription("Check, without scanning, whether targets would be allowed, what hostnames resolve to, and which rule decides; given the scan's other arguments, also whether a person must approve it and which approval rule asks. "+
			"Use it before nmap_scan. Example: {\"targets\": \"127.0.0.1, 10.0.0.0/8\"}."),
		withInput(scopeArgs{}, nil),
		withOutput(scopeOutput{}),
	)
	return mcp.NewTool("check_scope", opts...)
}

func (h *handlers) checkScope(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var a scopeArgs
	if err := req.BindArguments(&a); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	ds, err := h.Scans.CheckScope(ctx, a.Targets)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	var b strings.Builder
	for _, d := range ds {
		verdict := "allowed"
		if !d.Allowed {
			verdict = "refused"
		}
		fmt.Fprintf(&b, "%s: %s by %s", d.Target, verdict, d.Rule)
		if len(d.Addresses) > 0 {
			fmt.Fprintf(&b, "; resolves to %s", strings.Join(d.Addresses, " "))
		}
		if d.Reason != "" {
			fmt.Fprintf(&b, "; %s (to change this, edit %s in the config file)", d.Reason, d.Key)
		}
		if d.Network != "" {
			fmt.Fprintf(&b, "; %s", d.Network)
		}
		b.WriteByte('\n')
	}
	out := scopeOutput{Decisions: ds}
	if h.Scans.Approvals() != nil {
		d, err := h.Scans.Decide(ctx, scanargs.Request{Targets: a.Targets, ScanType: a.ScanType, Ports: a.Ports, TopPorts: a.TopPorts,
			Timing: a.Timing, Scripts: a.Scripts, ServiceVersions: a.ServiceVersions, OSDetection: a.OSDetection})
		switch {
		case err != nil:
			fmt.Fprintf(&b, "approval: not decided: the scan would be refused: %v\n", err)
		case d.Needed:
			out.Approval = scopeApproval{Needed: true, Rule: d.Rule, SecondPerson: d.SecondPerson, Text: d.Text}
			fmt.Fprintf(&b, "approval: needed, rule %q asks (%s)", d.Rule, d.Conditions)
			if d.SecondPerson {
				b.WriteString("; someone other than this client must approve")
			}
			b.WriteString("\n")
		default:
			out.Approval.Text = d.Text
			b.WriteString("approval: not needed, no approval rule asks for this scan\n")
		}
	}
	return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(b.String())},
		StructuredContent: out}, nil
}
