package shard

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// Red-team tests that FAIL on the current code (left uncommitted for the
// lead). Pure, no engine: -short.

// A host whose one line (a script's output attribute, newlines escaped by
// nmap) is longer than 1 MiB (1.5 MiB here) — a hostile HTTP server's page read by a
// script such as http-comments-displayer, within nmap's 2 MiB body bound —
// must not break the merged document: unsharded, the project's decoder
// reads such a line (and bounds what it keeps). The Stream drops the
// line's first MiB and keeps its tail, so the host's XML is cut in the
// middle of an element.
func TestRedteamLongLineKeepsDocumentValid(t *testing.T) {
	big := strings.Repeat("A", 3<<19) // 1.5 MiB
	host := `<host starttime="1" endtime="2"><status state="up" reason="syn-ack" reason_ttl="0"/>
<address addr="10.0.0.1" addrtype="ipv4"/>
<ports><port protocol="tcp" portid="80"><state state="open" reason="syn-ack" reason_ttl="0"/><service name="http" method="table" conf="3"/><script id="http-comments-displayer" output="` + big + `"/></port>
</ports>
</host>
`
	other := `<host starttime="1" endtime="2"><status state="up" reason="syn-ack" reason_ttl="0"/>
<address addr="10.0.0.2" addrtype="ipv4"/>
<ports><port protocol="tcp" portid="80"><state state="open" reason="syn-ack" reason_ttl="0"/></port>
</ports>
</host>
`
	whole := shardDoc(host)
	if _, err := Merge([]Part{{XML: whole}}); err != nil {
		t.Fatal(err)
	}
	unsharded := decode(t, whole) // the decoder alone reads it
	if len(unsharded.Hosts) != 1 {
		t.Fatalf("unsharded: %d hosts", len(unsharded.Hosts))
	}
	// A runner hands the output on in pieces (Docker's log stream, a
	// pod's log): 32 KiB writes here.
	var out bytes.Buffer
	s := NewStream(&out, [][]netip.Prefix{{netip.MustParsePrefix("10.0.0.1/32")}, {netip.MustParsePrefix("10.0.0.2/32")}}, 0)
	for i, doc := range [][]byte{whole, shardDoc(other)} {
		for len(doc) > 0 {
			n := min(32<<10, len(doc))
			_, _ = s.Part(i).Write(doc[:n])
			doc = doc[n:]
		}
	}
	if err := s.Close([]bool{false, false}); err != nil {
		t.Fatal(err)
	}
	merged := out.Bytes()
	r, err := results.Decode(bytes.NewReader(merged), results.Handlers{})
	if err != nil {
		t.Fatalf("the merged document does not decode: %v", err)
	}
	if len(r.Hosts) != 2 || len(r.Hosts[0].Ports) != 1 {
		t.Fatalf("merged: %d hosts (want 2, the first with its port)", len(r.Hosts))
	}
}

// Split must never return shards that cover fewer addresses than its
// input without an error. Five blocks of 2^62 addresses (IPv6 /66) sum
// past 2^64: the total wraps to 2^62 and the shards cover a quarter of
// the first block only, silently dropping the rest. (Reachable through
// Config.Plan only where no MaxAddresses bound is set; Split is exported
// and documents "exactly the input's addresses".)
func TestRedteamSplitTotalOverflow(t *testing.T) {
	var in []netip.Prefix
	for _, s := range []string{"2001:db8:0:0::/66", "2001:db8:0:0:4000::/66", "2001:db8:0:0:8000::/66", "2001:db8:0:0:c000::/66", "2001:db8:0:1::/66"} {
		in = append(in, netip.MustParsePrefix(s))
	}
	shards, err := Split(in, 2)
	if err != nil {
		return // refusing is fine
	}
	var got []netip.Prefix
	for _, s := range shards {
		got = append(got, s...)
	}
	covered := map[netip.Prefix]bool{}
	for _, p := range in {
		for _, g := range got {
			if p.Overlaps(g) {
				covered[p] = true
			}
		}
	}
	if len(covered) != len(in) {
		t.Fatalf("Split returned no error but its shards %v cover only %d of the %d input blocks", shards, len(covered), len(in))
	}
}
