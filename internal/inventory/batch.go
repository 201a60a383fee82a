package inventory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
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
	selHosts = `SELECT id, hex(akey), hostnames, os, os_accuracy, first_seen, last_seen, gone_at, ports_seen, ports_scan, ports_fp FROM inv_hosts
		WHERE client = ? AND akey IN (SELECT unhex(value) FROM json_each(?))`
	selPorts = `SELECT p.host_id, p.proto, p.port, p.state, p.service, p.product, p.version, p.cpe, p.gone_at, p.ride
		FROM json_each(?) j CROSS JOIN inv_ports p ON p.host_id = j.value`
	// touchPorts: unchanged ports listed again that had their own
	// last_seen ride on their host's again.
	touchPorts = `UPDATE inv_ports SET last_seen = ?1, last_scan = ?2, ride = 1
		WHERE (host_id, proto, port) IN (SELECT v->>0, v->>1, v->>2 FROM (SELECT value AS v FROM json_each(?3)))`
	// unridePorts: ports riding on their host that its scan did not list
	// keep the host's ports_seen and ports_scan before the scan.
	unridePorts = `UPDATE inv_ports SET last_seen = j.value->>3, last_scan = j.value->>4, ride = 0
		FROM json_each(?1) j WHERE (host_id, proto, port) = (j.value->>0, j.value->>1, j.value->>2)`
	touchHosts = `UPDATE inv_hosts SET last_seen = ?1, last_scan = ?2, ports_seen = iif(j.value->>1, ?1, ports_seen), ports_scan = iif(j.value->>1, ?2, ports_scan),
		ports_fp = iif(j.value->>1, unhex(j.value->>2), ports_fp)
		FROM json_each(?3) j WHERE inv_hosts.id = j.value->>0`
)

// New rows are written by multi-row INSERTs (bulk): the chunk's
// constants (client, time, scan) are bound once, in a one-row c, and
// each row's values in a VALUES list v (column1, column2, ...); a
// statement of bulkRows rows is prepared once per chunk and run until
// fewer are left. This costs SQLite no parsing of the rows (a JSON array
// passed as one value did: a fifth of an ingest). The parameters are
// anonymous: SQLite finds a numbered one's name by a linear search, which
// made a 2,560-parameter statement quadratic. OR ROLLBACK: a constraint
// broken (which would be a bug) fails the chunk's whole transaction, as
// the caller does for any error; so SQLite keeps no statement journal of
// each statement's pages to undo it alone (a third of an ingest's time).
var (
	insHosts = bulk{
		head: `INSERT OR ROLLBACK INTO inv_hosts (id, client, addr, akey, hostnames, hostnames_at, os, os_accuracy, os_at, first_seen, last_seen, last_scan, changed_at,
		ports_seen, ports_scan, ports_fp)
		SELECT v.column1, c.client, v.column2, v.column3, v.column4, c.at, v.column5, v.column6, c.at, c.at, c.at, c.scan, c.at,
		iif(v.column7 IS NULL, 0, c.at), iif(v.column7 IS NULL, 0, c.scan), v.column7`,
		width: 7,
	}
	insPorts = bulk{
		head: `INSERT OR ROLLBACK INTO inv_ports (host_id, proto, port, client, akey, state, state_at, service, service_at, product, version, vkey, cpe,
		product_at, first_seen, last_seen, last_scan, changed_at, ride)
		SELECT v.column1, v.column2, v.column3, c.client, v.column4, v.column5, c.at, v.column6, c.at, v.column7, v.column8, v.column9, v.column10,
		c.at, c.at, c.at, c.scan, c.at, 1`,
		width: 10,
	}
	insChanges = bulk{
		head: `INSERT OR ROLLBACK INTO inv_changes (client, at, scan, akey, addr, proto, port, kind, from_v, to_v)
		SELECT c.client, c.at, c.scan, v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7`,
		width: 7,
	}
)

// bulkRows is the rows of a full bulk statement (at most 10 values a
// row: well under SQLite's 32,766 variables).
const bulkRows = 256

// bulk is a multi-row INSERT: head selects from v (the rows, width
// values each) CROSS JOIN c (client, at, scan), in the rows' order.
type bulk struct {
	head  string
	width int
}

// sql is the statement for rows rows.
func (b *bulk) sql(rows int) string {
	var s strings.Builder
	s.WriteString(b.head)
	s.WriteString(" FROM (VALUES ")
	tuple := "(" + strings.Repeat("?,", b.width-1) + "?)"
	for r := range rows {
		if r > 0 {
			s.WriteByte(',')
		}
		s.WriteString(tuple)
	}
	s.WriteString(") v CROSS JOIN (SELECT ? AS client, ? AS at, ? AS scan) c")
	return s.String()
}

// insert writes vals (rows of b.width values, flat) with the chunk's
// constants.
func (w *writer) insert(ctx context.Context, b *bulk, vals []any) error {
	width := b.width
	args := make([]any, 0, 3+bulkRows*width)
	for len(vals) > 0 {
		rows := min(len(vals)/width, bulkRows)
		stmt, err := w.bulkStmt(ctx, b, rows)
		if err != nil {
			return err
		}
		args = append(append(args[:0], vals[:rows*width]...), w.client, w.at, w.scan)
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return err
		}
		vals = vals[rows*width:]
	}
	return nil
}

// bulkStmt prepares (once per chunk) b's statement for rows rows.
func (w *writer) bulkStmt(ctx context.Context, b *bulk, rows int) (*sql.Stmt, error) {
	k := bulkKey{b, rows}
	if s := w.stmts[k]; s != nil {
		return s, nil
	}
	s, err := w.tx.PrepareContext(ctx, b.sql(rows))
	if err != nil {
		return nil, err
	}
	if w.stmts == nil {
		w.stmts = map[bulkKey]*sql.Stmt{}
	}
	w.stmts[k] = s
	return s, nil
}

type bulkKey struct {
	b    *bulk
	rows int
}

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
	// fp is the digest of the listing (nil: no port listed); same is
	// true when it is the known host's last one (ports not read).
	fp   []byte
	same bool
	// idBox and akBox are id and ak boxed once for the host's ports.
	idBox, akBox any
}

// listingDigest is the digest of a host's port listing: each distinct
// port (its first listing) with every value the ingest applies.
func listingDigest(ports []results.Port) []byte {
	if len(ports) == 0 {
		return nil
	}
	var buf []byte
	var seen map[portKey]bool // for long listings; short ones are searched
	if len(ports) > 32 {
		seen = map[portKey]bool{}
	}
	str := func(v string) {
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	for i := range ports {
		p := &ports[i]
		if seen != nil {
			k := portKey{p.Protocol, p.Port}
			if seen[k] {
				continue
			}
			seen[k] = true
		} else if slices.ContainsFunc(ports[:i], func(q results.Port) bool { return q.Port == p.Port && q.Protocol == p.Protocol }) {
			continue // the first listing counts
		}
		str(p.Protocol)
		buf = binary.AppendUvarint(buf, uint64(p.Port))
		str(p.State)
		str(p.Service)
		str(p.Product)
		str(p.Version)
		buf = binary.AppendUvarint(buf, uint64(len(p.CPE)))
		for _, c := range p.CPE {
			str(c)
		}
	}
	sum := sha256.Sum256(buf)
	return sum[:16]
}

type hostRow struct {
	id                          int64
	names, os                   string
	acc                         int
	firstSeen, lastSeen, goneAt int64
	portsSeen, portsScan        int64
	fp                          []byte
}

// MaxHostChanges bounds the change log entries one scan writes for one
// host (every port of a host of 20 changing all five values); the rest
// are counted in one ChangesOmitted entry. A host that changes its
// banners on thousands of ports at every scan (a tarpit) wrote five
// entries a port a scan, never removed.
const MaxHostChanges = 100

// change logs a change of the host being applied (see beginHost),
// within MaxHostChanges.
func (w *writer) change(ak []byte, addr, proto string, port int, kind, from, to string) {
	if w.hostLogged >= MaxHostChanges {
		w.hostOmitted++
		return
	}
	w.hostLogged++
	w.changes = append(w.changes, ak, addr, proto, port, kind, bound(from, 512), bound(to, 512))
}

// beginHost starts the count of a host's change log entries; endHost
// logs how many it left out.
func (w *writer) beginHost() { w.hostLogged, w.hostOmitted = 0, 0 }

func (w *writer) endHost(x *hostIn) {
	if w.hostOmitted > 0 {
		w.changes = append(w.changes, x.ak, x.addr, "", 0, ChangesOmitted, "",
			fmt.Sprintf("%d more changes of this host by this scan were not logged (at most %d a host a scan)", w.hostOmitted, MaxHostChanges))
	}
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
		x.fp = listingDigest(h.Ports)
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
	// New hosts, with ids given here (the chunk's transaction holds
	// the write lock), in bulk.
	var fresh []any
	var next int64
	for _, x := range in {
		if x.h == nil {
			continue
		}
		if r, ok := known[x.hexk]; ok {
			x.known, x.id = r, r.id
			continue
		}
		if next == 0 {
			if err := w.tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) + 1 FROM inv_hosts`).Scan(&next); err != nil {
				return err
			}
		}
		x.id = next
		next++
		fresh = append(fresh, x.id, x.addr, x.ak, x.names, x.os, x.osAcc, x.fp)
	}
	if len(fresh) > 0 {
		if err := w.insert(ctx, &insHosts, fresh); err != nil {
			return err
		}
	}
	// The known hosts' ports.
	var knownIDs []int64
	byID := map[int64]*hostIn{}
	for _, x := range in {
		if x.h != nil && x.known != nil {
			if w.at < x.known.lastSeen {
				continue // stale: its ports are not looked at
			}
			if x.fp != nil && bytes.Equal(x.fp, x.known.fp) {
				x.same = true
				continue
			}
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
			if err := rows.Scan(&id, &k.proto, &k.port, &r.state, &r.service, &r.product, &r.version, &r.cpe, &r.gone, &r.ride); err != nil {
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
		w.beginHost()
		var err error
		if x.known == nil {
			err = w.freshHost(x, out)
		} else {
			err = w.knownHost(ctx, x, out)
		}
		if err != nil {
			return err
		}
		w.endHost(x)
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
		if err := rows.Scan(&r.id, &k, &r.names, &r.os, &r.acc, &r.firstSeen, &r.lastSeen, &r.goneAt, &r.portsSeen, &r.portsScan, &r.fp); err != nil {
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
			w.queuePort(x, p)
		}
	}
	return nil
}

func (w *writer) queuePort(x *hostIn, p *results.Port) {
	if x.idBox == nil {
		x.idBox, x.akBox = x.id, x.ak
	}
	vkey, cpe := "", ""
	if p.Version != "" {
		vkey = VersionKey(p.Version)
	}
	if len(p.CPE) > 0 {
		cpe = strings.Join(p.CPE, " ")
	}
	w.newPorts = append(w.newPorts, x.idBox, w.box(p.Protocol), w.boxInt(p.Port), x.akBox, w.box(p.State), w.box(p.Service),
		w.box(p.Product), w.box(p.Version), w.box(vkey), w.box(cpe))
}

// box and boxInt return values as the interfaces the bulk statements
// take, once per distinct value and chunk: most values of a scan repeat
// (protocols, states, services, products, versions, port numbers), and
// boxing each anew made an allocation per value, whose collection
// rescanned the scan's whole result again and again.
func (w *writer) box(s string) any {
	if s == "" {
		return ""
	}
	if v, ok := w.boxes[s]; ok {
		return v
	}
	if w.boxes == nil {
		w.boxes = map[string]any{}
	}
	v := any(s)
	if len(w.boxes) < 1<<16 {
		w.boxes[s] = v
	}
	return v
}

func (w *writer) boxInt(n int) any {
	if v, ok := w.ints[n]; ok {
		return v
	}
	if w.ints == nil {
		w.ints = map[int]any{}
	}
	v := any(n)
	w.ints[n] = v
	return v
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
	// The same listing as the host's last one applied changes no port
	// (its ports were not read).
	seen := map[portKey]bool{}
	for i := range x.h.Ports {
		if x.same {
			break
		}
		p := &x.h.Ports[i]
		k := portKey{p.Protocol, p.Port}
		if seen[k] {
			continue
		}
		seen[k] = true
		old, ok := x.portsByHost[k]
		if !ok {
			w.queuePort(x, p)
			w.change(x.ak, x.addr, p.Protocol, p.Port, PortAppeared, "", portSummary(p))
			out.Changes++
			continue
		}
		n, err := w.updatePort(ctx, x.id, x.ak, x.addr, p, old)
		if err != nil {
			return err
		}
		if n >= 0 {
			out.Changes += n
		} else if !old.ride {
			w.touched = append(w.touched, []any{x.id, p.Protocol, p.Port})
		}
	}
	// The ports this scan listed ride on the host from now on; those
	// riding that it did not list keep the host's last listing.
	listed := x.fp != nil
	if listed {
		for k, old := range x.portsByHost {
			if old.ride && !seen[k] {
				w.unride = append(w.unride, []any{x.id, k.proto, k.port, r.portsSeen, r.portsScan})
			}
		}
	}
	if out.Changes == before && acc == r.acc {
		w.touchedHosts = append(w.touchedHosts, []any{x.id, listed, hex.EncodeToString(x.fp)})
		return nil
	}
	if out.Changes > before {
		changedAt = w.at
	}
	// hostnames_at and os_at keep their times unless the value changed
	// (0 leaves them: max).
	_, err := w.updHost.ExecContext(ctx, names, namesAt, osName, acc, osAt, w.at, w.scan, changedAt, listed, w.at, listed, w.scan, listed, x.fp, x.id)
	return err
}

// flush writes what the chunk queued.
func (w *writer) flush(ctx context.Context) error {
	if err := w.insert(ctx, &insPorts, w.newPorts); err != nil {
		return err
	}
	if len(w.touched) > 0 {
		if _, err := w.tx.ExecContext(ctx, touchPorts, w.at, w.scan, jsonOf(w.touched)); err != nil {
			return err
		}
	}
	if len(w.unride) > 0 {
		if _, err := w.tx.ExecContext(ctx, unridePorts, jsonOf(w.unride)); err != nil {
			return err
		}
	}
	if len(w.touchedHosts) > 0 {
		if _, err := w.tx.ExecContext(ctx, touchHosts, w.at, w.scan, jsonOf(w.touchedHosts)); err != nil {
			return err
		}
	}
	if err := w.insert(ctx, &insChanges, w.changes); err != nil {
		return err
	}
	w.newPorts, w.touched, w.unride, w.touchedHosts, w.changes = nil, nil, nil, nil, nil
	return nil
}
