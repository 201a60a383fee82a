package shard

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// A run that stopped with a shard unfinished (timed out, failed,
// cancelled) says in its <runstats> that it ended when it was stopped,
// not when its last finished shard did: the finished shard here ended
// 100 s ago, the other ran on until Close, so the merged elapsed time
// is at least the 110 s the run really took. (Before, the finish was the
// finished shard's and the summary said "scanned in 10.00 seconds" for a
// run killed at its 28 s timeout.) Unit test on hand-written nmap XML.
func TestStreamPartialRunEndsWhenStopped(t *testing.T) {
	now := time.Now().Unix()
	start, fin := now-110, now-100
	head := fmt.Sprintf("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<nmaprun scanner=\"nmap\" args=\"nmap -sT -- X\" start=\"%d\" startstr=\"x\" version=\"7.93\" xmloutputversion=\"1.05\">\n"+
		"<scaninfo type=\"connect\" protocol=\"tcp\" numservices=\"1\" services=\"8080\"/>\n<verbose level=\"0\"/>\n<debugging level=\"0\"/>\n", start)
	host := "<host starttime=\"1\" endtime=\"2\"><status state=\"up\" reason=\"user-set\" reason_ttl=\"0\"/>\n<address addr=\"10.0.0.1\" addrtype=\"ipv4\"/>\n" +
		"<ports><port protocol=\"tcp\" portid=\"8080\"><state state=\"open\" reason=\"syn-ack\" reason_ttl=\"0\"/></port>\n</ports>\n</host>\n"
	stats := fmt.Sprintf("<runstats><finished time=\"%d\" timestr=\"x\" summary=\"x\" elapsed=\"10.00\" exit=\"success\"/><hosts up=\"1\" down=\"0\" total=\"1\"/>\n</runstats>\n</nmaprun>\n", fin)
	blocks := [][]netip.Prefix{{netip.MustParsePrefix("10.0.0.1/32")}, {netip.MustParsePrefix("10.0.0.2/32")}}

	for _, tc := range []struct {
		name   string
		failed []bool
		second string // what the second shard wrote
		late   bool   // the run ends when Close is called
	}{
		{"second shard stopped", []bool{false, true}, head, true},
		{"every shard finished", []bool{false, false}, head + stats, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			s := NewStream(&out, blocks, 1<<20)
			if _, err := s.Part(0).Write([]byte(head + host + stats)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Part(1).Write([]byte(tc.second)); err != nil {
				t.Fatal(err)
			}
			closed := time.Now().Unix()
			if err := s.Close(tc.failed); err != nil {
				t.Fatal(err)
			}
			m := regexp.MustCompile(`<finished time="(\d+)"[^>]* elapsed="([0-9.]+)"`).FindSubmatch(out.Bytes())
			if m == nil {
				t.Fatalf("no <finished> in:\n%s", out.Bytes())
			}
			got, _ := strconv.ParseInt(string(m[1]), 10, 64)
			elapsed, _ := strconv.ParseFloat(string(m[2]), 64)
			if tc.late && (got < closed || elapsed < 110) {
				t.Errorf("finished %d (Close at %d), elapsed %.2f s (the run took 110 s): a stopped run ends when it was stopped", got, closed, elapsed)
			}
			if !tc.late && (got != fin || elapsed != 10) {
				t.Errorf("finished %d elapsed %.2f, want the shards' own %d and 10 s", got, elapsed, fin)
			}
			decode(t, out.Bytes())
		})
	}
}
