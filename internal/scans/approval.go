package scans

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// A scan an approval rule asks for (Deps.ApprovalRules) is admitted only
// with a person's yes for exactly its arguments, taken once from
// Deps.Approvals:
//
//   - Options.ApprovalID names a question the caller put beforehand (the
//     MCP layer asks the client's user through elicitation or
//     input_required) and had answered; or
//   - Options.AwaitApproval lets the scan wait as pending-approval (no
//     queue place, no share, no budget; its record stored as pending, so
//     that a server that dies meanwhile leaves it interrupted), until an
//     approver answers on the web view or the question times out;
//   - otherwise it is refused with *ApprovalNeededError.
//
// A denial or a timeout is recorded (status denied, with the answer) and
// audited (a denied line), and spends nothing.

// ApprovalNeededError is a scan an approval rule asks for, submitted by a
// caller that can neither ask a person nor wait for one.
type ApprovalNeededError struct {
	Decision *approval.Decision
	// Unattended is set for a watch's scan, which has no one to ask.
	Unattended bool
}

func (e *ApprovalNeededError) Error() string {
	if e.Unattended {
		return fmt.Sprintf("the scan needs a person's approval (approval rule %q: %s), and a watch's runs are unattended: "+
			"a watch of such a scan is refused (change the scan so that no rule asks, or run it with nmap_scan, which asks)",
			e.Decision.Rule, e.Decision.Conditions)
	}
	return fmt.Sprintf("the scan needs a person's approval (approval rule %q: %s) and this caller cannot ask for it; "+
		"nothing was run. Ask from an MCP client that supports elicitation, or from one whose scans can wait for an approver on the web view",
		e.Decision.Rule, e.Decision.Conditions)
}

// DeniedError is a scan a person denied, or no one approved in time. The
// scan's record (status denied) says who and why.
type DeniedError struct {
	ScanID string
	Grant  approval.Grant
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("scan %s was not approved, nothing was run: %s", e.ScanID, e.Grant.String())
}

// Approvals is the store of questions waiting for an answer (nil when the
// deployment has no approval rules).
func (s *Service) Approvals() *approval.Store {
	if s.d.ApprovalRules.Empty() {
		return nil
	}
	return s.d.Approvals
}

// Decide says, without recording, spending or running anything, whether
// req would need a person's approval, and which rule asks: the request is
// validated and checked against the policy first (a refusal is returned
// as Submit would).
func (s *Service) Decide(ctx context.Context, req scanargs.Request) (*approval.Decision, error) {
	validated, err := req.Plan(s.Rules())
	if err != nil {
		return nil, err
	}
	checked := validated
	if s.d.Policy != nil {
		if checked, err = s.d.Policy.Check(ctx, validated); err != nil {
			return nil, err
		}
	}
	return s.decide(ctx, s.client(ctx), validated, checked)
}

// decide asks the rules about one scan.
func (s *Service) decide(ctx context.Context, client string, validated, checked *scanargs.Plan) (*approval.Decision, error) {
	scan := approval.Scan{Client: client, Validated: validated, Checked: checked}
	if !s.d.ApprovalRules.Empty() && len(validated.Scripts) > 0 {
		// Script categories come from the image's index, read once. Fail
		// closed: a rule by category cannot be decided without it.
		idx, err := s.ScriptIndex(ctx)
		if err != nil {
			return nil, fmt.Errorf("decide whether the scan needs approval: %w", err)
		}
		scan.Categories = func(name string) []string { return idx.Categories[name] }
	}
	return s.d.ApprovalRules.Decide(scan)
}

// useAnswer takes the answer to question id for d: an approval to admit
// the scan with, or a denial.
func (s *Service) useAnswer(id string, d *approval.Decision) (approval.Grant, error) {
	if s.d.Approvals == nil {
		return approval.Grant{}, fmt.Errorf("approval %s: this server keeps no approvals", id)
	}
	g, err := s.d.Approvals.Take(id, d.Hash, d.Client)
	if err != nil {
		return approval.Grant{}, fmt.Errorf("the approval given does not admit this scan (nothing was run): %w", err)
	}
	return g, nil
}

// pendingRecord is the live record of a scan waiting for approval.
func pendingRecord(id, client string, req scanargs.Request, plan *scanargs.Plan, q approval.Pending) store.Record {
	reqJSON, _ := json.Marshal(req)
	return store.Record{ID: id, Status: store.PendingApproval, CreatedAt: q.AskedAt.UTC(), Targets: plan.TargetList(),
		ScanType: string(plan.Type), Request: reqJSON, Client: client,
		Notes: []string{fmt.Sprintf("waiting for approval (rule %s) until %s; question %s", q.Decision.Rule, q.Expires.UTC().Format(time.RFC3339), q.ID)}}
}

// recordDenial writes the final record of a scan that was not approved
// and audits it; nothing ran and nothing was spent.
func (s *Service) recordDenial(ctx context.Context, rec *store.Record, g approval.Grant) {
	s.recordUnrun(ctx, rec, store.Denied, "not approved: "+g.String(), &g)
}

// recordUnrun writes the final record (status) of a scan an approval rule
// held that never ran — denied, not answered, cancelled while waiting, or
// refused after its approval — and audits it (a denied line with that
// outcome); nothing ran and nothing was spent. Failures to write are
// logged: the caller's answer stands.
func (s *Service) recordUnrun(ctx context.Context, rec *store.Record, status, why string, g *approval.Grant) {
	ctx = context.WithoutCancel(ctx)
	rec.Status, rec.Approval, rec.Error = store.Queued, g, why
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = time.Now().UTC()
	}
	if a, ok := s.d.Audit.(interface {
		Denied(context.Context, *store.Record) error
	}); ok && a != nil {
		final := *rec
		final.Status = status
		if err := a.Denied(ctx, &final); err != nil {
			s.d.Log.Error("audit: a scan that did not run could not be written", "scan", rec.ID, "status", status, "err", err)
		}
	}
	err := s.d.Store.Begin(ctx, rec)
	rec.Status, rec.EndedAt = status, time.Now().UTC()
	if err == nil {
		err = s.d.Store.Finish(ctx, rec)
	} else if ferr := s.d.Store.Finish(ctx, rec); ferr == nil {
		// Not begun anew, but the record stored while it waited for
		// approval ends in place (Finish updates by id): it must not
		// read pending-approval while no one waits.
		s.d.Log.Warn("the record of a scan that did not run was ended in place", "scan", rec.ID, "status", status, "err", err)
		err = nil
	}
	if err != nil {
		s.d.Log.Error("the record of a scan that did not run could not be written", "scan", rec.ID, "status", status, "err", err)
	}
}

// awaitApproval waits for the answer to q for the pending scan sc, then
// admits and runs it (approved) or records the denial. It owns sc until
// it hands it to the run, or ends it.
func (s *Service) awaitApproval(runCtx context.Context, sc *Scan, q approval.Pending, enter func(approval.Grant) error, events func(Event)) {
	g, err := s.d.Approvals.Wait(runCtx, q.ID)
	if err != nil {
		// Cancelled (cancel_scan, the caller went away, or shutdown): the
		// question is withdrawn; the scan ends as cancelled, recorded.
		s.d.Approvals.Withdraw(q.ID)
		cause := context.Cause(runCtx)
		if cause == nil {
			cause = err
		}
		err = fmt.Errorf("cancelled while waiting for approval: %w", cause)
		rec := sc.ended(store.Cancelled, err, nil)
		s.recordUnrun(runCtx, &rec, store.Cancelled, err.Error(), nil)
		s.endPending(sc, rec, err, events)
		return
	}
	if taken, err := s.d.Approvals.Take(q.ID, q.Decision.Hash, q.Decision.Client); err == nil {
		g = taken
	}
	if g.Approved() {
		if events != nil {
			events(Event{Kind: Log, Level: "info", Message: "approved: " + g.String()})
		}
		if err := enter(g); err != nil {
			// Approved, then refused (queue full, budget, storage): nothing
			// ran; the caller learns why from the live scan's end.
			err = fmt.Errorf("approved, but not admitted: %w", err)
			rec := sc.ended(store.Failed, err, &g)
			s.recordUnrun(runCtx, &rec, store.Failed, err.Error(), &g)
			s.endPending(sc, rec, err, events)
		}
		return
	}
	sc.mu.Lock()
	rec := sc.rec
	sc.mu.Unlock()
	s.recordDenial(runCtx, &rec, g)
	s.endPending(sc, rec, &DeniedError{ScanID: sc.ID, Grant: g}, events)
}

// ended is the scan's live record, ended with status and cause.
func (sc *Scan) ended(status string, cause error, g *approval.Grant) store.Record {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	rec := sc.rec
	rec.Status, rec.Error, rec.EndedAt, rec.Approval = status, cause.Error(), time.Now().UTC(), g
	return rec
}

// endPending ends a scan that never entered the queue with its final
// record rec (the caller stored it).
func (s *Service) endPending(sc *Scan, rec store.Record, cause error, events func(Event)) {
	sc.mu.Lock()
	sc.final, sc.err = &rec, cause
	sc.mu.Unlock()
	sc.cancel(nil)
	s.mu.Lock()
	delete(s.live, sc.ID)
	s.mu.Unlock()
	if events != nil {
		events(Event{Kind: Finished, Percent: 100, Message: rec.Status, Record: &rec})
	}
	close(sc.done)
}
