package config

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// The inventory section resolves to durations: gone_after (default 30
// days) and changes_keep (default 365 days, from default.yaml; empty keeps
// every entry); a value under an hour, not a duration, or days past a
// century is refused naming the key and the rule.
func TestInventorySection(t *testing.T) {
	day := 24 * time.Hour
	for _, c := range []struct {
		yaml      string
		gone      time.Duration
		keep      time.Duration
		refuseKey string
	}{
		{yaml: "", gone: 30 * day, keep: 365 * day},
		{yaml: "inventory:\n  gone_after: 7d\n", gone: 7 * day, keep: 365 * day},
		{yaml: "inventory:\n  gone_after: 48h\n", gone: 48 * time.Hour, keep: 365 * day},
		{yaml: "inventory:\n  changes_keep: 90d\n", gone: 30 * day, keep: 90 * day},
		{yaml: "inventory:\n  changes_keep: \"\"\n", gone: 30 * day, keep: 0},
		{yaml: "inventory:\n  gone_after: 5m\n", refuseKey: "inventory.gone_after"},
		{yaml: "inventory:\n  gone_after: soon\n", refuseKey: "inventory.gone_after"},
		{yaml: "inventory:\n  changes_keep: 30m\n", refuseKey: "inventory.changes_keep"},
		{yaml: "inventory:\n  changes_keep: forever\n", refuseKey: "inventory.changes_keep"},
		{yaml: "inventory:\n  changes_keep: 999999999d\n", refuseKey: "inventory.changes_keep"},
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
		case c.refuseKey != "":
			if !errors.As(err, &ke) || ke.Key != c.refuseKey || !strings.Contains(err.Error(), "a number of days") {
				t.Errorf("%q: error %v, want a KeyError for %s", c.yaml, err, c.refuseKey)
			}
		case err != nil:
			t.Errorf("%q: %v", c.yaml, err)
		case l.Resolved.Inventory.GoneAfter != c.gone || l.Resolved.Inventory.ChangesKeep != c.keep:
			t.Errorf("%q: gone_after %s, changes_keep %s; want %s, %s", c.yaml, l.Resolved.Inventory.GoneAfter, l.Resolved.Inventory.ChangesKeep, c.gone, c.keep)
		}
	}
}
