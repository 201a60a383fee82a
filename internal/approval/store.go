package approval

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Outcome is how a question ended.
type Outcome string

// The outcomes of a question.
const (
	Approved Outcome = "approved"
	Denied   Outcome = "denied"
	TimedOut Outcome = "timed-out" // no answer in time: a denial
)

// Ways an answer reaches the server.
const (
	ViaElicitation   = "elicitation"    // elicitation/create (protocol up to 2025-11-25)
	ViaInputRequired = "input_required" // a multi round-trip request (2026-07-28)
	ViaWeb           = "web"            // an approver on the web view
)

// Grant is how one question ended: the approval (or denial) recorded with
// the scan and in the audit trail.
type Grant struct {
	// ID is the question's id.
	ID      string  `json:"id"`
	Outcome Outcome `json:"outcome"`
	// Rule is the rule that asked.
	Rule string `json:"rule"`
	// Hash is the SHA-256 of the arguments the answer is bound to.
	Hash string `json:"args_sha256"`
	// Client is the client that asked for the scan.
	Client string `json:"client"`
	// By says who answered: the client's user (elicitation,
	// input_required) or the approver's token name (web); empty for a
	// timeout.
	By string `json:"by,omitempty"`
	// Via is how the answer came (ViaElicitation, ViaInputRequired,
	// ViaWeb); empty for a timeout.
	Via    string `json:"via,omitempty"`
	Reason string `json:"reason,omitempty"`
	// AskedAt is when the question was put, At when it ended.
	AskedAt time.Time `json:"asked_at"`
	At      time.Time `json:"at"`
}

// Approved reports whether the grant lets the scan run.
func (g Grant) Approved() bool { return g.Outcome == Approved }

// String is the grant in one line, for logs and text results.
func (g Grant) String() string {
	switch g.Outcome {
	case TimedOut:
		return fmt.Sprintf("not answered by %s (rule %s): a denial", g.At.UTC().Format(time.RFC3339), g.Rule)
	default:
		s := fmt.Sprintf("%s by %s (%s) at %s under rule %s, arguments SHA-256 %s", g.Outcome, g.By, g.Via,
			g.At.UTC().Format(time.RFC3339), g.Rule, g.Hash)
		if g.Reason != "" {
			s += ", reason: " + g.Reason
		}
		return s
	}
}

// Pending is a question waiting for its answer.
type Pending struct {
	ID       string    `json:"id"`
	Decision Decision  `json:"decision"`
	ScanID   string    `json:"scan_id,omitempty"`
	AskedAt  time.Time `json:"asked_at"`
	Expires  time.Time `json:"expires"`
}

// Answer is a person's answer to a question.
type Answer struct {
	Approve bool
	// By names who answered (a token name, or the client's user).
	By string
	// ByClient is the client the answer came through, tested against
	// second_person; for elicitation it is the requesting client.
	ByClient string
	// Via is how the answer came (ViaElicitation, ViaInputRequired,
	// ViaWeb).
	Via    string
	Reason string
}

// Errors of the store.
var (
	// ErrUnknown: no such question (never asked, taken, withdrawn, or
	// asked by another client).
	ErrUnknown = errors.New("approval: no such question waiting (never asked, already used, or withdrawn)")
	// ErrAnswered: the question has its answer already.
	ErrAnswered = errors.New("approval: the question was answered already")
	// ErrUndecided: Take of a question still waiting.
	ErrUndecided = errors.New("approval: the question has no answer yet")
	// ErrSelfApproval: second_person forbids the requesting client to
	// approve.
	ErrSelfApproval = errors.New("approval: the rule needs a second person; the client that asked for the scan cannot approve it")
)

// MismatchError is an answer or a use for other arguments than the
// question's: an approval cannot be replayed for another scan.
type MismatchError struct {
	ID, Want, Got string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("approval: question %s was about arguments with SHA-256 %s, not %s: a changed argument needs a new approval", e.ID, e.Want, e.Got)
}

// LimitError is a question refused because too many wait.
type LimitError struct {
	Client string // set when the client's own bound was hit
	Limit  int
}

func (e *LimitError) Error() string {
	if e.Client != "" {
		return fmt.Sprintf("approval: client %q already has %d scans waiting for approval (approval.max_pending_per_client); wait for an answer or cancel one", e.Client, e.Limit)
	}
	return fmt.Sprintf("approval: %d scans already wait for approval (approval.max_pending); try again later", e.Limit)
}

// Store holds the questions waiting for an answer, bounded in total and
// per client. A question ends once: answered (Decide) or timed out; its
// grant is then handed out once (Take). Safe for concurrent use.
type Store struct {
	limits Limits
	now    func() time.Time

	mu        sync.Mutex
	entries   map[string]*entry
	perClient map[string]int
}

type entry struct {
	p     Pending
	grant *Grant // set when decided or timed out
	done  chan struct{}
}

// NewStore returns an empty store; now may be nil (time.Now).
func NewStore(limits Limits, now func() time.Time) *Store {
	if limits.Timeout <= 0 {
		limits.Timeout = DefaultTimeout
	}
	if limits.MaxPending <= 0 {
		limits.MaxPending = DefaultMaxPending
	}
	if limits.MaxPerClient <= 0 {
		limits.MaxPerClient = min(DefaultMaxPendingPerClient, limits.MaxPending)
	}
	if now == nil {
		now = time.Now
	}
	return &Store{limits: limits, now: now, entries: map[string]*entry{}, perClient: map[string]int{}}
}

// Timeout is how long a question waits.
func (s *Store) Timeout() time.Duration { return s.limits.Timeout }

// Ask puts a question for d (which must need approval) and returns it.
// scanID, when set, is the scan waiting as pending-approval. Too many
// questions waiting is a *LimitError.
func (s *Store) Ask(d *Decision, scanID string) (Pending, error) {
	if d == nil || !d.Needed {
		return Pending{}, fmt.Errorf("approval: ask: the scan needs no approval")
	}
	id, err := newID()
	if err != nil {
		return Pending{}, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	if s.perClient[d.Client] >= s.limits.MaxPerClient {
		return Pending{}, &LimitError{Client: d.Client, Limit: s.limits.MaxPerClient}
	}
	if len(s.entries) >= s.limits.MaxPending {
		return Pending{}, &LimitError{Limit: s.limits.MaxPending}
	}
	p := Pending{ID: id, Decision: *d, ScanID: scanID, AskedAt: now, Expires: now.Add(s.limits.Timeout)}
	s.entries[id] = &entry{p: p, done: make(chan struct{})}
	s.perClient[d.Client]++
	return p, nil
}

// Get returns a question, waiting or decided and not yet taken.
func (s *Store) Get(id string) (Pending, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	e, ok := s.entries[id]
	if !ok {
		return Pending{}, false
	}
	return e.p, true
}

// List returns the questions still waiting for an answer, oldest first.
func (s *Store) List() []Pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	var out []Pending
	for _, e := range s.entries {
		if e.grant == nil {
			out = append(out, e.p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AskedAt.Before(out[j].AskedAt) })
	return out
}

// Decide answers question id for the arguments with hash. An answer for
// other arguments is a *MismatchError (the question stays); an approval
// by the requesting client under a second_person rule is ErrSelfApproval
// (a denial by it is accepted: anyone may say no); a question past its
// time has timed out (ErrUnknown if taken since).
func (s *Store) Decide(id, hash string, a Answer) (Grant, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	e, ok := s.entries[id]
	if !ok {
		return Grant{}, ErrUnknown
	}
	if e.grant != nil {
		if e.grant.Outcome == TimedOut {
			return *e.grant, fmt.Errorf("approval: question %s was not answered in %s: %w", id, s.limits.Timeout, ErrAnswered)
		}
		return *e.grant, ErrAnswered
	}
	if hash != e.p.Decision.Hash {
		return Grant{}, &MismatchError{ID: id, Want: e.p.Decision.Hash, Got: hash}
	}
	if a.Approve && e.p.Decision.SecondPerson && a.ByClient == e.p.Decision.Client {
		return Grant{}, ErrSelfApproval
	}
	out := Denied
	if a.Approve {
		out = Approved
	}
	g := Grant{ID: id, Outcome: out, Rule: e.p.Decision.Rule, Hash: e.p.Decision.Hash, Client: e.p.Decision.Client,
		By: a.By, Via: a.Via, Reason: a.Reason, AskedAt: e.p.AskedAt, At: now}
	e.grant = &g
	close(e.done)
	return g, nil
}

// Wait blocks until question id is answered or times out, and returns how
// it ended (without taking it), or ctx's error.
func (s *Store) Wait(ctx context.Context, id string) (Grant, error) {
	s.mu.Lock()
	e, ok := s.entries[id]
	s.mu.Unlock()
	if !ok {
		return Grant{}, ErrUnknown
	}
	for {
		s.mu.Lock()
		s.expireLocked(s.now())
		g := e.grant
		deadline := e.p.Expires
		s.mu.Unlock()
		if g != nil {
			return *g, nil
		}
		t := time.NewTimer(max(deadline.Sub(s.now()), time.Millisecond))
		select {
		case <-e.done:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Grant{}, fmt.Errorf("approval: wait for question %s: %w", id, ctx.Err())
		}
		t.Stop()
	}
}

// Take hands out how question id ended, once, and forgets it: the grant
// of an approval admits one scan only. The scan using it must have the
// question's arguments (hash) and client, else *MismatchError or
// ErrUnknown (and the question stays). A question still waiting is
// ErrUndecided.
func (s *Store) Take(id, hash, client string) (Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	e, ok := s.entries[id]
	if !ok || e.p.Decision.Client != client {
		return Grant{}, ErrUnknown
	}
	if hash != e.p.Decision.Hash {
		return Grant{}, &MismatchError{ID: id, Want: e.p.Decision.Hash, Got: hash}
	}
	if e.grant == nil {
		return Grant{}, ErrUndecided
	}
	s.removeLocked(id)
	return *e.grant, nil
}

// Withdraw forgets question id (its scan was cancelled, or its caller
// went away) and returns it; waiters see it end as a denial by "withdrawn".
func (s *Store) Withdraw(id string) (Pending, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok {
		return Pending{}, false
	}
	if e.grant == nil {
		e.grant = &Grant{ID: id, Outcome: Denied, Rule: e.p.Decision.Rule, Hash: e.p.Decision.Hash,
			Client: e.p.Decision.Client, By: "withdrawn", AskedAt: e.p.AskedAt, At: now}
		close(e.done)
	}
	s.removeLocked(id)
	return e.p, true
}

// Expire ends question id now as TimedOut, if it still waits (the
// asker's own wait for an answer ran out first).
func (s *Store) Expire(id string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok || e.grant != nil {
		return
	}
	e.grant = &Grant{ID: id, Outcome: TimedOut, Rule: e.p.Decision.Rule, Hash: e.p.Decision.Hash,
		Client: e.p.Decision.Client, AskedAt: e.p.AskedAt, At: now}
	close(e.done)
}

// Len is how many questions the store holds (waiting or not yet taken).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// expireLocked ends questions past their time as TimedOut, and forgets
// ended questions nobody took within a second timeout, so the bounds
// hold.
func (s *Store) expireLocked(now time.Time) {
	for id, e := range s.entries {
		switch {
		case e.grant == nil && !now.Before(e.p.Expires):
			e.grant = &Grant{ID: id, Outcome: TimedOut, Rule: e.p.Decision.Rule, Hash: e.p.Decision.Hash,
				Client: e.p.Decision.Client, AskedAt: e.p.AskedAt, At: e.p.Expires}
			close(e.done)
		case e.grant != nil && now.Sub(e.grant.At) > s.limits.Timeout:
			s.removeLocked(id)
		}
	}
}

func (s *Store) removeLocked(id string) {
	e, ok := s.entries[id]
	if !ok {
		return
	}
	delete(s.entries, id)
	c := e.p.Decision.Client
	if s.perClient[c]--; s.perClient[c] <= 0 {
		delete(s.perClient, c)
	}
}

func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("approval: make question id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
