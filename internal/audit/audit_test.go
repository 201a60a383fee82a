package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestChainVerifyAndTamper(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range []string{Admitted, Ended, Admitted, Ended} {
		if err := l.Append(Record{Event: ev, ScanID: []string{"a", "a", "b", "b"}[i], Client: "local", Argv: []string{"nmap", "-sT"}}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if rep, err := Verify(path); err != nil || rep.Records != 4 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	orig, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimRight(orig, "\n"), []byte("\n"))

	// Editing line 3 breaks it; deleting line 2 breaks line 3 (was 3).
	edited := bytes.Replace(orig, lines[2], bytes.Replace(lines[2], []byte(`"local"`), []byte(`"mallory"`), 1), 1)
	os.WriteFile(path, edited, 0o600)
	var ve *VerifyError
	if _, err := Verify(path); !errors.As(err, &ve) || ve.Line != 4 || !strings.Contains(err.Error(), "line 3 was edited") {
		t.Fatalf("edited line: %v", err)
	}
	deleted := bytes.Join(append([][]byte{lines[0]}, lines[2:]...), []byte("\n"))
	os.WriteFile(path, append(deleted, '\n'), 0o600)
	if _, err := Verify(path); !errors.As(err, &ve) || ve.Line != 2 {
		t.Fatalf("deleted line: %v", err)
	}
}

// A scan admitted by a dead process gets an interrupted record at the
// next open; one of a live process does not.
func TestInterruptedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, _ := Open(path)
	dead := exec.Command("true")
	dead.Run()
	l.Append(Record{Event: Admitted, ScanID: "dead", OwnerPID: dead.ProcessState.Pid(), OwnerHost: hostForTest()})
	l.Append(Record{Event: Admitted, ScanID: "live"})
	l.Close()
	l2, closed, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if len(closed) != 1 || closed[0] != "dead" {
		t.Fatalf("closed %v", closed)
	}
	recs, _ := Tail(path, 10)
	if last := recs[len(recs)-1]; last.Event != Interrupted || last.ScanID != "dead" {
		t.Fatalf("last record %+v", last)
	}
	if _, err := Verify(path); err != nil {
		t.Fatal(err)
	}
}

func hostForTest() string { h, _ := os.Hostname(); return h }

func appendN(t *testing.T, path string, n int) {
	t.Helper()
	l, _, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < n; i++ {
		if err := l.Append(Record{Event: Admitted, ScanID: fmt.Sprintf("s%d", i), Client: "local"}); err != nil {
			t.Fatal(err)
		}
	}
}

// Regression (security review 10): cutting records off the end, emptying
// the trail, re-encoding a line (extra or duplicate keys) and re-chaining
// a forged record are all found, by Verify and at start-up.
func TestTamperFound(t *testing.T) {
	for _, c := range []struct {
		name   string
		tamper func(lines [][]byte) [][]byte
		want   string
	}{
		{"cut off the end", func(l [][]byte) [][]byte { return l[:2] }, "cut off the end"},
		{"emptied", func(l [][]byte) [][]byte { return nil }, "the trail is empty"},
		{"duplicate key", func(l [][]byte) [][]byte {
			l[1] = bytes.Replace(l[1], []byte(`"client":"local"`), []byte(`"client":"local","client":"local"`), 1)
			return l
		}, "line 2 was edited"},
		{"extra key", func(l [][]byte) [][]byte {
			l[3] = bytes.Replace(l[3], []byte(`{`), []byte(`{"x":1,`), 1)
			return l
		}, "not the one the head recorded"},
		{"forged and re-chained", func(l [][]byte) [][]byte {
			// Replace record 2 and fix every later link, as a forger would.
			var r Record
			json.Unmarshal(l[1], &r)
			r.Client = "mallory"
			l[1], _ = json.Marshal(r)
			for i := 2; i < len(l); i++ {
				var n Record
				json.Unmarshal(l[i], &n)
				n.Prev = lineHash(l[i-1])
				l[i], _ = json.Marshal(n)
			}
			return l
		}, "not the one the head recorded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			appendN(t, path, 4)
			orig, _ := os.ReadFile(path)
			lines := c.tamper(bytes.Split(bytes.TrimRight(orig, "\n"), []byte("\n")))
			out := bytes.Join(lines, []byte("\n"))
			if len(out) > 0 {
				out = append(out, '\n')
			}
			os.WriteFile(path, out, 0o600)
			if _, err := Verify(path); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Verify: %v; want %q", err, c.want)
			}
			if c.name == "duplicate key" {
				return // a middle line: the head still matches, so Open cannot see it
			}
			var he *HeadError
			if _, _, err := Open(path); !errors.As(err, &he) {
				t.Fatalf("Open of a tampered trail: %v", err)
			}
		})
	}
}

// Regression (security review 10): a torn last line no longer stops the
// server: it is moved aside, kept, recorded, and Verify names it.
func TestTornLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	appendN(t, path, 2)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	f.WriteString(`{"v":2,"seq":3,"time":"2026-`)
	f.Close()
	if _, err := Verify(path); err == nil || !strings.Contains(err.Error(), "torn") {
		t.Fatalf("Verify of a torn trail: %v", err)
	}
	l, _, err := Open(path)
	if err != nil {
		t.Fatalf("Open with a torn last line: %v", err)
	}
	l.Close()
	aside, _ := filepath.Glob(path + ".torn-*")
	if len(aside) != 1 {
		t.Fatalf("torn line not kept aside: %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); string(b) != `{"v":2,"seq":3,"time":"2026-` {
		t.Fatalf("kept %q", b)
	}
	rep, err := Verify(path)
	if err != nil || rep.Records != 3 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], aside[0]) {
		t.Fatalf("Verify after recovery: %+v %v", rep, err)
	}
}

// A trail written in the first format still verifies, and chains on.
func TestLegacyTrailChainsOn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	r1 := Record{Seq: 1, Event: Admitted, ScanID: "a"}
	r1.Hash = r1.legacyHash()
	r2 := Record{Seq: 2, Event: Ended, ScanID: "a", Prev: r1.Hash}
	r2.Hash = r2.legacyHash()
	b1, _ := json.Marshal(r1)
	b2, _ := json.Marshal(r2)
	os.WriteFile(path, append(append(append(b1, '\n'), b2...), '\n'), 0o600)
	appendN(t, path, 1)
	if rep, err := Verify(path); err != nil || rep.Records != 3 {
		t.Fatalf("%+v %v", rep, err)
	}
}

// Start-up reads the head and the last line, not the trail: a damaged
// line in the middle (which verify finds) does not slow or stop Open, and
// a dead server's open scan is still found, from the head's list.
func TestOpenDoesNotReadTheTrail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, _ := Open(path)
	dead := exec.Command("true")
	dead.Run()
	l.Append(Record{Event: Admitted, ScanID: "dead", OwnerPID: dead.ProcessState.Pid(), OwnerHost: hostForTest()})
	for i := range 50 {
		l.Append(Record{Event: Admitted, ScanID: fmt.Sprint("s", i), Client: "local"})
		l.Append(Record{Event: Ended, ScanID: fmt.Sprint("s", i), Client: "local"})
	}
	l.Close()
	b, _ := os.ReadFile(path)
	lines := bytes.Split(b, []byte("\n"))
	lines[10] = bytes.Repeat([]byte("x"), len(lines[10]))
	os.WriteFile(path, bytes.Join(lines, []byte("\n")), 0o600)

	l2, closed, err := Open(path)
	if err != nil {
		t.Fatalf("Open read the damaged middle of the trail: %v", err)
	}
	l2.Close()
	if len(closed) != 1 || closed[0] != "dead" {
		t.Fatalf("closed %v, want the dead server's scan", closed)
	}
	var ve *VerifyError
	if _, err := Verify(path); !errors.As(err, &ve) || ve.Line != 11 {
		t.Fatalf("verify: %v", err)
	}
}

// Rotation: the new file's first record chains to the old file's last
// line; verify follows the chain across files and still finds an edit in
// the older one; a second process that had the trail open writes to the
// new file.
func TestRotate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	appendN(t, path, 3)
	other, _, err := Open(path) // e.g. a server, while `audit rotate` runs
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	l, _, _ := Open(path)
	old, err := l.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	l.Append(Record{Event: Admitted, ScanID: "after", Client: "local"})
	l.Close()
	if err := other.Append(Record{Event: Ended, ScanID: "after", Client: "local"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(old); bytes.Contains(b, []byte(`"after"`)) {
		t.Fatalf("a record landed in the rotated-out file:\n%s", b)
	}
	rep, err := Verify(path)
	if err != nil || rep.Records != 6 || len(rep.Files) != 1 || rep.Files[0] != filepath.Base(old) {
		t.Fatalf("verify across files: %+v %v", rep, err)
	}
	recs, _ := Tail(path, 10)
	if recs[0].Event != Rotated || recs[0].Seq != 4 || recs[len(recs)-1].ScanID != "after" {
		t.Fatalf("new file %+v", recs)
	}
	// An edit in the older file is still found, and named.
	b, _ := os.ReadFile(old)
	os.WriteFile(old, bytes.Replace(b, []byte(`"s1"`), []byte(`"s9"`), 1), 0o600)
	var ve *VerifyError
	if _, err := Verify(path); !errors.As(err, &ve) || ve.File != filepath.Base(old) || !strings.Contains(err.Error(), filepath.Base(old)) {
		t.Fatalf("edit in the rotated file: %v", err)
	}
}

// A batch chains like single appends.
func TestAppendBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	appendN(t, path, 2)
	l, _, _ := Open(path)
	if err := l.AppendBatch([]Record{{Event: Ended, ScanID: "s0"}, {Event: Admitted, ScanID: "x"}, {Event: Ended, ScanID: "x"}}); err != nil {
		t.Fatal(err)
	}
	l.Append(Record{Event: Ended, ScanID: "s1"})
	l.Close()
	if rep, err := Verify(path); err != nil || rep.Records != 6 {
		t.Fatalf("%+v %v", rep, err)
	}
	h, _, _ := readHead(path)
	if len(h.Open) != 0 || !h.OpenKnown {
		t.Fatalf("head %+v", h)
	}
}

// Tail reads from the end: the last n records, oldest first, across the
// reader's chunks.
func TestTailFromTheEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, _ := Open(path)
	var batch []Record
	for i := range 3000 {
		batch = append(batch, Record{Event: Admitted, ScanID: fmt.Sprint("s", i), Client: "local", Targets: strings.Repeat("x", 40)})
	}
	if err := l.AppendBatch(batch); err != nil {
		t.Fatal(err)
	}
	l.Close()
	recs, err := Tail(path, 10)
	if err != nil || len(recs) != 10 || recs[0].Seq != 2991 || recs[9].Seq != 3000 {
		t.Fatalf("%d records, first %+v, err %v", len(recs), recs, err)
	}
}
