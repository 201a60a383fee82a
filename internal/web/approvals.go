package web

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
)

// The approvals page lists the scans waiting as pending-approval (an
// approval rule asked and the client could not ask its user, or the rule
// needs a second person). A person whose token has the approver role (or
// is an admin) approves or denies each, with a reason; the answer is bound
// to the arguments' hash shown on the page, so a question replaced since
// is not answered by a stale form. A rule with second_person refuses the
// requesting client's own yes. Other people see their own waiting scans,
// without the buttons. The form posts carry the session's form token and
// must come from the page's own origin, as sign-out does.

// approvalRow is one waiting scan on the page.
type approvalRow struct {
	Q         approval.Pending
	CanAnswer bool
	Why       string
}

type approvalsData struct {
	Rows     []approvalRow
	Approver bool
	Done     string
	Error    string
}

// approver reports whether the session's person may answer questions.
func (h *Handler) approver(sess *session) bool {
	return sess.admin || sess.approver || (h.cfg.Approver != nil && h.cfg.Approver(sess.client))
}

func (h *Handler) approvalsData(sess *session) approvalsData {
	d := approvalsData{Approver: h.approver(sess), Rows: []approvalRow{}}
	for _, q := range h.cfg.Approvals.List() {
		if q.ScanID == "" {
			continue // asked of the client's own user (elicitation)
		}
		if !d.Approver && q.Decision.Client != sess.client {
			continue
		}
		row := approvalRow{Q: q, CanAnswer: d.Approver}
		switch {
		case !d.Approver:
			row.Why = "Waiting for an approver."
		case q.Decision.SecondPerson && q.Decision.Client == sess.client:
			row.CanAnswer, row.Why = false, "The rule needs a second person: you asked for this scan, so someone else must answer."
		}
		d.Rows = append(d.Rows, row)
	}
	return d
}

func (h *Handler) approvalsPage(w http.ResponseWriter, r *http.Request, sess *session) {
	if h.cfg.Approvals == nil {
		http.NotFound(w, r)
		return
	}
	d := h.approvalsData(sess)
	switch r.URL.Query().Get("done") {
	case "approved":
		d.Done = "Approved: the scan is admitted and runs when its turn comes."
	case "denied":
		d.Done = "Denied: nothing runs; the scan's record says so."
	}
	h.render(w, r, "approvals", sess, d)
}

// answer approves or denies one question.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, sess *session) {
	if h.cfg.Approvals == nil {
		http.NotFound(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8192)
	if !h.sameOrigin(r) || r.ParseForm() != nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(sess.csrf)) != 1 {
		http.Error(w, "Forbidden: an answer must come from this server's own approvals page", http.StatusForbidden)
		return
	}
	if !h.approver(sess) {
		http.Error(w, "Forbidden: only a token with the approver role (or an admin) answers approvals", http.StatusForbidden)
		return
	}
	decision := r.PostForm.Get("decision")
	if decision != "approve" && decision != "deny" {
		http.Error(w, `Bad Request: decision must be "approve" or "deny"`, http.StatusBadRequest)
		return
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if len(reason) > 500 {
		reason = reason[:500]
	}
	_, err := h.cfg.Approvals.Decide(r.PathValue("id"), r.PostForm.Get("hash"), approval.Answer{
		Approve: decision == "approve", By: sess.client, ByClient: sess.client, Via: approval.ViaWeb, Reason: reason})
	if err != nil {
		d := h.approvalsData(sess)
		var mm *approval.MismatchError
		switch {
		case errors.Is(err, approval.ErrSelfApproval):
			d.Error = "Not approved: the rule needs a second person, and you asked for this scan."
		case errors.As(err, &mm):
			d.Error = "Not answered: the scan's arguments differ from the ones on your page; reload and read it again."
		default:
			d.Error = "Not answered: the scan no longer waits (answered by someone else, cancelled, or timed out)."
		}
		h.cfg.Log.Info("web: approval answer refused", "client", sess.client, "err", err)
		w.WriteHeader(http.StatusConflict)
		h.render(w, r, "approvals", sess, d)
		return
	}
	h.cfg.Log.Info("web: approval answered", "client", sess.client, "decision", decision, "question", r.PathValue("id"))
	done := "approved"
	if decision == "deny" {
		done = "denied"
	}
	http.Redirect(w, r, "/approvals?done="+url.QueryEscape(done), http.StatusSeeOther)
}
