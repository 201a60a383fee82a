package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// TestInventorySweepGoneAfterChecked: "inventory sweep --gone-after 1s"
// took any duration (the setting inventory.gone_after must be at least an
// hour) and marked the whole inventory gone; it is refused, naming the
// flag and the rule, and nothing is marked. No engine: a store file.
func TestInventorySweepGoneAfterChecked(t *testing.T) {
	ctx := context.Background()
	db := historyOfOneScan(t, "10.1.0.5", results.Port{Protocol: "tcp", Port: 22, State: "open", Service: "ssh"}, time.Minute)
	var out, errb bytes.Buffer
	for _, bad := range []string{"1s", "10m", "0d", "soon"} {
		err := run(ctx, []string{"inventory", "sweep", "--store", db, "--gone-after", bad}, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "--gone-after") || !strings.Contains(err.Error(), bad) {
			t.Errorf("--gone-after %s: %v\n%s", bad, err, out.String())
		}
	}
	out.Reset()
	if err := run(ctx, []string{"inventory", "find", "--store", db, "--gone", "yes"}, &out, &errb); err != nil || !strings.HasPrefix(out.String(), "0 hosts") {
		t.Fatalf("gone after the refused sweeps: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"inventory", "sweep", "--store", db, "--gone-after", "7d"}, &out, &errb); err != nil || !strings.Contains(out.String(), "0 hosts, 0 ports marked gone (not seen for 168h0m0s)") {
		t.Fatalf("sweep 7d: %v\n%s", err, out.String())
	}
}
