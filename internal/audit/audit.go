// Package audit keeps the tamper-evident audit trail: an append-only JSON
// Lines file, fsynced after each record. Each line carries the SHA-256 of
// the exact bytes of the line before it, so an edited, added, removed or
// re-encoded line breaks the chain (extra or duplicate JSON keys included:
// the bytes are hashed, not a re-encoding). The chain's head — the last
// record's sequence number and the SHA-256 of its line — is kept outside
// the trail in a checkpoint file (TRAIL.head), rewritten and fsynced with
// each append, so that records cut off the end, an emptied file or a
// replaced trail are detected at start-up and by Verify.
//
// A record is written when a scan is admitted and another when it ends; at
// the next start, scans of a dead server that never ended get an
// "interrupted" record. A torn last line (a crash in the middle of a
// write) is moved aside into TRAIL.torn-UNIXTIME, never deleted; the server
// starts and appends a "torn-line" record saying so. Appends take an
// exclusive file lock, so several nmap-mcp processes may share one trail.
//
// A running Log checks the trail under that lock before every append: the
// file must still end where this process left it (same file, not shorter,
// the same last line) or continue from there by records another writer
// chained on, ending where the head says (after a rotation, the new
// file's first record is "rotated" and names the old file). Anything else
// is tampering: a *HeadError, logged and kept, so that every later append
// — and with it every scan — is refused, as at start-up.
//
// Before each write of lines the head records its intent (offset, length,
// SHA-256 and the head it leads to), durably, so that lines past the head
// are either the intent's (a crash before the head moved: taken in at the
// next start, logged, and named by a "head-repaired" record; or the first
// part of a write cut short: moved aside to TRAIL.cut-UNIXTIME and
// recorded) or someone else's (refused, and named by Verify). A head
// written before intents cannot tell a crash from an append by someone
// else: one record past it is still taken in, but named.
//
// Storage faults (a full disk, a read-only trail or folder, an I/O
// error) are a *FaultError naming the file, the fault and what to do; the
// records already written stay and verify, and appends work again as soon
// as the fault goes, without reopening. Ready checks beforehand (access(2)
// on the folder, trail and head; MinFree bytes free), so that a scan is
// refused before it spends anything. A write the disk took only part of
// is cut back to the last whole line (no torn line is left while the
// server runs). When the lines are in but the head cannot be moved (the
// disk filled between them), the append has happened: the head's intent
// names the lines, Verify notes them, and the next append moves the head
// without calling it a repair.
//
// What the head does not stop: someone who can write both the trail and
// its head can rewrite history consistently. Keep both where the scanner's
// users cannot write, or copy the head elsewhere (it is small).
package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/owner"
)

// Events a record can describe.
const (
	Admitted    = "admitted"
	Ended       = "ended"
	Interrupted = "interrupted"
	// TornLine says a torn last line was found at start-up and moved aside.
	TornLine = "torn-line"
	// Rotated starts a trail that continues an older file (named in
	// Outcome, in the same folder), chained to its last line.
	Rotated = "rotated"
	// HeadRepaired says that records were found past the head at start-up
	// (or by another writer) and how they were taken in or moved aside
	// (Outcome names them).
	HeadRepaired = "head-repaired"
	// DeniedEvent is a scan an approval rule asked for that a person
	// denied or no one approved in time: nothing ran.
	DeniedEvent = "denied"
)

// Record is one line of the trail.
type Record struct {
	// V is the line format: 2 chains the exact bytes of lines; 0 (absent)
	// is the first format, which chained a re-encoding (Hash).
	V            int             `json:"v,omitempty"`
	Seq          uint64          `json:"seq"`
	Time         time.Time       `json:"time"`
	Event        string          `json:"event"`
	ScanID       string          `json:"scan_id"`
	Client       string          `json:"client"`
	Request      json.RawMessage `json:"request,omitempty"`
	Targets      string          `json:"targets,omitempty"` // as scanned: hostnames resolved and pinned
	Argv         []string        `json:"argv,omitempty"`
	ImageID      string          `json:"image_id,omitempty"`
	Limits       json.RawMessage `json:"limits,omitempty"`
	Outcome      string          `json:"outcome,omitempty"`
	Error        string          `json:"error,omitempty"` // why a scan did not end done
	DurationMS   int64           `json:"duration_ms,omitempty"`
	ResultSHA256 string          `json:"result_sha256,omitempty"`
	// Approval says who approved (or denied) a scan an approval rule
	// asked for: on the admission line, and on a denied line.
	Approval  json.RawMessage `json:"approval,omitempty"`
	OwnerPID  int             `json:"owner_pid"`
	OwnerHost string          `json:"owner_host"`
	// Prev is the SHA-256 (hex) of the previous line's bytes (format 2),
	// or the previous record's Hash (format 0); empty for the first line.
	Prev string `json:"prev"`
	// Hash is the format-0 record hash; format 2 lines have none.
	Hash string `json:"hash,omitempty"`
}

// format is the line format written now.
const format = 2

// legacyHash is the format-0 hash: the sha256 of the record's JSON with
// Hash empty.
func (r Record) legacyHash() string {
	r.Hash = ""
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// lineHash is the SHA-256 (hex) of a line's exact bytes, without its newline.
func lineHash(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// link is what the next line's Prev must be after line.
func link(r Record, line []byte) string {
	if r.V < format {
		return r.Hash
	}
	return lineHash(line)
}

// Head is the chain's head, kept outside the trail.
type Head struct {
	Seq uint64 `json:"seq"`
	// Link is what the next record's Prev must be (the last line's hash).
	Link string `json:"link"`
	// Open lists the admitted scans without an end yet, so that start-up
	// finds a dead server's scans without reading the whole trail.
	// OpenKnown is false in heads written before the list was kept.
	Open      []OpenScan `json:"open,omitempty"`
	OpenKnown bool       `json:"open_known,omitempty"`
	// Intents is true in heads written by a writer that writes the head's
	// intent before each write of lines: past such a head, a line that
	// Pending does not name was written by someone else.
	Intents bool `json:"intents,omitempty"`
	// Pending is the write in progress when this head was written; it is
	// cleared when the head moves past it.
	Pending *Intent `json:"pending,omitempty"`
}

// Intent names a write of lines before it is made: where it starts in
// the file, its length and SHA-256, and the head it leads to.
type Intent struct {
	Off    int64  `json:"off"`
	Len    int64  `json:"len"`
	SHA256 string `json:"sha256"`
	Seq    uint64 `json:"seq"`
	Link   string `json:"link"`
}

// OpenScan is an admitted scan without an end record.
type OpenScan struct {
	ScanID    string `json:"scan_id"`
	Client    string `json:"client"`
	OwnerPID  int    `json:"owner_pid"`
	OwnerHost string `json:"owner_host"`
}

// same reports whether two heads name the same chain position.
func (h Head) same(o Head) bool { return h.Seq == o.Seq && h.Link == o.Link }

// apply moves the open list past record r.
func (h *Head) apply(r Record) {
	switch r.Event {
	case Admitted:
		h.Open = append(h.Open, OpenScan{ScanID: r.ScanID, Client: r.Client, OwnerPID: r.OwnerPID, OwnerHost: r.OwnerHost})
	case TornLine, Rotated, HeadRepaired:
	default:
		h.Open = slices.DeleteFunc(h.Open, func(o OpenScan) bool { return o.ScanID == r.ScanID })
	}
}

// HeadPath is the checkpoint file of the trail at path.
func HeadPath(path string) string { return path + ".head" }

// ReadHead reads the head checkpoint of the trail at path; false when
// there is none.
func ReadHead(path string) (Head, bool, error) { return readHead(path) }

func readHead(path string) (Head, bool, error) {
	b, err := os.ReadFile(HeadPath(path))
	if errors.Is(err, os.ErrNotExist) {
		return Head{}, false, nil
	}
	if err != nil {
		return Head{}, false, fmt.Errorf("audit head %s: %w", HeadPath(path), err)
	}
	var h Head
	if err := json.Unmarshal(b, &h); err != nil {
		return Head{}, false, fmt.Errorf("audit head %s is not a head checkpoint: %w", HeadPath(path), err)
	}
	return h, true, nil
}

// writeHead replaces the checkpoint atomically and durably.
func writeHead(path string, h Head) error {
	b, _ := json.Marshal(h)
	tmp := HeadPath(path) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("audit head %s: %w", tmp, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("audit head %s: write: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit head %s: fsync: %w", tmp, err)
	}
	f.Close()
	if err := os.Rename(tmp, HeadPath(path)); err != nil {
		return fmt.Errorf("audit head %s: %w", HeadPath(path), err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Log is an open trail.
type Log struct {
	mu   sync.Mutex
	path string
	f    *os.File
	log  *slog.Logger
	// head is the chain's head and size the file's size when this process
	// last wrote or checked it. Before each append the file must still end
	// there, or continue from there by a legitimate writer's records.
	head Head
	size int64
	// old is the file this process knew, kept open when the path was
	// found to name another file (a rotation) until the new file is
	// checked to continue it.
	old *os.File
	// broken is the tampering found while the server ran: every later
	// append is refused with it.
	broken error
	// headLag is set when this process's last lines are in the trail but
	// its head could not be moved to them (a full disk): the head's
	// intent names them, and the next append moves it without calling it
	// a repair.
	headLag bool
	// pending are records the checks made necessary (a torn line or a
	// repaired head), written before the next caller's records.
	pending []Record
	// afterLine, in tests, runs after a line is written and before the
	// head moves; an error stops there, as a crash would.
	afterLine func() error
}

// Options shape Open.
type Options struct {
	// Log receives what the trail's checks find: repairs at start-up and
	// tampering while the server runs.
	Log *slog.Logger
}

// HeadError says the trail does not match its head checkpoint: records
// were cut off the end, or the trail was emptied, replaced, or appended
// to by someone else. At start-up nothing is opened; while a server
// runs, every later append is refused with it (so scans are refused, as
// when the trail cannot be written), until the trail is inspected and
// the server restarted.
type HeadError struct {
	Path   string
	Reason string
}

func (e *HeadError) Error() string {
	return fmt.Sprintf("audit trail %s does not match its head checkpoint %s: %s; inspect it with `nmap-mcp audit verify`, "+
		"and to start a new trail move both files aside (keep them as evidence)", e.Path, HeadPath(e.Path), e.Reason)
}

// Open opens the trail at path with no logger; see OpenWith.
func Open(path string) (*Log, []string, error) { return OpenWith(path, Options{}) }

// OpenWith opens (creating) the trail at path, moves a torn last line
// aside (and records that), checks the trail against its head checkpoint
// (a mismatch is a *HeadError and nothing is opened; a record written
// just before a crash, before its head, is completed, logged and
// recorded), and closes the scans of dead servers with an interrupted
// record. It returns the IDs it closed.
func OpenWith(path string, o Options) (*Log, []string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("audit trail %s: create its folder: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit trail %s: %w", path, err)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	l := &Log{path: path, f: f, log: o.Log}
	closed, err := l.start()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return l, closed, nil
}

// Path is the trail's file.
func (l *Log) Path() string { return l.path }

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.old != nil {
		l.old.Close()
		l.old = nil
	}
	return l.f.Close()
}

// lock takes the trail's file lock. When the trail was rotated meanwhile
// (by `audit rotate` in another process), the file at path is no longer
// ours: it is opened and locked instead, so that no record lands in the
// rotated-out file, and the file this process knew is kept (l.old) for
// catchUp to check that the new one continues it.
func (l *Log) lock() error {
	for range 10 {
		if err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_EX); err != nil {
			return err
		}
		mine, err1 := l.f.Stat()
		now, err2 := os.Stat(l.path)
		if err1 == nil && err2 == nil && os.SameFile(mine, now) {
			return nil
		}
		_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		f, err := os.OpenFile(l.path, os.O_CREATE|os.O_RDWR|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		if l.old == nil {
			l.old = l.f
		} else {
			l.f.Close()
		}
		l.f = f
	}
	return errors.New("the trail keeps being replaced")
}

func (l *Log) unlock() error { return syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN) }

// Rotate moves the trail aside (to PATH.TIME) and starts a new file at
// path whose first record, "rotated", names the old file and chains to
// its last line; sequence numbers and the head (with its open scans)
// carry on. Verify follows the chain back through the old files. It
// returns the old file's new path.
func (l *Log) Rotate() (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.lock(); err != nil {
		return "", fmt.Errorf("audit trail %s: lock: %w", l.path, err)
	}
	defer l.unlock()
	if err := l.catchUp(); err != nil {
		return "", err
	}
	if len(l.pending) > 0 {
		if err := l.appendLocked(); err != nil {
			return "", err
		}
	}
	old := l.path + "." + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(l.path, old); err != nil {
		return "", fmt.Errorf("audit trail %s: rotate: %w", l.path, err)
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_EXCL|os.O_RDWR|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", fmt.Errorf("audit trail %s: start the new file: %w", l.path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return "", fmt.Errorf("audit trail %s: lock: %w", l.path, err)
	}
	oldFile := l.f
	l.f, l.size = f, 0
	_ = syscall.Flock(int(oldFile.Fd()), syscall.LOCK_UN)
	oldFile.Close()
	if err := l.appendLocked(Record{Event: Rotated, Outcome: filepath.Base(old)}); err != nil {
		return old, err
	}
	return old, nil
}

// start does Open's checks under the lock.
func (l *Log) start() ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.lock(); err != nil {
		return nil, fmt.Errorf("audit trail %s: lock: %w", l.path, err)
	}
	defer l.unlock()
	torn, err := l.moveTornTail()
	if err != nil {
		return nil, err
	}
	if torn != "" {
		l.pending = append(l.pending, Record{Event: TornLine, Outcome: torn})
	}
	if err := l.checkHead(); err != nil {
		return nil, err
	}
	if len(l.pending) > 0 {
		if err := l.appendLocked(); err != nil {
			return nil, err
		}
	}
	return l.closeOrphans()
}

// moveTornTail moves a last line that is cut short (no newline, or not a
// record) into a file of its own and cuts the trail back to the last
// whole line. It returns what it did, or "".
func (l *Log) moveTornTail() (string, error) {
	st, err := l.f.Stat()
	if err != nil {
		return "", fmt.Errorf("audit trail %s: %w", l.path, err)
	}
	size := st.Size()
	if size == 0 {
		return "", nil
	}
	start, last, err := lastLine(l.f, size)
	if err != nil {
		return "", err
	}
	var r Record
	if last[len(last)-1] == '\n' && json.Unmarshal(last, &r) == nil {
		return "", nil
	}
	aside, err := l.moveAside(start, size, "torn")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("a torn last line of %d bytes (a write cut short) was moved to %s", size-start, aside), nil
}

// moveAside keeps the bytes from..size of the trail in PATH.KIND-TIME and
// cuts the trail back to from.
func (l *Log) moveAside(from, size int64, kind string) (string, error) {
	b := make([]byte, size-from)
	if _, err := l.f.ReadAt(b, from); err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("audit trail %s: %w", l.path, err)
	}
	aside := fmt.Sprintf("%s.%s-%d", l.path, kind, time.Now().UnixNano())
	if err := os.WriteFile(aside, b, 0o600); err != nil {
		return "", fmt.Errorf("audit trail %s: keep its cut-short end in %s: %w", l.path, aside, err)
	}
	if err := l.f.Truncate(from); err != nil {
		return "", fmt.Errorf("audit trail %s: cut its cut-short end: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return "", fmt.Errorf("audit trail %s: fsync: %w", l.path, err)
	}
	return aside, nil
}

// past is how a trail whose last line is past its head came to be.
type past int

const (
	pastNone    past = iota // the trail ends at its head
	pastCrash               // the head's intent names exactly the lines past it: a crash before the head moved
	pastCut                 // the head's intent names a longer write: a crash in the middle of it
	pastLegacy              // one chained record past a head that kept no intents: a crash, or someone else
	pastForeign             // lines past the head that no intent names: someone else wrote them
)

// explainPast says why the trail (tail t of file f) is past its head h.
// from is the offset of the first line past the head, when known.
func explainPast(f *os.File, h Head, t tailInfo) (past, string, error) {
	if t.size == 0 || t.head.Seq <= h.Seq || h.same(t.head) {
		return pastNone, "", nil
	}
	if p := h.Pending; p != nil && p.Off < t.size {
		if t.size == p.Off+p.Len && p.Seq == t.head.Seq && p.Link == t.head.Link {
			sum, err := hashRange(f, p.Off, p.Len)
			if err != nil {
				return pastNone, "", err
			}
			if sum == p.SHA256 {
				return pastCrash, fmt.Sprintf("%s written without its head: the head's intent names %s (a crash between writing the line and moving the head)",
					recordsName(h.Seq+1, t.head.Seq), them(h.Seq+1, t.head.Seq)), nil
			}
		}
		if t.size < p.Off+p.Len && t.head.Seq < p.Seq {
			ok, err := lineEndsAt(f, p.Off, h)
			if err != nil {
				return pastNone, "", err
			}
			if ok {
				return pastCut, fmt.Sprintf("%s written without its head, the first part of a write of %d bytes the head's intent names (a crash in the middle of the write)",
					recordsName(h.Seq+1, t.head.Seq), p.Len), nil
			}
		}
	}
	if !h.Intents && h.Seq+1 == t.head.Seq && t.last.Prev == h.Link {
		return pastLegacy, fmt.Sprintf("record %d was written without its head (a crash, or an append by someone else: the head, written before heads kept intents, cannot tell)", t.head.Seq), nil
	}
	return pastForeign, fmt.Sprintf("%s written without its head, and no intent in the head names %s: an append by someone else",
		recordsName(h.Seq+1, t.head.Seq), them(h.Seq+1, t.head.Seq)), nil
}

func recordsName(a, b uint64) string {
	if a == b {
		return fmt.Sprintf("record %d was", a)
	}
	return fmt.Sprintf("records %d to %d were", a, b)
}

func them(a, b uint64) string {
	if a == b {
		return "it"
	}
	return "them"
}

// hashRange is the SHA-256 (hex) of n bytes of f from off.
func hashRange(f *os.File, off, n int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		return "", fmt.Errorf("audit trail %s: %w", f.Name(), err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lineEndsAt reports whether the line that ends at off is the head h's
// record (off 0: h is the empty chain, or a rotated file's start).
func lineEndsAt(f *os.File, off int64, h Head) (bool, error) {
	if off == 0 {
		return true, nil
	}
	_, line, err := lastLine(f, off)
	if err != nil {
		return false, err
	}
	line = bytes.TrimRight(line, "\n")
	var r Record
	if json.Unmarshal(line, &r) != nil {
		return false, nil
	}
	return r.Seq == h.Seq && link(r, line) == h.Link, nil
}

// checkHead compares the trail's last record with the head checkpoint
// at start-up. Lines past the head that its intent names (a crash
// before the head moved) are adopted; the first part of a write cut short
// is moved aside; one record past a head from before intents is adopted
// as before, but named. Each repair is logged and recorded. Anything else
// is a *HeadError. A missing head (a trail from before heads, or a new
// trail) is written now.
func (l *Log) checkHead() error {
	tail, err := l.tail()
	if err != nil {
		return err
	}
	head, ok, err := readHead(l.path)
	if err != nil {
		return err
	}
	var repaired string
	adoptFrom := tail.off
	if ok {
		kind, why, err := explainPast(l.f, head, tail)
		if err != nil {
			return err
		}
		switch kind {
		case pastCrash:
			repaired, adoptFrom = why, head.Pending.Off
		case pastLegacy:
			repaired = why
		case pastCut:
			aside, err := l.moveAside(head.Pending.Off, tail.size, "cut")
			if err != nil {
				return err
			}
			repaired = why + "; moved to " + aside
			if tail, err = l.tail(); err != nil {
				return err
			}
		case pastForeign:
			return &HeadError{Path: l.path, Reason: why}
		}
		if reason := headMismatch(head, tail); reason != "" && kind == pastNone {
			return &HeadError{Path: l.path, Reason: reason}
		}
	}
	next := tail.head
	switch {
	case ok && head.OpenKnown && head.same(tail.head):
		next.Open, next.OpenKnown = head.Open, true
	case ok && head.OpenKnown && repaired != "":
		// Move the list past the adopted records.
		next.Open, next.OpenKnown = head.Open, true
		if err := eachLineFrom(l.f, adoptFrom, tail.size, func(r Record, _ []byte) error {
			next.apply(r)
			return nil
		}); err != nil {
			return err
		}
	default:
		// No list yet (a new trail, or one from before the list): read
		// the trail once to make it.
		open, err := l.scanOpen()
		if err != nil {
			return err
		}
		next.Open, next.OpenKnown = open, true
	}
	next.Intents = true
	l.head, l.size = next, tail.size
	if repaired != "" {
		l.log.Warn("audit: repaired at start-up: "+repaired, "trail", l.path)
		l.pending = append(l.pending, Record{Event: HeadRepaired, Outcome: repaired})
	}
	if !ok || !head.same(next) || !head.OpenKnown || !head.Intents || head.Pending != nil || repaired != "" {
		return writeHead(l.path, next)
	}
	return nil
}

// scanOpen reads the whole trail for the scans without an end.
func (l *Log) scanOpen() ([]OpenScan, error) {
	recs, err := readAll(l.path)
	if err != nil {
		return nil, err
	}
	var h Head
	for _, r := range recs {
		h.apply(r)
	}
	return h.Open, nil
}

// tailInfo is the trail's last record, the one before it, and the head.
type tailInfo struct {
	last Record
	off  int64 // where the last line starts
	head Head
	size int64
}

func (l *Log) tail() (tailInfo, error) {
	st, err := l.f.Stat()
	if err != nil {
		return tailInfo{}, fmt.Errorf("audit trail %s: %w", l.path, err)
	}
	return tailOf(l.f, st.Size())
}

// tailOf reads the last line of the first size bytes of f.
func tailOf(f *os.File, size int64) (tailInfo, error) {
	t := tailInfo{size: size}
	if t.size == 0 {
		return t, nil
	}
	off, line, err := lastLine(f, t.size)
	if err != nil {
		return tailInfo{}, err
	}
	t.off = off
	line = bytes.TrimRight(line, "\n")
	if err := json.Unmarshal(line, &t.last); err != nil {
		return tailInfo{}, fmt.Errorf("audit trail %s: the last line is not a record (%v); run nmap-mcp audit verify", f.Name(), err)
	}
	t.head = Head{Seq: t.last.Seq, Link: link(t.last, line)}
	return t, nil
}

// headMismatch names how a trail that does not run past its head (see
// explainPast) fails to end at it.
func headMismatch(h Head, t tailInfo) string {
	switch {
	case t.size == 0 && h.Seq > 0:
		return fmt.Sprintf("the trail is empty, but its head says %d records were written", h.Seq)
	case h.Seq > t.head.Seq:
		return fmt.Sprintf("the trail ends at record %d, but its head says %d records were written (records were cut off the end)", t.head.Seq, h.Seq)
	case h.Seq == t.head.Seq && h.Link != t.head.Link:
		return fmt.Sprintf("record %d is not the one the head recorded (the trail was edited or replaced)", h.Seq)
	}
	return ""
}

// closeOrphans appends an interrupted record for each admitted scan whose
// owner is dead and that has no end, from the head's open list (the trail
// itself is not read). Called with the lock held.
func (l *Log) closeOrphans() ([]string, error) {
	var closed []string
	for _, o := range slices.Clone(l.head.Open) {
		if !owner.Orphaned(o.OwnerPID, o.OwnerHost) {
			continue
		}
		if err := l.appendLocked(Record{Event: Interrupted, ScanID: o.ScanID, Client: o.Client,
			Outcome: "interrupted: the server stopped before the scan ended"}); err != nil {
			return closed, err
		}
		closed = append(closed, o.ScanID)
	}
	return closed, nil
}

// Append adds r to the trail, chained to the last record, fsyncs it, and
// moves the head checkpoint to it. It first checks that the trail still
// ends where this process left it, or continues from there by records a
// legitimate writer made (see catchUp); otherwise it refuses, with a
// *HeadError, now and for every later append.
func (l *Log) Append(r Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken != nil {
		return l.broken
	}
	if err := l.lock(); err != nil {
		return fmt.Errorf("audit trail %s: lock: %w", l.path, err)
	}
	defer l.unlock()
	return l.appendLocked(r)
}

// AppendBatch adds records as Append does, with one fsync and one head
// write for the whole batch: for imports and the history-scale benchmark.
func (l *Log) AppendBatch(rs []Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken != nil {
		return l.broken
	}
	if err := l.lock(); err != nil {
		return fmt.Errorf("audit trail %s: lock: %w", l.path, err)
	}
	defer l.unlock()
	return l.appendLocked(rs...)
}

// catchUp checks, under the lock, that the trail still ends where this
// process last left it, and takes in what other writers added since:
// records that chain on from that point (in the same file, or in a new
// file after a rotation whose first record is "rotated" and names the old
// one) and end where the head checkpoint says. Legitimate writers move
// the trail and its head under this lock, so anything else — a file
// that shrank, an edited last line, a new file that does not continue
// the old one, records past the head that no intent names, a head moved
// without the trail — is tampering: a *HeadError, logged, and kept so
// that every later append (and so every scan) is refused until the
// trail is inspected and the server restarted, as at start-up.
func (l *Log) catchUp() error {
	if l.broken != nil {
		return l.broken
	}
	err := l.follow()
	var he *HeadError
	if errors.As(err, &he) {
		l.broken = err
		l.log.Error("audit: the trail was changed behind the server's back; refusing to append to it, so scans are refused until it is inspected and the server restarted",
			"trail", l.path, "reason", he.Reason)
	}
	return err
}

func (l *Log) tamper(format string, args ...any) error {
	return &HeadError{Path: l.path, Reason: fmt.Sprintf(format, args...) + " while the server ran"}
}

// follow does catchUp's checks.
func (l *Log) follow() error {
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("audit trail %s: %w", l.path, err)
	}
	known := l.head
	if l.old != nil {
		// A rotation: the old file from where this process left it, then
		// the new file from its first record.
		end, err := l.continues(l.f, 0)
		l.old.Close()
		l.old = nil
		if err != nil {
			return err
		}
		known = end
	} else {
		if st.Size() < l.size {
			return l.tamper("the trail shrank from %d to %d bytes", l.size, st.Size())
		}
		ok, err := lineEndsAt(l.f, l.size, l.head)
		if err != nil {
			return err
		}
		if !ok {
			return l.tamper("the line that ended at byte %d, record %d, was changed", l.size, l.head.Seq)
		}
		if st.Size() > l.size {
			// A write cut short (no newline at the end: a writer died in
			// it) is moved aside and recorded, as at start-up. A whole
			// line that is not a record is no writer's: the walk refuses
			// it.
			if torn, err := endsTornAt(l.f, st.Size()); err != nil {
				return fmt.Errorf("audit trail %s: %w", l.path, err)
			} else if torn {
				what, err := l.moveTornTail()
				if err != nil {
					return err
				}
				l.pending = append(l.pending, Record{Event: TornLine, Outcome: what})
				if st, err = l.f.Stat(); err != nil {
					return fmt.Errorf("audit trail %s: %w", l.path, err)
				}
			}
			if known, err = l.walk(l.f, l.size, st.Size(), l.head); err != nil {
				return err
			}
		}
	}
	// The trail's end (known) against the head checkpoint.
	h, ok, err := readHead(l.path)
	if err != nil {
		return err
	}
	if !ok {
		return l.tamper("the head checkpoint was removed")
	}
	t, err := l.tail()
	if err != nil {
		return err
	}
	kind, why, err := explainPast(l.f, h, t)
	if err != nil {
		return err
	}
	switch kind {
	case pastNone:
		if !h.same(known) {
			return l.tamper("the head checkpoint says record %d, but the trail ends at record %d", h.Seq, known.Seq)
		}
	case pastCrash:
		if l.headLag && h.Pending != nil && h.Pending.Seq == l.head.Seq && h.Pending.Link == l.head.Link && known.same(l.head) {
			break // this process's own head, which it could not move
		}
		// Another writer died between its line and its head.
		l.log.Warn("audit: repaired: "+why, "trail", l.path)
		l.pending = append(l.pending, Record{Event: HeadRepaired, Outcome: why})
	case pastCut:
		aside, err := l.moveAside(h.Pending.Off, t.size, "cut")
		if err != nil {
			return err
		}
		known = h
		why += "; moved to " + aside
		l.log.Warn("audit: repaired: "+why, "trail", l.path)
		l.pending = append(l.pending, Record{Event: HeadRepaired, Outcome: why})
	default:
		return l.tamper("%s", why)
	}
	if st, err = l.f.Stat(); err != nil {
		return fmt.Errorf("audit trail %s: %w", l.path, err)
	}
	known.OpenKnown, known.Intents, known.Pending = true, true, nil
	l.head, l.size = known, st.Size()
	return nil
}

// continues returns the chain's end at the end of f, a file this process
// did not know, after checking that it continues the file it knew (l.old,
// from l.size): its first record is "rotated", chains on, and names that
// file, or names an older rotated file that does (depth counts them).
func (l *Log) continues(f *os.File, depth int) (Head, error) {
	st, err := f.Stat()
	if err != nil {
		return Head{}, fmt.Errorf("audit trail %s: %w", f.Name(), err)
	}
	var first Record
	if st.Size() > 0 {
		_, line, err := firstLine(f)
		if err != nil {
			return Head{}, err
		}
		if json.Unmarshal(line, &first) != nil {
			first = Record{}
		}
	}
	if first.Event != Rotated {
		return Head{}, l.tamper("the trail was replaced by a file whose first record is not %q", Rotated)
	}
	older := filepath.Join(filepath.Dir(l.path), filepath.Base(first.Outcome))
	ost, err := os.Stat(older)
	if err != nil {
		return Head{}, l.tamper("the trail was replaced by a file that says it continues %s, which cannot be read (%v)", older, err)
	}
	mine, err := l.old.Stat()
	if err != nil {
		return Head{}, fmt.Errorf("audit trail %s: %w", l.old.Name(), err)
	}
	var base Head
	switch {
	case os.SameFile(mine, ost):
		if mine.Size() < l.size {
			return Head{}, l.tamper("the rotated-out trail %s shrank from %d to %d bytes", older, l.size, mine.Size())
		}
		if ok, err := lineEndsAt(l.old, l.size, l.head); err != nil || !ok {
			return Head{}, l.tamper("the rotated-out trail %s no longer ends with record %d at byte %d", older, l.head.Seq, l.size)
		}
		if base, err = l.walk(l.old, l.size, mine.Size(), l.head); err != nil {
			return Head{}, err
		}
	case depth < 8:
		of, err := os.Open(older)
		if err != nil {
			return Head{}, fmt.Errorf("audit trail %s: %w", older, err)
		}
		base, err = l.continues(of, depth+1)
		of.Close()
		if err != nil {
			return Head{}, err
		}
	default:
		return Head{}, l.tamper("the trail was rotated more than 8 times since this process last wrote; it cannot follow the chain")
	}
	return l.walk(f, 0, st.Size(), base)
}

// walk checks the lines of f from..to chain on from h and returns the
// head after them, its open list moved past them.
func (l *Log) walk(f *os.File, from, to int64, h Head) (Head, error) {
	h.Open = slices.Clone(h.Open)
	err := eachLineFrom(f, from, to, func(r Record, line []byte) error {
		if r.Seq != h.Seq+1 || r.Prev != h.Link || (r.V < format && r.legacyHash() != r.Hash) {
			return l.tamper("record %d in %s does not follow record %d, the end this process knew", r.Seq, filepath.Base(f.Name()), h.Seq)
		}
		h.Seq, h.Link = r.Seq, link(r, line)
		h.apply(r)
		return nil
	})
	return h, err
}

// eachLineFrom calls fn with each record of f between from and to, which
// must be whole lines.
func eachLineFrom(f *os.File, from, to int64, fn func(r Record, line []byte) error) error {
	sc := bufio.NewScanner(io.NewSectionReader(f, from, to-from))
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return &HeadError{Path: f.Name(), Reason: fmt.Sprintf("a line after byte %d is not a record: %v", from, err)}
		}
		if err := fn(r, sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("audit trail %s: %w", f.Name(), err)
	}
	return nil
}

// firstLine returns the first line of f, without its newline.
func firstLine(f *os.File) (int64, []byte, error) {
	sc := bufio.NewScanner(io.NewSectionReader(f, 0, 1<<62))
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	if sc.Scan() {
		return int64(len(sc.Bytes()) + 1), sc.Bytes(), nil
	}
	if err := sc.Err(); err != nil {
		return 0, nil, fmt.Errorf("audit trail %s: %w", f.Name(), err)
	}
	return 0, nil, nil
}

// appendLocked chains rs (after any records the checks left pending) to
// the trail's end. It first writes the head's intent (where the write
// starts, its length and SHA-256, and the head it leads to) durably, then
// the lines with one fsync, then the head. A line past the head that no
// intent names was not written by this code. Called with the lock held.
func (l *Log) appendLocked(rs ...Record) error {
	if err := l.catchUp(); err != nil {
		return err
	}
	rs = append(l.pending, rs...)
	l.pending = nil
	if len(rs) == 0 {
		return nil
	}
	var buf bytes.Buffer
	head := l.head
	head.Open, head.OpenKnown, head.Intents, head.Pending = slices.Clone(head.Open), true, true, nil
	for _, r := range rs {
		r.V, r.Seq, r.Prev, r.Hash = format, head.Seq+1, head.Link, ""
		if r.Time.IsZero() {
			r.Time = time.Now().UTC()
		}
		if r.OwnerPID == 0 {
			r.OwnerPID, r.OwnerHost = os.Getpid(), owner.Host()
		}
		line, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("audit trail: encode: %w", err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
		head.Seq, head.Link = r.Seq, lineHash(line)
		head.apply(r)
	}
	sum := sha256.Sum256(buf.Bytes())
	intent := l.head
	intent.OpenKnown, intent.Intents = true, true
	intent.Pending = &Intent{Off: l.size, Len: int64(buf.Len()), SHA256: hex.EncodeToString(sum[:]), Seq: head.Seq, Link: head.Link}
	if err := writeHead(l.path, intent); err != nil {
		return l.fault(err)
	}
	if _, err := l.f.Write(buf.Bytes()); err != nil {
		return l.fault(l.undo(fmt.Errorf("audit trail %s: write: %w", l.path, err)))
	}
	if err := l.f.Sync(); err != nil {
		return l.fault(l.undo(fmt.Errorf("audit trail %s: fsync: %w", l.path, err)))
	}
	if l.afterLine != nil {
		if err := l.afterLine(); err != nil {
			return err
		}
	}
	l.head = head
	l.size += int64(buf.Len())
	if err := writeHead(l.path, l.head); err != nil {
		// The lines are in the trail, fsynced: the append happened. The
		// head on disk still names them as its intent; the next append
		// (see follow) or start moves it. Verify meanwhile notes them.
		l.headLag = true
		l.log.Warn("audit: a record was written but its head could not be moved yet; the next append moves it",
			"trail", l.path, "seq", l.head.Seq, "err", l.fault(err))
		return nil
	}
	l.headLag = false
	return nil
}

// undo cuts the trail back to where this append started, so that a
// write the disk refused part of (a full disk) leaves no torn line. The
// head on disk names the write as its intent, but the trail ends before
// it: the head stays where it was.
func (l *Log) undo(err error) error {
	if terr := l.f.Truncate(l.size); terr != nil {
		return fmt.Errorf("%w; cutting the partial write back also failed (%v): the next append moves it aside", err, terr)
	}
	_ = l.f.Sync()
	return err
}

// lastLine returns the offset and bytes (with its newline, if any) of the
// final line of the first size bytes of f.
func lastLine(f *os.File, size int64) (int64, []byte, error) {
	chunk := int64(64 << 10)
	for {
		off := max(size-chunk, 0)
		buf := make([]byte, size-off)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return 0, nil, fmt.Errorf("audit trail %s: %w", f.Name(), err)
		}
		body := buf
		if len(body) > 0 && body[len(body)-1] == '\n' {
			body = body[:len(body)-1]
		}
		i := bytes.LastIndexByte(body, '\n')
		if i >= 0 || off == 0 {
			return off + int64(i+1), buf[i+1:], nil
		}
		chunk *= 4
	}
}

func readAll(path string) ([]Record, error) {
	var out []Record
	err := eachLine(path, func(n int, line []byte) error {
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("audit trail %s: line %d is not a record: %w", path, n, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// eachLine calls fn with each line's number and bytes (without newline).
func eachLine(path string, fn func(n int, line []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit trail %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		if err := fn(n, sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("audit trail %s: %w", path, err)
	}
	return nil
}

// VerifyError names the first line where the chain breaks (0: the trail
// as a whole, against its head).
type VerifyError struct {
	// File is the rotated-out file the break is in ("" for the trail
	// itself).
	File   string
	Line   int
	Reason string
}

func (e *VerifyError) Error() string {
	where := ""
	if e.File != "" {
		where = " in " + e.File
	}
	if e.Line == 0 {
		return "audit trail broken" + where + ": " + e.Reason
	}
	return fmt.Sprintf("audit trail broken%s at line %d: %s", where, e.Line, e.Reason)
}

// Report is what Verify found in an intact trail.
type Report struct {
	Records int
	// Files are the rotated-out files the chain runs through, oldest
	// first.
	Files []string
	// Notes name events worth a look, such as torn lines moved aside.
	Notes []string
}

// Verify checks every line's link to the line before, the sequence, and
// the last line against the head checkpoint. A break is a *VerifyError
// naming the first broken line.
func Verify(path string) (Report, error) {
	rep, _, err := verifyFile(path, 0)
	if err != nil {
		return rep, err
	}
	notes, err := headNotes(path, -1, rep.Records)
	rep.Notes = append(rep.Notes, notes...)
	return rep, err
}

// headNotes compares the end of the trail (its first size bytes; -1 for
// all) with its head checkpoint: a break is a *VerifyError; records past
// the head that a crash explains are notes.
func headNotes(path string, size int64, records int) ([]string, error) {
	head, ok, err := readHead(path)
	if err != nil {
		return nil, err
	}
	if !ok {
		if records > 0 {
			return nil, &VerifyError{Reason: fmt.Sprintf("its head checkpoint %s is missing, so records cut off the end cannot be ruled out", HeadPath(path))}
		}
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit trail %s: %w", path, err)
	}
	defer f.Close()
	if size < 0 {
		st, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("audit trail %s: %w", path, err)
		}
		size = st.Size()
	}
	tail, err := tailOf(f, size)
	if err != nil {
		return nil, err
	}
	kind, why, err := explainPast(f, head, tail)
	if err != nil {
		return nil, err
	}
	switch kind {
	case pastCrash, pastLegacy:
		return []string{why + "; the next start moves the head to it and records that"}, nil
	case pastCut:
		return []string{why + "; the next start moves them aside and records that"}, nil
	case pastForeign:
		return nil, &VerifyError{Reason: why}
	}
	if reason := headMismatch(head, tail); reason != "" {
		return nil, &VerifyError{Reason: reason}
	}
	return nil, nil
}

// maxRotations bounds how many older files Verify follows.
const maxRotations = 10000

// verifyFile checks one file's chain. When its first record is Rotated,
// the older file it names is verified first (depth counts the files
// followed) and the first record must follow that file's last line.
func verifyFile(path string, depth int) (Report, tailInfo, error) {
	var (
		rep      Report
		prevLink string
		prevSeq  uint64
		tail     tailInfo
	)
	name := ""
	if depth > 0 {
		name = filepath.Base(path)
	}
	torn, err := endsTorn(path)
	if err != nil {
		return rep, tail, err
	}
	const tornReason = "the last line is torn (no newline: a write was cut short); the next start moves it aside"
	var pending *VerifyError // a bad line that is torn if it is the last
	err = eachLine(path, func(n int, line []byte) error {
		if pending != nil {
			pending.Reason = "not a JSON record"
			return pending
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			if torn {
				pending = &VerifyError{File: name, Line: n, Reason: tornReason}
				return nil
			}
			return &VerifyError{File: name, Line: n, Reason: "not a JSON record: " + err.Error()}
		}
		if n == 1 && r.Event == Rotated {
			older := filepath.Join(filepath.Dir(path), filepath.Base(r.Outcome))
			if depth >= maxRotations {
				return &VerifyError{File: name, Line: n, Reason: "too many rotated files to follow"}
			}
			orep, otail, err := verifyFile(older, depth+1)
			if err != nil {
				return err
			}
			rep.Records, rep.Notes = orep.Records, orep.Notes
			rep.Files = append(orep.Files, filepath.Base(older))
			prevLink, prevSeq = otail.head.Link, otail.head.Seq
		}
		switch {
		case r.V < format && r.legacyHash() != r.Hash:
			return &VerifyError{File: name, Line: n, Reason: "its content does not match its hash (the line was edited)"}
		case r.Prev != prevLink && n == 1:
			return &VerifyError{File: name, Line: n, Reason: "it does not follow the end of the file it continues (that file was edited, cut, or swapped)"}
		case r.Prev != prevLink:
			return &VerifyError{File: name, Line: n, Reason: fmt.Sprintf("it does not follow line %d: line %d was edited, or a line between them was deleted or moved", n-1, n-1)}
		case r.Seq != prevSeq+1:
			return &VerifyError{File: name, Line: n, Reason: fmt.Sprintf("sequence %d after %d", r.Seq, prevSeq)}
		}
		if r.Event == TornLine || r.Event == HeadRepaired {
			rep.Notes = append(rep.Notes, fmt.Sprintf("line %d (%s): %s", n, r.Time.Format(time.RFC3339), r.Outcome))
		}
		rep.Records++
		prevLink, prevSeq = link(r, line), r.Seq
		tail = tailInfo{last: r, head: Head{Seq: r.Seq, Link: prevLink}}
		return nil
	})
	if err != nil {
		return rep, tail, err
	}
	if pending != nil {
		return rep, tail, pending
	}
	if torn {
		return rep, tail, &VerifyError{File: name, Line: rep.Records, Reason: tornReason}
	}
	return rep, tail, nil
}

// endsTorn reports whether the file's last byte is not a newline.
func endsTorn(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("audit trail %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return false, err
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], st.Size()-1); err != nil {
		return false, fmt.Errorf("audit trail %s: %w", path, err)
	}
	return b[0] != '\n', nil
}

// Tail returns the last n records (oldest first), reading the file from
// its end: a long trail is never loaded whole.
func Tail(path string, n int) ([]Record, error) {
	if n <= 0 {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit trail %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit trail %s: %w", path, err)
	}
	var out []Record
	end := st.Size()
	for end > 0 && len(out) < n {
		off, line, err := lastLine(f, end)
		if err != nil {
			return nil, err
		}
		end = off
		line = bytes.TrimRight(line, "\n")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("audit trail %s: a line near the end is not a record: %w; run nmap-mcp audit verify", path, err)
		}
		out = append(out, r)
	}
	slices.Reverse(out)
	return out, nil
}
