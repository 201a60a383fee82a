package inventory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// Benchmarks (not timed tests) of the inventory at scale, through the
// real ingest path from generated results. Run:
//
//	go test -short -run '^$' -bench . -benchtime 5x ./internal/inventory/
//
// No engine is needed.

// commonPorts are what generated hosts listen on: 20 of these each.
var commonPorts = []int{21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 389, 443, 445, 465, 587, 636, 993, 995,
	1433, 1521, 2049, 3306, 3389, 5432, 5900, 5985, 6379, 8000, 8080, 8443, 9000, 9090, 9200, 11211, 27017}

var products = []struct{ service, product string }{
	{"ssh", "OpenSSH"}, {"http", "nginx"}, {"http", "Apache httpd"}, {"ms-wbt-server", "Microsoft Terminal Services"},
	{"mysql", "MySQL"}, {"postgresql", "PostgreSQL DB"}, {"redis", "Redis key-value store"}, {"", ""},
}

// genHosts makes n hosts from base, each with 20 ports (states mostly
// open), products and versions; gen varies versions between scans.
func genHosts(base netip.Addr, n, gen int, rng *rand.Rand) []results.Host {
	return genHostsPorts(base, n, 20, gen, rng)
}

func genHostsPorts(base netip.Addr, n, nports, gen int, rng *rand.Rand) []results.Host {
	hosts := make([]results.Host, n)
	a := base
	versions := make([]string, 40)
	for i := range versions {
		versions[i] = fmt.Sprintf("%d.%dp%d", 6+i%5, i%10, i%3)
	}
	for i := range hosts {
		ports := make([]results.Port, nports)
		perm := rng.Perm(len(commonPorts))
		for j := range ports {
			pr := products[rng.IntN(len(products))]
			state := "open"
			if rng.IntN(10) == 0 {
				state = "closed"
			}
			ports[j] = results.Port{Protocol: "tcp", Port: commonPorts[perm[j]], State: state, Service: pr.service,
				Product: pr.product, Scripts: []results.Script{}, CPE: []string{}}
			if pr.product != "" {
				ports[j].Version = versions[(rng.IntN(len(versions))+gen)%len(versions)]
			}
		}
		hosts[i] = results.Host{Addresses: []string{a.String()}, State: "up", Ports: ports, Hostnames: []string{},
			OtherPorts: []results.PortCount{}, OS: []results.OSMatch{}, Scripts: []results.Script{}}
		a = a.Next()
	}
	return hosts
}

// cpuTime is the process's CPU time (user and system): on a shared
// machine it says what an ingest costs better than the wall time does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func dbSize(b *testing.B, inv *Inventory) int64 {
	var pages, size int64
	inv.db.QueryRow(`PRAGMA page_count`).Scan(&pages)
	inv.db.QueryRow(`PRAGMA page_size`).Scan(&size)
	return pages * size
}

// BenchmarkIngest65536 ingests one scan of 65,536 hosts × 20 ports:
// into an empty inventory (first), and again a day later: unchanged
// (rescan-unchanged), with one port's version changed on 1% of the hosts
// (rescan-1pct), and on 5% of them (rescan-5pct).
func BenchmarkIngest65536(b *testing.B) { benchIngest(b, 65536, 20) }

// BenchmarkIngest65536x3 is a /16 sweep's shape: 65,536 hosts with 3
// listed ports each.
func BenchmarkIngest65536x3(b *testing.B) { benchIngest(b, 65536, 3) }

// BenchmarkIngest8192 is the first with 8,192 hosts, for quick checks.
func BenchmarkIngest8192(b *testing.B) { benchIngest(b, 8192, 20) }

func benchIngest(b *testing.B, n, nports int) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	base := netip.MustParseAddr("10.1.0.0")
	first := genHostsPorts(base, n, nports, 0, rng)
	every := map[string]int{"rescan-unchanged": 0, "rescan-1pct": 100, "rescan-5pct": 20}
	for _, mode := range []string{"first", "rescan-unchanged", "rescan-1pct", "rescan-5pct"} {
		b.Run(mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				inv, _ := newInv(b, Config{})
				if mode != "first" {
					if _, err := inv.Ingest(ctx, Scan{ID: "base", Client: "c", At: t0, Result: &results.Result{Hosts: first}}); err != nil {
						b.Fatal(err)
					}
				}
				again := first
				if n := every[mode]; n > 0 {
					again = make([]results.Host, len(first))
					copy(again, first)
					for h := range again {
						if h%n == 0 {
							ps := append([]results.Port(nil), again[h].Ports...)
							ps[0].Version, ps[0].Product = "99.1", "OpenSSH"
							again[h].Ports = ps
						}
					}
				}
				b.StartTimer()
				start, cpu := time.Now(), cpuTime()
				got, err := inv.Ingest(ctx, Scan{ID: fmt.Sprint("s", i), Client: "c", At: t0.Add(24 * time.Hour), Result: &results.Result{Hosts: again}})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(start).Seconds(), "s/scan")
				b.ReportMetric((cpuTime() - cpu).Seconds(), "cpu-s/scan")
				b.ReportMetric(float64(got.Changes), "changes")
				if i == 0 {
					b.ReportMetric(float64(dbSize(b, inv))/(1<<20), "MB")
				}
			}
		})
	}
}

// BenchmarkQuery100k builds an inventory of 100,000 hosts × 20 ports
// through Ingest (25 scans of 4,000 hosts, then 5 rescans of 4,000 with
// changed versions) and times the queries a model asks.
func BenchmarkQuery100k(b *testing.B) {
	ctx := context.Background()
	inv, st := newInv(b, Config{})
	base := netip.MustParseAddr("10.0.0.0")
	start := time.Now()
	a := base
	for s := 0; s < 25; s++ {
		hosts := genHosts(a, 4000, 0, rand.New(rand.NewPCG(uint64(s), 7)))
		if _, err := inv.Ingest(ctx, Scan{ID: fmt.Sprint("build", s), Client: "c", At: t0.Add(time.Duration(s) * time.Minute), Result: &results.Result{Hosts: hosts}}); err != nil {
			b.Fatal(err)
		}
		for range 4000 {
			a = a.Next()
		}
	}
	built := time.Since(start)
	// Rescans of 20,000 of them two days later: the same ports, one host
	// in twenty with a new version on one port.
	a = base
	for s := 0; s < 5; s++ {
		hosts := genHosts(a, 4000, 0, rand.New(rand.NewPCG(uint64(s), 7)))
		for h := range hosts {
			if h%20 == 0 {
				hosts[h].Ports[0].Product, hosts[h].Ports[0].Version = "OpenSSH", "99.1"
			}
		}
		if _, err := inv.Ingest(ctx, Scan{ID: fmt.Sprint("re", s), Client: "c", At: t0.Add(48*time.Hour + time.Duration(s)*time.Minute), Result: &results.Result{Hosts: hosts}}); err != nil {
			b.Fatal(err)
		}
		for range 4000 {
			a = a.Next()
		}
	}
	rescans := time.Since(start) - built
	size := dbSize(b, inv)
	fi, _ := os.Stat(st.Path())
	fmt.Printf("built 100,000 hosts × 20 ports in %s (25 scans of 4,000 hosts), 5 rescans of 4,000 hosts in %s; database %d MB (file %d MB)\n",
		built.Round(time.Millisecond), rescans.Round(time.Millisecond), size>>20, fi.Size()>>20)
	queries := []struct {
		name string
		run  func() (int, error)
	}{
		{"port3389-open-in-16", func() (int, error) {
			f, err := inv.Find(ctx, Query{Client: "c", Address: "10.1.0.0/16", Port: 3389, State: "open"})
			return f.Total, err
		}},
		{"port3389-open-in-16-admin", func() (int, error) {
			f, err := inv.Find(ctx, Query{Address: "10.1.0.0/16", Port: 3389, State: "open"})
			return f.Total, err
		}},
		{"openssh-lt-9", func() (int, error) {
			f, err := inv.Find(ctx, Query{Client: "c", Product: "OpenSSH", Version: "<9.0"})
			return f.Total, err
		}},
		{"hosts-in-24", func() (int, error) {
			f, err := inv.Find(ctx, Query{Client: "c", Address: "10.1.7.0/24"})
			return f.Total, err
		}},
		{"changes-in-16-window", func() (int, error) {
			c, err := inv.Changes(ctx, ChangeQuery{Client: "c", Address: "10.0.0.0/16", Since: t0.Add(47 * time.Hour), Until: t0.Add(50 * time.Hour)})
			return c.Total, err
		}},
		{"changes-window", func() (int, error) {
			c, err := inv.Changes(ctx, ChangeQuery{Client: "c", Since: t0.Add(47 * time.Hour)})
			return c.Total, err
		}},
		{"host", func() (int, error) {
			t, err := inv.Host(ctx, "c", "10.1.2.3")
			return len(t.Changes), err
		}},
	}
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			n := 0
			for i := 0; i < b.N; i++ {
				var err error
				if n, err = q.run(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n), "matches")
		})
	}
}
