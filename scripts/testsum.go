//go:build ignore

// Command testsum reads "go test -json" on standard input and prints what
// a plain "go test" prints — one line per package, and the whole output
// of every failed test — followed by every skipped test with its reason
// and one closing line of counts:
//
//	tests: 1234 passed, 0 failed, 17 skipped
//
// It exits 1 when a test, a package or a build failed. scripts/test.sh
// builds it (go build -o bin/testsum scripts/testsum.go); the build tag
// keeps it out of ./... .
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output and build-fail events
}

type key struct{ pkg, test string }

type skip struct {
	pkg, test, reason string
}

type summary struct {
	out                    io.Writer
	module                 string
	output                 map[key][]string // a running test's output, kept until it ends
	passed, failed, noTest int
	skipped                []skip
	failedPkgs             []string
	buildFailed            []string
}

func main() {
	s := &summary{out: os.Stdout, module: modulePath(), output: map[key][]string{}}
	if err := s.read(os.Stdin); err != nil {
		fmt.Fprintf(os.Stderr, "testsum: %v\n", err)
		os.Exit(2)
	}
	if !s.report() {
		os.Exit(1)
	}
}

// modulePath is go.mod's module path, trimmed from package names.
func modulePath() string {
	data, err := os.ReadFile("go.mod")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.TrimSpace(m) + "/"
		}
	}
	return ""
}

func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not an event (a line go test printed itself): pass it on.
			fmt.Fprintf(s.out, "%s\n", line)
			continue
		}
		s.event(e)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading go test -json: %w", err)
	}
	return nil
}

func (s *summary) event(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.out, e.Output)
		return
	case "build-fail":
		s.buildFailed = append(s.buildFailed, e.ImportPath)
		return
	}
	k := key{e.Package, e.Test}
	switch e.Action {
	case "output":
		if e.Test == "" {
			// The package's own lines: its "ok"/"FAIL" line, and what a
			// test binary prints outside any test (a panic, TestMain).
			if o := e.Output; o != "PASS\n" && !strings.HasPrefix(o, "=== ") {
				fmt.Fprint(s.out, o)
			}
			return
		}
		if !strings.HasPrefix(e.Output, "=== ") { // RUN, PAUSE, CONT: plain go test shows none
			s.output[k] = append(s.output[k], e.Output)
		}
	case "pass":
		if e.Test != "" {
			s.passed++
		}
		delete(s.output, k)
	case "skip":
		if e.Test == "" {
			s.noTest++ // a package without tests, or all of it skipped
		} else {
			s.skipped = append(s.skipped, skip{e.Package, e.Test, reason(s.output[k])})
		}
		delete(s.output, k)
	case "fail":
		if e.Test == "" {
			s.failedPkgs = append(s.failedPkgs, e.Package)
			// Tests still running when the package failed (a panic, a
			// timeout) never end: show what they printed.
			var open []key
			for o := range s.output {
				if o.pkg == e.Package {
					open = append(open, o)
				}
			}
			sort.Slice(open, func(i, j int) bool { return open[i].test < open[j].test })
			for _, o := range open {
				fmt.Fprint(s.out, strings.Join(s.output[o], ""))
				delete(s.output, o)
			}
			return
		}
		s.failed++
		fmt.Fprint(s.out, strings.Join(s.output[k], ""))
		delete(s.output, k)
	}
}

// reason is what a skipped test said before "--- SKIP", on one line.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		parts = append(parts, t)
	}
	r := strings.Join(parts, " ")
	if len(r) > 300 {
		r = r[:297] + "..."
	}
	if r == "" {
		r = "(no reason given)"
	}
	return r
}

// report prints the skipped tests and the counts; false when anything
// failed.
func (s *summary) report() bool {
	if len(s.skipped) > 0 {
		fmt.Fprintf(s.out, "\nskipped tests (%d):\n", len(s.skipped))
		for _, sk := range s.skipped {
			fmt.Fprintf(s.out, "  %s %s: %s\n", strings.TrimPrefix(sk.pkg, s.module), sk.test, sk.reason)
		}
	}
	if len(s.buildFailed) > 0 {
		fmt.Fprintf(s.out, "\nbuild failed: %s\n", strings.Join(s.buildFailed, ", "))
	}
	if len(s.failedPkgs) > 0 {
		var short []string
		for _, p := range s.failedPkgs {
			short = append(short, strings.TrimPrefix(p, s.module))
		}
		fmt.Fprintf(s.out, "\nfailed packages: %s\n", strings.Join(short, ", "))
	}
	fmt.Fprintf(s.out, "tests: %d passed, %d failed, %d skipped\n", s.passed, s.failed, len(s.skipped))
	return s.failed == 0 && len(s.failedPkgs) == 0 && len(s.buildFailed) == 0
}
