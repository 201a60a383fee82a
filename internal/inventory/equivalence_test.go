package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// equivalenceDigest is the SHA-256 of everything TestIngestEquivalence
// reads back, as the ingest wrote it before its bulk and rescan paths
// were rewritten (commit 173218a). A change to the ingest that changes
// any observable fact, time, scan, change-log entry or order changes it.
// To see the difference, set NMAP_MCP_INVENTORY_DUMP=FILE and diff the
// dumps of two versions. Re-recorded once since, when the answers got a
// catching_up field: the dump with every "catching_up":false removed
// still had the digest of 173218a (8adbd0e8…, 3aed4095… for stable).
const equivalenceDigest = "ff8e2cc096788931f3abc364d56a71e92ba6e950d292788f8e9aa9f132288a48"

// stableDigest is the same for the history where a third of the hosts
// list the same ports as last time, as most hosts of a rescan do
// (recorded with the ingest of commit 173218a too).
const stableDigest = "4a19ac3a9c4ab91dc20d63b3d4e21d50f159de7b586240b4a1ddd4f5365519de"

// TestIngestEquivalence ingests a seeded random history (two clients,
// hosts seen, missed and back, ports opening, closing and changing,
// duplicate listings, scans without service detection or without ports,
// scans ingested out of order, small chunks, sweeps between scans) and
// compares everything the queries answer with the recorded digest. No
// engine: results are generated in Go.
//
// The second run turns, halfway, every port's last_seen and last_scan
// into its own (ride = 0, as rows written before migration 4 are): the
// answers must not change.
func TestIngestEquivalence(t *testing.T) {
	for _, c := range []struct{ migrated, stable bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		t.Run(fmt.Sprintf("migrated=%v,stable=%v", c.migrated, c.stable), func(t *testing.T) { ingestEquivalence(t, c.migrated, c.stable) })
	}
}

func ingestEquivalence(t *testing.T, migrated, stable bool) {
	ctx := context.Background()
	inv, _ := newInv(t, Config{GoneAfter: 36 * time.Hour, ChunkHosts: 7})
	rng := rand.New(rand.NewPCG(24, 2026))
	ports := []int{22, 80, 443, 3389, 8080, 5432}
	prods := []struct{ svc, prod string }{{"ssh", "OpenSSH"}, {"http", "nginx"}, {"ms-wbt-server", ""}, {"", ""}, {"http", "Apache httpd"}}
	states := []string{"open", "open", "open", "closed", "filtered"}
	var dump strings.Builder
	base := netip.MustParseAddr("10.9.0.0")
	last := map[int][]results.Port{}
	for s := 0; s < 40; s++ {
		at := t0.Add(time.Duration(s) * 6 * time.Hour)
		if s%9 == 4 {
			at = at.Add(-20 * time.Hour) // out of order: some hosts seen later already
		}
		var hosts []results.Host
		noVersion := s%7 == 3
		noPorts := s%11 == 5
		for h := 0; h < 40; h++ {
			if rng.IntN(4) == 0 {
				continue // missed by this scan
			}
			a := base
			for range h {
				a = a.Next()
			}
			hh := results.Host{Addresses: []string{a.String()}, State: "up"}
			if rng.IntN(15) == 0 {
				hh.State = "down"
			}
			if rng.IntN(3) == 0 {
				hh.Hostnames = []string{fmt.Sprintf("h%d.lab", rng.IntN(3))}
			}
			if rng.IntN(4) == 0 {
				hh.OS = []results.OSMatch{{Name: fmt.Sprintf("Linux %d", rng.IntN(2)+4), Accuracy: 80 + rng.IntN(20)}}
			}
			if !noPorts {
				for _, p := range ports {
					if rng.IntN(3) == 0 {
						continue
					}
					pr := prods[rng.IntN(len(prods))]
					port := results.Port{Protocol: "tcp", Port: p, State: states[rng.IntN(len(states))], Service: pr.svc}
					if !noVersion && pr.prod != "" {
						port.Product = pr.prod
						port.Version = fmt.Sprintf("%d.%dp1", 7+rng.IntN(3), rng.IntN(2))
						if rng.IntN(2) == 0 {
							port.CPE = []string{"cpe:/a:x:" + strings.ToLower(pr.prod)}
						}
					}
					hh.Ports = append(hh.Ports, port)
					if rng.IntN(40) == 0 {
						hh.Ports = append(hh.Ports, port) // listed twice
					}
				}
				if rng.IntN(10) == 0 {
					hh.Ports = append(hh.Ports, results.Port{Protocol: "udp", Port: 53, State: "open|filtered", Service: "domain"})
				}
				if prev, ok := last[h]; ok && stable && h%3 == 0 {
					hh.Ports = prev
				}
				last[h] = hh.Ports
			}
			hosts = append(hosts, hh)
		}
		if migrated && s == 20 {
			if _, err := inv.db.Exec(`UPDATE inv_ports AS p SET last_seen = ` + portSeen("p") + `,
				last_scan = iif(ride, (SELECT x.ports_scan FROM inv_hosts x WHERE x.id = p.host_id), last_scan), ride = 0`); err != nil {
				t.Fatal(err)
			}
			if _, err := inv.db.Exec(`UPDATE inv_hosts SET ports_seen = 0, ports_scan = 0, ports_fp = NULL`); err != nil {
				t.Fatal(err)
			}
		}
		if rng.IntN(6) == 0 && len(hosts) > 2 {
			hosts = append(hosts, hosts[1]) // an address listed twice: the last counts
		}
		client := "alice"
		if s%5 == 2 {
			client = "bob"
		}
		got := mustIngest(t, inv, scan(fmt.Sprint("s", s), client, at, hosts...))
		fmt.Fprintf(&dump, "ingest %d %+v\n", s, got)
		if s%4 == 3 {
			sw, err := inv.Sweep(ctx, at.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&dump, "sweep %d %s\n", s, sw)
		}
		if s%10 == 9 {
			equivalenceRead(t, inv, at, &dump)
		}
	}
	// Ingest again: idempotent.
	fmt.Fprintf(&dump, "again %+v\n", mustIngest(t, inv, scan("s3", "alice", t0)))
	equivalenceRead(t, inv, t0.Add(240*time.Hour), &dump)
	if f := os.Getenv("NMAP_MCP_INVENTORY_DUMP"); f != "" {
		if err := os.WriteFile(f, []byte(dump.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256([]byte(dump.String()))
	want := equivalenceDigest
	if stable {
		want = stableDigest
	}
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("what the inventory answers changed: digest %s, want %s (%d bytes; NMAP_MCP_INVENTORY_DUMP=FILE writes it)", got, want, dump.Len())
	}
}

// equivalenceRead dumps what every query reads back.
func equivalenceRead(t *testing.T, inv *Inventory, now time.Time, dump *strings.Builder) {
	t.Helper()
	ctx := context.Background()
	put := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(dump, "%s %s\n", name, b)
	}
	for _, client := range []string{"alice", "bob", ""} {
		for _, q := range []Query{
			{Gone: GoneAny},
			{Gone: GoneOnly},
			{},
			{Port: 22, Gone: GoneAny},
			{State: "open", SeenSince: now.Add(-30 * time.Hour)},
			{SeenSince: now.Add(-30 * time.Hour), Gone: GoneAny},
			{Product: "OpenSSH", Version: "<8.1"},
			{Address: "10.9.0.0/28", Port: 3389, State: "open"},
			{ChangedSince: now.Add(-40 * time.Hour), Protocol: "tcp"},
			{Service: "http", Gone: GoneOnly},
		} {
			q.Client, q.Limit = client, MaxLimit
			f, err := inv.Find(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			f.AsOf = ""
			put(fmt.Sprintf("find %+v", q), f)
		}
		for _, q := range []ChangeQuery{{}, {Address: "10.9.0.0/29", Since: now.Add(-50 * time.Hour)}, {Kinds: []string{PortGone, HostGone}}} {
			q.Client, q.Limit = client, MaxLimit
			c, err := inv.Changes(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			c.AsOf = ""
			put(fmt.Sprintf("changes %+v", q), c)
		}
		for _, a := range []string{"10.9.0.1", "10.9.0.17", "10.9.0.39"} {
			tl, err := inv.Host(ctx, client, a)
			if err != nil {
				t.Fatal(err)
			}
			put("host "+a, tl)
		}
	}
}
