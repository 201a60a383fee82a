package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scan"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

func scanTool(rules scan.Rules) mcp.Tool {
	maxT := int(rules.MaxTimeout.Seconds())
	defT := int(rules.DefaultTimeout.Seconds())
	opts := append(annotations("Nmap scan"),
		mcp.WithDescription("Run an Nmap scan in a sandboxed container. Returns hosts and open ports with services. Example: {\"targets\": \"127.0.0.1\", \"ports\": \"22,80,443\"}."),
		mcp.WithString("targets", mcp.Required(), mcp.MinLength(1), mcp.MaxLength(4096),
			mcp.Description("IPs, CIDR blocks or hostnames, comma- or space-separated. Example: 192.168.1.0/24, scanme.nmap.org")),
		mcp.WithString("scan_type", mcp.Enum("connect", "syn", "udp", "ping"), mcp.DefaultString("connect"),
			mcp.Description("connect = TCP connect, syn = TCP SYN, udp = UDP, ping = host discovery only. Example: syn")),
		mcp.WithString("ports", mcp.MaxLength(2048),
			mcp.Description("Ports to scan; do not combine with top_ports. Example: 22,80,443,8000-8100")),
		mcp.WithInteger("top_ports", mcp.Min(1), mcp.Max(65535),
			mcp.Description("Scan the N most common ports; 100 when ports is not given. Example: 1000")),
		mcp.WithBoolean("service_versions", mcp.DefaultBool(false),
			mcp.Description("Detect service names and versions (slower). Example: true")),
		mcp.WithBoolean("skip_host_discovery", mcp.DefaultBool(false),
			mcp.Description("Treat every target as up, for hosts that ignore ping. Example: true")),
		mcp.WithString("timing", mcp.Enum("T0", "T1", "T2", "T3", "T4", "T5"),
			mcp.Description("Speed template: T0 slowest, T3 normal, T5 fastest. Example: T4")),
		mcp.WithString("extra_timing", mcp.Enum("T0", "T1", "T2", "T3", "T4", "T5"),
			mcp.Description("Old name of timing; use timing. Example: T4")),
		mcp.WithInteger("timeout_seconds", mcp.Min(1), mcp.Max(maxT), mcp.DefaultNumber(defT),
			mcp.Description(fmt.Sprintf("Stop the scan after this many seconds (1-%d). Example: 120", maxT))),
		mcp.WithBoolean("os_detection", mcp.DefaultBool(false),
			mcp.Description("Guess the operating system (needs open and closed ports). Example: true")),
		mcp.WithString("scripts", mcp.MaxLength(1024),
			mcp.Description("NSE scripts or categories, comma-separated; the deployment decides which may run. Example: default,http-title")),
		mcp.WithString("script_args", mcp.MaxLength(2048),
			mcp.Description("key=value pairs for the scripts, comma-separated. Example: http.useragent=scanner")),
		mcp.WithBoolean("wait", mcp.DefaultBool(true),
			mcp.Description("true: return the result. false: return the scan_id at once; poll get_scan. Example: false")),
		withOutputSchema(scanOutputSchema()),
	)
	return mcp.NewTool("nmap_scan", opts...)
}

func versionTool() mcp.Tool {
	opts := append(annotations("Nmap version"),
		mcp.WithDescription("Show the nmap version inside the pinned scanner image, the image tag and ID, and the Docker engine version."))
	return mcp.NewTool("nmap_version", opts...)
}

// scanOutput is the structuredContent of nmap_scan and get_scan.
type scanOutput struct {
	ScanID          string         `json:"scan_id"`
	Status          string         `json:"status"`
	Targets         string         `json:"targets"`
	ScanType        string         `json:"scan_type"`
	Command         string         `json:"command"`
	StartedAt       string         `json:"started_at"`
	DurationSeconds float64        `json:"duration_seconds"`
	ExitCode        int            `json:"exit_code"`
	Error           string         `json:"error"`
	Truncated       bool           `json:"truncated"`
	HostsOmitted    int            `json:"hosts_omitted"`
	Result          results.Result `json:"result"`
	Resource        string         `json:"resource"`
	XMLResource     string         `json:"xml_resource"`
	ProgressPercent float64        `json:"progress_percent"`
	ProgressMessage string         `json:"progress_message"`
}

func scanOutputSchema() map[string]any {
	return results.Object(map[string]any{
		"scan_id":          results.StringSchema("scan id, for get_scan and diff_scans"),
		"status":           map[string]any{"type": "string", "enum": store.Statuses, "description": "scan status"},
		"targets":          results.StringSchema("targets as passed to nmap"),
		"scan_type":        results.StringSchema("connect, syn, udp or ping"),
		"command":          results.StringSchema("the nmap command run in the sandbox"),
		"started_at":       results.StringSchema("RFC 3339 start time"),
		"duration_seconds": results.NumberSchema("run time"),
		"exit_code":        results.IntegerSchema("nmap's exit code"),
		"error":            results.StringSchema("why the scan failed or stopped; empty when done"),
		"truncated":        results.BooleanSchema("true when hosts were left out to keep the result small; read resource for all"),
		"hosts_omitted":    results.IntegerSchema("hosts left out of result.hosts"),
		"result":           results.Schema(),
		"resource":         results.StringSchema("scan://ID: the full record as JSON"),
		"xml_resource":     results.StringSchema("scan://ID/xml: nmap's raw XML"),
		"progress_percent": results.NumberSchema("0-100; 100 when finished"),
		"progress_message": results.StringSchema("latest progress, e.g. queued, position 2"),
	}, "one scan")
}

// output builds the structured content of a record, keeping the hosts
// within capBytes of JSON.
func output(rec *store.Record, capBytes int) scanOutput {
	out := scanOutput{
		ScanID: rec.ID, Status: rec.Status, Targets: rec.Targets, ScanType: rec.ScanType,
		Command: strings.Join(rec.Argv, " "), DurationSeconds: rec.Duration().Seconds(), ExitCode: rec.ExitCode,
		Error: rec.Error, Resource: "scan://" + rec.ID, XMLResource: "scan://" + rec.ID + "/xml",
	}
	if !rec.StartedAt.IsZero() {
		out.StartedAt = rec.StartedAt.Format("2006-01-02T15:04:05.000Z07:00")
	}
	if rec.Result != nil {
		out.Result = *rec.Result
	}
	if store.Finished(rec.Status) {
		out.ProgressPercent, out.ProgressMessage = 100, rec.Status
	}
	out.Result.Normalize()
	all := out.Result.Hosts
	size := 0
	for i, h := range all {
		b, _ := json.Marshal(h)
		size += len(b)
		if size > capBytes && i > 0 {
			out.Result.Hosts = all[:i]
			out.Truncated, out.HostsOmitted = true, len(all)-i
			break
		}
	}
	return out
}

func (h *handlers) scan(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	args := req.GetArguments()
	wait := true
	if w, ok := args["wait"].(bool); ok {
		wait = w
	}
	delete(args, "wait")
	raw, err := json.Marshal(args)
	if err != nil {
		return mcp.NewToolResultErrorf("could not read the arguments: %v", err), nil
	}
	sreq, err := scan.DecodeRequest(raw)
	if err != nil {
		h.Refused("validation")
		return refused(err), nil
	}
	if !wait {
		sc, err := h.Scans.Submit(ctx, sreq, scans.Options{Detach: true})
		if err != nil {
			return h.refusal(err), nil
		}
		return h.liveResult(sc.Snapshot(), "Scan "+sc.ID+" started in the background; poll get_scan with this id, or stop it with cancel_scan."), nil
	}
	n := newCallNotifier(ctx, req, h.Delivery)
	sc, err := h.Scans.Submit(ctx, sreq, scans.Options{Events: n.event})
	if !n.flush() {
		h.Log.Warn("notifications of a call were not seen written before its result", "sent", n.sent)
	}
	if err != nil {
		return h.refusal(err), nil
	}
	return h.recordResult(sc.Snapshot().Record, sc.Err() != nil), nil
}

// refusal is the result of a scan that was not admitted.
func (h *handlers) refusal(err error) *mcp.CallToolResult {
	var (
		full   *scans.QueueFullError
		share  *scans.ShareError
		field  *scan.FieldError
		scope  *policy.Refusal
		budget *policy.BudgetError
	)
	reason := "other"
	switch {
	case errors.As(err, &full), errors.As(err, &share):
		reason = "queue_full"
	case errors.As(err, &field):
		reason = "validation"
	case errors.As(err, &scope):
		reason = "scope"
	case errors.As(err, &budget):
		reason = "budget"
	}
	h.Refused(reason)
	h.Log.Info("scan refused", "reason", reason, "err", err)
	return refused(err)
}

// liveResult is the result for a queued or running scan.
func (h *handlers) liveResult(snap scans.Snapshot, note string) *mcp.CallToolResult {
	if !snap.Live {
		return h.recordResult(snap.Record, false)
	}
	res := h.recordResult(snap.Record, false)
	out := res.StructuredContent.(scanOutput)
	out.ProgressPercent, out.ProgressMessage = snap.Percent, snap.Message
	res.StructuredContent = out
	text := fmt.Sprintf("%s\nStatus: %s, %.0f%% (%s); %d hosts finished so far.\n", note, snap.Record.Status, snap.Percent,
		snap.Message, len(snap.Record.Result.Hosts))
	res.Content[0] = mcp.NewTextContent(text)
	return res
}

// recordResult is the tool result for one scan record: compact text, links
// to the full record and raw XML, and structured content.
func (h *handlers) recordResult(rec *store.Record, isError bool) *mcp.CallToolResult {
	text, _ := scans.RecordText(rec, h.TextCap)
	return &mcp.CallToolResult{
		Content: []mcp.Content{
			mcp.NewTextContent(text),
			mcp.NewResourceLink("scan://"+rec.ID, "scan "+rec.ID, "the full scan record as JSON", "application/json"),
			mcp.NewResourceLink("scan://"+rec.ID+"/xml", "scan "+rec.ID+" XML", "nmap's raw XML output", "application/xml"),
		},
		StructuredContent: output(rec, h.TextCap),
		IsError:           isError,
	}
}

func refused(err error) *mcp.CallToolResult {
	return mcp.NewToolResultError("Scan refused, nothing was run: " + err.Error())
}

func (h *handlers) version(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	v, err := h.Scans.Version(ctx)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	img := h.Scans.Image()
	lines := []string{
		v,
		"Image: " + img.Tag,
		"Image ID: " + img.ID,
		"nmap package: " + img.NmapVersion,
		"Docker engine: " + h.Info.EngineVersion,
		"nmap-mcp: " + h.Info.ServerVersion,
	}
	return mcp.NewToolResultText(strings.Join(lines, "\n")), nil
}

// withOutputSchema publishes a hand-written output schema.
func withOutputSchema(schema map[string]any) mcp.ToolOption {
	b, err := json.Marshal(schema)
	if err != nil {
		// The schemas are built from literals in this module; a failure
		// here is a programming error caught by the tests.
		b = []byte(`{"type":"object"}`)
	}
	return mcp.WithRawOutputSchema(b)
}
