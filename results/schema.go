package results

import "slices"

// JSON schemas of Result and Diff, written out in full: every object is
// inline (no $ref or $defs), no subschema is a bare true, and every array
// says its items. LM Studio and the TypeScript SDK reject the rest.

func str(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
func integer(desc string) map[string]any {
	return map[string]any{"type": "integer", "description": desc}
}
func number(desc string) map[string]any { return map[string]any{"type": "number", "description": desc} }
func boolean(desc string) map[string]any {
	return map[string]any{"type": "boolean", "description": desc}
}
func array(items map[string]any, desc string) map[string]any {
	return map[string]any{"type": "array", "items": items, "description": desc}
}

// Object builds an object schema whose properties are all required.
func Object(props map[string]any, desc string) map[string]any {
	req := make([]string, 0, len(props))
	for k := range props {
		req = append(req, k)
	}
	slices.Sort(req)
	return map[string]any{"type": "object", "properties": props, "required": req, "description": desc}
}

func scriptSchema() map[string]any {
	return Object(map[string]any{"id": str("NSE script name"), "output": str("script output")}, "NSE script output")
}

// Schema is the JSON schema of a Result.
func Schema() map[string]any {
	port := Object(map[string]any{
		"protocol":   str("tcp or udp"),
		"port":       integer("port number"),
		"state":      str("open, closed, filtered, open|filtered, ..."),
		"reason":     str("why nmap decided the state, e.g. syn-ack"),
		"service":    str("service name, e.g. ssh"),
		"product":    str("product, e.g. OpenSSH"),
		"version":    str("version, e.g. 9.2p1"),
		"extra_info": str("extra service detail"),
		"scripts":    array(scriptSchema(), "NSE output for this port"),
	}, "one port")
	host := Object(map[string]any{
		"addresses":   array(str("address"), "IP addresses"),
		"hostnames":   array(str("name"), "host names"),
		"state":       str("up, down or unknown"),
		"reason":      str("why nmap decided the state"),
		"ports":       array(port, "ports nmap listed"),
		"other_ports": array(Object(map[string]any{"state": str("state"), "count": integer("how many")}, "ports not listed"), "ports folded into counts"),
		"os":          array(Object(map[string]any{"name": str("OS name"), "accuracy": integer("percent")}, "OS guess"), "OS detection guesses"),
		"scripts":     array(scriptSchema(), "host-level NSE output"),
	}, "one host")
	return Object(map[string]any{
		"nmap_version": str("nmap version"),
		"args":         str("nmap command line"),
		"hosts":        array(host, "hosts in the order nmap finished them"),
		"stats": Object(map[string]any{
			"elapsed_seconds": number("scan time"),
			"hosts_up":        integer("hosts up"),
			"hosts_down":      integer("hosts down"),
			"hosts_total":     integer("hosts scanned"),
			"exit":            str("success or error; empty when partial"),
			"error":           str("nmap's error message"),
			"summary":         str("nmap's summary line"),
		}, "run statistics"),
		"partial": boolean("true when the scan stopped early; hosts holds those that finished"),
		"skipped": array(str("target"), "targets nmap skipped"),
	}, "decoded nmap result")
}

// DiffSchema is the JSON schema of a Diff.
func DiffSchema() map[string]any {
	return Object(map[string]any{
		"hosts_appeared":    array(str("host"), "hosts up now, not before"),
		"hosts_disappeared": array(str("host"), "hosts up before, not now"),
		"port_changes": array(Object(map[string]any{
			"host": str("host"), "protocol": str("tcp or udp"), "port": integer("port"),
			"from": str("state before (empty: not listed)"), "to": str("state now (empty: not listed)"),
		}, "a port whose state changed"), "port state changes"),
		"service_changes": array(Object(map[string]any{
			"host": str("host"), "protocol": str("tcp or udp"), "port": integer("port"),
			"field": str("service, product or version"), "from": str("before"), "to": str("now"),
		}, "a service detail that changed"), "service, product or version changes"),
	}, "what changed between two scans")
}
