package mcpserver

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

func listTool() mcp.Tool {
	opts := append(historyAnnotations("List scans"),
		mcp.WithDescription("List past scans, newest first. Example: {\"target\": \"127.0.0.1\", \"limit\": 5}."),
		mcp.WithString("target", mcp.MaxLength(253), mcp.Description("Only scans that listed this target. Example: 192.168.1.10")),
		mcp.WithString("status", mcp.Enum(store.Statuses...), mcp.Description("Only scans with this status. Example: done")),
		mcp.WithString("since", mcp.MaxLength(64), mcp.Description("Only scans started since this RFC 3339 time or this long ago. Example: 24h")),
		mcp.WithInteger("limit", mcp.Min(1), mcp.Max(200), mcp.DefaultNumber(20), mcp.Description("At most this many scans. Example: 10")),
		withOutputSchema(results.Object(map[string]any{
			"scans": results.ArraySchema(results.Object(map[string]any{
				"scan_id":          results.StringSchema("scan id"),
				"status":           results.StringSchema("scan status"),
				"targets":          results.StringSchema("targets"),
				"scan_type":        results.StringSchema("scan type"),
				"started_at":       results.StringSchema("RFC 3339 start time"),
				"duration_seconds": results.NumberSchema("run time"),
				"hosts_up":         results.IntegerSchema("hosts up"),
				"open_ports":       results.IntegerSchema("open ports over all hosts"),
			}, "one scan"), "scans, newest first"),
		}, "scan list")),
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
		mcp.WithString("id", mcp.Required(), mcp.MinLength(1), mcp.MaxLength(64), mcp.Description("Scan id. Example: 3f2a9c0b1d4e")),
	}
	return mcp.NewTool("cancel_scan", opts...)
}

func (h *handlers) cancel(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	id := req.GetString("id", "")
	cancelled := h.Scans.Cancel(ctx, id)
	snap, err := h.Scans.Get(ctx, id)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if cancelled {
		text, _ := scans.RecordText(snap.Record, h.TextCap)
		return mcp.NewToolResultText("Cancelled.\n" + text), nil
	}
	return mcp.NewToolResultError(fmt.Sprintf("scan %s is not running: it is %s", id, snap.Record.Status)), nil
}

func getTool() mcp.Tool {
	opts := append(historyAnnotations("Get scan"),
		mcp.WithDescription("Get one past scan's result by its id. Example: {\"id\": \"3f2a9c0b1d4e\"}."),
		mcp.WithString("id", mcp.Required(), mcp.MinLength(1), mcp.MaxLength(64), mcp.Description("Scan id from nmap_scan or list_scans. Example: 3f2a9c0b1d4e")),
		withOutputSchema(scanOutputSchema()),
	)
	return mcp.NewTool("get_scan", opts...)
}

func diffTool() mcp.Tool {
	opts := append(historyAnnotations("Diff scans"),
		mcp.WithDescription("Show what changed between two scans: hosts, port states, services. Give id_a and id_b, or a target to compare its latest two finished scans. Example: {\"target\": \"127.0.0.1\"}."),
		mcp.WithString("id_a", mcp.MaxLength(64), mcp.Description("Older scan id. Example: 3f2a9c0b1d4e")),
		mcp.WithString("id_b", mcp.MaxLength(64), mcp.Description("Newer scan id. Example: 9b1e7d2c4a60")),
		mcp.WithString("target", mcp.MaxLength(253), mcp.Description("Compare this target's latest two finished scans. Example: 192.168.1.10")),
		withOutputSchema(results.Object(map[string]any{
			"before": results.StringSchema("older scan id"),
			"after":  results.StringSchema("newer scan id"),
			"diff":   results.DiffSchema(),
		}, "scan comparison")),
	)
	return mcp.NewTool("diff_scans", opts...)
}

type listItem struct {
	ScanID          string  `json:"scan_id"`
	Status          string  `json:"status"`
	Targets         string  `json:"targets"`
	ScanType        string  `json:"scan_type"`
	StartedAt       string  `json:"started_at"`
	DurationSeconds float64 `json:"duration_seconds"`
	HostsUp         int     `json:"hosts_up"`
	OpenPorts       int     `json:"open_ports"`
}

func (h *handlers) list(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	f := store.Filter{Target: req.GetString("target", ""), Status: req.GetString("status", ""), Limit: req.GetInt("limit", 20)}
	if s := req.GetString("since", ""); s != "" {
		since, err := store.ParseSince(s, time.Now())
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
		StructuredContent: map[string]any{"scans": items}}, nil
}

func (h *handlers) get(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	id := req.GetString("id", "")
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
	Before string       `json:"before"`
	After  string       `json:"after"`
	Diff   results.Diff `json:"diff"`
}

func (h *handlers) diff(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, b, err := h.Scans.Pair(ctx, req.GetString("id_a", ""), req.GetString("id_b", ""), req.GetString("target", ""))
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	d := results.Compare(a.Result, b.Result)
	text := fmt.Sprintf("Changes from scan %s (%s) to scan %s (%s):\n%s", a.ID, a.StartedAt.Format(time.RFC3339),
		b.ID, b.StartedAt.Format(time.RFC3339), results.DiffText(d))
	return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(text)},
		StructuredContent: diffOutput{Before: a.ID, After: b.ID, Diff: d}}, nil
}
