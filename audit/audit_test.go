package audit

import (
	"bytes"
	"errors"
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
