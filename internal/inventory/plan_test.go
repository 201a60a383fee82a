package inventory

import (
	"context"
	"strings"
	"testing"
)

// TestQueryPlans: the queries behind Find and Changes read index ranges,
// never a whole table (the 100,000-host benchmark depends on it), and the
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
			[]any{"c", 3389, "open", lo, hi}, "COVERING INDEX inv_ports_port"},
		{`SELECT count(*) FROM (SELECT DISTINCT p.host_id FROM inv_ports p WHERE p.client = ? AND p.product = ? COLLATE NOCASE AND p.vkey <> '' AND p.vkey < ? AND p.gone_at = 0 LIMIT 10)`,
			[]any{"c", "OpenSSH", "19"}, "COVERING INDEX inv_ports_product"},
		{`SELECT count(*) FROM (SELECT 1 FROM inv_changes c WHERE c.client = ? AND c.akey BETWEEN ? AND ? AND c.at >= ? AND c.at < ? LIMIT 10)`,
			[]any{"c", lo, hi, 1, 2}, "COVERING INDEX"},
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
