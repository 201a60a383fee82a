package scanargs

import (
	"strconv"
	"strings"
)

// StatsEvery is how often nmap reports progress (<taskprogress>).
const StatsEvery = "2s"

// Privileged reports whether the plan needs raw sockets (SYN and UDP scans,
// OS detection),
// which nmap only uses as root.
func (p *Plan) Privileged() bool { return p.Type == SYN || p.Type == UDP || p.OSDetection }

// Args returns nmap's arguments for the plan, without the program name.
// Every element before "--" is a fixed flag or a value rendered from a
// parsed number; the targets follow "--".
func (p *Plan) Args() []string {
	args := make([]string, 0, 16+len(p.Targets))
	// XML on stdout, with a progress report every StatsEvery.
	args = append(args, "-oX", "-", "--stats-every", StatsEvery)
	switch p.Type {
	case SYN:
		args = append(args, "-sS")
	case UDP:
		args = append(args, "-sU")
	case Ping:
		args = append(args, "-sn")
	default:
		args = append(args, "-sT")
	}
	if p.IPv6 {
		args = append(args, "-6")
	}
	if p.NoDNS {
		args = append(args, "-n")
	}
	switch {
	case p.Ports != "":
		args = append(args, "-p", p.Ports)
	case p.TopPorts > 0:
		args = append(args, "--top-ports", strconv.Itoa(p.TopPorts))
	}
	if p.ServiceVersions {
		args = append(args, "-sV")
	}
	if p.SkipHostDiscovery {
		args = append(args, "-Pn")
	}
	if p.OSDetection {
		args = append(args, "-O")
	}
	if len(p.Scripts) > 0 {
		args = append(args, "--script", strings.Join(p.Scripts, ","))
	}
	if len(p.ScriptArgs) > 0 {
		args = append(args, "--script-args", strings.Join(p.ScriptArgs, ","))
	}
	if p.Timing >= 0 {
		args = append(args, "-T"+strconv.Itoa(p.Timing))
	}
	args = append(args, "--")
	for _, t := range p.Targets {
		args = append(args, t.Text)
	}
	return args
}

// TargetList returns the targets joined by spaces, for logs and headers.
func (p *Plan) TargetList() string {
	s := make([]string, len(p.Targets))
	for i, t := range p.Targets {
		s[i] = t.Text
	}
	return strings.Join(s, " ")
}
