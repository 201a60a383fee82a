package mcpserver_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

type elicitFunc func(context.Context, mcp.ElicitationRequest) (*mcp.ElicitationResult, error)

func (f elicitFunc) Elicit(ctx context.Context, r mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return f(ctx, r)
}

// mcp-go's own client on protocol 2026-07-28 answers input_required: it
// fulfils the elicitation with its handler and retries the call with the
// answer (stdio pipes, fake runner, -short).
func TestApprovalMCPGoClientInputRequired(t *testing.T) {
	rules, err := approval.Compile(approval.Config{Rules: []approval.Rule{{Name: "two-ports", MinPorts: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	st, trail := testkit.OpenHistory(t)
	runner := &instantRunner{}
	svc := scans.New(scans.Config{Sandbox: sandbox.Options{Limits: sandbox.DefaultLimits()}, MaxAddresses: 4096},
		scans.Deps{Runner: runner, Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"}, Store: st, Audit: trail,
			ApprovalRules: rules, Approvals: approval.NewStore(rules.Limits(), nil)})
	srv := mcpserver.New(mcpserver.Deps{Scans: svc})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cr, cw := io.Pipe()
	sr, sw := io.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); _ = server.NewStdioServer(srv).Listen(ctx, cr, sw) }()
	asked := 0
	c := mcpclient.NewClient(transport.NewIO(sr, cw, io.NopCloser(strings.NewReader(""))),
		mcpclient.WithProtocolVersion(mcp.ProtocolVersion20260728),
		mcpclient.WithElicitationHandler(elicitFunc(func(_ context.Context, r mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
			asked++
			if !strings.Contains(r.Params.Message, `Rule "two-ports"`) {
				t.Errorf("question: %s", r.Params.Message)
			}
			return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept,
				Content: map[string]any{"decision": "approve", "reason": "ok"}}}, nil
		})))
	t.Cleanup(func() {
		_ = c.Close()
		cancel()
		cw.Close()
		sw.Close()
		<-done
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		_ = svc.Close(cctx)
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	if v := c.ProtocolVersion(); v != mcp.ProtocolVersion20260728 {
		t.Fatalf("protocol %q, want 2026-07-28", v)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = "nmap_scan", map[string]any{"targets": "127.0.0.1", "ports": "22,80"}
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := res.StructuredContent.(map[string]any)
	appr, _ := out["approval"].(map[string]any)
	if res.IsError || asked != 1 || runner.count() != 1 || appr["outcome"] != "approved" || appr["via"] != approval.ViaInputRequired {
		t.Fatalf("mcp-go client: error %v, asked %d, runs %d, approval %v", res.IsError, asked, runner.count(), appr)
	}
}
