package scanargs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Type is an nmap scan technique offered to callers.
type Type string

// The scan types nmap_scan accepts.
const (
	Connect Type = "connect" // TCP connect scan (-sT), needs no privileges
	SYN     Type = "syn"     // TCP SYN scan (-sS), needs raw sockets
	UDP     Type = "udp"     // UDP scan (-sU), needs raw sockets
	Ping    Type = "ping"    // host discovery only (-sn)
)

// Types lists the accepted scan types in the order shown to callers.
var Types = []Type{Connect, SYN, UDP, Ping}

// Request is the caller's view of one scan: the parameters of the original
// Python server's nmap_scan, as they arrive in JSON. Pointer fields are
// optional; nil means "not given".
type Request struct {
	// Targets holds comma- or space-separated IPv4/IPv6 addresses, CIDR
	// blocks and hostnames.
	Targets string `json:"targets" minLength:"1" maxLength:"4096" desc:"IPs, CIDR blocks or hostnames, comma- or space-separated. Example: 192.168.1.0/24, scanme.nmap.org"`
	// ScanType is one of syn, connect, udp or ping; empty means connect.
	ScanType string `json:"scan_type,omitempty" enum:"connect|syn|udp|ping" default:"connect" desc:"connect = TCP connect, syn = TCP SYN, udp = UDP, ping = host discovery only. Example: syn"`
	// Ports is an nmap port list such as "22,80,8000-8100".
	Ports string `json:"ports,omitempty" maxLength:"2048" desc:"Ports to scan; do not combine with top_ports. Example: 22,80,443,8000-8100"`
	// TopPorts scans the N most common ports; default 100 when Ports is empty.
	TopPorts *int `json:"top_ports,omitempty" min:"1" max:"65535" desc:"Scan the N most common ports; 100 when ports is not given. Example: 1000"`
	// ServiceVersions adds version detection (-sV).
	ServiceVersions bool `json:"service_versions,omitempty" default:"false" desc:"Detect service names and versions (slower). Example: true"`
	// SkipHostDiscovery treats every target as up (-Pn).
	SkipHostDiscovery bool `json:"skip_host_discovery,omitempty" default:"false" desc:"Treat every target as up, for hosts that ignore ping. Example: true"`
	// Timing is an nmap timing template, T0 to T5.
	Timing string `json:"timing,omitempty" enum:"T0|T1|T2|T3|T4|T5" desc:"Speed template: T0 slowest, T3 normal, T5 fastest. Example: T4"`
	// ExtraTiming is the original server's name for Timing, kept as an alias.
	ExtraTiming string `json:"extra_timing,omitempty" enum:"T0|T1|T2|T3|T4|T5" desc:"Old name of timing; use timing. Example: T4"`
	// TimeoutSeconds is the wall-clock limit of the scan container; its
	// bounds come from the configuration.
	TimeoutSeconds *int `json:"timeout_seconds,omitempty" min:"1" desc:"Stop the scan after this many seconds. Example: 120"`
	// OSDetection adds OS detection (-O); it needs raw sockets.
	OSDetection bool `json:"os_detection,omitempty" default:"false" desc:"Guess the operating system (needs open and closed ports). Example: true"`
	// Scripts lists NSE scripts or categories, comma-separated, e.g.
	// "default,http-title". The deployment's policy decides which may run.
	Scripts string `json:"scripts,omitempty" maxLength:"1024" desc:"NSE scripts or categories, comma-separated; the deployment decides which may run. Example: default,http-title"`
	// ScriptArgs are key=value pairs for the scripts, comma-separated.
	ScriptArgs string `json:"script_args,omitempty" maxLength:"2048" desc:"key=value pairs for the scripts, comma-separated. Example: http.useragent=scanner"`
	// Shards asks for a large scan to be split into that many workers (1:
	// never split); the server's sharding settings bound it.
	Shards *int `json:"shards,omitempty" min:"1" max:"64" desc:"Split a large scan into this many parallel workers (1 = never split); only where the server shards scans. Example: 4"`
}

// DecodeRequest decodes a JSON object of nmap_scan arguments strictly: an
// unknown key or a value of the wrong JSON type is a *FieldError.
func DecodeRequest(data []byte) (Request, error) {
	var r Request
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr):
			return Request{}, &FieldError{Field: typeErr.Field, Value: typeErr.Value,
				Rule: "must be a JSON " + jsonKind(typeErr.Type.Kind().String())}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return Request{}, &FieldError{Field: name, Value: "(present)",
				Rule: "is not a parameter of nmap_scan; known parameters: " + strings.Join(ParameterNames, ", ")}
		default:
			return Request{}, fmt.Errorf("decode scan arguments: %w", err)
		}
	}
	return r, nil
}

// ParameterNames lists the JSON names Request accepts, from its fields.
var ParameterNames = func() []string {
	t := reflect.TypeFor[Request]()
	names := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}()

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64":
		return "integer"
	case "bool":
		return "boolean"
	default:
		return goKind
	}
}

// Rules are the server-side bounds a Request is checked against.
type Rules struct {
	// MaxAddresses bounds the number of addresses after CIDR expansion; a
	// hostname counts as one.
	MaxAddresses uint64
	// DefaultTimeout applies when the request gives no timeout_seconds.
	DefaultTimeout time.Duration
	// MaxTimeout is the largest timeout_seconds accepted.
	MaxTimeout time.Duration
	// MaxShards is the most workers a scan may be split into (the
	// server's sharding.shards); 0 when the server does not split scans.
	MaxShards int
}

// Bounds that hold whatever the configuration says.
const (
	// HardMaxTimeout is the largest wall clock any scan may get.
	HardMaxTimeout = 600 * time.Second
	// DefaultTopPorts is used when neither ports nor top_ports is given.
	DefaultTopPorts = 100
)

// DefaultRules returns the defaults: 4096 addresses, 220 s, at most 600 s.
func DefaultRules() Rules {
	return Rules{MaxAddresses: 4096, DefaultTimeout: 220 * time.Second, MaxTimeout: HardMaxTimeout}
}

// NewRules are the bounds of a server that allows maxAddresses per scan,
// gives a scan timeout unless it asks, at most maxTimeout, and splits
// scans into at most shards workers (0: it does not split).
func NewRules(maxAddresses uint64, timeout, maxTimeout time.Duration, shards int) Rules {
	return Rules{MaxAddresses: maxAddresses, DefaultTimeout: timeout, MaxTimeout: maxTimeout, MaxShards: shards}
}

// FieldError is a refused input: which field, the value given, and the rule
// it broke.
type FieldError struct {
	Field string
	Value string
	Rule  string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Rule)
}
