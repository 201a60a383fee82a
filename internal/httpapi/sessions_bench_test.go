package httpapi

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/mcpserver"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

// rssMB reads this process's resident set (VmRSS) or its peak (VmHWM).
func rssMB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

// Issue 20.2: 60,000 initialize calls, from 16 clients over loopback
// HTTP, against the real MCP layer (no runner: nothing scans). Before,
// they took a server from 47 MB to 640 MB and evicted other clients'
// bindings. Target: RSS under 150 MB (measured for the whole test process,
// client side included) and a victim's live session keeps its binding.
// "caps": the default settings (no session idles out during the run, so
// the caps refuse the excess); "churn": a 1 s idle timeout, so
// sessions end and the 60,000 are mostly accepted.
//
//	go test -run '^$' -bench SixtyThousandInitialize -benchtime 1x ./internal/httpapi/
func BenchmarkSixtyThousandInitialize(b *testing.B) {
	for _, c := range []struct {
		name string
		idle time.Duration
	}{{"caps", 0}, {"churn", time.Second}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				sixtyThousand(b, c.idle)
			}
		})
	}
}

func sixtyThousand(b *testing.B, idle time.Duration) {
	const calls, clients, workers = 60000, 16, 8
	st, _ := testkit.OpenHistory(b)
	sc := scans.New(scans.Config{}, scans.Deps{Store: st})
	mcpSrv := mcpserver.New(mcpserver.Deps{Scans: sc, Watches: watches.New(st, sc, watches.Config{}, nil),
		Subscriptions: mcpserver.NewSubscriptions()})
	victimSecret, victimTok, _ := NewToken("victim")
	toks := []Token{victimTok}
	secrets := make([]string, clients)
	for i := range secrets {
		var tok Token
		secrets[i], tok, _ = NewToken(fmt.Sprintf("client%d", i))
		toks = append(toks, tok)
	}
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: toks, SessionIdle: idle}, Deps{MCP: mcpSrv})
	if err != nil {
		b.Fatal(err)
	}
	addr := serveLoopback(b, s)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers + 1}}
	post := func(token, sid, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+token)
		if sid != "" {
			req.Header.Set(server.HeaderKeySessionID, sid)
			req.Header.Set("MCP-Protocol-Version", "2025-11-25")
		}
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var buf [512]byte
		for {
			if _, err := resp.Body.Read(buf[:]); err != nil {
				break
			}
		}
		return resp.StatusCode, resp.Header.Get(server.HeaderKeySessionID)
	}
	start := rssMB("VmRSS")
	code, victim := post(victimSecret, "", initBody)
	if code != http.StatusOK || victim == "" {
		b.Fatalf("victim's initialize: %d", code)
	}
	// The victim stays live: a ping every 20 ms.
	stop := make(chan struct{})
	var bg sync.WaitGroup
	var victimFail atomic.Int32
	var slowest atomic.Int64 // the victim's slowest ping
	bg.Add(2)
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				t0 := time.Now()
				if code, _ := post(victimSecret, victim, pingBody); code != http.StatusOK {
					victimFail.Add(1)
				}
				if d := int64(time.Since(t0)); d > slowest.Load() {
					slowest.Store(d)
				}
			}
		}
	}()
	var peak atomic.Int64
	go func() {
		defer bg.Done()
		for {
			if mb := int64(rssMB("VmRSS")); mb > peak.Load() {
				peak.Store(mb)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	var next, accepted, refused atomic.Int64
	began := time.Now()
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > calls {
					return
				}
				switch code, _ := post(secrets[n%clients], "", initBody); code {
				case http.StatusOK:
					accepted.Add(1)
				case http.StatusTooManyRequests, http.StatusServiceUnavailable:
					refused.Add(1)
				default:
					b.Errorf("initialize: %d", code)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	took := time.Since(began)
	held := s.SessionStats().Sessions
	stolen, _ := post(secrets[0], victim, pingBody)
	own, _ := post(victimSecret, victim, pingBody)
	close(stop)
	bg.Wait()
	b.ReportMetric(float64(peak.Load()), "peak-RSS-MB")
	b.ReportMetric(start, "start-RSS-MB")
	b.ReportMetric(float64(accepted.Load()), "accepted")
	b.ReportMetric(float64(refused.Load()), "refused")
	b.ReportMetric(float64(held), "sessions-held")
	b.ReportMetric(float64(calls)/took.Seconds(), "initialize/s")
	b.ReportMetric(float64(slowest.Load())/1e6, "victim-slowest-ping-ms")
	if peak.Load() >= 150 {
		b.Errorf("peak RSS %d MB; the target is under 150 MB", peak.Load())
	}
	if stolen != http.StatusNotFound || own != http.StatusOK || victimFail.Load() > 0 {
		b.Errorf("victim's session: with another token %d (want 404), with its own %d (want 200), %d failed pings",
			stolen, own, victimFail.Load())
	}
	hc.CloseIdleConnections()
}
