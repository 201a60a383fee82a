package results

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"

	nmap "github.com/Ullaakut/nmap/v3"
)

// Handlers receive elements as they are decoded; any may be nil.
type Handlers struct {
	Host     func(Host)
	Progress func(Progress)
}

// Decode reads nmap XML from r element by element: it never holds the whole
// document. Each <host> is decoded, converted and passed to h.Host as it
// arrives. It always returns the result decoded so far; when the document
// is truncated or malformed the error says where, and the result is marked
// partial and keeps the hosts already decoded.
func Decode(r io.Reader, h Handlers) (*Result, error) {
	res := &Result{}
	defer res.normalize()
	dec := xml.NewDecoder(r)
	dec.Strict = true
	sawRun, sawEnd := false, false
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if !sawEnd {
					res.Partial = true
					if !sawRun {
						return res, errors.New("decode nmap XML: no <nmaprun> element (nmap printed no XML)")
					}
					return res, fmt.Errorf("decode nmap XML: document ends before </nmaprun> after %d hosts (the scan was cut short)", len(res.Hosts))
				}
				return res, nil
			}
			res.Partial = true
			return res, fmt.Errorf("decode nmap XML after %d hosts: %w", len(res.Hosts), err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "nmaprun":
				sawRun = true
				for _, a := range t.Attr {
					switch a.Name.Local {
					case "version":
						res.NmapVersion = a.Value
					case "args":
						res.Args = a.Value
					}
				}
			case "host":
				var nh nmap.Host
				if err := dec.DecodeElement(&nh, &t); err != nil {
					res.Partial = true
					return res, fmt.Errorf("decode nmap XML: host %d: %w", len(res.Hosts)+1, err)
				}
				host := convertHost(nh)
				res.Hosts = append(res.Hosts, host)
				if h.Host != nil {
					h.Host(host)
				}
			case "taskprogress":
				var tp nmap.TaskProgress
				if err := dec.DecodeElement(&tp, &t); err != nil {
					res.Partial = true
					return res, fmt.Errorf("decode nmap XML: taskprogress: %w", err)
				}
				if h.Progress != nil {
					h.Progress(Progress{Task: tp.Task, Percent: float64(tp.Percent), RemainingSeconds: tp.Remaining})
				}
			case "runstats":
				var st nmap.Stats
				if err := dec.DecodeElement(&st, &t); err != nil {
					res.Partial = true
					return res, fmt.Errorf("decode nmap XML: runstats: %w", err)
				}
				res.Stats = Stats{ElapsedSeconds: float64(st.Finished.Elapsed), HostsUp: st.Hosts.Up, HostsDown: st.Hosts.Down,
					HostsTotal: st.Hosts.Total, Exit: st.Finished.Exit, Error: st.Finished.ErrorMsg, Summary: st.Finished.Summary}
			case "target":
				var tg nmap.Target
				if err := dec.DecodeElement(&tg, &t); err == nil && tg.Status == "skipped" {
					res.Skipped = append(res.Skipped, tg.Specification)
				}
			}
		case xml.EndElement:
			if t.Name.Local == "nmaprun" {
				sawEnd = true
			}
		}
	}
}

func convertHost(nh nmap.Host) Host {
	h := Host{State: nh.Status.State, Reason: nh.Status.Reason}
	for _, a := range nh.Addresses {
		if a.AddrType != "mac" {
			h.Addresses = append(h.Addresses, a.Addr)
		}
	}
	for _, n := range nh.Hostnames {
		h.Hostnames = append(h.Hostnames, n.Name)
	}
	for _, p := range nh.Ports {
		port := Port{Protocol: p.Protocol, Port: int(p.ID), State: p.State.State, Reason: p.State.Reason,
			Service: p.Service.Name, Product: p.Service.Product, Version: p.Service.Version, ExtraInfo: p.Service.ExtraInfo}
		for _, s := range p.Scripts {
			port.Scripts = append(port.Scripts, Script{ID: s.ID, Output: s.Output})
		}
		h.Ports = append(h.Ports, port)
	}
	for _, e := range nh.ExtraPorts {
		h.OtherPorts = append(h.OtherPorts, PortCount{State: e.State, Count: e.Count})
	}
	for _, m := range nh.OS.Matches {
		h.OS = append(h.OS, OSMatch{Name: m.Name, Accuracy: m.Accuracy})
	}
	for _, s := range nh.HostScripts {
		h.Scripts = append(h.Scripts, Script{ID: s.ID, Output: s.Output})
	}
	return h
}
