package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

func (h *handlers) addResources(s *server.MCPServer) {
	s.AddResourceTemplate(mcp.NewResourceTemplate("scan://{id}", "scan",
		mcp.WithTemplateDescription("One scan's full record as JSON: request, argv, image, limits, timings, status and result."),
		mcp.WithTemplateMIMEType("application/json")), h.readScan)
	s.AddResourceTemplate(mcp.NewResourceTemplate("scan://{id}/xml", "scan-xml",
		mcp.WithTemplateDescription("One scan's raw nmap XML, as kept within the size cap."),
		mcp.WithTemplateMIMEType("application/xml")), h.readScan)
}

// readScan serves scan://{id} and scan://{id}/xml.
func (h *handlers) readScan(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	uri := req.Params.URI
	rest, ok := strings.CutPrefix(uri, "scan://")
	if !ok || rest == "" {
		return nil, fmt.Errorf("resource %q: not a scan:// URI", uri)
	}
	if id, isXML := strings.CutSuffix(rest, "/xml"); isXML {
		xml, err := h.Scans.RawXML(ctx, id)
		if err != nil {
			return nil, err
		}
		return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "application/xml", Text: string(xml)}}, nil
	}
	snap, err := h.Scans.Get(ctx, rest)
	if err != nil {
		return nil, err
	}
	rec := snap.Record
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode scan %s: %w", rec.ID, err)
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "application/json", Text: string(b)}}, nil
}
