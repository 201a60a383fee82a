package config

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// inventory.gone_after resolves to a duration (default 30 days); a value
// under an hour or not a duration is refused naming the key.
func TestInventoryGoneAfter(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want time.Duration
		bad  bool
	}{
		{"", 30 * 24 * time.Hour, false},
		{"inventory:\n  gone_after: 7d\n", 7 * 24 * time.Hour, false},
		{"inventory:\n  gone_after: 48h\n", 48 * time.Hour, false},
		{"inventory:\n  gone_after: 5m\n", 0, true},
		{"inventory:\n  gone_after: soon\n", 0, true},
	} {
		path := write(t, c.yaml+"log:\n  level: info\n")
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		l, err := Register(fs, []string{"--config", path})
		if err == nil {
			err = fs.Parse([]string{"--config", path})
		}
		if err == nil {
			_, err = l.Done()
		}
		var ke *KeyError
		switch {
		case c.bad && (!errors.As(err, &ke) || ke.Key != "inventory.gone_after" || !strings.Contains(err.Error(), "30d")):
			t.Errorf("%q: error %v, want a KeyError for inventory.gone_after", c.yaml, err)
		case !c.bad && err != nil:
			t.Errorf("%q: %v", c.yaml, err)
		case !c.bad && l.Resolved.Inventory.GoneAfter != c.want:
			t.Errorf("%q: gone_after %s, want %s", c.yaml, l.Resolved.Inventory.GoneAfter, c.want)
		}
	}
}

// inventory.changes_keep resolves to a duration (default 365 days, from
// default.yaml; empty keeps every entry); a value under an hour, not a
// duration, or days past a century is refused naming the key.
func TestInventoryChangesKeep(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want time.Duration
		bad  bool
	}{
		{"", 365 * 24 * time.Hour, false},
		{"inventory:\n  changes_keep: 90d\n", 90 * 24 * time.Hour, false},
		{"inventory:\n  changes_keep: \"\"\n", 0, false},
		{"inventory:\n  changes_keep: 30m\n", 0, true},
		{"inventory:\n  changes_keep: forever\n", 0, true},
		{"inventory:\n  changes_keep: 999999999d\n", 0, true},
	} {
		path := write(t, c.yaml+"log:\n  level: info\n")
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		l, err := Register(fs, []string{"--config", path})
		if err == nil {
			err = fs.Parse([]string{"--config", path})
		}
		if err == nil {
			_, err = l.Done()
		}
		var ke *KeyError
		switch {
		case c.bad && (!errors.As(err, &ke) || ke.Key != "inventory.changes_keep" || !strings.Contains(err.Error(), "365d")):
			t.Errorf("%q: error %v, want a KeyError for inventory.changes_keep", c.yaml, err)
		case !c.bad && err != nil:
			t.Errorf("%q: %v", c.yaml, err)
		case !c.bad && l.Resolved.Inventory.ChangesKeep != c.want:
			t.Errorf("%q: changes_keep %s, want %s", c.yaml, l.Resolved.Inventory.ChangesKeep, c.want)
		}
	}
}
