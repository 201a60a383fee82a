package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pageTrail writes n records; every tenth is alice's, the rest local's.
func pageTrail(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var batch []Record
	for i := 1; i <= n; i++ {
		c := "local"
		if i%10 == 0 {
			c = "alice"
		}
		batch = append(batch, Record{Event: Admitted, ScanID: fmt.Sprint("s", i), Client: c, Targets: strings.Repeat("t", 100)})
	}
	if err := l.AppendBatch(batch); err != nil {
		t.Fatal(err)
	}
	return path
}

func seqs(rs []Record) []uint64 {
	var out []uint64
	for _, r := range rs {
		out = append(out, r.Seq)
	}
	return out
}

// Pages by sequence number, newest first, both ways, across the reader's
// windows; a client's records are filtered before the page is cut, and a
// sparse client's page is bounded by MaxBytes with a cursor to go on.
func TestReadPage(t *testing.T) {
	path := pageTrail(t, 3000)
	p, err := ReadPage(path, PageQuery{Limit: 5})
	if err != nil || fmt.Sprint(seqs(p.Records)) != "[3000 2999 2998 2997 2996]" || p.Older != 2996 || p.Newer != 0 {
		t.Fatalf("newest page: %v older %d newer %d err %v", seqs(p.Records), p.Older, p.Newer, err)
	}
	p, _ = ReadPage(path, PageQuery{Limit: 5, Before: 1203})
	if fmt.Sprint(seqs(p.Records)) != "[1202 1201 1200 1199 1198]" || p.Older != 1198 || p.Newer != 1202 {
		t.Fatalf("page before 1203: %v older %d newer %d", seqs(p.Records), p.Older, p.Newer)
	}
	p, _ = ReadPage(path, PageQuery{Limit: 5, After: 1202})
	if fmt.Sprint(seqs(p.Records)) != "[1207 1206 1205 1204 1203]" || p.Older != 1203 || p.Newer != 1207 {
		t.Fatalf("page after 1202: %v older %d newer %d", seqs(p.Records), p.Older, p.Newer)
	}
	p, _ = ReadPage(path, PageQuery{Limit: 5, Before: 4})
	if fmt.Sprint(seqs(p.Records)) != "[3 2 1]" || p.Older != 0 {
		t.Fatalf("oldest page: %v older %d", seqs(p.Records), p.Older)
	}
	p, _ = ReadPage(path, PageQuery{Limit: 5, Client: "alice", Before: 1203})
	if fmt.Sprint(seqs(p.Records)) != "[1200 1190 1180 1170 1160]" || p.Older != 1160 {
		t.Fatalf("alice before 1203: %v older %d", seqs(p.Records), p.Older)
	}
	for _, r := range p.Records {
		if r.Client != "alice" {
			t.Fatalf("another client's record: %+v", r)
		}
	}
	// A budget of about 20 lines: fewer than Limit, and a cursor.
	st, _ := os.Stat(path)
	p, _ = ReadPage(path, PageQuery{Limit: 5, Client: "alice", MaxBytes: 20 * st.Size() / 3000})
	if len(p.Records) != 2 || p.Older == 0 || p.Older > 2981 {
		t.Fatalf("bounded page: %v older %d", seqs(p.Records), p.Older)
	}
}

// The checker verifies whole once, then only what was appended; it still
// finds a forged append, and verifies whole again when the file changed
// without growing.
func TestCheckerResumes(t *testing.T) {
	path := pageTrail(t, 2000)
	c := NewChecker(path)
	now := time.Now()
	st := c.Check(now)
	if st.Err != nil || !st.Full || st.Report.Records != 2000 {
		t.Fatalf("first check: %+v", st)
	}
	if again := c.Check(now); again.Read != st.Read || again.At != st.At {
		t.Fatalf("unchanged trail checked again: %+v", again)
	}
	l, _, _ := Open(path)
	l.Append(Record{Event: Ended, ScanID: "s1", Client: "local"})
	l.Close()
	st = c.Check(now)
	if st.Err != nil || st.Full || st.Report.Records != 2001 || st.Read > 1000 {
		t.Fatalf("after one append: full %v read %d records %d err %v", st.Full, st.Read, st.Report.Records, st.Err)
	}
	lines := trailLines(t, path)
	writeLines(t, path, append(lines, forge(t, lines, "mallory")))
	if st = c.Check(now); st.Err == nil || !strings.Contains(st.Err.Error(), "someone else") {
		t.Fatalf("forged append: %+v", st)
	}
	writeLines(t, path, lines)
	if st = c.Check(now); st.Err != nil || !st.Full {
		t.Fatalf("after the forged line was removed: %+v", st)
	}
	// An edit in place (same size) is verified whole, and found.
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), `"s7"`, `"s8"`, 1)), 0o600)
	if st = c.Check(now.Add(time.Second)); st.Err == nil || !st.Full {
		t.Fatalf("edit in place: %+v", st)
	}
}

// BenchmarkAppend is one record's append: the checks of the trail's end,
// the head's intent, the line and the head, each written durably.
//
//	go test ./internal/audit -run '^$' -bench Append
func BenchmarkAppend(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	l, _, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for b.Loop() {
		if err := l.Append(Record{Event: Admitted, ScanID: "s", Client: "local", Targets: "127.0.0.1"}); err != nil {
			b.Fatal(err)
		}
	}
}

// A note about the head (a line written, its head not yet) is made anew
// at each check, not carried into later ones.
func TestCheckerHeadNotesNotCarried(t *testing.T) {
	path := pageTrail(t, 100)
	c := NewChecker(path)
	now := time.Now()
	c.Check(now)
	l, _, _ := Open(path)
	l.afterLine = func() error { return errCrash }
	l.Append(Record{Event: Admitted, ScanID: "x"})
	l.Close()
	if st := c.Check(now); st.Err != nil || st.Full || len(st.Report.Notes) != 1 || !strings.Contains(st.Report.Notes[0], "record 101 was written without its head") {
		t.Fatalf("mid-write: %+v", st)
	}
	l, _, _ = Open(path) // completes the head, records it
	l.Append(Record{Event: Ended, ScanID: "x"})
	l.Close()
	st := c.Check(now)
	if st.Err != nil || st.Full || st.Report.Records != 103 || len(st.Report.Notes) != 1 || !strings.HasPrefix(st.Report.Notes[0], "line 102") {
		t.Fatalf("after: %+v", st)
	}
}

// Regression (review F4): a same-size edit of a middle record, with the
// file's modification time set back, is not kept as verified: the key
// holds the change time (which utimes cannot set back) and the inode, so
// the next check verifies whole; and a key that stays the same (a
// filesystem whose change time did not move) is trusted for FullEvery
// at most.
func TestCheckerSameSizeEditMtimeReset(t *testing.T) {
	path := pageTrail(t, 200)
	c := NewChecker(path)
	now := time.Now()
	if st := c.Check(now); st.Err != nil || !st.Full {
		t.Fatalf("first check: %+v", st)
	}
	before, _ := os.Stat(path)
	time.Sleep(20 * time.Millisecond) // a change time the edit moves
	b, _ := os.ReadFile(path)
	edited := strings.Replace(string(b), `"s7"`, `"s8"`, 1)
	if len(edited) != len(b) || edited == string(b) {
		t.Fatal("the edit is not a same-size change")
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte(edited), 0)
	f.Close()
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(path); after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("size or time not restored")
	}
	if _, err := Verify(path); err == nil {
		t.Fatal("Verify does not see the edit")
	}
	if st := c.Check(now.Add(time.Second)); st.Err == nil || !st.Full {
		t.Fatalf("edit with its time set back is still verified: %+v", st)
	}

	// The same edit where the key did not move (white-box: the kept key
	// is set to the edited file's, as on a filesystem whose change time
	// stayed): trusted until FullEvery, then verified whole.
	path = pageTrail(t, 200)
	c = NewChecker(path)
	c.Check(now)
	b, _ = os.ReadFile(path)
	f, _ = os.OpenFile(path, os.O_WRONLY, 0)
	f.WriteAt([]byte(strings.Replace(string(b), `"s7"`, `"s8"`, 1)), 0)
	f.Close()
	key, err := KeyOf(path)
	if err != nil {
		t.Fatal(err)
	}
	c.last.Key = key
	if st := c.Check(now.Add(c.FullEvery - time.Second)); st.Err != nil || !st.At.Equal(now) {
		t.Fatalf("within FullEvery an unchanged key is not kept: %+v", st)
	}
	if st := c.Check(now.Add(c.FullEvery)); st.Err == nil || !st.Full || !st.At.Equal(now.Add(c.FullEvery)) {
		t.Fatalf("after FullEvery an unchanged key is still trusted: %+v", st)
	}
}
