package inventory

import (
	"context"
	"fmt"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Swept says what a Sweep marked gone, and how many change log entries
// older than Config.ChangesKeep it deleted.
type Swept struct {
	Hosts   int64 `json:"hosts"`
	Ports   int64 `json:"ports"`
	Changes int64 `json:"changes_deleted"`
}

// sweepBatch is how many change log entries one transaction of Sweep
// deletes, so that the store's write lock is never held long.
const sweepBatch = 10000

// Sweep marks gone, at now, the hosts and ports not seen for GoneAfter,
// logging each in the change log. Nothing is deleted: a host or port seen
// again is back (a host_appeared or port_appeared change from "gone").
// It uses the partial indexes on last_seen of what is not gone, so it
// reads only what it marks.
func (inv *Inventory) Sweep(ctx context.Context, now time.Time) (Swept, error) {
	var sw Swept
	cut, at := store.Millis(now.Add(-inv.cfg.GoneAfter)), store.Millis(now)
	tx, err := inv.db.BeginTx(ctx, nil)
	if err != nil {
		return sw, inv.fault("sweep", err)
	}
	defer tx.Rollback()
	// Every client with hosts is listed for an administrator's queries
	// (an older nmap-mcp writing to the same file after it was migrated
	// adds clients without listing them).
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO inv_clients SELECT DISTINCT client FROM inv_hosts`); err != nil {
		return sw, inv.fault("sweep: list clients", err)
	}
	// Ports first, so that a host's ports gone with it are logged too.
	if _, err := tx.ExecContext(ctx, `INSERT INTO inv_changes (client, at, scan, akey, addr, proto, port, kind, from_v, to_v)
		SELECT p.client, ?, 0, p.akey, h.addr, p.proto, p.port, ?, p.state, 'gone'
		FROM inv_ports p CROSS JOIN inv_hosts h ON h.id = p.host_id WHERE p.gone_at = 0 AND iif(p.ride, h.ports_seen, p.last_seen) < ?`, at, PortGone, cut); err != nil {
		return sw, inv.fault("sweep: log gone ports", err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE inv_ports AS p SET gone_at = ? WHERE p.gone_at = 0 AND `+portSeen("p")+` < ?`, at, cut)
	if err != nil {
		return sw, inv.fault("sweep: ports", err)
	}
	sw.Ports, _ = res.RowsAffected()
	if sw.Ports > 0 {
		// Their hosts' next listing is read port by port (a port back
		// from gone is a change even when the listing is the same).
		if _, err := tx.ExecContext(ctx, `UPDATE inv_hosts SET ports_fp = NULL WHERE id IN (SELECT host_id FROM inv_ports WHERE gone_at = ?)`, at); err != nil {
			return sw, inv.fault("sweep: ports", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO inv_changes (client, at, scan, akey, addr, kind, from_v, to_v)
		SELECT client, ?, 0, akey, addr, ?, 'up', 'gone' FROM inv_hosts WHERE gone_at = 0 AND last_seen < ?`, at, HostGone, cut); err != nil {
		return sw, inv.fault("sweep: log gone hosts", err)
	}
	if res, err = tx.ExecContext(ctx, `UPDATE inv_hosts SET gone_at = ? WHERE gone_at = 0 AND last_seen < ?`, at, cut); err != nil {
		return sw, inv.fault("sweep: hosts", err)
	}
	sw.Hosts, _ = res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return sw, inv.fault("sweep", err)
	}
	if inv.cfg.ChangesKeep <= 0 {
		return sw, nil
	}
	// The change log keeps ChangesKeep (by the time index, in batches).
	old := store.Millis(now.Add(-inv.cfg.ChangesKeep))
	for {
		res, err := inv.db.ExecContext(ctx, `DELETE FROM inv_changes WHERE id IN (SELECT id FROM inv_changes WHERE at < ? LIMIT ?)`, old, sweepBatch)
		if err != nil {
			return sw, inv.fault("sweep: old changes", err)
		}
		n, _ := res.RowsAffected()
		sw.Changes += n
		if n < sweepBatch {
			return sw, nil
		}
	}
}

// String describes s.
func (s Swept) String() string {
	out := fmt.Sprintf("%d hosts, %d ports marked gone", s.Hosts, s.Ports)
	if s.Changes > 0 {
		out += fmt.Sprintf("; %d change log entries older than inventory.changes_keep deleted", s.Changes)
	}
	return out
}
