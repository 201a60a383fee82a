package inventory

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// An ingest chunk reads what it needs in two queries (the chunk's known
// hosts, then their ports), writes new hosts in one statement, and the
// bulk of the rest (new ports, ports and hosts seen unchanged, the
// change log) in one statement each, their rows passed as JSON; only
// hosts and ports whose values changed are written one by one. SQLite
// runs each statement's loop inside itself, so a chunk costs a handful
// of calls instead of several per port.

const (
	selHosts = `SELECT id, hex(akey), hostnames, os, os_accuracy, first_seen, last_seen, gone_at FROM inv_hosts
		WHERE client = ? AND akey IN (SELECT unhex(value) FROM json_each(?))`
	selPorts = `SELECT p.host_id, p.proto, p.port, p.state, p.service, p.product, p.version, p.cpe, p.gone_at
		FROM json_each(?) j CROSS JOIN inv_ports p ON p.host_id = j.value`
	insHosts = `INSERT INTO inv_hosts (client, addr, akey, hostnames, hostnames_at, os, os_accuracy, os_at, first_seen, last_seen, last_scan, changed_at)
		SELECT ?1, v->>0, unhex(v->>1), v->>2, ?2, v->>3, v->>4, ?2, ?2, ?2, ?3, ?2 FROM (SELECT value AS v FROM json_each(?4))`
	insPorts = `INSERT INTO inv_ports (host_id, proto, port, client, akey, state, state_at, service, service_at, product, version, vkey, cpe,
		product_at, first_seen, last_seen, last_scan, changed_at)
		SELECT v->>0, v->>1, v->>2, ?1, unhex(v->>3), v->>4, ?2, v->>5, ?2, v->>6, v->>7, v->>8, v->>9, ?2, ?2, ?2, ?3, ?2
		FROM (SELECT value AS v FROM json_each(?4))`
	insChanges = `INSERT INTO inv_changes (client, at, scan, akey, addr, proto, port, kind, from_v, to_v)
		SELECT ?1, ?2, ?3, unhex(v->>0), v->>1, v->>2, v->>3, v->>4, v->>5, v->>6 FROM (SELECT value AS v FROM json_each(?4))`
	touchPorts = `UPDATE inv_ports SET last_seen = ?1, last_scan = ?2
		WHERE (host_id, proto, port) IN (SELECT v->>0, v->>1, v->>2 FROM (SELECT value AS v FROM json_each(?3)))`
	touchHosts = `UPDATE inv_hosts SET last_seen = ?1, last_scan = ?2 WHERE id IN (SELECT value FROM json_each(?3))`
)

// hostIn is one host of the chunk, parsed.
type hostIn struct {
	h           *results.Host
	addr, hexk  string
	ak          []byte
	names, os   string
	osAcc       int
	known       *hostRow
	id          int64
	portsByHost map[portKey]portRow
}

type hostRow struct {
	id                          int64
	names, os                   string
	acc                         int
	firstSeen, lastSeen, goneAt int64
}

func (w *writer) change(ak []byte, addr, proto string, port int, kind, from, to string) {
	w.changes = append(w.changes, []any{hex.EncodeToString(ak), addr, proto, port, kind, bound(from, 512), bound(to, 512)})
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v) // strings, numbers and slices of them
	return string(b)
}

// chunkHosts ingests hosts (one transaction's worth).
func (w *writer) chunkHosts(ctx context.Context, hosts []results.Host, out *Ingested) error {
	// Parse; the last listing of an address counts.
	var in []*hostIn
	byKey := map[string]*hostIn{}
	for i := range hosts {
		h := &hosts[i]
		if h.State != "up" || len(h.Addresses) == 0 {
			continue
		}
		a, ok := parseHost(h.Addresses[0])
		if !ok {
			continue
		}
		ak := key(a)
		x := &hostIn{h: h, addr: a.String(), ak: ak, hexk: strings.ToUpper(hex.EncodeToString(ak)), names: strings.Join(h.Hostnames, " ")}
		x.os, x.osAcc = bestOS(h)
		if prev, dup := byKey[x.hexk]; dup {
			prev.h = nil // superseded
		}
		byKey[x.hexk] = x
		in = append(in, x)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil
	}
	known, err := w.knownHosts(ctx, keys)
	if err != nil {
		return err
	}
	// New hosts, in one statement; then their ids.
	var fresh []any
	var freshKeys []string
	for _, x := range in {
		if x.h == nil {
			continue
		}
		if r, ok := known[x.hexk]; ok {
			x.known, x.id = r, r.id
			continue
		}
		fresh = append(fresh, []any{x.addr, x.hexk, x.names, x.os, x.osAcc})
		freshKeys = append(freshKeys, x.hexk)
	}
	if len(fresh) > 0 {
		if _, err := w.tx.ExecContext(ctx, insHosts, w.client, w.at, w.scan, jsonOf(fresh)); err != nil {
			return err
		}
		ids, err := w.knownHosts(ctx, freshKeys)
		if err != nil {
			return err
		}
		for _, k := range freshKeys {
			byKey[k].id = ids[k].id
		}
	}
	// The known hosts' ports.
	var knownIDs []int64
	byID := map[int64]*hostIn{}
	for _, x := range in {
		if x.h != nil && x.known != nil {
			knownIDs = append(knownIDs, x.id)
			byID[x.id] = x
			x.portsByHost = map[portKey]portRow{}
		}
	}
	if len(knownIDs) > 0 {
		rows, err := w.tx.QueryContext(ctx, selPorts, jsonOf(knownIDs))
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			var k portKey
			var r portRow
			if err := rows.Scan(&id, &k.proto, &k.port, &r.state, &r.service, &r.product, &r.version, &r.cpe, &r.gone); err != nil {
				rows.Close()
				return err
			}
			if x := byID[id]; x != nil {
				x.portsByHost[k] = r
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	for _, x := range in {
		if x.h == nil {
			continue
		}
		out.Hosts++
		out.Ports += len(x.h.Ports)
		if x.known == nil {
			if err := w.freshHost(x, out); err != nil {
				return err
			}
			continue
		}
		if err := w.knownHost(ctx, x, out); err != nil {
			return err
		}
	}
	return w.flush(ctx)
}

// knownHosts reads the hosts of the client with these hex keys.
func (w *writer) knownHosts(ctx context.Context, hexKeys []string) (map[string]*hostRow, error) {
	rows, err := w.tx.QueryContext(ctx, selHosts, w.client, jsonOf(hexKeys))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]*hostRow{}
	for rows.Next() {
		var r hostRow
		var k string
		if err := rows.Scan(&r.id, &k, &r.names, &r.os, &r.acc, &r.firstSeen, &r.lastSeen, &r.goneAt); err != nil {
			return nil, err
		}
		out[k] = &r
	}
	return out, rows.Err()
}

// freshHost logs a new host and queues its ports.
func (w *writer) freshHost(x *hostIn, out *Ingested) error {
	out.NewHosts++
	var open []string
	for i := range x.h.Ports {
		if p := &x.h.Ports[i]; p.State == "open" || p.State == "open|filtered" {
			open = append(open, portSummary(p))
		}
	}
	w.change(x.ak, x.addr, "", 0, HostAppeared, "", strings.Join(open, ", "))
	out.Changes++
	seen := map[portKey]bool{}
	for i := range x.h.Ports {
		p := &x.h.Ports[i]
		if k := (portKey{p.Protocol, p.Port}); !seen[k] {
			seen[k] = true
			w.queuePort(x.id, x.hexk, p)
		}
	}
	return nil
}

func (w *writer) queuePort(id int64, hexk string, p *results.Port) {
	w.newPorts = append(w.newPorts, []any{id, p.Protocol, p.Port, hexk, p.State, p.Service, p.Product, p.Version,
		VersionKey(p.Version), strings.Join(p.CPE, " ")})
}

// knownHost applies a scan's listing to a host seen before.
func (w *writer) knownHost(ctx context.Context, x *hostIn, out *Ingested) error {
	r := x.known
	if w.at < r.lastSeen {
		// A later scan saw this host already: keep its values.
		out.Stale++
		_, err := w.touchHost.ExecContext(ctx, w.at, r.id)
		return err
	}
	before := out.Changes
	changedAt, namesAt, osAt := int64(0), int64(0), int64(0)
	names, osName, acc := r.names, r.os, r.acc
	if r.goneAt != 0 {
		w.change(x.ak, x.addr, "", 0, HostAppeared, "gone", "")
		out.Changes++
		out.NewHosts++
	}
	if x.names != "" && x.names != r.names {
		w.change(x.ak, x.addr, "", 0, Hostnames, r.names, x.names)
		out.Changes++
		names, namesAt = x.names, w.at
	}
	if x.os != "" && x.os != r.os {
		w.change(x.ak, x.addr, "", 0, OS, r.os, x.os)
		out.Changes++
		osName, osAt = x.os, w.at
	}
	if x.os != "" {
		acc = x.osAcc
	}
	seen := map[portKey]bool{}
	for i := range x.h.Ports {
		p := &x.h.Ports[i]
		k := portKey{p.Protocol, p.Port}
		if seen[k] {
			continue
		}
		seen[k] = true
		old, ok := x.portsByHost[k]
		if !ok {
			w.queuePort(x.id, x.hexk, p)
			w.change(x.ak, x.addr, p.Protocol, p.Port, PortAppeared, "", portSummary(p))
			out.Changes++
			continue
		}
		n, err := w.updatePort(ctx, x.id, x.ak, x.addr, p, old)
		if err != nil {
			return err
		}
		if n < 0 {
			w.touched = append(w.touched, []any{x.id, p.Protocol, p.Port})
		} else {
			out.Changes += n
		}
	}
	if out.Changes == before && acc == r.acc {
		w.touchedHosts = append(w.touchedHosts, x.id)
		return nil
	}
	if out.Changes > before {
		changedAt = w.at
	}
	// hostnames_at and os_at keep their times unless the value changed
	// (0 leaves them: max).
	_, err := w.updHost.ExecContext(ctx, names, namesAt, osName, acc, osAt, w.at, w.scan, changedAt, x.id)
	return err
}

// flush writes what the chunk queued.
func (w *writer) flush(ctx context.Context) error {
	if len(w.newPorts) > 0 {
		if _, err := w.tx.ExecContext(ctx, insPorts, w.client, w.at, w.scan, jsonOf(w.newPorts)); err != nil {
			return err
		}
	}
	if len(w.touched) > 0 {
		if _, err := w.tx.ExecContext(ctx, touchPorts, w.at, w.scan, jsonOf(w.touched)); err != nil {
			return err
		}
	}
	if len(w.touchedHosts) > 0 {
		if _, err := w.tx.ExecContext(ctx, touchHosts, w.at, w.scan, jsonOf(w.touchedHosts)); err != nil {
			return err
		}
	}
	if len(w.changes) > 0 {
		if _, err := w.tx.ExecContext(ctx, insChanges, w.client, w.at, w.scan, jsonOf(w.changes)); err != nil {
			return err
		}
	}
	w.newPorts, w.touched, w.touchedHosts, w.changes = nil, nil, nil, nil
	return nil
}
