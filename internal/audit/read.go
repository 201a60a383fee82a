package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Reading the trail for a view: verification that is kept and resumed
// (Checker), and pages read by sequence number from the file's end
// (ReadPage). Neither loads the trail whole.

// Key names a trail's state: the file (device and inode), its size,
// modification and change times, and the head checkpoint's record and
// link. The change time is there because anyone who can write the file
// can set its modification time back (utimes) after an edit that keeps
// its size; the change time cannot be set back, short of the clock. A
// filesystem whose change time is coarse can still hide such an edit
// from the key: Checker bounds how long a key is trusted (FullEvery).
type Key struct {
	File     os.FileInfo
	Dev, Ino uint64
	Size     int64
	ModTime  time.Time
	ChTime   time.Time
	HeadSeq  uint64
	HeadLink string
}

// Same reports whether two keys name the same state.
func (k Key) Same(o Key) bool {
	return k.File != nil && o.File != nil && os.SameFile(k.File, o.File) && k.Dev == o.Dev && k.Ino == o.Ino &&
		k.Size == o.Size && k.ModTime.Equal(o.ModTime) && k.ChTime.Equal(o.ChTime) &&
		k.HeadSeq == o.HeadSeq && k.HeadLink == o.HeadLink
}

// statKey is the key's part read from the file's status.
func statKey(st os.FileInfo) Key {
	k := Key{File: st, Size: st.Size(), ModTime: st.ModTime()}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		k.Dev, k.Ino = uint64(s.Dev), s.Ino
		k.ChTime = time.Unix(s.Ctim.Sec, s.Ctim.Nsec)
	}
	return k
}

// KeyOf reads the key of the trail at path (a stat and the small head).
func KeyOf(path string) (Key, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Key{}, fmt.Errorf("audit trail %s: %w", path, err)
	}
	h, _, err := readHead(path)
	if err != nil {
		return Key{}, err
	}
	k := statKey(st)
	k.HeadSeq, k.HeadLink = h.Seq, h.Link
	return k, nil
}

// Status is one verification of a trail.
type Status struct {
	Key    Key
	Report Report
	// Err is the break found (a *VerifyError), or why the trail could not
	// be read; nil when the chain is intact.
	Err error
	// At is when the verification ended; Full says it read every file,
	// and Read is how many bytes it read. FullAt is when the last full
	// verification this one builds on ended (At when Full): a kept
	// status is trusted until FullAt + the checker's FullEvery.
	At     time.Time
	Full   bool
	Read   int64
	FullAt time.Time
}

// Fresh reports whether st may still be shown for a trail whose key is
// key at now without checking again: its key is the same and its last
// full verification is younger than fullEvery.
func (st Status) Fresh(key Key, now time.Time, fullEvery time.Duration) bool {
	return st.Key.Same(key) && now.Sub(st.FullAt) < fullEvery
}

// Checker verifies one trail and keeps what it verified, so that the
// next check of a trail that only grew reads only the lines appended
// since (and checks that the line it ended on is unchanged), and a
// trail whose key is unchanged is not read at all. A trail that was
// replaced, rotated, shrank or changed without growing, and any trail
// whose last full verification is older than FullEvery (grown or not:
// the key cannot see every edit, see Key), is verified whole again. Check may be called from several goroutines;
// checks run one at a time. Use NewChecker.
type Checker struct {
	path string
	// FullEvery bounds how long incremental checks are trusted (an edit
	// in the part already verified is found by the next full one).
	FullEvery time.Duration

	mu   sync.Mutex
	last Status
	// The chain's state at the end of the last intact check: its report
	// without the notes about the head (those are made anew each time).
	ok       bool
	chain    Report
	off      int64
	lines    int
	prevSeq  uint64
	prevLink string
	lastFull time.Time
}

// NewChecker returns a checker of the trail at path.
func NewChecker(path string) *Checker {
	return &Checker{path: path, FullEvery: 10 * time.Minute}
}

// Check verifies the trail as it is now, resuming from the last intact
// check when the file only grew.
func (c *Checker) Check(now time.Time) Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	key, err := KeyOf(c.path)
	if err != nil {
		c.ok = false
		c.last = Status{Err: err, At: now}
		return c.last
	}
	if c.ok && c.last.Fresh(key, now, c.FullEvery) {
		return c.last
	}
	if c.ok && os.SameFile(key.File, c.last.Key.File) && key.Size > c.last.Key.Size && now.Sub(c.lastFull) < c.FullEvery {
		if st, done := c.resume(key, now); done {
			c.last = st
			return st
		}
	}
	st := Status{Key: key, At: now, Full: true, Read: key.Size, FullAt: now}
	chain, _, err := verifyFile(c.path, 0)
	st.Report, st.Err = chain, err
	if err == nil {
		var notes []string
		notes, st.Err = headNotes(c.path, -1, chain.Records)
		st.Report.Notes = append(slices.Clone(chain.Notes), notes...)
	}
	c.lastFull, c.ok, c.chain = now, st.Err == nil, chain
	if c.ok {
		c.ok = c.remember(key)
	}
	c.last = st
	return st
}

// remember records the chain's end after a full, intact verification.
func (c *Checker) remember(key Key) bool {
	f, err := os.Open(c.path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	if now := statKey(st); !os.SameFile(st, key.File) || now.Size != key.Size || !now.ChTime.Equal(key.ChTime) {
		return false // changed while it was read: the next check verifies whole
	}
	t, err := tailOf(f, st.Size())
	if err != nil {
		return false
	}
	c.off, c.prevSeq, c.prevLink = st.Size(), t.head.Seq, t.head.Link
	c.lines = countLines(f, st.Size())
	return true
}

func countLines(f *os.File, size int64) int {
	n := 0
	buf := make([]byte, 64<<10)
	for off := int64(0); off < size; {
		k, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		n += bytes.Count(buf[:k], []byte{'\n'})
		off += int64(k)
		if err != nil {
			break
		}
	}
	return n
}

// resume verifies the lines appended since the last intact check. done
// is false when it cannot tell (the caller verifies whole).
func (c *Checker) resume(key Key, now time.Time) (Status, bool) {
	f, err := os.Open(c.path)
	if err != nil {
		return Status{}, false
	}
	defer f.Close()
	fst, err := f.Stat()
	if err != nil || !os.SameFile(fst, key.File) || fst.Size() < key.Size {
		return Status{}, false
	}
	if ok, err := lineEndsAt(f, c.off, Head{Seq: c.prevSeq, Link: c.prevLink}); err != nil || !ok {
		return Status{}, false // the verified part changed: verify whole
	}
	if torn, _ := endsTornAt(f, key.Size); torn {
		return Status{}, false
	}
	chain := c.chain
	chain.Notes = slices.Clone(chain.Notes)
	n, seq, lk := c.lines, c.prevSeq, c.prevLink
	err = eachLineFrom(f, c.off, key.Size, func(r Record, line []byte) error {
		n++
		switch {
		case r.V < format && r.legacyHash() != r.Hash:
			return &VerifyError{Line: n, Reason: "its content does not match its hash (the line was edited)"}
		case r.Prev != lk:
			return &VerifyError{Line: n, Reason: fmt.Sprintf("it does not follow line %d: line %d was edited, or a line between them was deleted or moved", n-1, n-1)}
		case r.Seq != seq+1:
			return &VerifyError{Line: n, Reason: fmt.Sprintf("sequence %d after %d", r.Seq, seq)}
		}
		if r.Event == TornLine || r.Event == HeadRepaired {
			chain.Notes = append(chain.Notes, fmt.Sprintf("line %d (%s): %s", n, r.Time.Format(time.RFC3339), r.Outcome))
		}
		chain.Records++
		seq, lk = r.Seq, link(r, line)
		return nil
	})
	var he *HeadError
	if errors.As(err, &he) {
		err = &VerifyError{Reason: he.Reason}
	}
	st := Status{Key: key, At: now, Report: chain, Read: key.Size - c.off, Err: err, FullAt: c.lastFull}
	if err == nil {
		var notes []string
		notes, st.Err = headNotes(c.path, key.Size, chain.Records)
		st.Report.Notes = append(slices.Clone(chain.Notes), notes...)
	}
	if st.Err == nil {
		c.chain, c.off, c.lines, c.prevSeq, c.prevLink = chain, key.Size, n, seq, lk
	} else {
		c.ok = false
	}
	return st, true
}

func endsTornAt(f *os.File, size int64) (bool, error) {
	if size == 0 {
		return false, nil
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], size-1); err != nil {
		return false, err
	}
	return b[0] != '\n', nil
}

// PageQuery selects a page of the trail's current file.
type PageQuery struct {
	// Before keeps records with a smaller sequence number (the page just
	// older than a record); After, records with a greater one (the page
	// just newer). Neither: the newest page.
	Before, After uint64
	// Client keeps only that client's records ("" for every client's);
	// the filter is applied before the page is cut.
	Client string
	// Limit is the page's length (default 25).
	Limit int
	// MaxBytes bounds how much of the file one page reads (default 4
	// MiB): when a client's records are sparse, a page may hold fewer
	// than Limit, with a link to go on.
	MaxBytes int64
}

// Page is a page of records, newest first, and the cursors around it.
type Page struct {
	Records []Record
	// Older, when non-zero, is the Before of the next older page; Newer,
	// when non-zero, the After of the next newer one.
	Older, Newer uint64
}

// ReadPage reads one page of the trail at path by sequence number: it
// finds the place by a binary search over the file's offsets and reads
// from there a window at a time, never the whole file.
func ReadPage(path string, q PageQuery) (Page, error) {
	if q.Limit <= 0 {
		q.Limit = 25
	}
	if q.MaxBytes <= 0 {
		q.MaxBytes = 4 << 20
	}
	f, err := os.Open(path)
	if err != nil {
		return Page{}, fmt.Errorf("audit trail %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Page{}, fmt.Errorf("audit trail %s: %w", path, err)
	}
	size := st.Size()
	var match func([]byte) bool
	if q.Client != "" {
		needle, _ := json.Marshal(q.Client)
		needle = append([]byte(`"client":`), needle...)
		match = func(line []byte) bool { return bytes.Contains(line, needle) }
	}
	keep := func(r Record) bool { return q.Client == "" || r.Client == q.Client }
	if q.After == ^uint64(0) {
		return Page{Older: q.After}, nil
	}
	if q.After > 0 {
		return readForward(f, size, q, match, keep)
	}
	end := size
	if q.Before > 0 {
		if end, err = seqOffset(f, size, q.Before); err != nil {
			return Page{}, err
		}
	}
	var p Page
	var read int64
	err = eachLineBackward(f, end, func(line []byte) (bool, error) {
		read += int64(len(line)) + 1
		if match == nil || match(line) {
			var r Record
			if err := json.Unmarshal(line, &r); err != nil {
				return false, fmt.Errorf("audit trail %s: a line is not a record: %w; run nmap-mcp audit verify", path, err)
			}
			if (q.Before == 0 || r.Seq < q.Before) && keep(r) {
				if len(p.Records) == q.Limit {
					p.Older = p.Records[len(p.Records)-1].Seq
					return false, nil
				}
				p.Records = append(p.Records, r)
			}
		}
		if read > q.MaxBytes {
			p.Older = seqOf(line) // read up to here: the next page goes on before it
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return Page{}, err
	}
	if q.Before > 0 {
		p.Newer = q.Before - 1
		if len(p.Records) > 0 {
			p.Newer = p.Records[0].Seq
		}
	}
	return p, nil
}

// readForward reads the page just newer than q.After.
func readForward(f *os.File, size int64, q PageQuery, match func([]byte) bool, keep func(Record) bool) (Page, error) {
	start, err := seqOffset(f, size, q.After+1)
	if err != nil {
		return Page{}, err
	}
	var p Page
	var read int64
	sc := bufio.NewScanner(io.NewSectionReader(f, start, size-start))
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		read += int64(len(line)) + 1
		if match == nil || match(line) {
			var r Record
			if err := json.Unmarshal(line, &r); err != nil {
				return Page{}, fmt.Errorf("audit trail %s: a line is not a record: %w; run nmap-mcp audit verify", f.Name(), err)
			}
			if r.Seq > q.After && keep(r) {
				if len(p.Records) == q.Limit {
					p.Newer = p.Records[len(p.Records)-1].Seq
					break
				}
				p.Records = append(p.Records, r)
			}
		}
		if read > q.MaxBytes {
			p.Newer = seqOf(line)
			break
		}
	}
	if err := sc.Err(); err != nil {
		return Page{}, fmt.Errorf("audit trail %s: %w", f.Name(), err)
	}
	slices.Reverse(p.Records)
	p.Older = q.After + 1
	if len(p.Records) > 0 {
		p.Older = p.Records[len(p.Records)-1].Seq
	}
	return p, nil
}

// seqOf is a line's sequence number (0 when it has none).
func seqOf(line []byte) uint64 {
	var s struct {
		Seq uint64 `json:"seq"`
	}
	_ = json.Unmarshal(line, &s)
	return s.Seq
}

// seqOffset returns an offset at or after the start of the first line
// whose sequence number is at least seq, and before the start of any
// line after it: a binary search over offsets, reading one line a probe.
func seqOffset(f *os.File, size int64, seq uint64) (int64, error) {
	lo, hi := int64(0), size
	for hi-lo > 64<<10 {
		mid := lo + (hi-lo)/2
		start, line, err := lineAt(f, mid, hi)
		if err != nil {
			return 0, err
		}
		if line == nil {
			break // one long line straddles the rest
		}
		if seqOf(line) >= seq {
			hi = start
		} else {
			lo = start + int64(len(line)) + 1
		}
	}
	// The first line at or after lo with a sequence at least seq.
	sc := bufio.NewScanner(io.NewSectionReader(f, lo, hi-lo))
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	off := lo
	for sc.Scan() {
		if seqOf(sc.Bytes()) >= seq {
			return off, nil
		}
		off += int64(len(sc.Bytes())) + 1
	}
	return hi, sc.Err()
}

// lineAt returns the first whole line that starts at or after off and
// before limit (nil when none), and where it starts.
func lineAt(f *os.File, off, limit int64) (int64, []byte, error) {
	start := off
	if off > 0 {
		// Find the newline at or after off-1.
		buf := make([]byte, 4096)
		for p := off - 1; ; p += int64(len(buf)) {
			if p >= limit {
				return 0, nil, nil
			}
			n, err := f.ReadAt(buf[:min(int64(len(buf)), limit-p)], p)
			if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
				start = p + int64(i) + 1
				break
			}
			if err != nil {
				return 0, nil, nil
			}
		}
	}
	if start >= limit {
		return 0, nil, nil
	}
	sc := bufio.NewScanner(io.NewSectionReader(f, start, limit-start))
	sc.Buffer(make([]byte, 4096), 64<<20)
	if sc.Scan() {
		return start, slices.Clone(sc.Bytes()), nil
	}
	return 0, nil, sc.Err()
}

// maxLine bounds a line the readers hold (the scanners' bound too).
const maxLine = 64 << 20

// eachLineBackward calls fn with each whole line that ends at or before
// end (end at a line start or the file's end), newest first, reading
// 64 KiB windows; fn returns false to stop.
func eachLineBackward(f *os.File, end int64, fn func(line []byte) (bool, error)) error {
	const window = 64 << 10
	var carry []byte // the start of a line whose beginning is not read yet
	for end > 0 {
		off := max(end-window, 0)
		buf := make([]byte, end-off, end-off+int64(len(carry)))
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("audit trail %s: %w", f.Name(), err)
		}
		buf = append(buf, carry...)
		for {
			body := buf
			if len(body) > 0 && body[len(body)-1] == '\n' {
				body = body[:len(body)-1]
			}
			i := bytes.LastIndexByte(body, '\n')
			if i < 0 && off > 0 {
				break
			}
			line := body[i+1:]
			if len(bytes.TrimSpace(line)) > 0 {
				more, err := fn(line)
				if err != nil || !more {
					return err
				}
			}
			if i < 0 {
				return nil
			}
			buf = body[:i+1]
		}
		if len(buf) > maxLine {
			return fmt.Errorf("audit trail %s: a line before byte %d is longer than %d bytes; run nmap-mcp audit verify", f.Name(), end, maxLine)
		}
		carry = slices.Clone(buf)
		end = off
	}
	return nil
}
