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
	OwnerPID     int             `json:"owner_pid"`
	OwnerHost    string          `json:"owner_host"`
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
	case TornLine, Rotated:
	default:
		h.Open = slices.DeleteFunc(h.Open, func(o OpenScan) bool { return o.ScanID == r.ScanID })
	}
}

// HeadPath is the checkpoint file of the trail at path.
func HeadPath(path string) string { return path + ".head" }

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
	// head is the chain's head and size the file's size when this process
	// last wrote or read it; another process's append changes the size.
	head Head
	size int64
}

// HeadError says the trail does not match its head checkpoint: records
// were cut off the end, or the trail was emptied or replaced.
type HeadError struct {
	Path   string
	Reason string
}

func (e *HeadError) Error() string {
	return fmt.Sprintf("audit trail %s does not match its head checkpoint %s: %s; inspect it with `nmap-mcp audit verify`, "+
		"and to start a new trail move both files aside (keep them as evidence)", e.Path, HeadPath(e.Path), e.Reason)
}

// Open opens (creating) the trail at path, moves a torn last line aside
// (and records that), checks the trail against its head checkpoint (a
// mismatch is a *HeadError and nothing is opened), and closes the scans of
// dead servers with an interrupted record. It returns the IDs it closed.
func Open(path string) (*Log, []string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("audit trail %s: create its folder: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit trail %s: %w", path, err)
	}
	l := &Log{path: path, f: f}
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
func (l *Log) Close() error { return l.f.Close() }

// lock takes the trail's file lock. When the trail was rotated meanwhile
// (by `audit rotate` in another process), the file at path is no longer
// ours: it is opened and locked instead, so that no record lands in the
// rotated-out file.
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
		l.f.Close()
		l.f, l.size = f, -1 // re-read the new file's tail and head
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
	if err := l.checkHead(); err != nil {
		return nil, err
	}
	if torn != "" {
		if err := l.appendLocked(Record{Event: TornLine, Outcome: torn}); err != nil {
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
	aside := fmt.Sprintf("%s.torn-%d", l.path, time.Now().UnixNano())
	if err := os.WriteFile(aside, last, 0o600); err != nil {
		return "", fmt.Errorf("audit trail %s: keep its torn last line in %s: %w", l.path, aside, err)
	}
	if err := l.f.Truncate(start); err != nil {
		return "", fmt.Errorf("audit trail %s: cut its torn last line: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return "", fmt.Errorf("audit trail %s: fsync: %w", l.path, err)
	}
	return fmt.Sprintf("a torn last line of %d bytes (a write cut short) was moved to %s", len(last), aside), nil
}

// checkHead compares the trail's last record with the head checkpoint.
// A trail one record ahead of its head, chained to it, is a crash between
// the two writes: the head is brought up to date. A missing head (a trail
// from before heads, or a new trail) is written now.
func (l *Log) checkHead() error {
	tail, err := l.tail()
	if err != nil {
		return err
	}
	head, ok, err := readHead(l.path)
	if err != nil {
		return err
	}
	if ok {
		if reason := headMismatch(head, tail); reason != "" {
			return &HeadError{Path: l.path, Reason: reason}
		}
	}
	next := tail.head
	switch {
	case ok && head.OpenKnown && head.same(tail.head):
		next.Open, next.OpenKnown = head.Open, true
	case ok && head.OpenKnown && head.Seq+1 == tail.head.Seq:
		// The crash between the two writes: move the list past the record.
		next.Open, next.OpenKnown = head.Open, true
		next.apply(tail.last)
	default:
		// No list yet (a new trail, or one from before the list): read
		// the trail once to make it.
		open, err := l.scanOpen()
		if err != nil {
			return err
		}
		next.Open, next.OpenKnown = open, true
	}
	l.head = next
	if !ok || !head.same(next) || !head.OpenKnown || head.Seq+1 == tail.head.Seq {
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
	last     Record
	prevLink string // what last.Prev should be: the link of the line before
	head     Head
	size     int64
}

func (l *Log) tail() (tailInfo, error) {
	st, err := l.f.Stat()
	if err != nil {
		return tailInfo{}, fmt.Errorf("audit trail %s: %w", l.path, err)
	}
	t := tailInfo{size: st.Size()}
	if t.size == 0 {
		return t, nil
	}
	_, line, err := lastLine(l.f, t.size)
	if err != nil {
		return tailInfo{}, err
	}
	line = bytes.TrimRight(line, "\n")
	if err := json.Unmarshal(line, &t.last); err != nil {
		return tailInfo{}, fmt.Errorf("audit trail %s: the last line is not a record (%v); run nmap-mcp audit verify", l.path, err)
	}
	t.head = Head{Seq: t.last.Seq, Link: link(t.last, line)}
	return t, nil
}

func headMismatch(h Head, t tailInfo) string {
	switch {
	case t.size == 0 && h.Seq > 0:
		return fmt.Sprintf("the trail is empty, but its head says %d records were written", h.Seq)
	case h.Seq > t.head.Seq:
		return fmt.Sprintf("the trail ends at record %d, but its head says %d records were written (records were cut off the end)", t.head.Seq, h.Seq)
	case h.Seq == t.head.Seq && h.Link != t.head.Link:
		return fmt.Sprintf("record %d is not the one the head recorded (the trail was edited or replaced)", h.Seq)
	case h.Seq+1 == t.head.Seq && t.last.Prev == h.Link:
		return "" // written, but the head was not: a crash between the two
	case h.Seq < t.head.Seq:
		return fmt.Sprintf("the trail has record %d, but its head says %d records were written and the next does not follow it (the trail was replaced)", t.head.Seq, h.Seq)
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
// moves the head checkpoint to it.
func (l *Log) Append(r Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
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
	if err := l.lock(); err != nil {
		return fmt.Errorf("audit trail %s: lock: %w", l.path, err)
	}
	defer l.unlock()
	return l.appendLocked(rs...)
}

// catchUp re-reads the tail and the head's open list when the file is
// not as this process left it (another process appended, or the file is
// new to it). Called with the lock held.
func (l *Log) catchUp() error {
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("audit trail %s: %w", l.path, err)
	}
	if st.Size() == l.size {
		return nil
	}
	// Someone else appended (or this is the first write): read the
	// tail, and the open list that writer left in the head.
	t, err := l.tail()
	if err != nil {
		return err
	}
	head, ok, err := readHead(l.path)
	if err != nil {
		return err
	}
	if !ok || !head.OpenKnown || !head.same(t.head) {
		open, err := l.scanOpen()
		if err != nil {
			return err
		}
		head.Open = open
	}
	l.head = Head{Seq: t.head.Seq, Link: t.head.Link, Open: head.Open, OpenKnown: true}

	l.size = st.Size()
	return nil
}

// appendLocked chains rs to the trail's end, writes them with one fsync,
// and moves the head (and its open scans) past them. Called with the lock
// held.
func (l *Log) appendLocked(rs ...Record) error {
	if err := l.catchUp(); err != nil {
		return err
	}
	var buf bytes.Buffer
	head := l.head
	head.Open, head.OpenKnown = slices.Clone(head.Open), true
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
	if _, err := l.f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("audit trail %s: write: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit trail %s: fsync: %w", l.path, err)
	}
	l.head = head
	l.size += int64(buf.Len())
	return writeHead(l.path, l.head)
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
	rep, tail, err := verifyFile(path, 0)
	if err != nil {
		return rep, err
	}
	head, ok, err := readHead(path)
	if err != nil {
		return rep, err
	}
	if !ok {
		if rep.Records > 0 {
			return rep, &VerifyError{Reason: fmt.Sprintf("its head checkpoint %s is missing, so records cut off the end cannot be ruled out", HeadPath(path))}
		}
		return rep, nil
	}
	if reason := headMismatch(head, tail); reason != "" {
		return rep, &VerifyError{Reason: reason}
	}
	return rep, nil
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
		if r.Event == TornLine {
			rep.Notes = append(rep.Notes, fmt.Sprintf("line %d (%s): %s", n, r.Time.Format(time.RFC3339), r.Outcome))
		}
		rep.Records++
		prevLink, prevSeq = link(r, line), r.Seq
		tail = tailInfo{last: r, head: Head{Seq: r.Seq, Link: prevLink}, size: 1}
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
