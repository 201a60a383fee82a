package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Gone filters of a query.
const (
	GonePresent = "no"  // only hosts and ports not gone (the default)
	GoneOnly    = "yes" // only those gone
	GoneAny     = "any" // both
)

// Bounds of answers.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
	// MaxPortsPerHost bounds the ports listed per host in an answer of
	// Find, with or without port filters (a host that answers on every
	// port, a tarpit, would otherwise put tens of thousands of ports per
	// host in one answer); PortsOmitted counts the rest.
	MaxPortsPerHost = 100
	// MaxTimelinePorts bounds the ports a Timeline lists per host (gone
	// ones included); PortsOmitted counts the rest.
	MaxTimelinePorts = 1000
	// CountCap and ChangeCountCap bound what an answer counts, so that
	// its cost stays bounded however much matches.
	CountCap       = 100000
	ChangeCountCap = 10000
)

// Protocols and States a query accepts.
var (
	Protocols = []string{"tcp", "udp", "sctp"}
	States    = []string{"open", "closed", "filtered", "unfiltered", "open|filtered", "closed|filtered"}
)

// Query selects hosts, and their ports, from the inventory. Zero fields
// do not filter. Port-level filters (Port, Protocol, State, Service,
// Product, Version) select hosts with at least one matching port and list
// only the matching ports; SeenSince, ChangedSince and Gone apply to those
// ports when a port-level filter is given, else to the hosts.
type Query struct {
	// Client keeps one client's inventory; empty: every client's (admin).
	Client   string
	Address  string // an IP address or a CIDR
	Port     int
	Protocol string
	State    string
	Service  string // nmap's service name, e.g. ssh, ms-wbt-server (exact)
	Product  string // e.g. OpenSSH (exact, any case)
	// Version compares numerically: "<9.0", ">=8.0,<9.0", "9.2" (begins
	// with), "=9.2p1" (exact).
	Version      string
	SeenSince    time.Time
	ChangedSince time.Time
	Gone         string // GonePresent (default), GoneOnly or GoneAny
	Limit        int    // hosts per answer (default DefaultLimit, at most MaxLimit)
	Offset       int
}

// FieldError names a query field, its value and the rule it breaks.
type FieldError struct {
	Field, Value, Rule string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Rule)
}

// Bounds of a query's text fields (bytes), for every caller (the MCP
// tools' schemas say the same; the web form and the CLI pass what they
// are given).
const (
	MaxAddressLen = 64
	MaxServiceLen = 64
	MaxProductLen = 128
	MaxVersionLen = 64
)

// shorten keeps an over-long value short enough to quote in an error.
func shorten(s string) string { return bound(s, 80) }

// checkLen refuses value when longer than n bytes, naming the field.
func checkLen(field, value string, n int) error {
	if len(value) > n {
		return &FieldError{field, shorten(value), fmt.Sprintf("must be at most %d characters (this has %d)", n, len(value))}
	}
	return nil
}

// checkText applies the bounds of q's text fields.
func (q *Query) checkText() error {
	for _, f := range []struct {
		field, value string
		max          int
	}{{"address", q.Address, MaxAddressLen}, {"service", q.Service, MaxServiceLen}, {"product", q.Product, MaxProductLen}, {"version", q.Version, MaxVersionLen}} {
		if err := checkLen(f.field, f.value, f.max); err != nil {
			return err
		}
	}
	return nil
}

// Found is an answer to a Query.
type Found struct {
	Hosts []HostFacts `json:"hosts" desc:"matching hosts, by address, with their matching ports"`
	// Total is the number of matching hosts; More says whether hosts
	// follow (ask again with offset = offset + len(hosts)).
	Total int `json:"total" desc:"hosts matching, over all pages (at most 100000: see total_capped)"`
	// TotalCapped is true when more hosts match than were counted.
	TotalCapped bool `json:"total_capped" desc:"true when more hosts match than total says"`
	Offset      int  `json:"offset" desc:"hosts skipped before this page"`
	More        bool `json:"more" desc:"true when more hosts match than this page holds"`
	// AsOf is when the answer was made; each fact carries its own scan
	// and time.
	AsOf string `json:"as_of" desc:"when this answer was made (RFC 3339); each fact says which scan saw it last and when"`
	// CatchingUp is set by the caller when scans that finished were
	// still being ingested as the answer was made.
	CatchingUp bool `json:"catching_up" desc:"true when scans that finished were still being ingested as this answer was made: ask again in a few seconds to include them"`
}

// HostFacts is what is known of one host of one client.
type HostFacts struct {
	Client           string      `json:"client" desc:"the client whose inventory holds the host"`
	Address          string      `json:"address" desc:"IP address"`
	Hostnames        []string    `json:"hostnames" desc:"host names last reported"`
	HostnamesChanged string      `json:"hostnames_changed" desc:"when the host names last changed (RFC 3339)"`
	OS               string      `json:"os" desc:"best OS guess last reported; empty when never detected"`
	OSAccuracy       int         `json:"os_accuracy" desc:"percent"`
	OSChanged        string      `json:"os_changed" desc:"when the OS guess last changed; empty when never detected"`
	FirstSeen        string      `json:"first_seen" desc:"first seen up (RFC 3339)"`
	LastSeen         string      `json:"last_seen" desc:"last seen up (RFC 3339)"`
	LastScan         string      `json:"last_scan" desc:"id of the scan that last saw the host up"`
	Gone             bool        `json:"gone" desc:"true when not seen for the configured time (gone_after)"`
	GoneAt           string      `json:"gone_at" desc:"when it was marked gone; empty unless gone"`
	Ports            []PortFacts `json:"ports" desc:"ports (only those matching the port filters, when given), at most 100 per host in find_hosts"`
	PortsOmitted     int         `json:"ports_omitted" desc:"ports not listed (over the per-host bound)"`
}

// PortFacts is what is known of one port of a host.
type PortFacts struct {
	Protocol       string   `json:"protocol" desc:"tcp, udp or sctp"`
	Port           int      `json:"port" desc:"port number"`
	State          string   `json:"state" desc:"state last observed: open, closed, filtered, ..."`
	StateChanged   string   `json:"state_changed" desc:"when the state last changed (RFC 3339)"`
	Service        string   `json:"service" desc:"service name, e.g. ssh"`
	ServiceChanged string   `json:"service_changed" desc:"when the service name last changed"`
	Product        string   `json:"product" desc:"product, e.g. OpenSSH; empty when never detected"`
	Version        string   `json:"version" desc:"version, e.g. 9.2p1"`
	CPE            []string `json:"cpe" desc:"CPE names"`
	ProductChanged string   `json:"product_changed" desc:"when product, version or CPE last changed"`
	FirstSeen      string   `json:"first_seen" desc:"first listed by a scan"`
	LastSeen       string   `json:"last_seen" desc:"last listed by a scan: the state is as of this time"`
	LastScan       string   `json:"last_scan" desc:"id of the scan that last listed the port"`
	Gone           bool     `json:"gone" desc:"true when not listed for the configured time"`
	GoneAt         string   `json:"gone_at" desc:"when it was marked gone; empty unless gone"`
}

func stamp(v int64) string {
	if v == 0 {
		return ""
	}
	return store.FromMillis(v).Format(time.RFC3339)
}

func words(s string) []string {
	f := strings.Fields(s)
	if f == nil {
		return []string{}
	}
	return f
}

// everyClient is an administrator's condition on the ports or the change
// log (alias): every client, one index range each (their indexes begin
// with the client, so that one client's query reads only its own
// entries).
func everyClient(alias string) string {
	return alias + ".client IN (SELECT client FROM inv_clients)"
}

// where builds SQL conditions; alias is the table's alias.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return "1"
	}
	return strings.Join(w.conds, " AND ")
}

func limitOf(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultLimit, nil
	case limit < 0 || limit > MaxLimit:
		return 0, &FieldError{"limit", fmt.Sprint(limit), fmt.Sprintf("must be from 1 to %d", MaxLimit)}
	}
	return limit, nil
}

// portLevel reports whether q filters on ports.
func (q *Query) portLevel() bool {
	return q.Port != 0 || q.Protocol != "" || q.State != "" || q.Service != "" || q.Product != "" || q.Version != ""
}

// conds turns q into conditions on alias ("p" for ports, "h" for
// hosts); address conditions are added by the caller when wanted.
func (q *Query) conds(alias string, portLevel bool) (*where, error) {
	w := &where{}
	switch {
	case q.Client != "":
		w.add(alias+".client = ?", q.Client)
	case alias == "p":
		w.add(everyClient("p"))
	}
	if portLevel {
		if q.Port < 0 || q.Port > 65535 {
			return nil, &FieldError{"port", fmt.Sprint(q.Port), "must be from 1 to 65535"}
		}
		if q.Port != 0 {
			w.add(alias+".port = ?", q.Port)
		}
		if q.Protocol != "" {
			if !slices.Contains(Protocols, q.Protocol) {
				return nil, &FieldError{"protocol", q.Protocol, "must be one of " + strings.Join(Protocols, ", ")}
			}
			w.add(alias+".proto = ?", q.Protocol)
		}
		if q.State != "" {
			if !slices.Contains(States, q.State) {
				return nil, &FieldError{"state", q.State, "must be one of " + strings.Join(States, ", ")}
			}
			w.add(alias+".state = ?", q.State)
		}
		if q.Service != "" {
			w.add(alias+".service = ?", q.Service)
		}
		if q.Product != "" {
			w.add(alias+".product = ? COLLATE NOCASE", q.Product)
		}
		if q.Version != "" {
			cmps, err := ParseVersionFilter(q.Version)
			if err != nil {
				rule := "must be comparisons such as <9.0, >=8.0,<9.0 or 9.2 (begins with)"
				if strings.Count(q.Version, ",") >= MaxVersionComparisons {
					rule = fmt.Sprintf("must be at most %d comparisons, such as >=8.0,<9.0", MaxVersionComparisons)
				}
				return nil, &FieldError{"version", shorten(q.Version), rule}
			}
			w.add(alias + ".vkey <> ''")
			for _, c := range cmps {
				switch c.Op {
				case "^":
					w.add("substr("+alias+".vkey, 1, ?) = ?", len(c.Key), c.Key)
				case "=":
					w.add(alias+".vkey = ?", c.Key)
				default:
					w.add(alias+".vkey "+c.Op+" ?", c.Key)
				}
			}
		}
	}
	if !q.SeenSince.IsZero() {
		if alias == "h" {
			w.add(alias+".last_seen >= ?", store.Millis(q.SeenSince))
		} else {
			w.add(portSeen(alias)+" >= ?", store.Millis(q.SeenSince))
		}
	}
	if !q.ChangedSince.IsZero() {
		w.add(alias+".changed_at >= ?", store.Millis(q.ChangedSince))
	}
	switch q.Gone {
	case "", GonePresent:
		w.add(alias + ".gone_at = 0")
	case GoneOnly:
		w.add(alias + ".gone_at <> 0")
	case GoneAny:
	default:
		return nil, &FieldError{"gone", q.Gone, "must be no (present only, the default), yes (gone only) or any"}
	}
	return w, nil
}

// Find answers q from the inventory, without scanning.
func (inv *Inventory) Find(ctx context.Context, q Query) (*Found, error) {
	limit, err := limitOf(q.Limit)
	if err != nil {
		return nil, err
	}
	if q.Offset < 0 {
		return nil, &FieldError{"offset", fmt.Sprint(q.Offset), "must be 0 or more"}
	}
	if err := q.checkText(); err != nil {
		return nil, err
	}
	lo, hi, ranged, err := Range(q.Address)
	if err != nil {
		return nil, &FieldError{"address", q.Address, "must be an IP address (10.0.0.5) or a CIDR (10.1.0.0/16)"}
	}
	out := &Found{Hosts: []HostFacts{}, Offset: q.Offset, AsOf: time.Now().UTC().Format(time.RFC3339)}
	portLevel := q.portLevel()
	var idQuery, countQuery string
	var w *where
	if portLevel {
		if w, err = q.conds("p", true); err != nil {
			return nil, err
		}
		if ranged {
			w.add("p.akey BETWEEN ? AND ?", lo, hi)
		}
		idQuery = `SELECT p.host_id, min(p.akey) AS k FROM inv_ports p WHERE ` + w.sql() + ` GROUP BY p.host_id ORDER BY k, p.host_id LIMIT ? OFFSET ?`
		countQuery = `SELECT count(*) FROM (SELECT DISTINCT p.host_id FROM inv_ports p WHERE ` + w.sql() + ` LIMIT ?)`
	} else {
		if w, err = q.conds("h", false); err != nil {
			return nil, err
		}
		if ranged {
			w.add("h.akey BETWEEN ? AND ?", lo, hi)
		}
		idQuery = `SELECT h.id, h.akey FROM inv_hosts h WHERE ` + w.sql() + ` ORDER BY h.akey, h.id LIMIT ? OFFSET ?`
		countQuery = `SELECT count(*) FROM (SELECT 1 FROM inv_hosts h WHERE ` + w.sql() + ` LIMIT ?)`
	}
	if err := inv.db.QueryRowContext(ctx, countQuery, append(slices.Clone(w.args), CountCap+1)...).Scan(&out.Total); err != nil {
		return nil, inv.fault("find", err)
	}
	if out.Total > CountCap {
		out.Total, out.TotalCapped = CountCap, true
	}
	if out.Total <= q.Offset {
		return out, nil
	}
	rows, err := inv.db.QueryContext(ctx, idQuery, append(slices.Clone(w.args), limit, q.Offset)...)
	if err != nil {
		return nil, inv.fault("find", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		var k []byte
		if err := rows.Scan(&id, &k); err != nil {
			rows.Close()
			return nil, inv.fault("find", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, inv.fault("find", err)
	}
	out.More = q.Offset+len(ids) < out.Total || out.TotalCapped
	// The ports listed: those matching when filtering on ports, else
	// those present (or as asked by gone), within the per-host bound.
	var pw *where
	// ("+p": unary plus keeps SQLite from using the filters' indexes
	// here, so that the page's ports are read by host, its primary key.)
	if portLevel {
		pw, _ = q.conds("+p", true)
	} else {
		pw = &where{}
		switch q.Gone {
		case GoneOnly, GoneAny:
		default:
			pw.add("+p.gone_at = 0")
		}
	}
	hosts, err := inv.hosts(ctx, ids, pw, MaxPortsPerHost)
	if err != nil {
		return nil, err
	}
	out.Hosts = hosts
	return out, nil
}

// hosts loads the hosts with ids, in that order, with at most perHost
// of their ports that meet pw each (the rest counted in PortsOmitted).
func (inv *Inventory) hosts(ctx context.Context, ids []int64, pw *where, perHost int) ([]HostFacts, error) {
	out := make([]HostFacts, 0, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	list, _ := json.Marshal(ids)
	rows, err := inv.db.QueryContext(ctx, `SELECT h.id, h.client, h.addr, h.hostnames, h.hostnames_at, h.os, h.os_accuracy, h.os_at,
		h.first_seen, h.last_seen, coalesce(s.scan_id, ''), h.gone_at
		FROM json_each(?) j CROSS JOIN inv_hosts h ON h.id = j.value LEFT JOIN inv_scans s ON s.id = h.last_scan`, string(list))
	if err != nil {
		return nil, inv.fault("find: hosts", err)
	}
	byID := map[int64]*HostFacts{}
	for rows.Next() {
		var (
			h                                    HostFacts
			id, namesAt, osAt, first, last, gone int64
			names                                string
		)
		if err := rows.Scan(&id, &h.Client, &h.Address, &names, &namesAt, &h.OS, &h.OSAccuracy, &osAt, &first, &last, &h.LastScan, &gone); err != nil {
			rows.Close()
			return nil, inv.fault("find: hosts", err)
		}
		h.Hostnames, h.HostnamesChanged = words(names), stamp(namesAt)
		if h.OS != "" {
			h.OSChanged = stamp(osAt)
		}
		h.FirstSeen, h.LastSeen, h.Gone, h.GoneAt = stamp(first), stamp(last), gone != 0, stamp(gone)
		h.Ports = []PortFacts{}
		byID[id] = &h
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, inv.fault("find: hosts", err)
	}
	args := append([]any{string(list)}, pw.args...)
	prow, err := inv.db.QueryContext(ctx, `SELECT p.host_id, p.proto, p.port, p.state, p.state_at, p.service, p.service_at, p.product, p.version,
		p.cpe, p.product_at, p.first_seen, iif(p.ride, hp.ports_seen, p.last_seen), coalesce(s.scan_id, ''), p.gone_at
		FROM json_each(?) j CROSS JOIN inv_ports p ON p.host_id = j.value CROSS JOIN inv_hosts hp ON hp.id = p.host_id
		LEFT JOIN inv_scans s ON s.id = iif(p.ride, hp.ports_scan, p.last_scan)
		WHERE `+pw.sql()+` ORDER BY p.host_id, p.proto, p.port`, args...)
	if err != nil {
		return nil, inv.fault("find: ports", err)
	}
	defer prow.Close()
	for prow.Next() {
		var (
			p                                                  PortFacts
			hostID, stateAt, serviceAt, productAt, first, last int64
			gone                                               int64
			cpe                                                string
		)
		if err := prow.Scan(&hostID, &p.Protocol, &p.Port, &p.State, &stateAt, &p.Service, &serviceAt, &p.Product, &p.Version,
			&cpe, &productAt, &first, &last, &p.LastScan, &gone); err != nil {
			return nil, inv.fault("find: ports", err)
		}
		h := byID[hostID]
		if h == nil {
			continue
		}
		if len(h.Ports) >= perHost {
			h.PortsOmitted++
			continue
		}
		p.StateChanged, p.ServiceChanged, p.CPE = stamp(stateAt), stamp(serviceAt), words(cpe)
		if p.Product != "" || p.Version != "" {
			p.ProductChanged = stamp(productAt)
		}
		p.FirstSeen, p.LastSeen, p.Gone, p.GoneAt = stamp(first), stamp(last), gone != 0, stamp(gone)
		h.Ports = append(h.Ports, p)
	}
	if err := prow.Err(); err != nil {
		return nil, inv.fault("find: ports", err)
	}
	for _, id := range ids {
		if h := byID[id]; h != nil {
			out = append(out, *h)
		}
	}
	return out, nil
}

// ChangeQuery selects entries of the change log.
type ChangeQuery struct {
	Client  string // as in Query
	Address string // an IP address or a CIDR
	Since   time.Time
	Until   time.Time // before (exclusive); zero: now
	Kinds   []string  // some of ChangeKinds; empty: all
	Port    int
	Limit   int
	Offset  int
}

// Changes is an answer to a ChangeQuery, newest first.
type Changes struct {
	Changes []Change `json:"changes" desc:"changes, newest first"`
	Total   int      `json:"total" desc:"changes matching, over all pages (at most 10000: see total_capped)"`
	// TotalCapped is true when more changes match than were counted.
	TotalCapped bool   `json:"total_capped" desc:"true when more changes match than total says"`
	Offset      int    `json:"offset" desc:"changes skipped before this page"`
	More        bool   `json:"more" desc:"true when more changes match than this page holds"`
	AsOf        string `json:"as_of" desc:"when this answer was made (RFC 3339)"`
	// CatchingUp: as Found's.
	CatchingUp bool `json:"catching_up" desc:"true when scans that finished were still being ingested as this answer was made: ask again in a few seconds to include them"`
}

// Change is one entry of the change log.
type Change struct {
	At       string `json:"at" desc:"when the change was seen (the scan's end, or the sweep that marked it gone)"`
	Scan     string `json:"scan_id" desc:"the scan that saw it; empty for gone (no scan saw it)"`
	Client   string `json:"client" desc:"whose inventory"`
	Address  string `json:"address" desc:"host address"`
	Protocol string `json:"protocol" desc:"port protocol; empty for host changes"`
	Port     int    `json:"port" desc:"port; 0 for host changes"`
	Kind     string `json:"kind" desc:"host_appeared, host_gone, hostnames, os, port_appeared, port_gone, state, service, product, version, cpe, or changes_omitted (how many more changes of the host one scan saw than the log keeps a host a scan)"`
	From     string `json:"from" desc:"value before (gone: it was gone; empty: none)"`
	To       string `json:"to" desc:"value after"`
}

// Changes answers q from the change log.
func (inv *Inventory) Changes(ctx context.Context, q ChangeQuery) (*Changes, error) {
	limit, err := limitOf(q.Limit)
	if err != nil {
		return nil, err
	}
	if q.Offset < 0 {
		return nil, &FieldError{"offset", fmt.Sprint(q.Offset), "must be 0 or more"}
	}
	if err := checkLen("address", q.Address, MaxAddressLen); err != nil {
		return nil, err
	}
	lo, hi, ranged, err := Range(q.Address)
	if err != nil {
		return nil, &FieldError{"address", q.Address, "must be an IP address (10.0.0.5) or a CIDR (10.1.0.0/16)"}
	}
	if q.Port < 0 || q.Port > 65535 {
		return nil, &FieldError{"port", fmt.Sprint(q.Port), "must be from 1 to 65535"}
	}
	if !q.Until.IsZero() && !q.Since.IsZero() && !q.Until.After(q.Since) {
		return nil, &FieldError{"until", q.Until.Format(time.RFC3339), "must be after since"}
	}
	w := &where{}
	switch {
	case q.Client != "":
		w.add("c.client = ?", q.Client)
	case ranged:
		// An administrator's range: each client's part of it.
		w.add(everyClient("c"))
	}
	if ranged {
		w.add("c.akey BETWEEN ? AND ?", lo, hi)
	}
	if !q.Since.IsZero() {
		w.add("c.at >= ?", store.Millis(q.Since))
	}
	if !q.Until.IsZero() {
		w.add("c.at < ?", store.Millis(q.Until))
	}
	if q.Port != 0 {
		w.add("c.port = ?", q.Port)
	}
	if len(q.Kinds) > 0 {
		for _, k := range q.Kinds {
			if !slices.Contains(ChangeKinds, k) {
				return nil, &FieldError{"kinds", k, "must be among " + strings.Join(ChangeKinds, ", ")}
			}
		}
		kinds, _ := json.Marshal(q.Kinds)
		w.add("c.kind IN (SELECT value FROM json_each(?))", string(kinds))
	}
	out := &Changes{Changes: []Change{}, Offset: q.Offset, AsOf: time.Now().UTC().Format(time.RFC3339)}
	if err := inv.db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM inv_changes c WHERE `+w.sql()+` LIMIT ?)`,
		append(slices.Clone(w.args), ChangeCountCap+1)...).Scan(&out.Total); err != nil {
		return nil, inv.fault("changes", err)
	}
	if out.Total > ChangeCountCap {
		out.Total, out.TotalCapped = ChangeCountCap, true
	}
	if out.Total <= q.Offset {
		return out, nil
	}
	rows, err := inv.db.QueryContext(ctx, `SELECT c.at, coalesce(s.scan_id, ''), c.client, c.addr, c.proto, c.port, c.kind, c.from_v, c.to_v
		FROM inv_changes c LEFT JOIN inv_scans s ON s.id = c.scan WHERE `+w.sql()+` ORDER BY c.at DESC, c.id DESC LIMIT ? OFFSET ?`,
		append(slices.Clone(w.args), limit, q.Offset)...)
	if err != nil {
		return nil, inv.fault("changes", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c Change
		var at int64
		if err := rows.Scan(&at, &c.Scan, &c.Client, &c.Address, &c.Protocol, &c.Port, &c.Kind, &c.From, &c.To); err != nil {
			return nil, inv.fault("changes", err)
		}
		c.At = stamp(at)
		out.Changes = append(out.Changes, c)
	}
	if err := rows.Err(); err != nil {
		return nil, inv.fault("changes", err)
	}
	out.More = q.Offset+len(out.Changes) < out.Total || out.TotalCapped
	return out, nil
}

// Timeline is one address's facts and history.
type Timeline struct {
	// Hosts holds the address's facts in each inventory the caller may
	// see (one for a client; one per client for an admin).
	Hosts   []HostFacts `json:"hosts" desc:"what is known of the address, with its ports (gone ones too; at most 1000, the rest counted in ports_omitted)"`
	Changes []Change    `json:"changes" desc:"its change log, newest first (at most 500)"`
}

// Host returns one address's facts, its ports (gone ones included, at
// most MaxTimelinePorts) and its change log, newest first.
func (inv *Inventory) Host(ctx context.Context, client, address string) (*Timeline, error) {
	if err := checkLen("address", address, MaxAddressLen); err != nil {
		return nil, err
	}
	a, ok := parseHost(strings.TrimSpace(address))
	if !ok {
		return nil, &FieldError{"address", address, "must be an IP address (10.0.0.5, 2001:db8::1)"}
	}
	ak := key(a)
	w := &where{}
	w.add("h.akey = ?", ak)
	if client != "" {
		w.add("h.client = ?", client)
	}
	rows, err := inv.db.QueryContext(ctx, `SELECT h.id FROM inv_hosts h WHERE `+w.sql()+` ORDER BY h.client`, w.args...)
	if err != nil {
		return nil, inv.fault("host", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, inv.fault("host", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	hosts, err := inv.hosts(ctx, ids, &where{}, MaxTimelinePorts)
	if err != nil {
		return nil, err
	}
	ch, err := inv.Changes(ctx, ChangeQuery{Client: client, Address: a.String(), Limit: 500})
	if err != nil {
		return nil, err
	}
	return &Timeline{Hosts: hosts, Changes: ch.Changes}, nil
}
