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
		case !c.bad && l.Resolved.InventoryGoneAfter != c.want:
			t.Errorf("%q: gone_after %s, want %s", c.yaml, l.Resolved.InventoryGoneAfter, c.want)
		}
	}
}
