package results

import "slices"

// JSON schemas of Result and Diff, written out in full: every object is
// inline (no $ref or $defs), no subschema is a bare true, and every array
// says its items. LM Studio and the TypeScript SDK reject the rest.

// StringSchema, IntegerSchema, NumberSchema, BooleanSchema and ArraySchema
// build the schema of one property.
func StringSchema(desc string) map[string]any {
	return map[string]any{"type": "string", "description": desc}
}

// IntegerSchema is an integer property.
func IntegerSchema(desc string) map[string]any {
	return map[string]any{"type": "integer", "description": desc}
}

// NumberSchema is a number property.
func NumberSchema(desc string) map[string]any {
	return map[string]any{"type": "number", "description": desc}
}

// BooleanSchema is a boolean property.
func BooleanSchema(desc string) map[string]any {
	return map[string]any{"type": "boolean", "description": desc}
}

// ArraySchema is an array property of items.
func ArraySchema(items map[string]any, desc string) map[string]any {
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
	return Object(map[string]any{"id": StringSchema("NSE script name"), "output": StringSchema("script output")}, "NSE script output")
}

// Schema is the JSON schema of a Result.
func Schema() map[string]any {
	port := Object(map[string]any{
		"protocol":   StringSchema("tcp or udp"),
		"port":       IntegerSchema("port number"),
		"state":      StringSchema("open, closed, filtered, open|filtered, ..."),
		"reason":     StringSchema("why nmap decided the state, e.g. syn-ack"),
		"service":    StringSchema("service name, e.g. ssh"),
		"product":    StringSchema("product, e.g. OpenSSH"),
		"version":    StringSchema("version, e.g. 9.2p1"),
		"extra_info": StringSchema("extra service detail"),
		"scripts":    ArraySchema(scriptSchema(), "NSE output for this port"),
	}, "one port")
	host := Object(map[string]any{
		"addresses":   ArraySchema(StringSchema("address"), "IP addresses"),
		"hostnames":   ArraySchema(StringSchema("name"), "host names"),
		"state":       StringSchema("up, down or unknown"),
		"reason":      StringSchema("why nmap decided the state"),
		"ports":       ArraySchema(port, "ports nmap listed"),
		"other_ports": ArraySchema(Object(map[string]any{"state": StringSchema("state"), "count": IntegerSchema("how many")}, "ports not listed"), "ports folded into counts"),
		"os":          ArraySchema(Object(map[string]any{"name": StringSchema("OS name"), "accuracy": IntegerSchema("percent")}, "OS guess"), "OS detection guesses"),
		"scripts":     ArraySchema(scriptSchema(), "host-level NSE output"),
	}, "one host")
	return Object(map[string]any{
		"nmap_version": StringSchema("nmap version"),
		"args":         StringSchema("nmap command line"),
		"hosts":        ArraySchema(host, "hosts in the order nmap finished them"),
		"stats": Object(map[string]any{
			"elapsed_seconds": NumberSchema("scan time"),
			"hosts_up":        IntegerSchema("hosts up"),
			"hosts_down":      IntegerSchema("hosts down"),
			"hosts_total":     IntegerSchema("hosts scanned"),
			"exit":            StringSchema("success or error; empty when partial"),
			"error":           StringSchema("nmap's error message"),
			"summary":         StringSchema("nmap's summary line"),
		}, "run statistics"),
		"partial": BooleanSchema("true when the scan stopped early; hosts holds those that finished"),
		"skipped": ArraySchema(StringSchema("target"), "targets nmap skipped"),
		"dropped": Object(map[string]any{
			"hosts":        IntegerSchema("hosts left out of the result (over the per-scan bound)"),
			"ports":        IntegerSchema("listed ports left out of the result (over the per-scan bound)"),
			"script_bytes": IntegerSchema("bytes of NSE output left out"),
		}, "what the result's size bounds left out; all zero when the result is complete"),
	}, "decoded nmap result")
}

// DiffSchema is the JSON schema of a Diff.
func DiffSchema() map[string]any {
	return Object(map[string]any{
		"hosts_appeared":    ArraySchema(StringSchema("host"), "hosts up now, not before"),
		"hosts_disappeared": ArraySchema(StringSchema("host"), "hosts up before, not now"),
		"port_changes": ArraySchema(Object(map[string]any{
			"host": StringSchema("host"), "protocol": StringSchema("tcp or udp"), "port": IntegerSchema("port"),
			"from": StringSchema("state before (empty: not listed)"), "to": StringSchema("state now (empty: not listed)"),
		}, "a port whose state changed"), "port state changes"),
		"service_changes": ArraySchema(Object(map[string]any{
			"host": StringSchema("host"), "protocol": StringSchema("tcp or udp"), "port": IntegerSchema("port"),
			"field": StringSchema("service, product or version"), "from": StringSchema("before"), "to": StringSchema("now"),
		}, "a service detail that changed"), "service, product or version changes"),
	}, "what changed between two scans")
}
