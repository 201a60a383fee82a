package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
)

// TestConformanceSuite runs the real MCP conformance suite,
// @modelcontextprotocol/conformance (conformanceVersion, the first release
// with the 2026-07-28 scenarios; 0.1.16, the registry's "latest", has none),
// with Node 22 from the npm registry's `node` package, against
// `serve --http` on loopback without tokens (NMAP_MCP_NETWORK=none: nothing
// the suite calls can scan). Both come from NMAP_MCP_CONFORMANCE, a folder
// where `npm install @modelcontextprotocol/conformance@0.2.0-alpha.12
// node@22.23.3` was run (scripts/test.sh does; default
// ${XDG_CACHE_HOME:-$HOME/.cache}/nmap-mcp-conformance). Without them the
// test skips, except under CI, where it fails; under -short it skips.
//
// The suite runs twice, as its README asks of a server that speaks both
// eras: every server scenario at the 2025-11-25 wire (initialize and
// sessions), then exactly what 2026-07-28 requires at its stateless wire
// (server/discover, per-request _meta, input_required, the tasks
// extension, not scored but run). The first run leaves 22 sessions open
// (the suite does not end them), within http.max_sessions_per_client's
// default 64; the second opens none. Each applicable scenario
// (conformanceApplies) must pass every check but those that need one of the
// suite's fixture tools; a WARNING (a SHOULD) is logged. Of every other
// scenario only the wire-schema-valid check is judged (every message this
// server sent matches the spec's schema), and a scenario the table does not
// know fails the test, so that a new suite version is classified, not
// ignored.
//
// Not applicable: scenarios written against the suite's "everything
// server", whose tools, resources and prompts this server does not have
// (adding them would fake a scanner):
//
//   - tools-call-* (test_simple_text, test_image_content, test_audio_content,
//     test_embedded_resource, test_multiple_content_types,
//     test_tool_with_logging, test_error_handling, test_tool_with_progress,
//     test_sampling, test_elicitation), elicitation-sep1034-defaults and
//     elicitation-sep1330-enums (test_elicitation_*), json-schema-2020-12
//     (json_schema_2020_12_tool), server-sse-polling (test_reconnection);
//   - resources-read-text, resources-read-binary, resources-templates-read
//     (test://static-text, test://static-binary, test://template/{id}/data);
//   - prompts-* and completion-complete: this server has no prompts and no
//     completions;
//   - input-required-result-* but unsupported-methods: each calls a
//     test_input_required_result_* tool (or a prompt). This server's one
//     input_required is the approval of a scan, which the suite cannot
//     drive; approval_mcpgo_test.go (mcpserver) drives it with mcp-go's
//     client. validate-input, missing-input-response and ignore-extra-params
//     pass or warn only because the tool is missing, so they prove nothing;
//   - tasks-lifecycle, tasks-wire-fields, tasks-request-state-removal,
//     tasks-mrtr-input, tasks-mrtr-composition, tasks-required-task-error:
//     every check calls greet, slow_compute, failing_job,
//     protocol_error_job, confirm_delete, multi_input or test_tool_with_task
//     (nmap_scan as an extension task: TestScanAsExtensionTask);
//     tasks-status-notifications is skipped by the suite itself;
//   - http-custom-header-server-validation: no tool here declares an
//     x-mcp-header parameter;
//   - sep-2640-skills-*: the skills extension; this server declares none
//     (every check is skipped).
//
// The suite has no scenario for an MCP server as an OAuth resource server
// (its auth/* scenarios test clients, the authorization-server ones an
// authorization server), so none runs with tokens; the resource server is
// tested by the oauth tests against a real OpenID Provider.
func TestConformanceSuite(t *testing.T) {
	testkit.NeedEngine(t)
	node, entry := conformanceSuite(t)
	cfg := "http:\n  origins: []\n"
	s := startHTTPConfig(t, cfg, "NMAP_MCP_NETWORK=none")
	url := s.url + "/mcp"

	start := time.Now()
	var applicable, passed, checks, warnings, skippedChecks, fixtureChecks, notApplicable int
	for _, run := range conformanceRuns {
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		args := append([]string{entry, "server", "--url", url, "-o", filepath.Join(dir, "results")}, run.args...)
		cmd := exec.CommandContext(ctx, node, args...)
		cmd.Dir = dir
		cmd.WaitDelay = 5 * time.Second
		runStart := time.Now()
		out, err := cmd.CombinedOutput()
		cancel()
		// The exit status is 1 whenever a scenario that does not apply
		// fails; the verdict is ours, from each scenario's checks.json.
		if _, exit := err.(*exec.ExitError); err != nil && !exit {
			t.Fatalf("conformance suite (%s): %v\n%s", run.wire, err, out)
		}
		if i := strings.Index(string(out), "=== SUMMARY ==="); i >= 0 {
			t.Logf("suite %s, %s wire (%.1f s):\n%s", conformanceVersion, run.wire, time.Since(runStart).Seconds(), out[i:])
		} else {
			t.Fatalf("conformance suite (%s) printed no summary: %v\n%s", run.wire, err, out)
		}
		results, err := readConformanceResults(filepath.Join(dir, "results"))
		if err != nil {
			t.Fatalf("conformance results (%s): %v", run.wire, err)
		}
		for _, name := range run.applicable {
			if _, ok := results[name]; !ok {
				t.Errorf("%s wire: scenario %s did not run", run.wire, name)
			}
		}
		names := make([]string, 0, len(results))
		for name := range results {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			fixture, applies := conformanceApplies[name]
			if applies && !slices.Contains(run.applicable, name) {
				applies = false
			}
			if !applies {
				if _, known := conformanceNotApplicable[name]; !known && !slices.Contains(otherWireApplicable(run.wire), name) {
					t.Errorf("%s wire: scenario %s is not classified: add it to conformanceApplies or conformanceNotApplicable", run.wire, name)
				}
				notApplicable++
				for _, c := range results[name] {
					if c.ID == "wire-schema-valid" && c.Status != "SUCCESS" {
						t.Errorf("%s wire, %s: the server sent a message the spec's schema refuses: %s %s", run.wire, name, c.ErrorMessage, c.Details)
					}
				}
				continue
			}
			applicable++
			ok := true
			for _, c := range results[name] {
				checks++
				switch c.Status {
				case "SUCCESS", "INFO":
				case "SKIPPED":
					skippedChecks++
				case "WARNING":
					warnings++
					t.Logf("%s wire, %s: WARNING %s: %s", run.wire, name, c.ID, c.ErrorMessage)
				default:
					if reason, ok := fixture[c.ID]; ok {
						fixtureChecks++
						t.Logf("%s wire, %s: %s not applicable (%s)", run.wire, name, c.ID, reason)
						continue
					}
					ok = false
					t.Errorf("%s wire, %s: %s %s: %s %s", run.wire, name, c.Status, c.ID, c.ErrorMessage, c.Details)
				}
			}
			if ok {
				passed++
			}
		}
	}
	t.Logf("conformance %s: %d applicable scenario runs, %d passed (%d checks: %d warnings, %d skipped by the suite, %d needing a fixture tool); %d scenario runs not applicable; %.1f s",
		conformanceVersion, applicable, passed, checks, warnings, skippedChecks, fixtureChecks, notApplicable, time.Since(start).Seconds())
}

// conformanceVersion is the suite the tables below were written against.
const conformanceVersion = "0.2.0-alpha.12"

// conformanceRuns are the suite's invocations and, for each, the
// scenarios of conformanceApplies it must run.
var conformanceRuns = []struct {
	wire       string
	args       []string
	applicable []string
}{
	{"2025-11-25", []string{"--suite", "all", "--spec-version", "2025-11-25"}, []string{
		"server-initialize", "server-session-lifecycle", "logging-set-level", "ping", "tools-list",
		"server-sse-multiple-streams", "resources-list", "resources-subscribe", "resources-unsubscribe",
		"dns-rebinding-protection"}},
	{"2026-07-28", []string{"--requirements", "2026-07-28"}, []string{
		"server-stateless", "tools-list", "server-sse-multiple-streams", "resources-list",
		"sep-2164-resource-not-found", "dns-rebinding-protection", "caching", "http-header-validation",
		"input-required-result-unsupported-methods",
		"tasks-capability-negotiation", "tasks-dispatch-and-envelope", "tasks-request-headers"}},
}

// otherWireApplicable lists scenarios applicable on the other runs, so
// that a scenario applicable on one wire is known on the other.
func otherWireApplicable(wire string) []string {
	var out []string
	for _, r := range conformanceRuns {
		if r.wire != wire {
			out = append(out, r.applicable...)
		}
	}
	return out
}

// conformanceApplies maps each applicable scenario to the checks of it
// that need one of the suite's fixture tools or prompts (check id:
// reason); every other check must pass.
var conformanceApplies = map[string]map[string]string{
	"server-initialize":                         nil,
	"server-session-lifecycle":                  nil,
	"logging-set-level":                         nil,
	"ping":                                      nil,
	"tools-list":                                nil,
	"server-sse-multiple-streams":               nil,
	"resources-list":                            nil,
	"resources-subscribe":                       nil,
	"resources-unsubscribe":                     nil,
	"dns-rebinding-protection":                  nil,
	"sep-2164-resource-not-found":               nil,
	"http-header-validation":                    nil,
	"input-required-result-unsupported-methods": nil,
	"server-stateless": {
		"sep-2575-server-rejects-undeclared-capability":          "needs the test_missing_capability tool",
		"sep-2575-missing-capability-http-400":                   "needs the test_missing_capability tool",
		"sep-2575-http-server-no-independent-requests-on-stream": "needs the test_streaming_elicitation tool",
		"sep-2575-server-no-log-without-loglevel":                "needs the test_logging_tool tool",
	},
	"caching": {
		"sep-2549-prompts-list-caching-hints": "this server has no prompts",
	},
	"tasks-capability-negotiation": {
		"sep-2663-server-rejects-undeclared-client": "needs the slow_compute tool",
		"tasks-per-request-meta-opt-in":             "needs the slow_compute tool",
	},
	"tasks-dispatch-and-envelope": {
		"tasks-server-directed-creation-no-hint":           "needs the failing_job tool",
		"sep-2663-legacy-task-param-ignored":               "needs the greet tool",
		"tasks-immediate-result-shortcut":                  "needs the slow_compute tool",
		"tasks-result-type-complete-on-non-task-responses": "needs the greet tool",
		"sep-2663-durable-create-strong-consistency":       "needs the slow_compute tool",
	},
	"tasks-request-headers": {
		"tasks-headers-tolerate-mcp-method-on-tools-call":          "needs the greet tool",
		"sep-2663-routing-headers-accepted-on-tasks-get":           "needs the slow_compute tool",
		"sep-2663-server-rejects-mismatched-mcp-name-on-tasks-get": "needs the task slow_compute makes",
	},
}

// conformanceNotApplicable are the scenarios that need the suite's
// fixtures (see TestConformanceSuite's comment).
var conformanceNotApplicable = map[string]bool{
	"completion-complete": true, "json-schema-2020-12": true, "server-sse-polling": true,
	"elicitation-sep1034-defaults": true, "elicitation-sep1330-enums": true,
	"tools-call-simple-text": true, "tools-call-image": true, "tools-call-audio": true,
	"tools-call-embedded-resource": true, "tools-call-mixed-content": true, "tools-call-with-logging": true,
	"tools-call-error": true, "tools-call-with-progress": true, "tools-call-sampling": true,
	"tools-call-elicitation": true,
	"resources-read-text":    true, "resources-read-binary": true, "resources-templates-read": true,
	"prompts-list": true, "prompts-get-simple": true, "prompts-get-with-args": true,
	"prompts-get-embedded-resource": true, "prompts-get-with-image": true,
	"input-required-result-basic-elicitation": true, "input-required-result-basic-sampling": true,
	"input-required-result-basic-list-roots": true, "input-required-result-request-state": true,
	"input-required-result-multiple-input-requests": true, "input-required-result-multi-round": true,
	"input-required-result-missing-input-response": true, "input-required-result-non-tool-request": true,
	"input-required-result-result-type": true, "input-required-result-tampered-state": true,
	"input-required-result-capability-check": true, "input-required-result-ignore-extra-params": true,
	"input-required-result-validate-input": true,
	"tasks-lifecycle":                      true, "tasks-wire-fields": true, "tasks-request-state-removal": true,
	"tasks-mrtr-input": true, "tasks-mrtr-composition": true, "tasks-required-task-error": true,
	"tasks-status-notifications":           true,
	"http-custom-header-server-validation": true,
	"sep-2640-skills-directory":            true, "sep-2640-skills-enumeration": true, "sep-2640-skills-manifest": true,
}

// conformanceCheck is one entry of a scenario's checks.json.
type conformanceCheck struct {
	ID           string          `json:"id"`
	Status       string          `json:"status"`
	ErrorMessage string          `json:"errorMessage"`
	Details      json.RawMessage `json:"details"`
}

// resultDir is the suite's server-<scenario>-<ISO time> folder name.
var resultDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)

// readConformanceResults reads every scenario's checks from the suite's
// output folder.
func readConformanceResults(dir string) (map[string][]conformanceCheck, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read the suite's results: %w", err)
	}
	out := map[string][]conformanceCheck{}
	for _, e := range entries {
		m := resultDir.FindStringSubmatch(e.Name())
		if !e.IsDir() || m == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "checks.json"))
		if err != nil {
			return nil, fmt.Errorf("scenario %s: %w", m[1], err)
		}
		var checks []conformanceCheck
		if err := json.Unmarshal(b, &checks); err != nil {
			return nil, fmt.Errorf("scenario %s: checks.json: %w", m[1], err)
		}
		if _, dup := out[m[1]]; dup {
			return nil, fmt.Errorf("scenario %s ran twice in one invocation", m[1])
		}
		out[m[1]] = checks
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenario results in %s", dir)
	}
	return out, nil
}

// conformanceSuite returns the Node 22 binary and the suite's entry point
// from NMAP_MCP_CONFORMANCE (or its default folder); without them it
// skips, or fails under CI.
func conformanceSuite(t *testing.T) (node, entry string) {
	t.Helper()
	dir := os.Getenv("NMAP_MCP_CONFORMANCE")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "nmap-mcp-conformance")
	}
	node = filepath.Join(dir, "node_modules", "node", "bin", "node")
	pkg := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "conformance")
	entry = filepath.Join(pkg, "dist", "index.js")
	missing := func(what string) {
		t.Helper()
		msg := fmt.Sprintf("needs %s in %s: npm install --prefix %s @modelcontextprotocol/conformance@%s node@22.23.3 "+
			"(scripts/test.sh does, and sets NMAP_MCP_CONFORMANCE)", what, dir, dir, conformanceVersion)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; it is required under CI")
		}
		t.Skip(msg)
	}
	if _, err := os.Stat(entry); err != nil {
		missing("the MCP conformance suite")
	}
	if _, err := os.Stat(node); err != nil {
		missing("Node 22 (the npm package node@22)")
	}
	var meta struct{ Version string }
	if b, err := os.ReadFile(filepath.Join(pkg, "package.json")); err != nil || json.Unmarshal(b, &meta) != nil || meta.Version != conformanceVersion {
		t.Fatalf("%s holds @modelcontextprotocol/conformance %q, this test is written for %s (reinstall it, or classify the new version's scenarios)",
			dir, meta.Version, conformanceVersion)
	}
	v, err := exec.Command(node, "--version").Output()
	if err != nil || !strings.HasPrefix(string(v), "v22.") {
		t.Fatalf("%s --version: %q %v; the suite needs Node 22", node, v, err)
	}
	return node, entry
}
