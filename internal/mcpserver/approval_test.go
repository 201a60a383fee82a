package mcpserver_test

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// The approval round trips run against a real MCP client (the official
// Go SDK) over stdio pipes, with a fake runner: no engine, -short.

// instantRunner plays a container that finds 127.0.0.1:22 open at once.
type instantRunner struct {
	mu   sync.Mutex
	runs int
}

func (r *instantRunner) Run(_ context.Context, job executor.Job) (*executor.Result, error) {
	r.mu.Lock()
	r.runs++
	r.mu.Unlock()
	xml := `<?xml version="1.0"?><nmaprun scanner="nmap" args="nmap" version="7.93">` +
		`<host><status state="up" reason="conn-refused"/><address addr="127.0.0.1" addrtype="ipv4"/>` +
		`<ports><port protocol="tcp" portid="22"><state state="open" reason="syn-ack"/><service name="ssh"/></port></ports></host>` +
		`<runstats><finished elapsed="1" exit="success"/><hosts up="1" down="0" total="1"/></runstats></nmaprun>`
	emit := func(step executor.Step) {
		if job.OnEvent != nil {
			job.OnEvent(executor.Event{Step: step, ContainerID: "c-fake", At: time.Now()})
		}
	}
	emit("created")
	emit("started")
	if job.Stdout != nil {
		_, _ = io.WriteString(job.Stdout, xml)
	}
	emit("exited")
	emit("removed") // frees the queue slot at once
	return &executor.Result{ContainerID: "c-fake", Stdout: []byte(xml)}, nil
}

func (r *instantRunner) Close(context.Context) error { return nil }

func (r *instantRunner) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs
}

// approvalServer serves nmap_scan with a rule asking for scans of two or
// more ports, over stdio pipes; it returns a connected SDK client session.
func approvalServer(t *testing.T, version string, answer func(*sdk.ElicitRequest) (*sdk.ElicitResult, error), timeout time.Duration) (*sdk.ClientSession, *instantRunner, *[]string) {
	t.Helper()
	return approvalServerWith(t, version, answer, timeout, false)
}

// approvalServerWith is approvalServer; manual turns the client's own
// multi round-trip loop off, so the test drives the retries.
func approvalServerWith(t *testing.T, version string, answer func(*sdk.ElicitRequest) (*sdk.ElicitResult, error), timeout time.Duration, manual bool) (*sdk.ClientSession, *instantRunner, *[]string) {
	t.Helper()
	sess, runner, asked, _ := approvalServerFull(t, version, answer, timeout, manual, "")
	return sess, runner, asked
}

// approvalServerFull is approvalServerWith with a web view's approvals
// page (approvalsURL) and the question store returned.
func approvalServerFull(t *testing.T, version string, answer func(*sdk.ElicitRequest) (*sdk.ElicitResult, error), timeout time.Duration, manual bool, approvalsURL string) (*sdk.ClientSession, *instantRunner, *[]string, *approval.Store) {
	t.Helper()
	rules, err := approval.Compile(approval.Config{Rules: []approval.Rule{{Name: "two-ports", MinPorts: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	lim := rules.Limits()
	lim.Timeout = timeout
	st, trail := testkit.OpenHistory(t)
	runner := &instantRunner{}
	questions := approval.NewStore(lim, nil)
	svc := scans.New(scans.Config{Sandbox: sandbox.Options{Limits: sandbox.DefaultLimits()}, MaxAddresses: 4096},
		scans.Deps{Runner: runner, Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"}, Store: st, Audit: trail,
			ApprovalRules: rules, Approvals: questions})
	srv := mcpserver.New(mcpserver.Deps{Scans: svc, ApprovalsURL: approvalsURL})
	ctx, cancel := context.WithCancel(context.Background())
	cr, cw := io.Pipe()
	sr, sw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = server.NewStdioServer(srv).Listen(ctx, cr, sw)
	}()
	var mu sync.Mutex
	var asked []string
	opts := &sdk.ClientOptions{}
	if manual {
		opts.MultiRoundTrip = &sdk.MultiRoundTripOptions{Disabled: true}
	}
	if answer != nil {
		opts.ElicitationHandler = func(_ context.Context, req *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			mu.Lock()
			asked = append(asked, req.Params.Message)
			mu.Unlock()
			return answer(req)
		}
	}
	sess, err := sdk.NewClient(&sdk.Implementation{Name: "approval-test", Version: "1"}, opts).
		Connect(ctx, &sdk.IOTransport{Reader: sr, Writer: cw}, &sdk.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sess.Close()
		cancel()
		cw.Close()
		sw.Close()
		<-done
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		_ = svc.Close(cctx)
	})
	return sess, runner, &asked, questions
}

func text(res *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

type scanOut struct {
	ScanID   string `json:"scan_id"`
	Status   string `json:"status"`
	Approval struct {
		Outcome, Rule, By, Via, Reason string
		Hash                           string `json:"args_sha256"`
	} `json:"approval"`
}

func structured(t *testing.T, res *sdk.CallToolResult) scanOut {
	t.Helper()
	b, _ := json.Marshal(res.StructuredContent)
	var out scanOut
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
	return out
}

func call(t *testing.T, sess *sdk.ClientSession, args map[string]any) *sdk.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := sess.CallTool(ctx, &sdk.CallToolParams{Name: "nmap_scan", Arguments: args})
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	return res
}

var loudScan = map[string]any{"targets": "127.0.0.1", "ports": "22,80"}

// The person approves, denies or does not answer, through elicitation
// (2025-11-25) and through input_required (2026-07-28).
func TestApprovalRoundTrips(t *testing.T) {
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		via := approval.ViaElicitation
		if version == "2026-07-28" {
			via = approval.ViaInputRequired
		}
		t.Run(version+"/approve", func(t *testing.T) {
			sess, runner, asked := approvalServer(t, version, func(*sdk.ElicitRequest) (*sdk.ElicitResult, error) {
				return &sdk.ElicitResult{Action: "accept", Content: map[string]any{"decision": "approve", "reason": "lab window"}}, nil
			}, time.Minute)
			res := call(t, sess, loudScan)
			out := structured(t, res)
			if res.IsError || out.Status != "done" || out.Approval.Outcome != "approved" || out.Approval.Via != via ||
				!strings.Contains(out.Approval.By, "the user of client local (approval-test 1)") || out.Approval.Reason != "lab window" || runner.count() != 1 {
				t.Fatalf("approved scan: %s\n%+v, %d runs", text(res), out, runner.count())
			}
			if len(*asked) != 1 || !strings.Contains((*asked)[0], `Rule "two-ports"`) || !strings.Contains((*asked)[0], "Ports: 22,80 (2 per host)") {
				t.Fatalf("questions asked: %q", *asked)
			}
			// One port: no rule asks, no question.
			res = call(t, sess, map[string]any{"targets": "127.0.0.1", "ports": "22"})
			if res.IsError || len(*asked) != 1 || structured(t, res).Approval.Outcome != "" {
				t.Fatalf("scan no rule asks for: %s, %d questions", text(res), len(*asked))
			}
		})
		t.Run(version+"/deny", func(t *testing.T) {
			sess, runner, _ := approvalServer(t, version, func(*sdk.ElicitRequest) (*sdk.ElicitResult, error) {
				return &sdk.ElicitResult{Action: "decline"}, nil
			}, time.Minute)
			res := call(t, sess, loudScan)
			if !res.IsError || !strings.Contains(text(res), "was not approved; nothing was run") || runner.count() != 0 {
				t.Fatalf("denied scan: %s, %d runs", text(res), runner.count())
			}
			id := strings.Fields(strings.TrimPrefix(text(res), "Scan "))[0]
			got, err := sess.CallTool(context.Background(), &sdk.CallToolParams{Name: "get_scan", Arguments: map[string]any{"id": id}})
			if err != nil {
				t.Fatal(err)
			}
			if out := structured(t, got); out.Status != "denied" || out.Approval.Outcome != "denied" || out.Approval.Reason != "declined" {
				t.Fatalf("denied record: %+v", out)
			}
		})
	}
	// No answer within approval.timeout is a denial (elicitation/create
	// waits at most that long).
	t.Run("2025-11-25/no-answer", func(t *testing.T) {
		sess, runner, _ := approvalServer(t, "2025-11-25", func(req *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			time.Sleep(3 * time.Second)
			return &sdk.ElicitResult{Action: "accept", Content: map[string]any{"decision": "approve"}}, nil
		}, 300*time.Millisecond)
		start := time.Now()
		res := call(t, sess, loudScan)
		if !res.IsError || !strings.Contains(text(res), "ot answered by") || runner.count() != 0 || time.Since(start) > 2*time.Second {
			t.Fatalf("unanswered: %s after %s, %d runs", text(res), time.Since(start), runner.count())
		}
	})
	// A client that cannot ask its user, on a server without a web view:
	// refused, saying why.
	t.Run("no-elicitation", func(t *testing.T) {
		sess, runner, _ := approvalServer(t, "2025-11-25", nil, time.Minute)
		res := call(t, sess, loudScan)
		if !res.IsError || !strings.Contains(text(res), "needs a person's approval") || runner.count() != 0 {
			t.Fatalf("no elicitation: %s", text(res))
		}
	})
}

// input_required (2026-07-28) driven by hand: an answer is bound to the
// arguments (a retry with one argument changed is asked again), and the
// answer of a scan that ran cannot be replayed for another.
func TestApprovalBindingOverInputRequired(t *testing.T) {
	sess, runner, _ := approvalServerWith(t, "2026-07-28", func(*sdk.ElicitRequest) (*sdk.ElicitResult, error) {
		t.Error("the manual client was asked through its handler")
		return nil, nil
	}, time.Minute, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	approve := sdk.InputResponseMap{"approval": &sdk.ElicitResult{Action: "accept", Content: map[string]any{"decision": "approve"}}}
	first, err := sess.CallTool(ctx, &sdk.CallToolParams{Name: "nmap_scan", Arguments: loudScan})
	if err != nil {
		t.Fatal(err)
	}
	if !first.NeedsInput() || first.RequestState == "" || first.InputRequests["approval"] == nil {
		t.Fatalf("first call: want input_required with an approval question, got %+v", first)
	}
	// Retry with one argument changed: asked again, nothing run.
	changed := map[string]any{"targets": "127.0.0.1", "ports": "22,81"}
	again, err := sess.CallTool(ctx, &sdk.CallToolParams{Name: "nmap_scan", Arguments: changed, InputResponses: approve, RequestState: first.RequestState})
	if err != nil {
		t.Fatal(err)
	}
	if !again.NeedsInput() || again.RequestState == first.RequestState || runner.count() != 0 {
		t.Fatalf("changed arguments: want a new question, got %+v (%d runs)", again, runner.count())
	}
	// The answer to the new question, with its arguments: runs once.
	done, err := sess.CallTool(ctx, &sdk.CallToolParams{Name: "nmap_scan", Arguments: changed, InputResponses: approve, RequestState: again.RequestState})
	if err != nil {
		t.Fatal(err)
	}
	if done.NeedsInput() || done.IsError || runner.count() != 1 || structured(t, done).Approval.Outcome != "approved" {
		t.Fatalf("approved retry: %s (%d runs)", text(done), runner.count())
	}
	// Replayed: the used answer admits nothing; a new question comes.
	replay, err := sess.CallTool(ctx, &sdk.CallToolParams{Name: "nmap_scan", Arguments: changed, InputResponses: approve, RequestState: again.RequestState})
	if err != nil {
		t.Fatal(err)
	}
	if !replay.NeedsInput() || runner.count() != 1 {
		t.Fatalf("replayed answer: %+v (%d runs)", replay, runner.count())
	}
	// A forged state (no question of ours) is not an approval either.
	forged, err := sess.CallTool(ctx, &sdk.CallToolParams{Name: "nmap_scan", Arguments: loudScan, InputResponses: approve, RequestState: "0123456789abcdef0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	if !forged.NeedsInput() || runner.count() != 1 {
		t.Fatalf("forged state: %+v (%d runs)", forged, runner.count())
	}
}

// A client that cannot ask its user, on a server with a web view: the
// scan waits as pending-approval, shown by get_scan and list_scans, and
// runs once an approver says yes there (here: the question store, as the
// web view does).
func TestPendingApprovalOverMCP(t *testing.T) {
	sess, runner, _, questions := approvalServerFull(t, "2025-11-25", nil, time.Minute, false, "/approvals")
	args := map[string]any{"targets": "127.0.0.1", "ports": "22,80", "wait": false}
	res := call(t, sess, args)
	out := structured(t, res)
	if res.IsError || out.Status != "pending-approval" || !strings.Contains(text(res), "waits for a person's approval (/approvals)") || runner.count() != 0 {
		t.Fatalf("pending scan: %s %+v", text(res), out)
	}
	get := func(name string, a map[string]any) *sdk.CallToolResult {
		r, err := sess.CallTool(context.Background(), &sdk.CallToolParams{Name: name, Arguments: a})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if o := structured(t, get("get_scan", map[string]any{"id": out.ScanID})); o.Status != "pending-approval" {
		t.Fatalf("get_scan: %+v", o)
	}
	if l := text(get("list_scans", map[string]any{"status": "pending-approval"})); !strings.Contains(l, out.ScanID+" ") || !strings.Contains(l, "pending-approval") {
		t.Fatalf("list_scans: %s", l)
	}
	qs := questions.List()
	if len(qs) != 1 || qs[0].ScanID != out.ScanID {
		t.Fatalf("questions: %+v", qs)
	}
	if _, err := questions.Decide(qs[0].ID, qs[0].Decision.Hash, approval.Answer{Approve: true, By: "bob", ByClient: "bob", Via: approval.ViaWeb}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		o := structured(t, get("get_scan", map[string]any{"id": out.ScanID}))
		if o.Status == "done" {
			if o.Approval.By != "bob" || o.Approval.Via != approval.ViaWeb || runner.count() != 1 {
				t.Fatalf("approved on the web: %+v, %d runs", o, runner.count())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the approved scan did not finish: %+v", o)
		}
	}
}
