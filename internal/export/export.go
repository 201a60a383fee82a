// Package export renders scans, diffs and inventory answers in formats
// other tools read (CSV, JSON), and watch notifications in the message
// formats of the chat tools people work in (Slack, Microsoft Teams).
// Everything here is a pure function of its input: no I/O but the
// io.Writer given, no network.
//
// The nmap XML a scan produced (kept by the store, served by the
// scan-xml resource, the web report and `nmap-mcp scans xml`) is itself
// the format DefectDojo imports for nmap: its "Nmap Scan" parser reads
// nmap's -oX output (root <nmaprun>, each <host> with an ipv4 <address>,
// ports with <service> and <cpe>). Two limits of that path: DefectDojo's
// parser expects an IPv4 address on every host, and a raw XML cut at the
// store's cap (raw_xml_truncated) is not a complete document.
//
// CSV values that a spreadsheet would run as a formula (starting with =,
// +, -, @, a tab or a carriage return) are prefixed with a single quote:
// banners and versions come from the network.
package export

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// cell makes s safe to open in a spreadsheet.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func writeCSV(w io.Writer, header []string, rows func(emit func(...string) error) error) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("write CSV: %w", err)
	}
	err := rows(func(v ...string) error {
		for i := range v {
			v[i] = cell(v[i])
		}
		return cw.Write(v)
	})
	if err != nil {
		return fmt.Errorf("write CSV: %w", err)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write CSV: %w", err)
	}
	return nil
}

// ScanHeader is the header of ScanCSV.
var ScanHeader = []string{"scan_id", "address", "hostnames", "host_state", "os", "protocol", "port", "state", "reason", "service", "product", "version", "extra_info", "cpe"}

// ScanCSV writes a scan's result, one row per listed port (a host
// without listed ports has one row with empty port columns).
func ScanCSV(w io.Writer, scanID string, r *results.Result) error {
	return writeCSV(w, ScanHeader, func(emit func(...string) error) error {
		if r == nil {
			return nil
		}
		for _, h := range r.Hosts {
			addr := ""
			if len(h.Addresses) > 0 {
				addr = h.Addresses[0]
			}
			os := ""
			if len(h.OS) > 0 {
				os = h.OS[0].Name
			}
			names := strings.Join(h.Hostnames, " ")
			if len(h.Ports) == 0 {
				if err := emit(scanID, addr, names, h.State, os, "", "", "", "", "", "", "", "", ""); err != nil {
					return err
				}
			}
			for _, p := range h.Ports {
				if err := emit(scanID, addr, names, h.State, os, p.Protocol, strconv.Itoa(p.Port), p.State, p.Reason, p.Service,
					p.Product, p.Version, p.ExtraInfo, strings.Join(p.CPE, " ")); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// ScanJSON writes a scan's result as JSON: {"scan_id", "result"}.
func ScanJSON(w io.Writer, scanID string, r *results.Result) error {
	return writeJSON(w, struct {
		Scan   string          `json:"scan_id"`
		Result *results.Result `json:"result"`
	}{scanID, r})
}

// DiffHeader is the header of DiffCSV.
var DiffHeader = []string{"from_scan", "to_scan", "change", "host", "protocol", "port", "field", "from", "to"}

// DiffCSV writes what changed from scan a to scan b, one row per change:
// change is host_appeared, host_disappeared, port_state or service.
func DiffCSV(w io.Writer, a, b string, d results.Diff) error {
	return writeCSV(w, DiffHeader, func(emit func(...string) error) error {
		for _, h := range d.HostsAppeared {
			if err := emit(a, b, "host_appeared", h, "", "", "", "", ""); err != nil {
				return err
			}
		}
		for _, h := range d.HostsDisappeared {
			if err := emit(a, b, "host_disappeared", h, "", "", "", "", ""); err != nil {
				return err
			}
		}
		for _, p := range d.PortChanges {
			if err := emit(a, b, "port_state", p.Host, p.Protocol, strconv.Itoa(p.Port), "state", p.From, p.To); err != nil {
				return err
			}
		}
		for _, s := range d.ServiceChanges {
			if err := emit(a, b, "service", s.Host, s.Protocol, strconv.Itoa(s.Port), s.Field, s.From, s.To); err != nil {
				return err
			}
		}
		return nil
	})
}

// DiffJSON writes a diff as JSON: {"from_scan", "to_scan", "changes"}.
func DiffJSON(w io.Writer, a, b string, d results.Diff) error {
	return writeJSON(w, struct {
		From    string       `json:"from_scan"`
		To      string       `json:"to_scan"`
		Changes results.Diff `json:"changes"`
	}{a, b, d})
}

// InventoryHeader is the header of InventoryCSV.
var InventoryHeader = []string{"client", "address", "hostnames", "os", "host_first_seen", "host_last_seen", "host_last_scan", "host_gone",
	"protocol", "port", "state", "state_changed", "service", "product", "version", "cpe", "product_changed",
	"port_first_seen", "port_last_seen", "port_last_scan", "port_gone", "host_ports_omitted"}

// InventoryCSV writes an inventory answer, one row per port (a host
// without ports has one row with empty port columns). Each row says how
// fresh it is: the scans that last saw the host and the port, and when.
func InventoryCSV(w io.Writer, f *inventory.Found) error {
	return writeCSV(w, InventoryHeader, func(emit func(...string) error) error {
		if f == nil {
			return nil
		}
		for _, h := range f.Hosts {
			host := []string{h.Client, h.Address, strings.Join(h.Hostnames, " "), h.OS, h.FirstSeen, h.LastSeen, h.LastScan, strconv.FormatBool(h.Gone)}
			// The host's ports the answer left out (over its per-host
			// bound), on each of its rows.
			omitted := strconv.Itoa(h.PortsOmitted)
			if len(h.Ports) == 0 {
				if err := emit(append(append(host, make([]string, 13)...), omitted)...); err != nil {
					return err
				}
			}
			for _, p := range h.Ports {
				row := append(append([]string{}, host...), p.Protocol, strconv.Itoa(p.Port), p.State, p.StateChanged, p.Service, p.Product,
					p.Version, strings.Join(p.CPE, " "), p.ProductChanged, p.FirstSeen, p.LastSeen, p.LastScan, strconv.FormatBool(p.Gone), omitted)
				if err := emit(row...); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// ChangesHeader is the header of ChangesCSV.
var ChangesHeader = []string{"at", "scan_id", "client", "address", "protocol", "port", "kind", "from", "to"}

// ChangesCSV writes entries of the inventory's change log.
func ChangesCSV(w io.Writer, c *inventory.Changes) error {
	return writeCSV(w, ChangesHeader, func(emit func(...string) error) error {
		if c == nil {
			return nil
		}
		for _, x := range c.Changes {
			port := ""
			if x.Port != 0 {
				port = strconv.Itoa(x.Port)
			}
			if err := emit(x.At, x.Scan, x.Client, x.Address, x.Protocol, port, x.Kind, x.From, x.To); err != nil {
				return err
			}
		}
		return nil
	})
}

// JSON writes v (an inventory answer, a change list) as indented JSON.
func JSON(w io.Writer, v any) error { return writeJSON(w, v) }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
