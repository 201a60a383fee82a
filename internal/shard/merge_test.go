package shard

import (
	"bytes"
	"io"
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
	want := append(append([]results.Host(nil), a.Hosts...), b.Hosts...)
	for i := range want {
		if r.Hosts[i].Addresses[0] != want[i].Addresses[0] {
			t.Errorf("host %d is %v, want %v (the shards' order)", i, r.Hosts[i].Addresses, want[i].Addresses)
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

// Live: a later shard's hosts wait for the earlier shards (targets'
// order), progress is the mean over shards and never falls, and the
// stream is one document the decoder reads host by host as it arrives.
func TestStreamLive(t *testing.T) {
	head := "<?xml version=\"1.0\"?>\n<nmaprun scanner=\"nmap\" args=\"nmap\" start=\"100\" version=\"7.93\" xmloutputversion=\"1.05\">\n<scaninfo type=\"connect\" protocol=\"tcp\" numservices=\"1\" services=\"22\"/>\n<verbose level=\"0\"/>\n<debugging level=\"0\"/>\n"
	hostXML := func(a string) string {
		return "<host starttime=\"100\" endtime=\"101\"><status state=\"up\" reason=\"conn-refused\" reason_ttl=\"0\"/>\n<address addr=\"" + a + "\" addrtype=\"ipv4\"/>\n<ports><port protocol=\"tcp\" portid=\"22\"><state state=\"open\" reason=\"syn-ack\" reason_ttl=\"0\"/></port>\n</ports>\n</host>\n"
	}
	end := "<runstats><finished time=\"105\" timestr=\"x\" elapsed=\"5\" exit=\"success\"/><hosts up=\"1\" down=\"1\" total=\"2\"/>\n</runstats>\n</nmaprun>\n"
	pr, pw := io.Pipe()
	var hosts []string
	var percents []float64
	decoded := make(chan error, 1)
	go func() {
		_, err := results.Decode(pr, results.Handlers{
			Host:     func(h results.Host) { hosts = append(hosts, h.Addresses[0]) },
			Progress: func(p results.Progress) { percents = append(percents, p.Percent) },
		})
		_, _ = io.Copy(io.Discard, pr)
		decoded <- err
	}()
	var all bytes.Buffer
	s := NewStream(io.MultiWriter(pw, &all), [][]netip.Prefix{{netip.MustParsePrefix("10.0.0.0/31")}, {netip.MustParsePrefix("10.0.0.2/31")}}, 0)
	w0, w1 := s.Part(0), s.Part(1)
	io.WriteString(w1, head)
	io.WriteString(w1, "<taskprogress task=\"Connect Scan\" time=\"101\" percent=\"50.00\" remaining=\"1\" etc=\"102\"/>\n")
	io.WriteString(w1, hostXML("10.0.0.2"))
	io.WriteString(w1, end)
	io.WriteString(w0, head)
	io.WriteString(w0, "<taskprogress task=\"Connect Scan\" time=\"101\" percent=\"20.00\" remaining=\"4\" etc=\"105\"/>\n")
	io.WriteString(w0, hostXML("10.0.0.0"))
	io.WriteString(w0, end)
	if err := s.Close([]bool{false, false}); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-decoded; err != nil {
		t.Fatalf("decode: %v\n%s", err, all.String())
	}
	if len(hosts) != 2 || hosts[0] != "10.0.0.0" || hosts[1] != "10.0.0.2" {
		t.Errorf("hosts %v, want 10.0.0.0 then 10.0.0.2 (the held host after the earlier shard)", hosts)
	}
	if len(percents) == 0 || percents[len(percents)-1] < 50 {
		t.Errorf("progress %v: want the mean over shards, the done shard counting 100", percents)
	}
	doc := all.String()
	if !strings.Contains(doc, `<hosts up="2" down="2" total="4"/>`) || !strings.Contains(doc, `exit="success"`) || strings.Count(doc, "<nmaprun ") != 1 {
		t.Errorf("merged run:\n%s", doc)
	}
}

// An over-long line that arrives whole in one write is dropped with its
// host; the next line is read as usual (unit test).
func TestStreamOverlongLineInOneWrite(t *testing.T) {
	multi := string(fixture(t, "multi-host.xml"))
	i := strings.Index(multi, "<hostnames>\n<hostname name=\"localhost\"")
	if i < 0 {
		t.Fatal("fixture changed")
	}
	long := multi[:i] + "<os>" + strings.Repeat("x", maxLine+10) + "</os>\n" + multi[i:]
	var out bytes.Buffer
	s := NewStream(&out, [][]netip.Prefix{nil}, 0)
	if _, err := s.Part(0).Write([]byte(long)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close([]bool{false}); err != nil {
		t.Fatal(err)
	}
	r := decode(t, out.Bytes())
	if len(r.Hosts) != 2 || !strings.Contains(out.String(), "1 hosts dropped with an XML line longer than 16 MiB") {
		t.Fatalf("%d hosts; runstats %s", len(r.Hosts), out.String()[strings.Index(out.String(), "<runstats>"):])
	}
}

// The merged document keeps nmap's prolog as nmap writes it: the
// stylesheet processing instruction that points browsers and xsltproc at
// nmap.xsl (once, before <nmaprun>), and a runstats time in nmap's ctime
// form, the day of month padded with a space ("Sun Dec  6"), not Go's
// unpadded one. (Unit test on recorded nmap XML; found by reading a
// sharded scan's scan://ID/xml next to an unsharded one.)
func TestMergeKeepsNmapProlog(t *testing.T) {
	one := fixture(t, "connect.xml")
	early := bytes.ReplaceAll(one, []byte(`time="1795617516"`), []byte(`time="1796600219"`)) // Sun Dec  6 23:36:59 2026 UTC
	merged, err := Merge([]Part{{XML: one}, {XML: early}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(merged)
	pi := `<?xml-stylesheet href="file:///usr/bin/../share/nmap/nmap.xsl" type="text/xsl"?>`
	if strings.Count(s, pi) != 1 || strings.Index(s, pi) > strings.Index(s, "<nmaprun ") || strings.Index(s, pi) < strings.Index(s, "<!DOCTYPE nmaprun>") {
		t.Errorf("the stylesheet instruction is not once between the DOCTYPE and <nmaprun>:\n%s", s)
	}
	if !strings.Contains(s, `timestr="Sun Dec  6 23:36:59 2026"`) || !strings.Contains(s, "Nmap done at Sun Dec  6 23:36:59 2026;") {
		t.Errorf("runstats time not in nmap's form (Sun Dec  6 23:36:59 2026):\n%s", s[strings.Index(s, "<runstats>"):])
	}
	if strings.Contains(s, "<!--") {
		t.Errorf("a shard's comment (naming only its own targets) was kept:\n%s", s)
	}
}
