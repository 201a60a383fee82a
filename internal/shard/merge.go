package shard

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
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

// Merge joins the parts' XML into one nmap XML document, as Stream does
// live: see Stream. It returns an error only when no part has a usable
// <nmaprun> start.
func Merge(parts []Part) ([]byte, error) {
	var out bytes.Buffer
	blocks := make([][]netip.Prefix, len(parts))
	for i, p := range parts {
		blocks[i] = p.Blocks
	}
	s := NewStream(&out, blocks, 0)
	for i, p := range parts {
		_, _ = s.Part(i).Write(p.XML)
	}
	failed := make([]bool, len(parts))
	for i, p := range parts {
		failed[i] = p.Failed
	}
	if err := s.Close(failed); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Stream merges the nmap XML (-oX -) of shards running at once into one
// document written to an io.Writer as it arrives, as if one nmap had
// scanned every shard's targets in shard order:
//
//   - the first shard's header (its <nmaprun> start tag, scaninfo,
//     verbose and debugging), once;
//   - each finished <host>, in shard order: a shard's hosts pass live
//     while every shard before it is done, and wait (bounded) until then
//     otherwise, so the hosts keep the targets' order;
//   - <taskprogress> lines whose percent is the mean over all shards
//     (a shard past the task counts 100), so progress never falls;
//   - at Close, one <runstats> with host counts summed, the latest
//     finish, the elapsed time from the earliest start, and, when a shard
//     did not finish, exit="error" with an errormsg naming its blocks and
//     the time of Close as the finish (the run ended when it was stopped).
//
// It relies on nmap's XML layout: each top-level element starts a line,
// a host ends with a "</host>" line and run statistics with
// "</runstats>". Other top-level elements (hosthint, postscript output)
// are dropped.
type Stream struct {
	mu       sync.Mutex
	out      io.Writer
	parts    []*part
	headDone bool
	next     int // the first shard not yet done: its hosts pass live
	start    int64
	maxHeld  int
	// heldTotal is the bytes all shards hold back; unordered counts
	// hosts passed on early because holding them would pass maxHeld.
	heldTotal int
	unordered int
	args      string
	closed    bool
	werr      error
}

type part struct {
	s        *Stream
	i        int
	blocks   []netip.Prefix
	line     []byte // the unfinished line
	head     []byte // header lines until the first body element
	pi       []byte // nmap's stylesheet instruction, before <nmaprun>
	inHead   bool
	block    []byte // the host or runstats being read
	inHost   bool
	inStats  bool
	held     [][]byte // finished hosts waiting for earlier shards
	heldN    int
	dropped  int
	cut      int  // hosts dropped with an over-long line
	skipping bool // the rest of an over-long line is being dropped
	tasks    map[string]float64
	ended    map[string]bool
	done     bool // </nmaprun> seen, or Close
	stats    bool // runstats seen
	up       int
	down     int
	hosts    int
	started  int64
	fin      int64
}

// NewStream returns a merger of len(blocks) shards into out; maxHeld
// bounds the bytes of finished hosts all shards together hold back while
// earlier shards run (0: 4 MiB); a host that would pass it is passed on at
// once, out of the targets' order, instead.
func NewStream(out io.Writer, blocks [][]netip.Prefix, maxHeld int) *Stream {
	if maxHeld <= 0 {
		maxHeld = 4 << 20
	}
	s := &Stream{out: out, maxHeld: maxHeld}
	for i, b := range blocks {
		s.parts = append(s.parts, &part{s: s, i: i, blocks: b, inHead: true, tasks: map[string]float64{}, ended: map[string]bool{}})
	}
	return s
}

// SetArgs makes the merged <nmaprun>'s args attribute args (the whole
// scan's command line) instead of the first shard's. Call it before the
// first write.
func (s *Stream) SetArgs(args string) {
	s.mu.Lock()
	s.args = args
	s.mu.Unlock()
}

var reArgs = regexp.MustCompile(`\bargs="[^"]*"`)

// Part is where shard i's nmap XML is written.
func (s *Stream) Part(i int) io.Writer { return s.parts[i] }

func (p *part) Write(b []byte) (int, error) {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if !p.skipping {
				p.line = append(p.line, b...)
				// Too long: the rest of it, up to its newline, goes too.
				p.skipping = p.overlong()
			}
			break
		}
		if p.skipping {
			// The end of a line too long to keep: none of it is used.
			p.skipping = false
			b = b[i+1:]
			continue
		}
		p.line = append(p.line, b[:i+1]...)
		b = b[i+1:]
		if p.overlong() {
			continue
		}
		p.onLine(p.line)
		p.line = p.line[:0]
	}
	return n, s.werr
}

// maxLine bounds one line of a shard's XML. nmap writes an element per
// line and escapes newlines in script output, so a script that returns a
// large page (an HTTP body is at most 2 MiB, escaped at most about 6) makes
// a long line; a longer one is dropped whole, with the host it belongs to.
const maxLine = 16 << 20

// overlong drops the line being read when it passes maxLine, and the host
// it is part of (a host cut mid-way would break the document); it reports
// whether it did.
func (p *part) overlong() bool {
	if len(p.line) <= maxLine {
		return false
	}
	p.line = p.line[:0]
	if p.inHost {
		p.inHost, p.block = false, nil
		p.cut++
	}
	return true
}

var (
	reAttr = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

func attrs(line []byte) map[string]string {
	m := map[string]string{}
	for _, a := range reAttr.FindAllSubmatch(line, -1) {
		m[string(a[1])] = string(a[2])
	}
	return m
}

// onLine handles one line of shard p's XML (s.mu held).
func (p *part) onLine(line []byte) {
	s := p.s
	t := bytes.TrimLeft(line, " \t")
	switch {
	case p.inHost:
		p.block = append(p.block, line...)
		if bytes.HasPrefix(t, []byte("</host>")) {
			p.inHost = false
			p.hosts++
			p.finishHost(p.block)
			p.block = nil
		}
		return
	case p.inStats:
		p.readStats(line)
		if bytes.HasPrefix(t, []byte("</runstats>")) {
			p.inStats = false
		}
		return
	}
	body := bytes.HasPrefix(t, []byte("<host ")) || bytes.HasPrefix(t, []byte("<host>")) || bytes.HasPrefix(t, []byte("<hosthint")) ||
		bytes.HasPrefix(t, []byte("<task")) || bytes.HasPrefix(t, []byte("<runstats")) ||
		bytes.HasPrefix(t, []byte("<postscript")) || bytes.HasPrefix(t, []byte("</nmaprun"))
	if p.inHead && !body {
		if len(p.head) == 0 && stylesheetPI(t) {
			p.pi = append(p.pi[:0], line...)
			return
		}
		if bytes.HasPrefix(t, []byte("<nmaprun ")) || len(p.head) > 0 && !bytes.HasPrefix(t, []byte("<!--")) {
			if bytes.HasPrefix(t, []byte("<nmaprun ")) {
				p.started, _ = strconv.ParseInt(attrs(t)["start"], 10, 64)
				if s.args != "" {
					line = reArgs.ReplaceAll(line, []byte(`args="`+xmlAttr(s.args)+`"`))
				}
			}
			p.head = append(p.head, line...)
		}
		return
	}
	if p.inHead {
		p.inHead = false
		if !s.headDone && len(p.head) > 0 {
			s.headDone = true
			s.write([]byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE nmaprun>\n"))
			s.write(p.pi) // as nmap writes it: browsers and xsltproc find nmap.xsl
			s.write(p.head)
			if p.started > 0 {
				s.start = p.started
			}
			s.flushReady()
		}
		if p.started > 0 && (s.start == 0 || p.started < s.start) {
			s.start = p.started
		}
	}
	switch {
	case bytes.HasPrefix(t, []byte("<host ")) || bytes.HasPrefix(t, []byte("<host>")):
		p.inHost = true
		p.block = append(p.block[:0], line...)
		if bytes.Contains(t, []byte("</host>")) {
			p.inHost = false
			p.hosts++
			p.finishHost(p.block)
			p.block = nil
		}
	case bytes.HasPrefix(t, []byte("<runstats")):
		p.stats = true
		p.readStats(line)
		p.inStats = !bytes.Contains(t, []byte("</runstats>"))
	case bytes.HasPrefix(t, []byte("<taskprogress")), bytes.HasPrefix(t, []byte("<taskbegin")), bytes.HasPrefix(t, []byte("<taskend")):
		p.task(t)
	case bytes.HasPrefix(t, []byte("</nmaprun")):
		p.finish()
	}
}

func (p *part) readStats(line []byte) {
	t := bytes.TrimLeft(line, " \t")
	for _, el := range bytes.SplitAfter(t, []byte("/>")) {
		el = bytes.TrimLeft(el, " \t<")
		a := attrs(el)
		switch {
		case bytes.HasPrefix(el, []byte("runstats><finished")), bytes.HasPrefix(el, []byte("finished")):
			p.fin, _ = strconv.ParseInt(a["time"], 10, 64)
		case bytes.HasPrefix(el, []byte("hosts")):
			p.up, _ = strconv.Atoi(a["up"])
			p.down, _ = strconv.Atoi(a["down"])
		}
	}
}

// finishHost passes a finished host on, or holds it until the shards
// before p are done.
func (p *part) finishHost(h []byte) {
	s := p.s
	if p.i == s.next && s.headDone {
		s.write(h)
		return
	}
	if s.heldTotal+len(h) > s.maxHeld {
		// Holding more would pass the bound: pass it on now, out of the
		// targets' order, rather than lose it.
		if s.headDone {
			s.write(h)
			s.unordered++
			return
		}
		p.dropped++
		return
	}
	p.held = append(p.held, append([]byte(nil), h...))
	p.heldN += len(h)
	s.heldTotal += len(h)
}

// task aggregates one taskbegin, taskprogress or taskend line.
func (p *part) task(t []byte) {
	s := p.s
	a := attrs(t)
	name := a["task"]
	if name == "" {
		return
	}
	switch {
	case bytes.HasPrefix(t, []byte("<taskbegin")):
		if _, seen := p.tasks[name]; !seen {
			p.tasks[name] = 0
		}
		return
	case bytes.HasPrefix(t, []byte("<taskend")):
		p.ended[name] = true
		p.tasks[name] = 100
	default:
		v, _ := strconv.ParseFloat(a["percent"], 64)
		p.tasks[name] = v
	}
	if !s.headDone {
		return
	}
	var sum float64
	for _, q := range s.parts {
		switch {
		case q.done || q.ended[name]:
			sum += 100
		default:
			sum += q.tasks[name]
		}
	}
	pct := sum / float64(len(s.parts))
	s.write(fmt.Appendf(nil, "<taskprogress task=\"%s\" time=\"%s\" percent=\"%.2f\" remaining=\"%s\" etc=\"%s\"/>\n",
		xmlEscape(name), a["time"], pct, a["remaining"], a["etc"]))
}

// finish marks p done and passes on what later shards held back.
func (p *part) finish() {
	if p.done {
		return
	}
	p.done = true
	p.s.flushReady()
}

// flushReady advances past done shards, writing what each held back.
func (s *Stream) flushReady() {
	if !s.headDone {
		return
	}
	for s.next < len(s.parts) {
		q := s.parts[s.next]
		for _, h := range q.held {
			s.write(h)
		}
		s.heldTotal -= q.heldN
		q.held, q.heldN = nil, 0
		if !q.done {
			return
		}
		s.next++
	}
}

func (s *Stream) write(b []byte) {
	if s.werr != nil {
		return
	}
	_, s.werr = s.out.Write(b)
}

// Close ends the document: it flushes every held host and writes the
// merged run statistics and the closing tag. failed[i] says shard i did
// not finish (it failed, timed out or was cancelled); a shard whose XML
// has no run statistics did not finish either.
func (s *Stream) Close(failed []bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.werr
	}
	s.closed = true
	if !s.headDone {
		return fmt.Errorf("merge shards: no shard wrote an <nmaprun> start")
	}
	var missing []string
	var up, down, dropped, cut int
	fin := int64(0)
	for i, p := range s.parts {
		p.done = true
		if (i < len(failed) && failed[i]) || !p.stats {
			if len(p.blocks) == 0 {
				missing = append(missing, "shard "+strconv.Itoa(i+1))
			}
			for _, b := range p.blocks {
				missing = append(missing, b.String())
			}
		}
		if p.stats {
			up += p.up
			down += p.down
		} else {
			up += p.hosts // nmap writes a <host> for hosts that are up
		}
		dropped += p.dropped
		cut += p.cut
		fin = max(fin, p.fin)
	}
	s.flushReady()
	if fin == 0 || len(missing) > 0 {
		// A run with a shard that did not finish ended when it was
		// stopped (now), not when its last finished shard did.
		fin = max(fin, time.Now().Unix())
	}
	start := s.start
	if start == 0 || start > fin {
		start = fin
	}
	ts := time.Unix(fin, 0).UTC().Format("Mon Jan _2 15:04:05 2006") // ctime's form, as nmap writes it
	elapsed := float64(fin - start)
	exit, errmsg := "success", ""
	var why []string
	if len(missing) > 0 {
		why = append(why, "shards did not finish; missing blocks: "+strings.Join(missing, ", "))
	}
	if dropped > 0 {
		why = append(why, fmt.Sprintf("%d finished hosts dropped (held back beyond the bound before any shard began)", dropped))
	}
	if cut > 0 {
		why = append(why, fmt.Sprintf("%d hosts dropped with an XML line longer than %d MiB", cut, maxLine>>20))
	}
	if len(why) > 0 {
		exit = "error"
		errmsg = fmt.Sprintf(" errormsg=\"%s\"", xmlEscape(strings.Join(why, "; ")))
	}
	summary := fmt.Sprintf("Nmap done at %s; %d IP addresses (%d hosts up) scanned in %.2f seconds (merged from %d shards)", ts, up+down, up, elapsed, len(s.parts))
	s.write(fmt.Appendf(nil, "<runstats><finished time=\"%d\" timestr=\"%s\" summary=\"%s\" elapsed=\"%.2f\" exit=\"%s\"%s/><hosts up=\"%d\" down=\"%d\" total=\"%d\"/>\n</runstats>\n</nmaprun>\n",
		fin, ts, xmlEscape(summary), elapsed, exit, errmsg, up, down, up+down))
	return s.werr
}

// stylesheetPI reports whether line (trimmed) is one whole stylesheet
// processing instruction of the form nmap writes, and nothing else.
func stylesheetPI(line []byte) bool {
	t := bytes.TrimRight(line, " \t\r\n")
	if !bytes.HasPrefix(t, []byte("<?xml-stylesheet href=\"")) || !bytes.HasSuffix(t, []byte("\" type=\"text/xsl\"?>")) {
		return false
	}
	inner := t[len("<?xml-stylesheet href=\"") : len(t)-len("\" type=\"text/xsl\"?>")]
	return !bytes.ContainsAny(inner, "<>\"?")
}

// xmlAttr escapes s for an attribute value (quotes too; no $ expansion
// in a regexp replacement: "$" is doubled).
func xmlAttr(s string) string {
	return strings.ReplaceAll(xmlEscape(s), "$", "$$")
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
