package results

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// genXML streams a synthetic nmap XML document of n hosts with 10 ports
// each, produced as it is read: the document never exists whole.
type genXML struct {
	n, i  int
	buf   []byte
	stage int // 0 header, 1 hosts, 2 trailer, 3 done
}

func (g *genXML) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		switch g.stage {
		case 0:
			g.buf = []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<nmaprun scanner="nmap" args="nmap -oX - -sT 10.0.0.0/8" start="1795617388" version="7.93" xmloutputversion="1.05">
<scaninfo type="connect" protocol="tcp" numservices="10" services="21-23,25,53,80,110,143,443,445"/>
`)
			g.stage = 1
		case 1:
			if g.i == g.n {
				g.stage = 2
				continue
			}
			g.buf = g.host(g.buf[:0])
			g.i++
		case 2:
			g.buf = []byte(fmt.Sprintf(`<runstats><finished time="1795617400" timestr="x" summary="done" elapsed="12.00" exit="success"/><hosts up="%d" down="0" total="%d"/></runstats>
</nmaprun>
`, g.n, g.n))
			g.stage = 3
		default:
			return 0, io.EOF
		}
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// host appends one host element with 10 ports.
func (g *genXML) host(b []byte) []byte {
	ip := func(b []byte) []byte {
		b = append(b, "10."...)
		b = strconv.AppendInt(b, int64(g.i>>16&255), 10)
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(g.i>>8&255), 10)
		b = append(b, '.')
		return strconv.AppendInt(b, int64(g.i&255), 10)
	}
	b = append(b, `<host starttime="1795617388" endtime="1795617389"><status state="up" reason="syn-ack" reason_ttl="0"/>
<address addr="`...)
	b = ip(b)
	b = append(b, `" addrtype="ipv4"/>
<hostnames><hostname name="host-`...)
	b = strconv.AppendInt(b, int64(g.i), 10)
	b = append(b, `.lab.example" type="PTR"/></hostnames>
<ports><extraports state="closed" count="990"><extrareasons reason="conn-refused" count="990"/></extraports>
`...)
	for j, port := range []int{21, 22, 23, 25, 53, 80, 110, 143, 443, 445} {
		state := "open"
		if j%3 == 2 {
			state = "closed"
		}
		b = append(b, `<port protocol="tcp" portid="`...)
		b = strconv.AppendInt(b, int64(port), 10)
		b = append(b, `"><state state="`...)
		b = append(b, state...)
		b = append(b, `" reason="syn-ack" reason_ttl="0"/><service name="svc" product="Product &amp; Co" version="1.`...)
		b = strconv.AppendInt(b, int64(g.i%7), 10)
		b = append(b, `" method="probed" conf="10"/></port>
`...)
	}
	return append(b, "</ports>\n<times srtt=\"100\" rttvar=\"50\" to=\"100000\"/>\n</host>\n"...)
}

// BenchmarkDecode decodes generated documents of two sizes, streaming
// (DropHosts), and reports hosts/s and the peak heap in use during the
// decode, which should not grow with the document.
//
//	go test ./results -run '^$' -bench Decode -benchtime 1x
func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{16384, 65536} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			var peak atomic.Uint64
			for i := 0; i < b.N; i++ {
				runtime.GC()
				var base runtime.MemStats
				runtime.ReadMemStats(&base)
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					var ms runtime.MemStats
					for {
						select {
						case <-stop:
							return
						case <-time.After(10 * time.Millisecond):
						}
						runtime.ReadMemStats(&ms)
						if v := ms.HeapInuse - min(ms.HeapInuse, base.HeapInuse); v > peak.Load() {
							peak.Store(v)
						}
					}
				}()
				hosts := 0
				start := time.Now()
				res, err := Decode(&genXML{n: n}, Handlers{DropHosts: true, Host: func(Host) { hosts++ }})
				elapsed := time.Since(start)
				close(stop)
				wg.Wait()
				if err != nil || hosts != n || res.Stats.HostsUp != n {
					b.Fatalf("decoded %d hosts, err %v", hosts, err)
				}
				b.ReportMetric(float64(n)/elapsed.Seconds(), "hosts/s")
			}
			b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
		})
	}
}
