package mcpserver

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// The mistakes small models make, and what they read back: a message
// that names the argument and what to send, or a coercion named in a
// note. Pure logic: no engine needed.
func TestModelMistakes(t *testing.T) {
	maxT := map[string]int{"timeout_seconds": 600}
	for _, c := range []struct {
		tool string
		v    any
		args string
		want string // in the error, or in a note when ok
		ok   bool
	}{
		{"nmap_scan", scanArgs{}, `{"targets": ["127.0.0.1"]}`, `targets given as an array; read as "127.0.0.1"`, true},
		{"nmap_scan", scanArgs{}, `{"targets": ["127.0.0.1", "127.0.0.2"]}`, `read as "127.0.0.1, 127.0.0.2"`, true},
		{"nmap_scan", scanArgs{}, `{"target": "127.0.0.1"}`, `unknown argument "target" — did you mean "targets"?`, false},
		{"nmap_scan", scanArgs{}, `{}`, `missing required argument "targets", e.g. {"targets": "192.168.1.0/24, scanme.nmap.org"}`, false},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "scan_type": "SYN"}`, `scan_type "SYN" read as "syn"`, true},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "timing": "t4"}`, `timing "t4" read as "T4"`, true},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "scan_type": "stealth"}`, `scan_type: "stealth" is not one of connect, syn, udp, ping`, false},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "service_versions": "true"}`, `service_versions "true" read as true`, true},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "service_versions": "yes"}`, `service_versions: expected true or false, got the string "yes"`, false},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "top_ports": "100"}`, `top_ports "100" read as 100`, true},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "top_ports": 70000}`, `top_ports: 70000 is out of range from 1 to 65535`, false},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "top_ports": 1.5}`, `top_ports: expected a whole number from 1 to 65535, got the number 1.5`, false},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "timeout_seconds": 9000}`, `timeout_seconds: 9000 is out of range from 1 to 600`, false},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "ports": 80}`, `ports given as a number; read as "80"`, true},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "ports": [22, 80]}`, `ports given as an array; read as "22,80"`, true},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "ports": ["22", "80"]}`, `ports: expected a string such as "22,80,443,8000-8100", got an array`, false},
		{"nmap_scan", scanArgs{}, `{"targets": 127}`, `targets: expected a string such as "192.168.1.0/24, scanme.nmap.org", got the number 127`, false},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "port": "80"}`, `did you mean "ports"?`, false},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "scantype": "syn"}`, `did you mean "scan_type"?`, false},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "wait": "false"}`, `wait "false" read as false`, true},
		{"nmap_scan", scanArgs{}, `{"targets": "127.0.0.1", "arguments": "-sV"}`, `unknown argument "arguments"; nmap_scan takes: targets,`, false},
		{"get_scan", idArgs{}, `{"scan_id": "abc"}`, `unknown argument "scan_id" — did you mean "id"?`, false},
		{"get_scan", idArgs{}, `{}`, `missing required argument "id", e.g. {"id": "3f2a9c0b1d4e"}`, false},
		{"list_scans", listArgs{}, `{"limit": "5"}`, `limit "5" read as 5`, true},
		{"list_scans", listArgs{}, `{"status": "DONE"}`, `status "DONE" read as "done"`, true},
		{"list_scans", listArgs{}, `{"limit": 0}`, `limit: 0 is out of range from 1 to 200`, false},
		{"diff_scans", diffArgs{}, `{"ida": "a", "idb": "b"}`, `did you mean "id_a"?`, false},
		{"check_scope", scopeArgs{}, `{"target": "10.0.0.1"}`, `did you mean "targets"?`, false},
	} {
		var args map[string]any
		if err := json.Unmarshal([]byte(c.args), &args); err != nil {
			t.Fatal(err)
		}
		_, notes, err := normalize(c.tool, c.v, args, maxT)
		got := strings.Join(notes, "; ")
		if err != nil {
			got = err.Error()
		}
		if (err == nil) != c.ok || !strings.Contains(got, c.want) {
			t.Errorf("%s %s: ok=%v %q; want ok=%v and %q", c.tool, c.args, err == nil, got, c.ok, c.want)
		}
		if strings.Contains(got, "&{") || strings.Contains(got, "map[") || strings.Contains(got, "[]interface") || strings.Contains(got, "float64") {
			t.Errorf("%s: a Go type leaks into %q", c.args, got)
		}
	}
}

// Refusals that teach: the target forms models send, with the fix.
func TestTeachingRefusals(t *testing.T) {
	for targets, want := range map[string]string{
		"127.0.0.1:8080":            `looks like host:port: use targets "127.0.0.1" and ports "8080"`,
		"[::1]:443":                 `use targets "::1" and ports "443"`,
		"http://example.com/login":  `looks like a URL: use targets "example.com"`,
		"https://127.0.0.1:8443/":   `use targets "127.0.0.1" and ports "8443"`,
		"10.0.0.1-5":                "nmap address range",
		"10.0.*.1":                  "nmap address range",
		"127.0.0.1 -iL=/etc/passwd": "options cannot be passed as targets",
	} {
		_, err := scanargs.Request{Targets: targets}.Plan(scanargs.DefaultRules())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", targets, err, want)
		}
	}
	top := 10
	_, err := scanargs.Request{Targets: "127.0.0.1", Ports: "80", TopPorts: &top}.Plan(scanargs.DefaultRules())
	if err == nil || !strings.Contains(err.Error(), `drop top_ports to scan ports "80", or drop ports`) {
		t.Errorf("ports with top_ports: %v", err)
	}
}
