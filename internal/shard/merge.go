package shard

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Part is one shard's nmap XML, as far as it got.
type Part struct {
	// Blocks are the shard's targets, named when the shard is missing.
	Blocks []netip.Prefix
	// XML is what the shard's nmap wrote (-oX -); it may end early.
	XML []byte
	// Failed says the shard did not finish (it failed, timed out or was
	// cancelled); its finished hosts are kept.
	Failed bool
}

// parsed is what Merge takes from one part.
type parsed struct {
	head       []byte // from <nmaprun ...> to the first host or runstats
	hosts      []host
	start      int64
	finished   int64
	up, down   int
	hasRunstat bool
}

type host struct {
	addr netip.Addr
	raw  []byte
}

// Merge joins the parts' XML into one nmap XML document, as if one nmap
// had scanned every part's targets: the first part's header (its
// <nmaprun> start tag, scaninfo, verbose and debugging), every finished
// <host> in address order, and one <runstats> whose host counts are the
// sums, whose finish is the latest and whose elapsed time spans the
// earliest start to it. When a part failed or its XML ended early, the
// run's exit is "error" and its errormsg names the missing blocks; the
// hosts that part finished are kept. It returns an error only when no
// part has a usable <nmaprun>.
func Merge(parts []Part) ([]byte, error) {
	var ps []parsed
	var missing []string
	for i, p := range parts {
		r, err := parse(p.XML)
		if err != nil || p.Failed || !r.hasRunstat {
			for _, b := range p.Blocks {
				missing = append(missing, b.String())
			}
			if len(p.Blocks) == 0 {
				missing = append(missing, "shard "+strconv.Itoa(i+1))
			}
		}
		if err == nil {
			if !r.hasRunstat {
				// No totals from nmap: count the hosts it finished (nmap
				// writes a <host> for hosts that are up).
				r.up = len(r.hosts)
			}
			ps = append(ps, r)
		}
	}
	first := slices.IndexFunc(ps, func(r parsed) bool { return len(r.head) > 0 })
	if first < 0 {
		return nil, errors.New("merge shards: no shard wrote an <nmaprun> start")
	}
	var all []host
	var start, finished int64
	up, down := 0, 0
	for _, r := range ps {
		all = append(all, r.hosts...)
		if r.start > 0 && (start == 0 || r.start < start) {
			start = r.start
		}
		finished = max(finished, r.finished)
		up += r.up
		down += r.down
	}
	slices.SortStableFunc(all, func(a, b host) int { return a.addr.Compare(b.addr) })
	if finished == 0 {
		finished = start
	}

	var b bytes.Buffer
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE nmaprun>\n")
	b.Write(ps[first].head)
	for _, h := range all {
		b.Write(h.raw)
		b.WriteByte('\n')
	}
	ts := time.Unix(finished, 0).UTC().Format("Mon Jan 2 15:04:05 2006")
	elapsed := float64(finished - start)
	exit, errmsg := "success", ""
	if len(missing) > 0 {
		exit = "error"
		errmsg = fmt.Sprintf(" errormsg=\"%s\"", xmlEscape("shards did not finish; missing blocks: "+strings.Join(missing, ", ")))
	}
	summary := fmt.Sprintf("Nmap done at %s; %d IP addresses (%d hosts up) scanned in %.2f seconds (merged from %d shards)", ts, up+down, up, elapsed, len(parts))
	fmt.Fprintf(&b, "<runstats><finished time=\"%d\" timestr=\"%s\" summary=\"%s\" elapsed=\"%.2f\" exit=\"%s\"%s/><hosts up=\"%d\" down=\"%d\" total=\"%d\"/>\n</runstats>\n</nmaprun>\n",
		finished, ts, xmlEscape(summary), elapsed, exit, errmsg, up, down, up+down)
	return b.Bytes(), nil
}

// parse reads one part. A document that ends early keeps what it had.
func parse(doc []byte) (parsed, error) {
	var r parsed
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = false
	depth := 0
	headStart, headEnd := -1, -1
	for {
		before := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) || r.head != nil || headStart >= 0 {
				break // an early end keeps what was read
			}
			return r, fmt.Errorf("read shard XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 && t.Name.Local == "nmaprun" {
				headStart = int(before)
				r.start = attrInt(t, "start")
				continue
			}
			if depth != 2 {
				continue
			}
			switch t.Name.Local {
			case "host", "runstats", "hosthint", "taskbegin", "taskend", "taskprogress", "postscript":
				if headEnd < 0 {
					headEnd = int(before)
				}
			}
			switch t.Name.Local {
			case "host":
				h, err := readHost(d, doc, int(before), t)
				depth--
				if err != nil {
					continue // a host cut off mid-way is not a finished host
				}
				r.hosts = append(r.hosts, h)
			case "runstats":
				if err := readRunstats(d, &r); err == nil {
					r.hasRunstat = true
				}
				depth--
			}
		case xml.EndElement:
			depth--
		}
	}
	if headStart < 0 {
		return r, errors.New("read shard XML: no <nmaprun> element")
	}
	if headEnd < 0 {
		headEnd = len(doc)
	}
	r.head = bytes.TrimRight(doc[headStart:headEnd], " \n")
	r.head = append(r.head, '\n')
	return r, nil
}

// readHost reads the rest of a <host> element and returns its raw text
// and address.
func readHost(d *xml.Decoder, doc []byte, start int, se xml.StartElement) (host, error) {
	h := host{}
	depth := 1
	for depth > 0 {
		tok, err := d.Token()
		if err != nil {
			return h, fmt.Errorf("host cut off: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if t.Name.Local == "address" && depth == 2 && !h.addr.IsValid() {
				if at := attr(t, "addrtype"); at == "ipv4" || at == "ipv6" {
					h.addr, _ = netip.ParseAddr(attr(t, "addr"))
				}
			}
		case xml.EndElement:
			depth--
		}
	}
	h.raw = append([]byte(nil), doc[start:d.InputOffset()]...)
	return h, nil
}

func readRunstats(d *xml.Decoder, r *parsed) error {
	depth := 1
	for depth > 0 {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch t.Name.Local {
			case "finished":
				r.finished = attrInt(t, "time")
			case "hosts":
				r.up, r.down = int(attrInt(t, "up")), int(attrInt(t, "down"))
			}
		case xml.EndElement:
			depth--
		}
	}
	return nil
}

func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func attrInt(t xml.StartElement, name string) int64 {
	n, _ := strconv.ParseInt(attr(t, name), 10, 64)
	return n
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
