// Package inventory keeps, per client, what every finished scan found on
// the network: each host (by address) with its hostnames and OS guess,
// and each port with its state, service, product, version and CPE; when
// each was first and last seen, by which scan, and when each value last
// changed. A host or port not seen for GoneAfter is marked gone, never
// deleted; a change log records what changed, when and by which scan.
//
// The inventory lives in its own tables (inv_*) in the scan store's
// SQLite file, created and migrated here with their own schema version
// (inventory_schema_version): a backup of the file holds both, and the
// store's retention, which deletes only from its scans table, never
// loses the inventory. Nothing here writes to the store's tables.
//
// Facts come from the decoded result of a scan (internal/results).
// Values a scan did not observe do not overwrite known ones: a scan
// without service detection keeps the product and version found before,
// a scan without reverse DNS keeps the hostnames. A port a scan did not
// list (nmap folded it into a count, or did not probe it) is not seen by
// that scan: its state stays as last observed, with the time and scan
// that observed it, until it is seen again or goes.
//
// Every answer says how fresh each fact is: the scan that last saw it
// and when, and when each value last changed.
package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// DefaultGoneAfter is how long a host or port may go unseen before it
// is marked gone, unless configured (inventory.gone_after).
const DefaultGoneAfter = 30 * 24 * time.Hour

// Config tunes the inventory.
type Config struct {
	// GoneAfter is how long a host or port may go unseen before Sweep
	// marks it gone (0: DefaultGoneAfter).
	GoneAfter time.Duration
	// ChunkHosts bounds the hosts ingested per transaction, so that the
	// store's write lock is never held long (0: 2048).
	ChunkHosts int
	// ChangesKeep is how long the change log keeps an entry: Sweep
	// deletes older ones (0: it keeps them all).
	ChangesKeep time.Duration
}

// Inventory is the inventory kept in a scan store's file.
type Inventory struct {
	st    *store.Store
	db    *sql.DB
	fault func(op string, err error) error
	cfg   Config
	// following holds CatchUp's turn (one at a time); a caller waits
	// for it no longer than its context allows.
	following chan struct{}
}

// New opens the inventory in st's file, creating or migrating its
// tables. It reads no rows, so start-up does not grow with the
// inventory, except once, when a migration rebuilds indexes (migration
// 6: 15 s on 100,000 hosts × 20 ports, in one transaction: other writers
// of the file wait, and give up after the store's busy timeout).
func New(ctx context.Context, st *store.Store, cfg Config) (*Inventory, error) {
	if st == nil {
		return nil, errors.New("inventory: no scan store")
	}
	if cfg.GoneAfter < 0 {
		return nil, fmt.Errorf("invalid inventory.gone_after %s: must not be negative (e.g. 720h)", cfg.GoneAfter)
	}
	if cfg.GoneAfter == 0 {
		cfg.GoneAfter = DefaultGoneAfter
	}
	if cfg.ChangesKeep < 0 {
		return nil, fmt.Errorf("invalid inventory.changes_keep %s: must not be negative (e.g. 365d; 0 keeps every entry)", cfg.ChangesKeep)
	}
	if cfg.ChunkHosts <= 0 {
		cfg.ChunkHosts = 2048
	}
	inv := &Inventory{st: st, db: st.DB(), fault: func(op string, err error) error { return st.Fault("inventory: "+op, err) }, cfg: cfg,
		following: make(chan struct{}, 1)}
	if err := inv.migrate(ctx); err != nil {
		return nil, err
	}
	return inv, nil
}

// GoneAfter is the configured time after which an unseen host or port
// is marked gone.
func (inv *Inventory) GoneAfter() time.Duration { return inv.cfg.GoneAfter }

// migrations are applied in order; the inventory's schema version is
// their count. The indexes on ports and changes cover the columns the
// filters read (client, state, gone_at, akey), so that a query reads
// only its index range, never the table, until it loads one page of
// answers. Times are Unix milliseconds (0: never); addresses are
// also kept as 16-byte keys (IPv4 mapped into IPv6), so that a CIDR is a
// range of an index.
var migrations = []string{
	`CREATE TABLE inv_scans (
		id INTEGER PRIMARY KEY,
		scan_id TEXT NOT NULL UNIQUE,
		client TEXT NOT NULL,
		at INTEGER NOT NULL,
		hosts INTEGER NOT NULL DEFAULT 0,
		ports INTEGER NOT NULL DEFAULT 0,
		complete INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE inv_hosts (
		id INTEGER PRIMARY KEY,
		client TEXT NOT NULL,
		addr TEXT NOT NULL,
		akey BLOB NOT NULL,
		hostnames TEXT NOT NULL DEFAULT '',
		hostnames_at INTEGER NOT NULL DEFAULT 0,
		os TEXT NOT NULL DEFAULT '',
		os_accuracy INTEGER NOT NULL DEFAULT 0,
		os_at INTEGER NOT NULL DEFAULT 0,
		first_seen INTEGER NOT NULL,
		last_seen INTEGER NOT NULL,
		last_scan INTEGER NOT NULL,
		changed_at INTEGER NOT NULL,
		gone_at INTEGER NOT NULL DEFAULT 0
	);
	CREATE UNIQUE INDEX inv_hosts_addr ON inv_hosts(akey, client);
	CREATE INDEX inv_hosts_client ON inv_hosts(client, akey);
	CREATE INDEX inv_hosts_unseen ON inv_hosts(last_seen) WHERE gone_at = 0;
	CREATE TABLE inv_ports (
		host_id INTEGER NOT NULL,
		proto TEXT NOT NULL,
		port INTEGER NOT NULL,
		client TEXT NOT NULL,
		akey BLOB NOT NULL,
		state TEXT NOT NULL,
		state_at INTEGER NOT NULL,
		service TEXT NOT NULL DEFAULT '',
		service_at INTEGER NOT NULL DEFAULT 0,
		product TEXT NOT NULL DEFAULT '',
		version TEXT NOT NULL DEFAULT '',
		vkey TEXT NOT NULL DEFAULT '',
		cpe TEXT NOT NULL DEFAULT '',
		product_at INTEGER NOT NULL DEFAULT 0,
		first_seen INTEGER NOT NULL,
		last_seen INTEGER NOT NULL,
		last_scan INTEGER NOT NULL,
		changed_at INTEGER NOT NULL,
		gone_at INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (host_id, proto, port)
	) WITHOUT ROWID;
	CREATE INDEX inv_ports_port ON inv_ports(port, akey, state, gone_at, client);
	CREATE INDEX inv_ports_product ON inv_ports(product COLLATE NOCASE, vkey, gone_at, client, akey);
	CREATE INDEX inv_ports_service ON inv_ports(service, akey, state, gone_at, client);
	CREATE INDEX inv_ports_unseen ON inv_ports(last_seen) WHERE gone_at = 0;
	CREATE TABLE inv_changes (
		id INTEGER PRIMARY KEY,
		client TEXT NOT NULL,
		at INTEGER NOT NULL,
		scan INTEGER NOT NULL,
		akey BLOB NOT NULL,
		addr TEXT NOT NULL,
		proto TEXT NOT NULL DEFAULT '',
		port INTEGER NOT NULL DEFAULT 0,
		kind TEXT NOT NULL,
		from_v TEXT NOT NULL DEFAULT '',
		to_v TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX inv_changes_at ON inv_changes(at, client, akey, port, kind);
	CREATE INDEX inv_changes_addr ON inv_changes(akey, at, client, port, kind);`,
	// Following the history: where the follower is (a keyset over the
	// scans' created_at and id) and the scans it saw unfinished.
	`CREATE TABLE inv_follow (
		one INTEGER PRIMARY KEY CHECK (one = 1),
		created_at INTEGER NOT NULL,
		scan_id TEXT NOT NULL
	);
	INSERT INTO inv_follow (one, created_at, scan_id) VALUES (1, 0, '');
	CREATE TABLE inv_pending (scan_id TEXT PRIMARY KEY) WITHOUT ROWID;`,
	// Every rescan moved each port's entry in this index (last_seen
	// changes): a fifth of an ingest's index work, for an hourly sweep.
	// The sweep reads the ports table instead.
	`DROP INDEX IF EXISTS inv_ports_unseen;`,
	// A rescan rewrote every port it listed, changed or not, for its
	// last_seen and last_scan. A port listed by its host's latest scan
	// that listed any port (ride = 1) takes them from the host instead
	// (ports_seen, ports_scan); one not listed since keeps its own. An
	// unchanged rescan writes only the hosts. Existing rows keep their own
	// (ride = 0): nothing to fill.
	`ALTER TABLE inv_hosts ADD COLUMN ports_seen INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE inv_hosts ADD COLUMN ports_scan INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE inv_ports ADD COLUMN ride INTEGER NOT NULL DEFAULT 0;`,
	// A rescan still read every port of every host it listed, to find
	// what changed. ports_fp is a digest of the host's last port listing
	// applied (NULL: none, or its ports changed since: a sweep marked one
	// gone); a listing with the same digest changes nothing, so its
	// ports are not read.
	`ALTER TABLE inv_hosts ADD COLUMN ports_fp BLOB;`,
	// The indexes of ports and of the change log put the client last,
	// so one client's query read every client's entries in its range:
	// another client's 50,000 hosts with port 3389 made alice's
	// find_hosts port=3389 take 24 ms instead of 0.3 ms, and she could
	// time it to count them. They begin with the client now; an
	// administrator's query takes each client's range (inv_clients, one
	// row per client with an inventory), or, for the change log without
	// an address, the time index (newest first, and the sweep's old
	// entries).
	`CREATE TABLE inv_clients (client TEXT PRIMARY KEY) WITHOUT ROWID;
	INSERT OR IGNORE INTO inv_clients SELECT DISTINCT client FROM inv_hosts;
	DROP INDEX inv_ports_port;
	DROP INDEX inv_ports_product;
	DROP INDEX inv_ports_service;
	DROP INDEX inv_changes_at;
	DROP INDEX inv_changes_addr;
	CREATE INDEX inv_ports_port ON inv_ports(client, port, akey, state, gone_at);
	CREATE INDEX inv_ports_product ON inv_ports(client, product COLLATE NOCASE, vkey, gone_at, akey);
	CREATE INDEX inv_ports_service ON inv_ports(client, service, akey, state, gone_at);
	CREATE INDEX inv_changes_at ON inv_changes(client, at, akey, port, kind);
	CREATE INDEX inv_changes_addr ON inv_changes(client, akey, at, port, kind);
	CREATE INDEX inv_changes_time ON inv_changes(at);`,
	// Which process ingests a scan: an ingest not complete is done again
	// by its own process or when that process is gone, never beside
	// another live process's (a CLI command redid the server's big
	// ingest under way). 0: none recorded (an older nmap-mcp's).
	`ALTER TABLE inv_scans ADD COLUMN owner_pid INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE inv_scans ADD COLUMN owner_host TEXT NOT NULL DEFAULT '';`,
}

// portSeen and portScan are a port row's last_seen and last_scan (alias
// p; host is a correlated lookup of its host row's column).
func portSeen(p string) string {
	return "iif(" + p + ".ride, (SELECT x.ports_seen FROM inv_hosts x WHERE x.id = " + p + ".host_id), " + p + ".last_seen)"
}

func (inv *Inventory) migrate(ctx context.Context) error {
	if _, err := inv.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS inventory_schema_version (version INTEGER NOT NULL)`); err != nil {
		return inv.fault("create schema version", err)
	}
	var version int
	err := inv.db.QueryRowContext(ctx, `SELECT version FROM inventory_schema_version`).Scan(&version)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := inv.db.ExecContext(ctx, `INSERT INTO inventory_schema_version (version) VALUES (0)`); err != nil {
			return inv.fault("create schema version", err)
		}
	} else if err != nil {
		return inv.fault("read schema version", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("inventory schema version %d is newer than this nmap-mcp knows (%d); use a newer nmap-mcp or another --store", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		tx, err := inv.db.BeginTx(ctx, nil)
		if err != nil {
			return inv.fault("migrate", err)
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return inv.fault(fmt.Sprintf("migrate to version %d", v+1), err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE inventory_schema_version SET version = ?`, v+1); err != nil {
			tx.Rollback()
			return inv.fault("migrate", err)
		}
		if err := tx.Commit(); err != nil {
			return inv.fault("migrate", err)
		}
	}
	return nil
}

// ParseGoneAfter reads inventory.gone_after: a number of days ("30d")
// or a duration of at least an hour ("720h"); "" is DefaultGoneAfter.
func ParseGoneAfter(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return DefaultGoneAfter, nil
	}
	return parseDays(s)
}

// ParseChangesKeep reads inventory.changes_keep: a number of days
// ("365d") or a duration of at least an hour; "" keeps every entry (0).
func ParseChangesKeep(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	return parseDays(s)
}

// maxDays bounds a number of days (a century: more would overflow a
// duration).
const maxDays = 36500

// parseDays reads a number of days ("30d", at most maxDays) or a
// duration of at least an hour ("720h").
func parseDays(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 1 && n <= maxDays {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= time.Hour {
		return d, nil
	}
	return 0, fmt.Errorf("%q: give a number of days (30d) or a duration of at least an hour (720h)", s)
}
