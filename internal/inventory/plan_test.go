package inventory

import (
	"context"
	"strings"
	"testing"
)

// TestQueryPlans: the queries behind Find and Changes read index ranges,
// never a whole table (the 100,000-host benchmark depends on it), each
// client's own range first (another client's entries are never read, so
// they neither slow a query nor can be counted by timing it), and the
// per-page loads go by primary key.
func TestQueryPlans(t *testing.T) {
	inv, _ := newInv(t, Config{})
	lo, hi, _, _ := Range("10.1.0.0/16")
	for _, q := range []struct {
		s    string
		args []any
		want string
	}{
		{`SELECT count(*) FROM (SELECT DISTINCT p.host_id FROM inv_ports p WHERE p.client = ? AND p.port = ? AND p.state = ? AND p.gone_at = 0 AND p.akey BETWEEN ? AND ? LIMIT 10)`,
			[]any{"c", 3389, "open", lo, hi}, "COVERING INDEX inv_ports_port (client=? AND port=? AND akey>? AND akey<?)"},
		{`SELECT count(*) FROM (SELECT DISTINCT p.host_id FROM inv_ports p WHERE p.client = ? AND p.product = ? COLLATE NOCASE AND p.vkey <> '' AND p.vkey < ? AND p.gone_at = 0 LIMIT 10)`,
			[]any{"c", "OpenSSH", "19"}, "COVERING INDEX inv_ports_product (client=? AND product=? AND vkey<?)"},
		{`SELECT count(*) FROM (SELECT 1 FROM inv_changes c WHERE c.client = ? AND c.akey BETWEEN ? AND ? AND c.at >= ? AND c.at < ? LIMIT 10)`,
			[]any{"c", lo, hi, 1, 2}, "COVERING INDEX inv_changes_a"},
		// An administrator's: each client's range (inv_clients).
		{`SELECT count(*) FROM (SELECT DISTINCT p.host_id FROM inv_ports p WHERE ` + everyClient("p") + ` AND p.port = ? AND p.state = ? AND p.gone_at = 0 AND p.akey BETWEEN ? AND ? LIMIT 10)`,
			[]any{3389, "open", lo, hi}, "COVERING INDEX inv_ports_port (client=? AND port=? AND akey>? AND akey<?)"},
		{`SELECT count(*) FROM (SELECT DISTINCT p.host_id FROM inv_ports p WHERE ` + everyClient("p") + ` AND p.service = ? AND p.gone_at = 0 LIMIT 10)`,
			[]any{"ssh"}, "COVERING INDEX inv_ports_service (client=? AND service=?)"},
		{`SELECT count(*) FROM (SELECT 1 FROM inv_changes c WHERE ` + everyClient("c") + ` AND c.at >= ? AND c.at < ? LIMIT 10)`,
			[]any{1, 2}, "COVERING INDEX inv_changes_at (client=? AND at>? AND at<?)"},
		{`SELECT id FROM inv_changes WHERE at < ? LIMIT 10`, []any{1}, "COVERING INDEX inv_changes_time (at<?)"},
		{`SELECT c.at FROM inv_changes c WHERE c.at >= ? ORDER BY c.at DESC, c.id DESC LIMIT 10`, []any{1}, "INDEX inv_changes_time (at>?)"},
		{`SELECT count(*) FROM (SELECT 1 FROM inv_hosts h WHERE h.client = ? AND h.gone_at = 0 AND h.akey BETWEEN ? AND ? LIMIT 10)`,
			[]any{"c", lo, hi}, "INDEX inv_hosts_"},
		{`SELECT p.host_id FROM json_each(?) j CROSS JOIN inv_ports p ON p.host_id = j.value WHERE +p.port = ? AND +p.state = ? AND +p.client = ? AND substr(+p.vkey, 1, 2) = ?`,
			[]any{"[1,2]", 3389, "open", "c", "x"}, "PRIMARY KEY (host_id=?)"},
		{touchPorts, []any{1, 2, `[[1,"tcp",22]]`}, "PRIMARY KEY (host_id=? AND proto=? AND port=?)"},
		{touchHosts, []any{1, 2, `[[1,true]]`}, "INTEGER PRIMARY KEY (rowid=?)"},
		{unridePorts, []any{`[[1,"tcp",22,5,6]]`}, "PRIMARY KEY (host_id=? AND proto=? AND port=?)"},
		{selHosts, []any{"c", `["00"]`}, "INDEX inv_hosts_client (client=? AND akey=?)"},
		{selPorts, []any{`[1]`}, "PRIMARY KEY (host_id=?)"},
	} {
		rows, err := inv.db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q.s, q.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var a, b, c int
			var d string
			if err := rows.Scan(&a, &b, &c, &d); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, d)
		}
		rows.Close()
		all := strings.Join(plan, "; ")
		if !strings.Contains(all, q.want) || strings.Contains(all, "SCAN p") || strings.Contains(all, "SCAN c") || strings.Contains(all, "SCAN h") {
			t.Errorf("%s\nplan: %s\nwant %s and no table scan", q.s, all, q.want)
		}
	}
}
