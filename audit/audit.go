// Package audit keeps the tamper-evident audit trail: an append-only JSON
// Lines file, fsynced after each record, where each record carries the hash
// of the one before it, so that a deleted or edited line breaks the chain.
// A record is written when a scan is admitted and another when it ends; at
// the next start, scans of a dead server that never ended get an
// "interrupted" record. Appends take an exclusive file lock, so several
// nmap-mcp processes may share one trail.
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
)

// Record is one line of the trail.
type Record struct {
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
	DurationMS   int64           `json:"duration_ms,omitempty"`
	ResultSHA256 string          `json:"result_sha256,omitempty"`
	OwnerPID     int             `json:"owner_pid"`
	OwnerHost    string          `json:"owner_host"`
	Prev         string          `json:"prev"`
	Hash         string          `json:"hash"`
}

// hash is the sha256 of the record's JSON with Hash empty.
func (r Record) hash() string {
	r.Hash = ""
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Log is an open trail.
type Log struct {
	mu   sync.Mutex
	path string
	f    *os.File
	// last is the final record and size the file's size when this process
	// last wrote or read it; another process's append changes the size.
	last Record
	size int64
}

// Open opens (creating) the trail at path and closes the scans of dead
// servers with an interrupted record. It returns the IDs it closed.
func Open(path string) (*Log, []string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("audit trail %s: create its folder: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit trail %s: %w", path, err)
	}
	l := &Log{path: path, f: f}
	closed, err := l.closeOrphans()
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

func (l *Log) lock() error   { return syscall.Flock(int(l.f.Fd()), syscall.LOCK_EX) }
func (l *Log) unlock() error { return syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN) }

// closeOrphans appends an interrupted record for each admitted scan whose
// owner is dead and that has no end.
func (l *Log) closeOrphans() ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.lock(); err != nil {
		return nil, fmt.Errorf("audit trail %s: lock: %w", l.path, err)
	}
	defer l.unlock()
	recs, err := readAll(l.path)
	if err != nil {
		return nil, err
	}
	open := map[string]Record{}
	var order []string
	for _, r := range recs {
		switch r.Event {
		case Admitted:
			open[r.ScanID] = r
			order = append(order, r.ScanID)
		default:
			delete(open, r.ScanID)
		}
	}
	var closed []string
	for _, id := range order {
		r, ok := open[id]
		if !ok || !owner.Orphaned(r.OwnerPID, r.OwnerHost) {
			continue
		}
		if err := l.appendLocked(Record{Event: Interrupted, ScanID: id, Client: r.Client,
			Outcome: "interrupted: the server stopped before the scan ended"}); err != nil {
			return closed, err
		}
		closed = append(closed, id)
	}
	return closed, nil
}

// Append adds r to the trail, chained to the last record, and fsyncs.
func (l *Log) Append(r Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.lock(); err != nil {
		return fmt.Errorf("audit trail %s: lock: %w", l.path, err)
	}
	defer l.unlock()
	return l.appendLocked(r)
}

func (l *Log) appendLocked(r Record) error {
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("audit trail %s: %w", l.path, err)
	}
	if st.Size() != l.size || l.size == 0 {
		// Someone else appended (or this is the first write): read the tail.
		if l.last, err = lastRecord(l.path); err != nil {
			return err
		}
	}
	last := l.last
	r.Seq, r.Prev = last.Seq+1, last.Hash
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	if r.OwnerPID == 0 {
		r.OwnerPID, r.OwnerHost = os.Getpid(), owner.Host()
	}
	r.Hash = r.hash()
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit trail: encode: %w", err)
	}
	if _, err := l.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit trail %s: write: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit trail %s: fsync: %w", l.path, err)
	}
	l.last = r
	l.size = st.Size() + int64(len(line)) + 1
	return nil
}

// lastRecord reads the final line of the trail (the zero record if empty).
func lastRecord(path string) (Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return Record{}, fmt.Errorf("audit trail %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Record{}, fmt.Errorf("audit trail %s: %w", path, err)
	}
	size := st.Size()
	if size == 0 {
		return Record{}, nil
	}
	chunk := int64(64 << 10)
	for {
		off := max(size-chunk, 0)
		buf := make([]byte, size-off)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return Record{}, fmt.Errorf("audit trail %s: %w", path, err)
		}
		buf = bytes.TrimRight(buf, "\n")
		i := bytes.LastIndexByte(buf, '\n')
		if i >= 0 || off == 0 {
			var r Record
			if err := json.Unmarshal(buf[i+1:], &r); err != nil {
				return Record{}, fmt.Errorf("audit trail %s: the last line is not a record (%v); run nmap-mcp audit verify", path, err)
			}
			return r, nil
		}
		chunk *= 4
	}
}

func readAll(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit trail %s: %w", path, err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("audit trail %s: line %d is not a record: %w", path, line, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit trail %s: %w", path, err)
	}
	return out, nil
}

// VerifyError names the first line where the chain breaks.
type VerifyError struct {
	Line   int
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit trail broken at line %d: %s", e.Line, e.Reason)
}

// Verify checks every record's hash and its link to the one before, and
// returns how many records it checked. A break is a *VerifyError.
func Verify(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("audit trail %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var prev Record
	n := 0
	for sc.Scan() {
		n++
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return n - 1, &VerifyError{Line: n, Reason: "not a JSON record: " + err.Error()}
		}
		switch {
		case r.hash() != r.Hash:
			return n - 1, &VerifyError{Line: n, Reason: "its content does not match its hash (the line was edited)"}
		case r.Prev != prev.Hash:
			return n - 1, &VerifyError{Line: n, Reason: "it does not follow the line before (a line was deleted, moved or edited)"}
		case r.Seq != prev.Seq+1:
			return n - 1, &VerifyError{Line: n, Reason: fmt.Sprintf("sequence %d after %d", r.Seq, prev.Seq)}
		}
		prev = r
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("audit trail %s: %w", path, err)
	}
	return n, nil
}

// Tail returns the last n records.
func Tail(path string, n int) ([]Record, error) {
	recs, err := readAll(path)
	if err != nil {
		return nil, err
	}
	if len(recs) > n {
		recs = recs[len(recs)-n:]
	}
	return recs, nil
}
