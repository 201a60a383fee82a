package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit/faultfs"
)

// Storage faults of the trail injected for real, without the Docker
// engine (they run under -short, as root): a full disk (a small tmpfs the
// test mounts and fills) and a read-only folder (a read-only bind mount).
// The mounts are the test's own, under its temporary folder, unmounted in
// t.Cleanup even when the test fails.

func wantFault(t *testing.T, err error, kind string, words ...string) {
	t.Helper()
	var fe *FaultError
	if !errors.As(err, &fe) || fe.Kind != kind {
		t.Fatalf("want a %s fault, got %T: %v", kind, err, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

func verified(t *testing.T, path string, records int) {
	t.Helper()
	rep, err := Verify(path)
	if err != nil || rep.Records != records || len(rep.Notes) != 0 {
		t.Fatalf("verify: %+v %v (want %d records, no notes)", rep, err, records)
	}
	if aside, _ := filepath.Glob(path + ".*-*"); len(aside) != 0 {
		t.Fatalf("files moved aside: %v", aside)
	}
}

// trailOnTmpfs opens a trail on a new tmpfs of size (closed when the
// test ends) holding n admissions, and returns the folder, the trail's
// path and the log.
func trailOnTmpfs(t *testing.T, size string, n int) (string, string, *Log) {
	t.Helper()
	dir := faultfs.Tmpfs(t, size)
	path := filepath.Join(dir, "audit.jsonl")
	l, _, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for i := range n {
		if err := l.Append(Record{Event: Admitted, ScanID: fmt.Sprint("s", i)}); err != nil {
			t.Fatal(err)
		}
	}
	return dir, path, l
}

// The trail's disk is full: Ready and Append refuse, naming the file,
// the fault and what to do; the records written stay and verify; a line
// the disk took only part of is cut back (no torn line); once space is
// freed, appends work again without reopening the trail.
func TestDiskFull(t *testing.T) {
	dir, path, l := trailOnTmpfs(t, "256k", 3)
	filler := faultfs.Fill(t, dir, 0)
	wantFault(t, l.Ready(t.Context()), Full, path, "disk is full", "free space", "no restart needed")
	wantFault(t, l.Append(Record{Event: Admitted, ScanID: "full"}), Full, path, "disk is full", "no space left on device")
	verified(t, path, 3)

	// Room for the head's intent, not for a long line: the part written
	// is cut back.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	faultfs.Fill(t, dir, 8<<10)
	big := Record{Event: Admitted, ScanID: "big", Request: []byte(`{"targets":"` + strings.Repeat("1", 40<<10) + `"}`)}
	wantFault(t, l.Append(big), Full, path)
	verified(t, path, 3)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := l.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(big); err != nil {
		t.Fatal(err)
	}
	verified(t, path, 4)
}

// The disk fills between a line and its head: the line is in the trail
// (the append succeeded), the head catches up at the next append without
// calling it a repair, and the chain verifies.
func TestDiskFullBeforeTheHead(t *testing.T) {
	dir, path, l := trailOnTmpfs(t, "256k", 0)
	if err := l.Append(Record{Event: Admitted, ScanID: "a"}); err != nil {
		t.Fatal(err)
	}
	var filler string
	l.afterLine = func() error { filler = faultfs.Fill(t, dir, 0); return nil }
	if err := l.Append(Record{Event: Ended, ScanID: "a"}); err != nil {
		t.Fatalf("append whose head could not be written: %v", err)
	}
	l.afterLine = nil
	if rep, err := Verify(path); err != nil || rep.Records != 2 || len(rep.Notes) != 1 {
		t.Fatalf("verify with the head behind: %+v %v", rep, err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(Record{Event: Admitted, ScanID: "b"}); err != nil {
		t.Fatal(err)
	}
	verified(t, path, 3) // no head-repaired record, no note
}

// The trail's folder turns read-only: Ready and Append refuse, naming the
// file and what to do; the trail still reads and verifies; once the
// folder is writable again, appends work without reopening the trail.
func TestFolderReadOnly(t *testing.T) {
	dir, path, l := trailOnTmpfs(t, "1m", 2)
	undo := faultfs.ReadOnlyBind(t, dir)
	wantFault(t, l.Ready(t.Context()), ReadOnly, path, "read-only", "writable again", "no restart needed")
	wantFault(t, l.Append(Record{Event: Admitted, ScanID: "ro"}), ReadOnly, path, "read-only file system")
	verified(t, path, 2)
	if recs, err := Tail(path, 5); err != nil || len(recs) != 2 {
		t.Fatalf("tail while read-only: %d %v", len(recs), err)
	}
	undo()
	if err := l.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(Record{Event: Admitted, ScanID: "after"}); err != nil {
		t.Fatal(err)
	}
	verified(t, path, 3)
	l.Close() // before the bind mount's removal
}
