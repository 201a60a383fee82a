package config

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the settings table of docs/configuration.md from the table in layers.go")

const (
	tableBegin = "<!-- settings:begin -->\n"
	tableEnd   = "<!-- settings:end -->"
)

// The settings table of docs/configuration.md is the one table of
// layers.go, rendered: the test fails when they differ, and
// `go test ./internal/config -run TestSettingsTable -update` rewrites the
// block between the markers (creating the file with just the markers and
// the table when it is missing).
func TestSettingsTable(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "configuration.md")
	rewrote, err := syncTable(path, *update)
	if err != nil {
		t.Fatalf("%v\nrun: go test ./internal/config -run TestSettingsTable -update", err)
	}
	if rewrote {
		t.Logf("rewrote the settings table of %s", path)
	}
}

// syncTable compares the block of path with SettingsTable; with update it
// rewrites the block instead (and makes the file when it is missing).
func syncTable(path string, update bool) (rewrote bool, err error) {
	want := SettingsTable()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) && update {
		data, err = []byte("# Configuration\n\n"+tableBegin+tableEnd+"\n"), nil
	}
	if err != nil {
		return false, err
	}
	i := bytes.Index(data, []byte(tableBegin))
	j := bytes.Index(data, []byte(tableEnd))
	if i < 0 || j < i {
		return false, fmt.Errorf("%s: no %q ... %q block", path, strings.TrimSpace(tableBegin), tableEnd)
	}
	got := string(data[i+len(tableBegin) : j])
	if got == want {
		return false, nil
	}
	if update {
		out := append(append(append([]byte{}, data[:i+len(tableBegin)]...), want...), data[j:]...)
		return true, os.WriteFile(path, out, 0o644)
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for k := range max(len(gl), len(wl)) {
		var g, w string
		if k < len(gl) {
			g = gl[k]
		}
		if k < len(wl) {
			w = wl[k]
		}
		if g != w {
			return false, fmt.Errorf("%s: the settings table differs from internal/config/layers.go at line %d:\n docs: %s\n want: %s", path, k+1, g, w)
		}
	}
	return false, nil
}

// The generator itself, on a copy: a stale row fails naming it, -update
// rewrites only the block (the prose around it stays), and a missing file
// is made with the markers and the table.
func TestSettingsTableUpdate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "configuration.md")
	stale := strings.Replace(SettingsTable(), "`512m`", "`256m`", 1)
	doc := "# Configuration\n\nprose before\n\n" + tableBegin + stale + tableEnd + "\n\nprose after\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := syncTable(path, false); err == nil || !strings.Contains(err.Error(), "256m") {
		t.Fatalf("a stale table: %v", err)
	}
	if rewrote, err := syncTable(path, true); !rewrote || err != nil {
		t.Fatalf("update: %v %v", rewrote, err)
	}
	data, _ := os.ReadFile(path)
	if want := strings.Replace(doc, stale, SettingsTable(), 1); string(data) != want {
		t.Fatalf("update wrote:\n%s", data)
	}
	if _, err := syncTable(path, false); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "new.md")
	if _, err := syncTable(missing, false); err == nil {
		t.Fatal("a missing file passed")
	}
	if _, err := syncTable(missing, true); err != nil {
		t.Fatal(err)
	}
	if _, err := syncTable(missing, false); err != nil {
		t.Fatal(err)
	}
}

// Every setting has its docs line; a default said in words is for a value
// that does not say it (0 or empty), so a changed default cannot go stale.
func TestSettingsDocumented(t *testing.T) {
	d := Default()
	for _, s := range settings {
		if s.doc == "" {
			t.Errorf("%s: no doc", s.key)
		}
		if v := current(s.ptr(&d)); s.def != "" && v != "" && v != "0" {
			t.Errorf("%s: default %q is said in words (%q): let the table show it", s.key, v, s.def)
		}
	}
}
