package scans_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// The text a model reads is lean: at most 35% of nmap's own normal output
// for the same scan, on small and large scans alike, with every open port
// named and a short sandbox summary. Recorded fixtures; no engine needed.
func TestBriefTextIsLean(t *testing.T) {
	dir := filepath.Join("..", "results", "testdata")
	for _, name := range []string{"connect", "service-versions", "syn-top100", "udp", "multi-host"} {
		f, err := os.Open(filepath.Join(dir, name+".xml"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := results.Decode(f, results.Handlers{})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		normal, err := os.ReadFile(filepath.Join(dir, name+".nmap"))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		rec := &store.Record{ID: "3f2a9c0b1d4e", Status: store.Done, StartedAt: start, EndedAt: start.Add(40 * time.Millisecond),
			Argv:     []string{"nmap", "-oX", "-", "--stats-every", "2s", "-sT", "-p", "1-1000", "--", "127.0.0.1"},
			ImageTag: "nmap-mcp/nmap:7.93-ec676fde2a90", ImageID: "sha256:a0f3501bbc94",
			Limits: store.Limits{Profile: "uid 65532, caps none, network host, 1 CPU, 512 MiB, 128 pids, read-only rootfs, no-new-privileges"},
			Result: res}
		text, _ := scans.BriefText(rec, scans.DefaultTextCap)
		for _, h := range res.Hosts {
			for _, p := range h.OpenPorts() {
				if !strings.Contains(text, fmt.Sprintf("%d/%s open", p.Port, p.Protocol)) {
					t.Errorf("%s: text lacks port %d/%s:\n%s", name, p.Port, p.Protocol, text)
				}
			}
		}
		if !strings.Contains(text, "uid 65532, caps none, network host") {
			t.Errorf("%s: no sandbox summary:\n%s", name, text)
		}
		ratio := float64(len(text)) / float64(len(normal))
		t.Logf("%s: %d bytes, %.0f%% of nmap's normal output (%d bytes)", name, len(text), 100*ratio, len(normal))
		if ratio > 0.35 {
			t.Errorf("%s: %.0f%% of nmap's normal output, want at most 35%%:\n%s", name, 100*ratio, text)
		}
	}
}
