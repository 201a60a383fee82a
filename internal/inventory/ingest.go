package inventory

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nmap-mcp/nmap-mcp/internal/owner"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Kinds of change in the change log.
const (
	HostAppeared = "host_appeared" // new, or back after being gone (from "gone")
	HostGone     = "host_gone"
	Hostnames    = "hostnames"
	OS           = "os"
	PortAppeared = "port_appeared" // new on a known host, or back after being gone
	PortGone     = "port_gone"
	State        = "state"
	Service      = "service"
	Product      = "product"
	Version      = "version"
	CPE          = "cpe"
	// ChangesOmitted counts a host's changes by one scan beyond
	// MaxHostChanges, which were not logged one by one.
	ChangesOmitted = "changes_omitted"
)

// ChangeKinds lists every kind of change, for validation and schemas.
var ChangeKinds = []string{HostAppeared, HostGone, Hostnames, OS, PortAppeared, PortGone, State, Service, Product, Version, CPE, ChangesOmitted}

// Scan is one finished scan's facts to ingest.
type Scan struct {
	ID     string
	Client string
	// At is when the facts were observed (the scan's end).
	At     time.Time
	Result *results.Result
}

// Ingested says what one ingest did.
type Ingested struct {
	Scan string `json:"scan_id"`
	// Already is true when the scan had been ingested before, or its
	// ingest is under way in another live process (nothing was done:
	// ingest is idempotent).
	Already  bool `json:"already"`
	Hosts    int  `json:"hosts"`     // hosts up with an address
	NewHosts int  `json:"new_hosts"` // first seen (or back after gone)
	Ports    int  `json:"ports"`     // listed ports
	Changes  int  `json:"changes"`   // changes found (the log keeps MaxHostChanges a host)
	// Stale counts hosts already seen by a later scan: their values
	// were left as the later scan saw them.
	Stale int `json:"stale"`
}

// IngestRecord ingests a finished scan record that has a result (a
// cancelled or timed-out scan's result holds the hosts that finished);
// others are skipped (zero Ingested, no error).
func (inv *Inventory) IngestRecord(ctx context.Context, r *store.Record) (Ingested, error) {
	if r == nil || r.Result == nil || !store.Finished(r.Status) {
		return Ingested{}, nil
	}
	at := r.EndedAt
	if at.IsZero() {
		at = r.StartedAt
	}
	return inv.Ingest(ctx, Scan{ID: r.ID, Client: r.Client, At: at, Result: r.Result})
}

// Ingest updates the client's inventory with what the scan found, in
// transactions of at most Config.ChunkHosts hosts. A scan already
// ingested is not ingested again; one whose ingest stopped part-way is
// ingested again from the start.
func (inv *Inventory) Ingest(ctx context.Context, sc Scan) (Ingested, error) {
	out := Ingested{Scan: sc.ID}
	if sc.ID == "" || sc.Result == nil {
		return out, errors.New("inventory: ingest needs a scan id and a result")
	}
	if sc.Client == "" {
		sc.Client = "local"
	}
	if sc.At.IsZero() {
		return out, fmt.Errorf("inventory: ingest scan %s: no time", sc.ID)
	}
	hosts := sc.Result.Hosts
	conn, err := inv.db.Conn(ctx)
	if err != nil {
		return out, inv.fault(fmt.Sprintf("ingest scan %s", sc.ID), err)
	}
	if len(hosts) > bigIngest {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = -%d; PRAGMA wal_autocheckpoint = %d", ingestCache, ingestCheckpoint)); err != nil {
			// Half applied, maybe: not given back to the pool.
			conn.Raw(func(any) error { return driver.ErrBadConn })
			return out, inv.fault(fmt.Sprintf("ingest scan %s", sc.ID), err)
		}
		defer func() {
			// A checkpoint at the end (and one per ingestCheckpoint
			// pages on the way): each chunk's commit would otherwise
			// copy the write-ahead log into the file (every 1,000
			// pages), again and again for the pages that many chunks
			// touch (the indexes' inner pages). PASSIVE: it waits for no
			// reader or writer; what it cannot copy now, the next
			// commit's automatic checkpoint does. The store cuts the
			// log back when it starts again (store.walLimit).
			var busy, logged, copied int
			_ = conn.QueryRowContext(context.WithoutCancel(ctx), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logged, &copied)
			// The connection is not given back to the pool with its
			// big cache and rare checkpoints: it is closed, after
			// the answer (freeing 64 MB of cache page by page takes half
			// a second).
			go conn.Raw(func(any) error { return driver.ErrBadConn })
		}()
	} else {
		defer conn.Close()
	}
	first := true
	var scanRow int64
	for start := 0; start < len(hosts) || first; start += inv.cfg.ChunkHosts {
		end := min(start+inv.cfg.ChunkHosts, len(hosts))
		err := chunk(ctx, conn, func(w *writer) error {
			if first {
				res, err := w.tx.ExecContext(ctx, `INSERT INTO inv_scans (scan_id, client, at, owner_pid, owner_host) VALUES (?, ?, ?, ?, ?) ON CONFLICT(scan_id) DO NOTHING`,
					sc.ID, sc.Client, store.Millis(sc.At), os.Getpid(), owner.Host())
				if err != nil {
					return err
				}
				if _, err := w.tx.ExecContext(ctx, `INSERT OR IGNORE INTO inv_clients (client) VALUES (?)`, sc.Client); err != nil {
					return err
				}
				if n, _ := res.RowsAffected(); n == 0 {
					// Ingested before, or begun: an ingest stopped after
					// some chunks committed (cancelled, a fault) is done
					// again from the start, by this process or when its
					// process is gone; the hosts it applied change nothing
					// the second time. One under way in another live
					// process (a CLI command beside the server) is left
					// to it.
					var complete bool
					var pid int
					var host string
					if err := w.tx.QueryRowContext(ctx, `SELECT id, complete, owner_pid, owner_host FROM inv_scans WHERE scan_id = ?`, sc.ID).Scan(&scanRow, &complete, &pid, &host); err != nil {
						return err
					}
					if complete || (pid != os.Getpid() || host != owner.Host()) && !owner.Orphaned(pid, host) {
						out.Already = true
						return nil
					}
					if _, err := w.tx.ExecContext(ctx, `UPDATE inv_scans SET owner_pid = ?, owner_host = ? WHERE id = ?`, os.Getpid(), owner.Host(), scanRow); err != nil {
						return err
					}
				} else if scanRow, err = res.LastInsertId(); err != nil {
					return err
				}
			}
			w.scan, w.client, w.at = scanRow, sc.Client, store.Millis(sc.At)
			if err := w.chunkHosts(ctx, hosts[start:end], &out); err != nil {
				return err
			}
			if end >= len(hosts) {
				_, err := w.tx.ExecContext(ctx, `UPDATE inv_scans SET hosts = ?, ports = ?, complete = 1 WHERE id = ?`, out.Hosts, out.Ports, scanRow)
				return err
			}
			return nil
		})
		if err != nil {
			return out, inv.fault(fmt.Sprintf("ingest scan %s", sc.ID), err)
		}
		first = false
		if out.Already {
			return out, nil
		}
	}
	return out, nil
}

// writer holds one ingest transaction and its prepared statements.
type writer struct {
	tx                 *sql.Tx
	scan               int64
	client             string
	at                 int64
	updHost, touchHost *sql.Stmt
	updPort            *sql.Stmt
	// hostLogged and hostOmitted count the change log entries of the
	// host being applied (beginHost, change).
	hostLogged, hostOmitted int
	// What a chunk writes in bulk (batch.go): changes and newPorts as
	// flat values for the multi-row INSERTs, the others as JSON rows.
	changes, newPorts, touched, unride []any
	touchedHosts                       []any
	// stmts are the chunk's prepared bulk statements.
	stmts map[bulkKey]*sql.Stmt
	// boxes and ints hold the chunk's values boxed once (box, boxInt).
	boxes map[string]any
	ints  map[int]any
}

// ingestCache is the page cache of the connection an ingest writes
// through (KiB): the inventory's indexes take random inserts, which with
// SQLite's default 2 MB cache spill and re-read pages all along. It is
// not given back: the connection is closed when the ingest ends.
// Only a big scan (more than bigIngest hosts) gets it: the server's
// memory stays small while it follows a history of small scans.
// ingestCheckpoint (pages) is how far the write-ahead log may grow
// during a big ingest before its connection checkpoints (128 MB at 4 KiB
// pages: the disk a /16 ingest borrows stays bounded).
const (
	ingestCache      = 64 << 10
	bigIngest        = 512
	ingestCheckpoint = 32768
)

func chunk(ctx context.Context, conn *sql.Conn, fn func(*writer) error) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	w := &writer{tx: tx}
	for _, p := range []struct {
		s **sql.Stmt
		q string
	}{
		{&w.updHost, `UPDATE inv_hosts SET hostnames = ?, hostnames_at = max(hostnames_at, ?), os = ?, os_accuracy = ?, os_at = max(os_at, ?), last_seen = ?, last_scan = ?,
			changed_at = max(changed_at, ?), gone_at = 0, ports_seen = iif(?, ?, ports_seen), ports_scan = iif(?, ?, ports_scan),
			ports_fp = iif(?, ?, ports_fp) WHERE id = ?`},
		{&w.touchHost, `UPDATE inv_hosts SET first_seen = min(first_seen, ?) WHERE id = ?`},
		{&w.updPort, `UPDATE inv_ports SET state = ?, state_at = iif(?, ?, state_at), service = ?, service_at = iif(?, ?, service_at),
			product = ?, version = ?, vkey = ?, cpe = ?, product_at = iif(?, ?, product_at), last_seen = ?, last_scan = ?, changed_at = ?, gone_at = 0, ride = 1
			WHERE host_id = ? AND proto = ? AND port = ?`},
	} {
		if *p.s, err = tx.PrepareContext(ctx, p.q); err != nil {
			return err
		}
		defer (*p.s).Close()
	}
	defer func() {
		for _, s := range w.stmts {
			s.Close()
		}
	}()
	if err := fn(w); err != nil {
		return err
	}
	return tx.Commit()
}

// bestOS is the most accurate OS guess (the first of equals).
func bestOS(h *results.Host) (string, int) {
	name, acc := "", 0
	for _, m := range h.OS {
		if m.Accuracy > acc || name == "" {
			name, acc = m.Name, m.Accuracy
		}
	}
	return name, acc
}

// portSummary is a short description of a port for the change log.
func portSummary(p *results.Port) string {
	s := strconv.Itoa(p.Port) + "/" + p.Protocol + " " + p.State
	if p.Service != "" {
		s += " " + p.Service
	}
	if p.Product != "" {
		s += " " + p.Product
		if p.Version != "" {
			s += " " + p.Version
		}
	}
	return s
}

// bound keeps a change-log value short.
func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n-- // not inside a character
	}
	return s[:n] + "…"
}

type portKey struct {
	proto string
	port  int
}

type portRow struct {
	state, service, product, version, cpe string
	gone                                  int64
	// ride: the port takes last_seen and last_scan from its host.
	ride bool
}

// updatePort applies a seen port to its row: it returns the changes
// logged, or -1 when nothing changed (the caller touches it in bulk).
func (w *writer) updatePort(ctx context.Context, hostID int64, ak []byte, addr string, p *results.Port, old portRow) (int, error) {
	type ch struct{ kind, from, to string }
	var chs []ch
	if old.gone != 0 {
		chs = append(chs, ch{PortAppeared, "gone", portSummary(p)})
	}
	stateCh := p.State != old.state
	if stateCh {
		chs = append(chs, ch{State, old.state, p.State})
	}
	service := old.service
	serviceCh := p.Service != "" && p.Service != old.service
	if serviceCh {
		chs = append(chs, ch{Service, old.service, p.Service})
		service = p.Service
	}
	// Product, version and CPE were observed together when service
	// detection named a product or version; otherwise they stay.
	product, version, cpe := old.product, old.version, old.cpe
	productCh := false
	if p.Product != "" || p.Version != "" {
		newCPE := strings.Join(p.CPE, " ")
		if p.Product != old.product {
			chs = append(chs, ch{Product, old.product, p.Product})
			productCh = true
		}
		if p.Version != old.version {
			chs = append(chs, ch{Version, old.version, p.Version})
			productCh = true
		}
		if newCPE != old.cpe {
			chs = append(chs, ch{CPE, old.cpe, newCPE})
			productCh = true
		}
		product, version, cpe = p.Product, p.Version, newCPE
	}
	if len(chs) == 0 {
		return -1, nil
	}
	for _, c := range chs {
		w.change(ak, addr, p.Protocol, p.Port, c.kind, c.from, c.to)
	}
	_, err := w.updPort.ExecContext(ctx, p.State, stateCh, w.at, service, serviceCh, w.at, product, version, VersionKey(version), cpe,
		productCh, w.at, w.at, w.scan, w.at, hostID, p.Protocol, p.Port)
	return len(chs), err
}
