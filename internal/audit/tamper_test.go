package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fourRecords opens a trail at a new path and writes two scans' admitted
// and ended records; the caller closes the log.
func fourRecords(t *testing.T) (string, *Log) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range []string{Admitted, Ended, Admitted, Ended} {
		if err := l.Append(Record{Event: ev, ScanID: []string{"a", "a", "b", "b"}[i], Client: "local"}); err != nil {
			t.Fatal(err)
		}
	}
	return path, l
}

func trailLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	out := bytes.Join(lines, []byte("\n"))
	if len(out) > 0 {
		out = append(out, '\n')
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// forge returns a well-formed record chained to the last line, as someone
// who can append to the trail but not write its head would make it.
func forge(t *testing.T, lines [][]byte, client string) []byte {
	t.Helper()
	var last Record
	if err := json.Unmarshal(lines[len(lines)-1], &last); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(Record{V: format, Seq: last.Seq + 1, Time: last.Time, Event: Admitted, ScanID: "forged", Client: client,
		Targets: "10.9.9.9", OwnerPID: last.OwnerPID, OwnerHost: last.OwnerHost, Prev: lineHash(lines[len(lines)-1])})
	return b
}

// Regression (issue 27, item 2): a running server no longer adopts a
// trail changed behind its back. Emptied, cut, edited in place, replaced
// by another file (even an identical copy: a new file must start with a
// "rotated" record), or appended to by someone else: the next append is
// refused with a *HeadError, so is every later one (scans are refused,
// as at start-up), the head is not moved, and verify still sees the break.
func TestRunningServerRefusesTamperedTrail(t *testing.T) {
	for _, c := range []struct {
		name       string
		tamper     func(t *testing.T, path string)
		verifySees bool
	}{
		{"emptied", func(t *testing.T, path string) { os.Truncate(path, 0) }, true},
		{"last line removed", func(t *testing.T, path string) {
			l := trailLines(t, path)
			writeLines(t, path, l[:len(l)-1])
		}, true},
		{"last line edited in place", func(t *testing.T, path string) {
			l := trailLines(t, path)
			l[3] = bytes.Replace(l[3], []byte(`"local"`), []byte(`"lokal"`), 1)
			writeLines(t, path, l)
		}, true},
		{"replaced by a shorter file", func(t *testing.T, path string) {
			l := trailLines(t, path)
			tmp := path + ".new"
			writeLines(t, tmp, l[:2])
			os.Rename(tmp, path)
		}, true},
		{"replaced by an identical copy", func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			os.WriteFile(path+".new", b, 0o600)
			os.Rename(path+".new", path)
		}, false},
		{"a whole line that is not a record appended", func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
			f.WriteString("not a record\n")
			f.Close()
		}, true},
		{"forged record appended", func(t *testing.T, path string) {
			l := trailLines(t, path)
			writeLines(t, path, append(l, forge(t, l, "mallory")))
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, l := fourRecords(t)
			defer l.Close()
			var logged bytes.Buffer
			l.log = slog.New(slog.NewTextHandler(&logged, nil))
			head, _ := os.ReadFile(HeadPath(path))
			c.tamper(t, path)
			var he *HeadError
			for i := range 2 {
				if err := l.Append(Record{Event: Admitted, ScanID: "next", Client: "local"}); !errors.As(err, &he) {
					t.Fatalf("append %d after the trail was %s: %v; want a *HeadError", i+1, c.name, err)
				}
			}
			if !strings.Contains(logged.String(), "refusing to append") {
				t.Errorf("not logged: %q", logged.String())
			}
			if now, _ := os.ReadFile(HeadPath(path)); !bytes.Equal(now, head) {
				t.Errorf("the head moved:\n%s\nwas\n%s", now, head)
			}
			if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(`"next"`)) {
				t.Errorf("a record was appended to the tampered trail")
			}
			if _, err := Verify(path); c.verifySees && err == nil {
				t.Errorf("verify says the tampered trail is intact")
			}
		})
	}
}

// Other writers sharing the trail are taken in, not taken for tampering:
// a second process's appends and rotation between this one's.
func TestRunningServerTakesInOtherWriters(t *testing.T) {
	path, a := fourRecords(t)
	defer a.Close()
	b, _, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 3 {
		if err := b.AppendBatch([]Record{{Event: Admitted, ScanID: "x"}, {Event: Ended, ScanID: "x"}}); err != nil {
			t.Fatal(err)
		}
		if err := a.Append(Record{Event: Admitted, ScanID: "y"}); err != nil {
			t.Fatalf("append %d after another writer's: %v", i, err)
		}
	}
	if _, err := b.Rotate(); err != nil {
		t.Fatal(err)
	}
	b.Append(Record{Event: Ended, ScanID: "y"})
	if _, err := b.Rotate(); err != nil { // two rotations between a's appends
		t.Fatal(err)
	}
	if err := a.Append(Record{Event: Admitted, ScanID: "z"}); err != nil {
		t.Fatalf("append after two rotations by another writer: %v", err)
	}
	rep, err := Verify(path)
	if err != nil || rep.Records != 4+9+3+1 || len(rep.Files) != 2 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	h, _, _ := readHead(path)
	if len(h.Open) != 1 || h.Open[0].ScanID != "z" {
		t.Fatalf("open scans after other writers: %+v", h.Open)
	}
}

// A write cut short by a writer that died in it (no newline) is not
// tampering: the running server moves it aside and records it, as at
// start-up, and goes on.
func TestRunningServerMovesATornWriteAside(t *testing.T) {
	path, l := fourRecords(t)
	defer l.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	f.WriteString(`{"v":2,"seq":5,"ti`)
	f.Close()
	if err := l.Append(Record{Event: Admitted, ScanID: "next", Client: "local"}); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(path)
	if err != nil || rep.Records != 6 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "torn last line") {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// Regression (issue 27, item 3): one well-formed record appended by
// someone who cannot write the head no longer passes as a crash: the
// head's intent does not name it, so verify names it and start-up
// refuses the trail.
func TestForgedRecordIsNotACrash(t *testing.T) {
	path, l := fourRecords(t)
	l.Close()
	lines := trailLines(t, path)
	writeLines(t, path, append(lines, forge(t, lines, "mallory")))
	_, err := Verify(path)
	if err == nil || !strings.Contains(err.Error(), "record 5 was written without its head") || !strings.Contains(err.Error(), "someone else") {
		t.Fatalf("verify of a forged record: %v", err)
	}
	var he *HeadError
	if _, _, err := Open(path); !errors.As(err, &he) || !strings.Contains(err.Error(), "record 5") {
		t.Fatalf("open of a forged record: %v", err)
	}
}

var errCrash = errors.New("crash")

// A crash between the line and its head: the head's intent names the
// line, so verify notes it, start-up adopts it, logs it and appends a
// record naming it.
func TestCrashBeforeHeadIsRepairedAndNamed(t *testing.T) {
	path, l := fourRecords(t)
	l.afterLine = func() error { return errCrash }
	if err := l.Append(Record{Event: Admitted, ScanID: "c", Client: "local"}); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	l.Close()
	rep, err := Verify(path)
	if err != nil || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "record 5 was written without its head: the head's intent names it") {
		t.Fatalf("verify after the crash: %+v %v", rep, err)
	}
	var logged bytes.Buffer
	l2, _, err := OpenWith(path, Options{Log: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if !strings.Contains(logged.String(), "record 5 was written without its head") {
		t.Errorf("start-up did not log the repair: %q", logged.String())
	}
	recs, _ := Tail(path, 1)
	if recs[0].Event != HeadRepaired || recs[0].Seq != 6 || !strings.Contains(recs[0].Outcome, "record 5") {
		t.Fatalf("last record %+v", recs[0])
	}
	rep, err = Verify(path)
	if err != nil || rep.Records != 6 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "record 5 was written without its head") {
		t.Fatalf("verify after the repair: %+v %v", rep, err)
	}
	h, _, _ := readHead(path)
	if len(h.Open) != 1 || h.Open[0].ScanID != "c" || h.Pending != nil {
		t.Fatalf("head after the repair: %+v", h)
	}
}

// A crash in the middle of a batch: the lines written are the first part
// of the intent's write; start-up moves them aside (they were never
// acknowledged) and records that.
func TestCrashMidBatchMovesItAside(t *testing.T) {
	path, l := fourRecords(t)
	l.afterLine = func() error {
		lines := trailLines(t, path)
		writeLines(t, path, lines[:len(lines)-2]) // 3 of 5 lines reached the disk
		return errCrash
	}
	batch := []Record{{Event: Admitted, ScanID: "p"}, {Event: Admitted, ScanID: "q"}, {Event: Admitted, ScanID: "r"}, {Event: Admitted, ScanID: "s"}, {Event: Admitted, ScanID: "u"}}
	if err := l.AppendBatch(batch); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	l.Close()
	if rep, err := Verify(path); err != nil || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "records 5 to 7 were written without their head") && !strings.Contains(rep.Notes[0], "records 5 to 7 were written without its head") {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	l2, _, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	aside, _ := filepath.Glob(path + ".cut-*")
	if len(aside) != 1 {
		t.Fatalf("cut write not kept: %v", aside)
	}
	rep, err := Verify(path)
	if err != nil || rep.Records != 5 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], aside[0]) {
		t.Fatalf("verify after: %+v %v", rep, err)
	}
}

// A head written before heads kept intents cannot tell a crash from a
// forged record: the one record past it is still adopted, but verify
// names it, start-up logs it and records it.
func TestLegacyHeadAllowanceIsNamed(t *testing.T) {
	path, l := fourRecords(t)
	l.Close()
	h, _, _ := readHead(path)
	h.Intents, h.Pending = false, nil
	writeHead(path, h)
	lines := trailLines(t, path)
	writeLines(t, path, append(lines, forge(t, lines, "mallory")))
	rep, err := Verify(path)
	if err != nil || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "record 5 was written without its head (a crash, or an append by someone else") {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	var logged bytes.Buffer
	l2, _, err := OpenWith(path, Options{Log: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	recs, _ := Tail(path, 1)
	if recs[0].Event != HeadRepaired || !strings.Contains(recs[0].Outcome, "record 5") || !strings.Contains(logged.String(), "record 5") {
		t.Fatalf("last record %+v, log %q", recs[0], logged.String())
	}
}
