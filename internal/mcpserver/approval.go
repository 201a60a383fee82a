package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
)

// A scan an approval rule asks for (internal/approval) is put to a
// person before anything is admitted:
//
//   - a client on protocol 2026-07-28 that declares elicitation gets an
//     input_required result carrying a form elicitation (approve / deny)
//     and, as requestState, the question's id; its retry with the answer
//     is checked against the same arguments (hash) and admits the scan;
//   - a client on an earlier protocol that declared elicitation is asked
//     with elicitation/create (form mode), waiting at most the configured
//     time (no answer is a denial);
//   - any other client, and every scan whose rule needs a second person,
//     waits as pending-approval for an approver on the web view (when the
//     server has one; else it is refused, saying why).
//
// The answer is bound to the arguments' hash and used once by the scans
// service (scans.Options.ApprovalID); a denial is recorded there.

// approvalInput is the key of the elicitation in an input_required result.
const approvalInput = "approval"

// approvalSchema is the form the person answers.
var approvalSchema = map[string]any{
	"type": "object",
	"properties": map[string]any{
		"decision": map[string]any{"type": "string", "title": "Decision", "enum": []string{"approve", "deny"},
			"description": "approve runs exactly this scan once; deny runs nothing"},
		"reason": map[string]any{"type": "string", "title": "Reason", "maxLength": 500,
			"description": "why (kept in the scan's record and the audit trail)"},
	},
	"required": []string{"decision"},
}

// elicitation is the question in MCP's terms.
func elicitation(d *approval.Decision) mcp.ElicitationParams {
	return mcp.ElicitationParams{Mode: mcp.ElicitationModeForm, Message: d.Text, RequestedSchema: approvalSchema}
}

// answerOf reads the person's answer from an elicitation result.
func answerOf(res *mcp.ElicitationResult) (approve bool, reason string) {
	if res == nil {
		return false, "no answer"
	}
	switch res.Action {
	case mcp.ElicitationResponseActionAccept:
		content, _ := res.Content.(map[string]any)
		decision, _ := content["decision"].(string)
		reason, _ = content["reason"].(string)
		if len(reason) > 500 {
			reason = reason[:500]
		}
		return decision == "approve", reason
	case mcp.ElicitationResponseActionDecline:
		return false, "declined"
	default:
		return false, "cancelled"
	}
}

// clientCaps are the capabilities the client declared for this request
// (2026-07-28) or session (earlier versions), and its name and version.
func clientCaps(ctx context.Context) (mcp.ClientCapabilities, mcp.Implementation) {
	if info := server.RequestProtocolInfoFromContext(ctx); info != nil && info.Modern {
		var caps mcp.ClientCapabilities
		var impl mcp.Implementation
		if info.ClientCapabilities != nil {
			caps = *info.ClientCapabilities
		}
		if info.ClientInfo != nil {
			impl = *info.ClientInfo
		}
		return caps, impl
	}
	if s, ok := server.ClientSessionFromContext(ctx).(server.SessionWithClientInfo); ok && s != nil {
		return s.GetClientCapabilities(), s.GetClientInfo()
	}
	return mcp.ClientCapabilities{}, mcp.Implementation{}
}

// approvalStep is what the scan handler does after asking.
type approvalStep struct {
	// result, when set, is returned as is (an input_required result, or a
	// refusal).
	result *mcp.CallToolResult
	// opts are the scan's approval options otherwise.
	id    string
	await bool
}

// approve gets a person's answer for the scan d describes, or says how the
// scan will wait for one.
func (h *handlers) approve(ctx context.Context, req mcp.CallToolRequest, d *approval.Decision) approvalStep {
	questions := h.Scans.Approvals()
	caps, impl := clientCaps(ctx)
	by := "the user of client " + d.Client
	if impl.Name != "" {
		by += fmt.Sprintf(" (%s %s)", impl.Name, impl.Version)
	}
	modern := mcp.IsModernProtocol(server.RequestProtocolVersion(ctx))
	// A retry carrying the answer (2026-07-28).
	if id := req.Params.RequestState; modern && id != "" {
		q, known := questions.Get(id)
		if res := server.ElicitationResponse(req.Params.InputResponses, approvalInput); res != nil && known && q.Decision.Client == d.Client {
			approve, reason := answerOf(res)
			_, err := questions.Decide(id, d.Hash, approval.Answer{Approve: approve, By: by, ByClient: d.Client,
				Via: approval.ViaInputRequired, Reason: reason})
			var mm *approval.MismatchError
			switch {
			case err == nil, errors.Is(err, approval.ErrAnswered):
				// Answered now, or timed out before: the service records it.
				return approvalStep{id: id}
			case errors.As(err, &mm):
				// The arguments changed since the question: ask again.
				questions.Withdraw(id)
			default:
				return approvalStep{result: mcp.NewToolResultError("Scan refused, nothing was run: " + err.Error())}
			}
		}
	}
	if d.SecondPerson || caps.Elicitation == nil {
		if h.ApprovalsURL == "" {
			// Submit refuses it, saying why.
			return approvalStep{}
		}
		return approvalStep{await: true}
	}
	q, err := questions.Ask(d, "")
	if err != nil {
		return approvalStep{result: h.refusal(err)}
	}
	if modern {
		return approvalStep{result: server.NewInputRequestBuilder(q.ID).Elicit(approvalInput, elicitation(d)).ToolResult()}
	}
	srv := server.ServerFromContext(ctx)
	if srv == nil {
		questions.Withdraw(q.ID)
		return approvalStep{}
	}
	askCtx, cancel := context.WithDeadline(ctx, q.Expires)
	defer cancel()
	res, err := srv.RequestElicitation(askCtx, mcp.ElicitationRequest{
		Request: mcp.Request{Method: string(mcp.MethodElicitationCreate)}, Params: elicitation(d)})
	switch {
	case err != nil && askCtx.Err() != nil && ctx.Err() == nil:
		questions.Expire(q.ID) // no answer in time: a denial
	case err != nil:
		reason := "the client could not ask its user: " + err.Error()
		if ctx.Err() != nil {
			reason = "the call ended before an answer"
		}
		_, _ = questions.Decide(q.ID, d.Hash, approval.Answer{By: by, ByClient: d.Client, Via: approval.ViaElicitation, Reason: reason})
	default:
		approve, reason := answerOf(res)
		if _, err := questions.Decide(q.ID, d.Hash, approval.Answer{Approve: approve, By: by, ByClient: d.Client,
			Via: approval.ViaElicitation, Reason: reason}); err != nil && !errors.Is(err, approval.ErrAnswered) {
			questions.Withdraw(q.ID)
			return approvalStep{result: mcp.NewToolResultError("Scan refused, nothing was run: " + err.Error())}
		}
	}
	return approvalStep{id: q.ID}
}

// approvalText is a line for results about the scan's approval.
func approvalText(err error) (string, bool) {
	var (
		need   *scans.ApprovalNeededError
		denied *scans.DeniedError
	)
	switch {
	case errors.As(err, &denied):
		return fmt.Sprintf("Scan %s was not approved; nothing was run. %s\nThe record: get_scan with id %s.",
			denied.ScanID, strings.ToUpper(denied.Grant.String()[:1])+denied.Grant.String()[1:], denied.ScanID), true
	case errors.As(err, &need):
		return "Scan refused, nothing was run: " + err.Error(), true
	}
	return "", false
}

// approvalOut is a scan's approval in structured content (empty strings
// when no rule asked).
type approvalOut struct {
	Outcome string `json:"outcome" desc:"approved, denied or timed-out; empty when no approval rule asked"`
	Rule    string `json:"rule" desc:"the approval rule that asked"`
	By      string `json:"by" desc:"who answered: the client's user (elicitation, input_required) or an approver's token name (web)"`
	Via     string `json:"via" desc:"elicitation, input_required or web"`
	At      string `json:"at" desc:"RFC 3339 time of the answer"`
	Reason  string `json:"reason" desc:"the reason given"`
	Hash    string `json:"args_sha256" desc:"SHA-256 of the canonical JSON of the approved arguments"`
}

func approvalOf(g *approval.Grant) approvalOut {
	if g == nil {
		return approvalOut{}
	}
	return approvalOut{Outcome: string(g.Outcome), Rule: g.Rule, By: g.By, Via: g.Via, At: g.At.UTC().Format("2006-01-02T15:04:05Z07:00"),
		Reason: g.Reason, Hash: g.Hash}
}
