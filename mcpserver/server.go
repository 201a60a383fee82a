// Package mcpserver is the MCP layer: it publishes the nmap_scan and
// nmap_version tools over mcp-go, turns tool arguments into scan requests,
// and turns every failure into an isError result rather than a crash or a
// hung call. It is the only package besides cmd that imports mcp-go.
package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/scan"
	"github.com/nmap-mcp/nmap-mcp/scanner"
)

// Info is what nmap_version reports besides the version nmap prints.
type Info struct {
	ServerVersion string
	EngineVersion string
}

// New returns an MCP server exposing sc's scans. Unknown arguments and
// schema violations are refused with isError results.
func New(sc *scanner.Scanner, info Info, log *slog.Logger) *server.MCPServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := server.NewMCPServer("nmap-mcp", info.ServerVersion,
		server.WithToolCapabilities(false),
		server.WithStrictInputSchemaDefault(),
		server.WithInputSchemaValidation(),
		server.WithRecovery(),
		server.WithInstructions("Runs Nmap scans in a locked-down container. Call nmap_scan with targets such as 127.0.0.1 or 192.168.1.0/24."),
	)
	h := &handlers{sc: sc, info: info, log: log}
	s.AddTool(scanTool(sc.Rules()), h.scan)
	s.AddTool(versionTool(), h.version)
	return s
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

func scanTool(rules scan.Rules) mcp.Tool {
	maxT := int(rules.MaxTimeout.Seconds())
	defT := int(rules.DefaultTimeout.Seconds())
	opts := append(annotations("Nmap scan"),
		mcp.WithDescription("Run an Nmap scan in a sandboxed container and return nmap's output. Example: {\"targets\": \"127.0.0.1\", \"ports\": \"22,80,443\"}."),
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
	)
	return mcp.NewTool("nmap_scan", opts...)
}

func versionTool() mcp.Tool {
	opts := append(annotations("Nmap version"),
		mcp.WithDescription("Show the nmap version inside the pinned scanner image, the image tag and ID, and the Docker engine version."))
	return mcp.NewTool("nmap_version", opts...)
}

type handlers struct {
	sc   *scanner.Scanner
	info Info
	log  *slog.Logger
}

func (h *handlers) scan(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	raw, err := json.Marshal(req.GetRawArguments())
	if err != nil {
		return mcp.NewToolResultErrorf("could not read the arguments: %v", err), nil
	}
	if string(raw) == "null" {
		raw = []byte("{}")
	}
	sreq, err := scan.DecodeRequest(raw)
	if err != nil {
		return refused(err), nil
	}
	rep, err := h.sc.Run(ctx, sreq, scanner.Observer{})
	if rep == nil {
		if err == nil {
			err = errors.New("no report")
		}
		h.log.Info("scan refused", "err", err)
		return refused(err), nil
	}
	text, _ := rep.Text(scanner.DefaultTextCap, "scan://"+rep.ID)
	if err != nil {
		return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(text)}, IsError: true}, nil
	}
	return mcp.NewToolResultText(text), nil
}

func refused(err error) *mcp.CallToolResult {
	var fe *scan.FieldError
	if errors.As(err, &fe) {
		return mcp.NewToolResultError("Scan refused, nothing was run: " + fe.Error())
	}
	return mcp.NewToolResultError("Scan refused, nothing was run: " + err.Error())
}

func (h *handlers) version(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	v, err := h.sc.Version(ctx)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	img := h.sc.Image()
	lines := []string{
		v,
		"Image: " + img.Tag,
		"Image ID: " + img.ID,
		"nmap package: " + img.NmapVersion,
		"Docker engine: " + h.info.EngineVersion,
		"nmap-mcp: " + h.info.ServerVersion,
	}
	return mcp.NewToolResultText(strings.Join(lines, "\n")), nil
}
