package shard

import (
	"fmt"
	"strings"
	"testing"
)

// Red-team regression tests of Stream against a hostile scanned service.
// Pure (recorded and synthetic nmap XML, no engine): they run under -short.

// hostileBanner is what nmap 7.93 (the project's image) wrote for a
// loopback service whose banner carried "\n</host>\n<host ...>",
// "<runstats>" and "</nmaprun>" lines (recorded 2026-12-06 with
// --script banner -sV): nmap escapes every control character, so no line
// of -oX starts with text the service chose, and the merger keeps the
// host whole and injects nothing.
const hostileBanner = `<host starttime="1796591166" endtime="1796591166"><status state="up" reason="user-set" reason_ttl="0"/>
<address addr="%s" addrtype="ipv4"/>
<hostnames>
</hostnames>
<ports><port protocol="tcp" portid="47811"><state state="open" reason="syn-ack" reason_ttl="0"/><service name="ssh" product="OpenSSH" version="9.0" extrainfo="protocol 2.0" method="probed" conf="10"><cpe>cpe:/a:openbsd:openssh:9.0</cpe></service><script id="banner" output="SSH-2.0-OpenSSH_9.0 \x0A&lt;/host&gt;\x0A&lt;host starttime=&quot;1&quot;&gt;&lt;address&#xa; addr=&quot;6.6.6.6&quot; addrtype=&quot;ipv4&quot;/&gt;\x0A&lt;runstats&gt;&lt;finished time=&quot;1&quot;/&gt;\...&#xa;"/></port>
</ports>
<times srtt="209" rttvar="5000" to="100000"/>
</host>
`

func shardDoc(hosts string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<nmaprun scanner="nmap" args="nmap -oX - -sV -&#45;script banner -n -Pn -p 47811 127.0.0.1" start="1796591157" version="7.93" xmloutputversion="1.05">
<scaninfo type="connect" protocol="tcp" numservices="1" services="47811"/>
<verbose level="0"/>
<debugging level="0"/>
` + hosts + `<runstats><finished time="1796591166" timestr="x" summary="x" elapsed="0.90" exit="success"/><hosts up="1" down="0" total="1"/>
</runstats>
</nmaprun>
`)
}

func TestRedteamHostileBannerInjectsNothing(t *testing.T) {
	a := shardDoc(fmt.Sprintf(hostileBanner, "10.0.0.1"))
	b := shardDoc(fmt.Sprintf(hostileBanner, "10.0.0.2"))
	merged, err := Merge([]Part{{XML: b}, {XML: a}})
	if err != nil {
		t.Fatal(err)
	}
	r := decode(t, merged)
	if len(r.Hosts) != 2 || r.Hosts[0].Addresses[0] != "10.0.0.2" || r.Hosts[1].Addresses[0] != "10.0.0.1" {
		t.Fatalf("hosts %+v", r.Hosts)
	}
	if s := string(merged); strings.Contains(s, "6.6.6.6\"") || strings.Count(s, "<runstats>") != 1 || strings.Count(s, "</nmaprun>") != 1 ||
		!strings.Contains(s, `exit="success"`) || !strings.Contains(s, `<hosts up="2" down="0" total="2"/>`) {
		t.Fatalf("merged:\n%s", s)
	}
	for _, h := range r.Hosts {
		if len(h.Ports) != 1 || !strings.Contains(h.Ports[0].Scripts[0].Output, "</host>") {
			t.Errorf("host %v lost its banner: %+v", h.Addresses, h.Ports)
		}
	}
}
