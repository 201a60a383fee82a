package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func TestParseKeep(t *testing.T) {
	for in, want := range map[string]Keep{"": {}, "10000": {Count: 10000}, "90d": {Age: 90 * 24 * time.Hour}, "720h": {Age: 720 * time.Hour}} {
		if got, err := ParseKeep(in); err != nil || got != want {
			t.Errorf("ParseKeep(%q) = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"0", "-3", "1m", "forever", "0d"} {
		if _, err := ParseKeep(bad); err == nil {
			t.Errorf("ParseKeep(%q) accepted", bad)
		}
	}
}

// Keep 3: the 3 newest keep everything, the next 3 lose their raw XML,
// older ones go; a protected baseline and a running scan stay whatever
// their age.
func TestPrune(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "scans.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Now().Add(-time.Hour)
	var recs []*Record
	for i := range 10 {
		status := Done
		if i == 0 {
			status = Running
		}
		recs = append(recs, &Record{ID: fmt.Sprint("s", i), Status: status, Targets: "127.0.0.1", CreatedAt: t0.Add(time.Duration(i) * time.Minute),
			RawXML: []byte("<nmaprun/>"), Argv: []string{"nmap"}})
	}
	if err := st.Import(ctx, recs); err != nil {
		t.Fatal(err)
	}
	p, err := st.Prune(ctx, Keep{Count: 3}, []string{"s1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Newest first: s9 s8 s7 keep all; s6 s5 s4 lose XML; s3 s2 deleted,
	// s1 protected, s0 running.
	if p.Deleted != 2 || p.XMLDropped != 3 {
		t.Errorf("pruned %+v", p)
	}
	for id, want := range map[string]string{"s9": "xml", "s6": "noxml", "s3": "gone", "s2": "gone", "s1": "noxml-protected", "s0": "xml"} {
		x, err := st.RawXML(ctx, id, "")
		switch {
		case want == "gone" && err == nil:
			t.Errorf("%s kept", id)
		case want == "xml" && (err != nil || len(x) == 0):
			t.Errorf("%s lost its XML: %v", id, err)
		case want == "noxml" && (err != nil || len(x) != 0):
			t.Errorf("%s kept its XML: %v", id, err)
		case want == "noxml-protected" && err != nil:
			t.Errorf("protected %s deleted: %v", id, err)
		}
	}
}
