package results

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/orisano/gosax"
)

// Handlers receive elements as they are decoded; any may be nil.
type Handlers struct {
	Host     func(Host)
	Progress func(Progress)
	// DropHosts passes hosts to Host only and keeps none in the result, so
	// that memory stays flat however long the document is.
	DropHosts bool
	// Limits bound what the result keeps; what is left out is counted in
	// Result.Dropped. Zero fields take DefaultLimits' values.
	Limits Limits
}

// Limits bound a decoded result, whatever the scanned hosts answer.
type Limits struct {
	MaxHosts int // hosts kept; further hosts are counted, not kept
	MaxPorts int // listed ports kept over all hosts
	// MaxScriptBytes bounds all NSE output kept; each script's output is
	// also cut at MaxScriptOutput bytes.
	MaxScriptBytes  int
	MaxScriptOutput int
}

// DefaultLimits keep 4,096 hosts, 10,000 listed ports, 1 MiB of NSE
// output in all and 16 KiB per script: a decoded result stays within a
// few MB whatever the hosts answer.
func DefaultLimits() Limits {
	return Limits{MaxHosts: 4096, MaxPorts: 10000, MaxScriptBytes: 1 << 20, MaxScriptOutput: 16 << 10}
}

func (l Limits) orDefault() Limits {
	d := DefaultLimits()
	if l.MaxHosts <= 0 {
		l.MaxHosts = d.MaxHosts
	}
	if l.MaxPorts <= 0 {
		l.MaxPorts = d.MaxPorts
	}
	if l.MaxScriptBytes <= 0 {
		l.MaxScriptBytes = d.MaxScriptBytes
	}
	if l.MaxScriptOutput <= 0 {
		l.MaxScriptOutput = d.MaxScriptOutput
	}
	return l
}

// maxCPE bounds the CPE names kept per port (nmap writes one or two).
const maxCPE = 8

// readBuffer is the tokenizer's buffer; it bounds the longest element.
const readBuffer = 256 << 10

// Decode reads nmap XML from r element by element: it never holds the whole
// document. Each <host> is decoded and passed to h.Host as soon as its end
// tag arrives. It always returns the result decoded so far; when the
// document is truncated or malformed the error says where, and the result
// is marked partial and keeps the hosts already decoded.
func Decode(r io.Reader, h Handlers) (*Result, error) {
	h.Limits = h.Limits.orDefault()
	d := &decoder{h: h, res: &Result{}}
	err := d.run(r)
	d.res.Normalize()
	if err != nil {
		d.res.Partial = true
	}
	return d.res, err
}

type decoder struct {
	h      Handlers
	res    *Result
	stack  [][]byte // names of the open elements
	seen   int      // hosts decoded, kept or not
	ports  int      // listed ports kept
	sbytes int      // NSE output bytes kept

	host     *Host
	port     *Port
	inHost   bool
	inRunEnd bool // inside <runstats>
	sawRun   bool
	sawEnd   bool
}

func (d *decoder) fail(format string, a ...any) error {
	return fmt.Errorf("decode nmap XML after %d hosts: %s", d.seen, fmt.Sprintf(format, a...))
}

func (d *decoder) run(r io.Reader) error {
	xr := gosax.NewReaderSize(r, readBuffer)
	xr.EmitSelfClosingTag = true
	for {
		ev, err := xr.Event()
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return d.eof()
			}
			return d.fail("%v", err)
		}
		switch ev.Type() {
		case gosax.EventEOF:
			return d.eof()
		case gosax.EventStart:
			name, attrs := gosax.Name(ev.Bytes)
			if d.sawEnd {
				return d.fail("element <%s> after </nmaprun>", name)
			}
			d.stack = append(d.stack, intern(name))
			if err := d.start(name, attrs); err != nil {
				return err
			}
		case gosax.EventText:
			// The only character data kept: <cpe> inside a port's <service>.
			if d.port != nil && len(d.stack) > 0 && string(d.stack[len(d.stack)-1]) == "cpe" && len(d.port.CPE) < maxCPE {
				if v, err := gosax.Unescape(bytes.TrimSpace(ev.Bytes)); err == nil && len(v) > 0 {
					d.port.CPE = append(d.port.CPE, clean(string(v[:min(len(v), 256)]), false))
				}
			}
		case gosax.EventEnd:
			name, _ := gosax.Name(ev.Bytes)
			if len(d.stack) == 0 || !bytes.Equal(d.stack[len(d.stack)-1], name) {
				open := "nothing"
				if len(d.stack) > 0 {
					open = "<" + string(d.stack[len(d.stack)-1]) + ">"
				}
				where := ""
				if d.inHost {
					where = fmt.Sprintf(" in host %d", d.seen+1)
				}
				return d.fail("malformed XML%s: </%s> closes %s", where, name, open)
			}
			d.stack = d.stack[:len(d.stack)-1]
			d.end(name)
		}
	}
}

func (d *decoder) eof() error {
	switch {
	case !d.sawRun:
		return errors.New("decode nmap XML: no <nmaprun> element (nmap printed no XML)")
	case !d.sawEnd:
		return fmt.Errorf("decode nmap XML: document ends before </nmaprun> after %d hosts (the scan was cut short)", d.seen)
	}
	return nil
}

// attrs calls fn for each attribute with its unescaped value.
func eachAttr(b []byte, fn func(key, val []byte)) error {
	for len(b) > 0 {
		a, rest, err := gosax.NextAttribute(b)
		if err != nil {
			return err
		}
		if len(a.Key) == 0 {
			break
		}
		v := a.Value
		if len(v) >= 2 {
			v = v[1 : len(v)-1]
		}
		if v, err = gosax.Unescape(v); err != nil {
			return err
		}
		fn(a.Key, v)
		b = rest
	}
	return nil
}

func atoi(b []byte) int {
	n, _ := strconv.Atoi(string(b))
	return n
}

func (d *decoder) parent() string {
	if len(d.stack) < 2 {
		return ""
	}
	return string(d.stack[len(d.stack)-2])
}

func (d *decoder) start(name, attrs []byte) error {
	var err error
	switch string(name) {
	case "nmaprun":
		d.sawRun = true
		err = eachAttr(attrs, func(k, v []byte) {
			switch string(k) {
			case "version":
				d.res.NmapVersion = string(v)
			case "args":
				d.res.Args = string(v)
			}
		})
	case "host":
		d.inHost = true
		d.host = &Host{}
	case "status":
		if d.host != nil {
			err = eachAttr(attrs, func(k, v []byte) {
				switch string(k) {
				case "state":
					d.host.State = string(v)
				case "reason":
					d.host.Reason = string(v)
				}
			})
		}
	case "address":
		if d.host != nil {
			var addr, typ string
			err = eachAttr(attrs, func(k, v []byte) {
				switch string(k) {
				case "addr":
					addr = string(v)
				case "addrtype":
					typ = string(v)
				}
			})
			if typ != "mac" && addr != "" {
				d.host.Addresses = append(d.host.Addresses, addr)
			}
		}
	case "hostname":
		if d.host != nil {
			err = eachAttr(attrs, func(k, v []byte) {
				if string(k) == "name" {
					d.host.Hostnames = append(d.host.Hostnames, clean(string(v), false))
				}
			})
		}
	case "port":
		if d.host != nil {
			d.port = &Port{}
			err = eachAttr(attrs, func(k, v []byte) {
				switch string(k) {
				case "protocol":
					d.port.Protocol = string(v)
				case "portid":
					d.port.Port = atoi(v)
				}
			})
		}
	case "state":
		if d.port != nil {
			err = eachAttr(attrs, func(k, v []byte) {
				switch string(k) {
				case "state":
					d.port.State = string(v)
				case "reason":
					d.port.Reason = string(v)
				}
			})
		}
	case "service":
		if d.port != nil {
			err = eachAttr(attrs, func(k, v []byte) {
				switch string(k) {
				case "name":
					d.port.Service = clean(string(v), false)
				case "product":
					d.port.Product = clean(string(v), false)
				case "version":
					d.port.Version = clean(string(v), false)
				case "extrainfo":
					d.port.ExtraInfo = clean(string(v), false)
				}
			})
		}
	case "script":
		var s Script
		err = eachAttr(attrs, func(k, v []byte) {
			switch string(k) {
			case "id":
				s.ID = clean(string(v), false)
			case "output":
				s.Output = d.scriptOutput(v)
			}
		})
		switch {
		case d.port != nil:
			d.port.Scripts = append(d.port.Scripts, s)
		case d.host != nil && d.parent() == "hostscript":
			d.host.Scripts = append(d.host.Scripts, s)
		}
	case "extraports":
		if d.host != nil {
			var pc PortCount
			err = eachAttr(attrs, func(k, v []byte) {
				switch string(k) {
				case "state":
					pc.State = string(v)
				case "count":
					pc.Count = atoi(v)
				}
			})
			d.host.OtherPorts = append(d.host.OtherPorts, pc)
		}
	case "osmatch":
		if d.host != nil {
			var m OSMatch
			err = eachAttr(attrs, func(k, v []byte) {
				switch string(k) {
				case "name":
					m.Name = clean(string(v), false)
				case "accuracy":
					m.Accuracy = atoi(v)
				}
			})
			d.host.OS = append(d.host.OS, m)
		}
	case "taskprogress":
		if d.h.Progress != nil {
			var p Progress
			err = eachAttr(attrs, func(k, v []byte) {
				switch string(k) {
				case "task":
					p.Task = string(v)
				case "percent":
					p.Percent, _ = strconv.ParseFloat(string(v), 64)
				case "remaining":
					p.RemainingSeconds = atoi(v)
				}
			})
			if err == nil {
				d.h.Progress(p)
			}
		}
	case "runstats":
		d.inRunEnd = true
	case "finished":
		if d.inRunEnd {
			st := &d.res.Stats
			err = eachAttr(attrs, func(k, v []byte) {
				switch string(k) {
				case "elapsed":
					st.ElapsedSeconds, _ = strconv.ParseFloat(string(v), 64)
				case "exit":
					st.Exit = string(v)
				case "errormsg":
					st.Error = string(v)
				case "summary":
					st.Summary = string(v)
				}
			})
		}
	case "hosts":
		if d.inRunEnd {
			st := &d.res.Stats
			err = eachAttr(attrs, func(k, v []byte) {
				switch string(k) {
				case "up":
					st.HostsUp = atoi(v)
				case "down":
					st.HostsDown = atoi(v)
				case "total":
					st.HostsTotal = atoi(v)
				}
			})
		}
	case "target":
		var spec, status string
		err = eachAttr(attrs, func(k, v []byte) {
			switch string(k) {
			case "specification":
				spec = string(v)
			case "status":
				status = string(v)
			}
		})
		if status == "skipped" {
			d.res.Skipped = append(d.res.Skipped, spec)
		}
	}
	if err != nil {
		return d.fail("<%s>: %v", name, err)
	}
	return nil
}

func (d *decoder) end(name []byte) {
	switch string(name) {
	case "port":
		if d.host != nil && d.port != nil {
			if d.ports < d.h.Limits.MaxPorts {
				d.host.Ports = append(d.host.Ports, *d.port)
				d.ports++
			} else {
				d.res.Dropped.Ports++
			}
		}
		d.port = nil
	case "host":
		if d.host != nil {
			d.host.normalize()
			d.seen++
			if d.seen > d.h.Limits.MaxHosts {
				// Not kept and not passed on: live status is bounded too.
				d.res.Dropped.Hosts++
				d.res.Dropped.Ports += len(d.host.Ports)
				d.ports -= len(d.host.Ports)
			} else {
				if !d.h.DropHosts {
					d.res.Hosts = append(d.res.Hosts, *d.host)
				}
				if d.h.Host != nil {
					d.h.Host(*d.host)
				}
			}
		}
		d.host, d.inHost = nil, false
	case "runstats":
		d.inRunEnd = false
	case "nmaprun":
		d.sawEnd = true
	}
}

// known holds the element names nmap writes, so the open-element stack
// needs no allocation for them.
var known = func() map[string][]byte {
	m := map[string][]byte{}
	for _, n := range []string{"nmaprun", "scaninfo", "verbose", "debugging", "host", "status", "address", "hostnames",
		"hostname", "ports", "extraports", "extrareasons", "port", "state", "service", "cpe", "script", "elem", "table",
		"times", "os", "osmatch", "osclass", "portused", "hostscript", "taskbegin", "taskprogress", "taskend",
		"runstats", "finished", "hosts", "target", "distance", "uptime", "tcpsequence", "ipidsequence",
		"tcptssequence", "trace", "hop", "output", "prescript", "postscript", "owner", "smurf"} {
		m[n] = []byte(n)
	}
	return m
}()

func intern(name []byte) []byte {
	if n, ok := known[string(name)]; ok {
		return n
	}
	return append([]byte(nil), name...)
}

// scriptOutput keeps an NSE output within the per-script and per-scan
// bounds, counting the bytes it leaves out.
func (d *decoder) scriptOutput(v []byte) string {
	keep := min(len(v), d.h.Limits.MaxScriptOutput, max(d.h.Limits.MaxScriptBytes-d.sbytes, 0))
	d.sbytes += keep
	if keep == len(v) {
		return clean(string(v), true)
	}
	d.res.Dropped.ScriptBytes += len(v) - keep
	return clean(string(v[:keep]), true) + fmt.Sprintf(" [cut: %d more bytes]", len(v)-keep)
}
