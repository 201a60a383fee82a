package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/audit"
)

// Regression (issue 27, item 3): a well-formed record appended by
// someone who cannot write the head is named by `audit verify` (which
// fails) and marked by `audit tail` as past the head. No engine needed.
func TestAuditCommandsNameAForgedRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Append(audit.Record{Event: audit.Admitted, ScanID: "a", Client: "local"})
	l.Append(audit.Record{Event: audit.Ended, ScanID: "a", Client: "local"})
	l.Close()
	b, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	sum := sha256.Sum256(lines[len(lines)-1])
	forged, _ := json.Marshal(audit.Record{V: 2, Seq: 3, Event: audit.Admitted, ScanID: "forged", Client: "mallory", Prev: hex.EncodeToString(sum[:])})
	os.WriteFile(path, append(b, append(forged, '\n')...), 0o600)

	var out, errb bytes.Buffer
	err = run(context.Background(), []string{"audit", "verify", "--audit", path}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "record 3 was written without its head") {
		t.Fatalf("audit verify: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"audit", "tail", "--audit", path}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	tail := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(tail) != 3 || !strings.Contains(tail[2], "mallory") || !strings.Contains(tail[2], "past the head checkpoint") || strings.Contains(tail[1], "past the head") {
		t.Fatalf("audit tail:\n%s", out.String())
	}
}
