package shard

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "results", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decode reads a document with the project's decoder.
func decode(t *testing.T, doc []byte) *results.Result {
	t.Helper()
	r, err := results.Decode(bytes.NewReader(doc), results.Handlers{})
	if err != nil {
		t.Fatalf("decode merged XML: %v\n%s", err, doc)
	}
	return r
}

// Two shards' XML merge into one document the decoder reads as one run:
// every host once, in address order, counts summed. (Unit test on
// recorded nmap XML.)
func TestMerge(t *testing.T) {
	multi := fixture(t, "multi-host.xml") // 127.0.0.1-3
	one := fixture(t, "connect.xml")
	merged, err := Merge([]Part{{XML: multi}, {XML: one}})
	if err != nil {
		t.Fatal(err)
	}
	r := decode(t, merged)
	a, b := decode(t, multi), decode(t, one)
	if len(r.Hosts) != len(a.Hosts)+len(b.Hosts) {
		t.Fatalf("%d hosts, want %d", len(r.Hosts), len(a.Hosts)+len(b.Hosts))
	}
	for i := 1; i < len(r.Hosts); i++ {
		x, _ := netip.ParseAddr(r.Hosts[i-1].Addresses[0])
		y, _ := netip.ParseAddr(r.Hosts[i].Addresses[0])
		if x.Compare(y) > 0 {
			t.Errorf("hosts out of order: %v before %v", x, y)
		}
	}
	if !strings.Contains(string(merged), `exit="success"`) || strings.Count(string(merged), "<nmaprun") != 1 || strings.Count(string(merged), "<runstats>") != 1 {
		t.Errorf("merged run:\n%s", merged)
	}
}

// A shard that failed or whose XML ended early keeps its finished hosts,
// and the run's error names its blocks.
func TestMergePartial(t *testing.T) {
	multi := fixture(t, "multi-host.xml")
	cut := multi[:bytes.LastIndex(multi, []byte("<host "))+40] // mid-way through the last host
	merged, err := Merge([]Part{
		{XML: fixture(t, "connect.xml"), Blocks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		{XML: cut, Blocks: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/31")}},
		{Failed: true, Blocks: []netip.Prefix{netip.MustParsePrefix("127.0.0.4/30")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := decode(t, merged)
	if len(r.Hosts) != 1+2 {
		t.Errorf("%d hosts kept, want 3 (one from the whole shard, two finished of the cut one)", len(r.Hosts))
	}
	s := string(merged)
	if !strings.Contains(s, `exit="error"`) || !strings.Contains(s, "127.0.0.2/31") || !strings.Contains(s, "127.0.0.4/30") || strings.Contains(s, "missing blocks: 127.0.0.1/32") {
		t.Errorf("runstats do not name exactly the missing blocks:\n%s", s[strings.Index(s, "<runstats>"):])
	}
	if _, err := Merge([]Part{{Failed: true}}); err == nil {
		t.Error("a merge of nothing succeeded")
	}
}
