package policy

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// ScriptIndex is what the policy knows of the scanner image's NSE scripts,
// found by reading script.db and the scripts' (and libraries') source in
// the image: each script's categories; which scripts add scan targets by
// themselves (target.add, newtargets), open a packet capture (pcap_open),
// or contact third parties (resolve names, or make the target connect
// elsewhere); the script arguments each script and library documents
// (@args); and the libraries each script requires.
type ScriptIndex struct {
	Categories  map[string][]string
	AddsTargets map[string]bool
	Captures    map[string]bool
	// ThirdParty are scripts that resolve names (nmap.resolve, dns.query,
	// dns.reverse) or make the target connect to another host (ftp-bounce's
	// checkhost), and those of the external category.
	ThirdParty map[string]bool
	// Args are the argument keys each script documents (@args).
	Args map[string][]string
	// Requires are the libraries each script requires.
	Requires map[string][]string
	// LibArgs are the argument keys each NSE library documents (@args).
	LibArgs map[string][]string
}

// ScriptDB returns the image's script index.
type ScriptDB func(ctx context.Context) (*ScriptIndex, error)

// Section markers of the text that ParseScriptIndex reads.
const (
	AddsTargetsMarker = "#nmap-mcp:adds-targets"
	CapturesMarker    = "#nmap-mcp:captures"
	ThirdPartyMarker  = "#nmap-mcp:third-party"
	ArgsMarker        = "#nmap-mcp:args"
	RequiresMarker    = "#nmap-mcp:requires"
	LibArgsMarker     = "#nmap-mcp:lib-args"
)

// IndexScript is the shell script, run inside the scanner image with no
// network, whose output ParseScriptIndex reads: script.db, then the
// scripts that add targets, those that open a packet capture, those that
// contact third parties, the @args lines of the scripts, their require
// lines, and the @args lines of the libraries.
const IndexScript = `cd /usr/share/nmap/scripts && cat script.db && echo '` + AddsTargetsMarker + `' && ` +
	`grep -l -e 'target%.add' -e 'target\.add' -e newtargets -- *.nse; echo '` + CapturesMarker + `' && ` +
	`grep -l -e pcap_open -- *.nse; echo '` + ThirdPartyMarker + `' && ` +
	`grep -l -e 'nmap%.resolve' -e 'nmap\.resolve' -e 'dns\.query' -e 'dns\.reverse' -e 'dns%.query' -e checkhost -- *.nse; echo '` + ArgsMarker + `' && ` +
	`grep -H -e '@args' -- *.nse; echo '` + RequiresMarker + `' && ` +
	`grep -H -e 'require' -- *.nse; echo '` + LibArgsMarker + `' && ` +
	`cd ../nselib && grep -H -e '@args' -- *.lua; exit 0`

var requireLine = regexp.MustCompile(`require\s*\(?\s*["']([A-Za-z0-9_.-]+)["']`)

// ParseScriptIndex reads IndexScript's output: script.db lines such as
// Entry { filename = "http-title.nse", categories = { "default", "discovery", "safe", } }
// then file names under each marker.
func ParseScriptIndex(text string) *ScriptIndex {
	idx := &ScriptIndex{Categories: map[string][]string{}, AddsTargets: map[string]bool{}, Captures: map[string]bool{},
		ThirdParty: map[string]bool{}, Args: map[string][]string{}, Requires: map[string][]string{}, LibArgs: map[string][]string{}}
	var section map[string]bool
	var lines map[string][]string // a section of "file:line" entries
	var keep func(line string) string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch line {
		case AddsTargetsMarker, CapturesMarker, ThirdPartyMarker:
			section, lines = map[string]map[string]bool{AddsTargetsMarker: idx.AddsTargets, CapturesMarker: idx.Captures, ThirdPartyMarker: idx.ThirdParty}[line], nil
			continue
		case ArgsMarker, LibArgsMarker:
			section, lines, keep = nil, idx.Args, argKey
			if line == LibArgsMarker {
				lines = idx.LibArgs
			}
			continue
		case RequiresMarker:
			section, lines, keep = nil, idx.Requires, requiredLib
			continue
		}
		switch {
		case section != nil:
			if name, ok := strings.CutSuffix(line, ".nse"); ok {
				section[name] = true
			}
			continue
		case lines != nil:
			file, rest, ok := strings.Cut(line, ":")
			name := strings.TrimSuffix(strings.TrimSuffix(file, ".nse"), ".lua")
			if v := keep(rest); ok && v != "" && !slices.Contains(lines[name], v) {
				lines[name] = append(lines[name], v)
			}
			continue
		}
		_, rest, ok := strings.Cut(line, `filename = "`)
		if !ok {
			continue
		}
		file, rest, ok := strings.Cut(rest, `"`)
		if !ok {
			continue
		}
		_, cats, ok := strings.Cut(rest, "categories = {")
		if !ok {
			continue
		}
		cats, _, _ = strings.Cut(cats, "}")
		var list []string
		for _, c := range strings.Split(cats, ",") {
			if c = strings.Trim(strings.TrimSpace(c), `"`); c != "" {
				list = append(list, c)
			}
		}
		idx.Categories[strings.TrimSuffix(file, ".nse")] = list
	}
	for name, cats := range idx.Categories {
		if slices.Contains(cats, "external") {
			idx.ThirdParty[name] = true
		}
	}
	return idx
}

// argKey reads the key of an "-- @args KEY description" line.
func argKey(line string) string {
	_, rest, ok := strings.Cut(line, "@args")
	if !ok {
		return ""
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return ""
	}
	return strings.TrimRight(f[0], ",:")
}

// requiredLib reads the library of a require line.
func requiredLib(line string) string {
	if m := requireLine.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	return ""
}

// documents reports whether one of scripts (or a library one of them
// requires) documents the argument key.
func (idx *ScriptIndex) documents(scripts []string, key string) bool {
	for _, s := range scripts {
		if slices.Contains(idx.Args[s], key) {
			return true
		}
		for _, lib := range idx.Requires[s] {
			if slices.Contains(idx.LibArgs[lib], key) {
				return true
			}
		}
	}
	return false
}

// isCategory reports whether some script of the index is in category c.
func (idx *ScriptIndex) isCategory(c string) bool {
	for _, cats := range idx.Categories {
		if slices.Contains(cats, c) {
			return true
		}
	}
	return false
}

// expandScripts turns the requested scripts and categories into the
// explicit list of scripts that may run. A requested category expands to
// its scripts, and those the policy does not allow are dropped, each with
// its reason; a script requested by name that is not allowed, a category
// that is not allowed, or a request that leaves nothing to run is refused.
// nmap is then given only script names: never a category or an expression,
// so a category cannot pull in scripts of other categories.
func (p *Policy) expandScripts(ctx context.Context, plan *scanargs.Plan) ([]string, []scanargs.DroppedScript, error) {
	if len(plan.Scripts) == 0 {
		return nil, nil, nil
	}
	if p.scripts == nil {
		return nil, nil, &Refusal{Reason: "NSE scripts cannot be checked here (no script index)", Key: "scripts"}
	}
	idx, err := p.scripts(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read the NSE script index from the scanner image: %w", err)
	}
	// A scan of loopback only runs on the host network even in a fenced
	// deployment (see sandbox.Place).
	hostNet := p.cfg.HostNetwork || plan.AllLoopback()
	keep := map[string]bool{}
	dropped := map[string]string{}
	for _, s := range plan.Scripts {
		if _, isScript := idx.Categories[s]; isScript {
			if why := p.scriptDenied(idx, s, hostNet); why != "" {
				return nil, nil, &Refusal{Reason: fmt.Sprintf("NSE script %q %s", s, why), Key: p.scriptKey(idx, s, hostNet)}
			}
			keep[s] = true
			continue
		}
		if slices.Contains(RiskyScriptCategories, s) && !slices.Contains(p.cfg.ScriptCategories, s) {
			return nil, nil, &Refusal{Reason: fmt.Sprintf("NSE category %q is refused unless the config allows it", s), Key: "scripts.categories"}
		}
		if !idx.isCategory(s) {
			return nil, nil, &Refusal{Reason: fmt.Sprintf("%q is neither an NSE category nor a script in the image", s), Key: "scripts.categories"}
		}
		if !slices.Contains(p.cfg.ScriptCategories, s) {
			return nil, nil, &Refusal{Reason: fmt.Sprintf("NSE category %q is not allowed", s), Key: "scripts.categories"}
		}
		for name, cats := range idx.Categories {
			if !slices.Contains(cats, s) || keep[name] {
				continue
			}
			if why := p.scriptDenied(idx, name, hostNet); why != "" {
				dropped[name] = why
				continue
			}
			keep[name] = true
		}
	}
	for name := range keep {
		delete(dropped, name)
	}
	if len(keep) == 0 {
		return nil, nil, &Refusal{Reason: fmt.Sprintf("no script of %q may run here (%d dropped: all are also in a category that is not allowed, add targets, or capture packets)",
			strings.Join(plan.Scripts, ","), len(dropped)), Key: "scripts.categories (or scripts.names)"}
	}
	names := make([]string, 0, len(keep))
	for n := range keep {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []scanargs.DroppedScript
	for n, why := range dropped {
		out = append(out, scanargs.DroppedScript{Name: n, Reason: why})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	for _, kv := range plan.ScriptArgs {
		k, _, _ := strings.Cut(kv, "=")
		if !idx.documents(names, k) {
			return nil, nil, &scanargs.FieldError{Field: "script_args", Value: kv,
				Rule: fmt.Sprintf("no script that will run (%s) documents the argument %q (@args in the script or a library it requires); only documented arguments are passed", clipNames(names), k)}
		}
	}
	return names, out, nil
}

// clipNames lists at most five script names.
func clipNames(names []string) string {
	if len(names) > 5 {
		return strings.Join(names[:5], ", ") + fmt.Sprintf(" and %d more", len(names)-5)
	}
	return strings.Join(names, ", ")
}

// scriptDenied says why script name may not run, or "" when it may. A
// packet capture on the host network is refused whatever the config says:
// it would read the host's own traffic.
func (p *Policy) scriptDenied(idx *ScriptIndex, name string, hostNet bool) string {
	if idx.Captures[name] && hostNet {
		return "opens a packet capture, which is never allowed on the host network (it would read the host's traffic)"
	}
	named := slices.Contains(p.cfg.ScriptNames, name)
	if !named {
		if idx.AddsTargets[name] {
			return "adds scan targets by itself that the scope never checked (target.add); list it in scripts.names to allow it"
		}
		if idx.Captures[name] {
			return "listens on network interfaces (packet capture); list it in scripts.names to allow it"
		}
		for _, c := range idx.Categories[name] {
			if !slices.Contains(p.cfg.ScriptCategories, c) {
				return fmt.Sprintf("is also in category %q, which is not allowed", c)
			}
		}
	}
	if idx.ThirdParty[name] && hostNet {
		return "contacts third parties (resolves names, or makes the target connect elsewhere), which is never allowed on the host network"
	}
	if idx.ThirdParty[name] && !named {
		return "contacts third parties (resolves names, or makes the target connect elsewhere); list it in scripts.names to allow it"
	}
	return ""
}

func (p *Policy) scriptKey(idx *ScriptIndex, name string, hostNet bool) string {
	if (idx.Captures[name] || idx.ThirdParty[name]) && hostNet {
		return "sandbox.network"
	}
	return "scripts.names"
}
