package executor

import (
	"bytes"
	"testing"
)

// The exit line is removed and reported however the stream is split.
// (Pure stream logic: no engine needed.)
func TestExitWatchSplits(t *testing.T) {
	stream := "Starting Nmap\nPORT STATE\n22/tcp open\n" + "\n\x1enmap-mcp-exit=3\n"
	for size := 1; size <= len(stream); size++ {
		var out bytes.Buffer
		w := newExitWatch(&out)
		for i := 0; i < len(stream); i += size {
			w.Write([]byte(stream[i:min(i+size, len(stream))]))
		}
		w.flush()
		if out.String() != "Starting Nmap\nPORT STATE\n22/tcp open\n" || !w.found || w.status != 3 {
			t.Fatalf("chunk %d: out %q found %v status %d", size, out.String(), w.found, w.status)
		}
	}
}

func TestExitWatchWithoutMarker(t *testing.T) {
	var out bytes.Buffer
	w := newExitWatch(&out)
	w.Write([]byte("no marker here, just output\nand \x1e a stray separator\n"))
	w.flush()
	if out.String() != "no marker here, just output\nand \x1e a stray separator\n" || w.found {
		t.Fatalf("out %q found %v", out.String(), w.found)
	}
}
