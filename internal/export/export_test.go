package export

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// No engine: exports are pure functions, read back here by the readers
// the importing tools use (encoding/csv, encoding/json) and checked
// against the documented message shapes.

func sample() *results.Result {
	r := &results.Result{Hosts: []results.Host{
		{Addresses: []string{"127.0.0.1"}, Hostnames: []string{"localhost"}, State: "up", Ports: []results.Port{
			{Protocol: "tcp", Port: 22, State: "open", Service: "ssh", Product: "OpenSSH", Version: "9.2p1", CPE: []string{"cpe:/a:openbsd:openssh:9.2p1"}},
			{Protocol: "tcp", Port: 80, State: "open", Service: "http", Product: "=HYPERLINK(\"http://x\")", Version: "1,2 \"quoted\"\nline"},
		}},
		{Addresses: []string{"127.0.0.2"}, State: "up"},
	}}
	r.Normalize()
	return r
}

func readCSV(t *testing.T, b []byte) [][]string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("read back CSV: %v\n%s", err, b)
	}
	return rows
}

func TestScanCSVReadBack(t *testing.T) {
	var b bytes.Buffer
	if err := ScanCSV(&b, "s1", sample()); err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, b.Bytes())
	if len(rows) != 4 || strings.Join(rows[0], ",") != strings.Join(ScanHeader, ",") {
		t.Fatalf("rows %q", rows)
	}
	if rows[1][6] != "22" || rows[1][13] != "cpe:/a:openbsd:openssh:9.2p1" || rows[1][1] != "127.0.0.1" {
		t.Fatalf("row 1 %q", rows[1])
	}
	// A value a spreadsheet would run is made inert; quotes, commas and
	// newlines survive the round trip.
	if rows[2][10] != "'=HYPERLINK(\"http://x\")" || rows[2][11] != "1,2 \"quoted\"\nline" {
		t.Fatalf("row 2 %q", rows[2])
	}
	if rows[3][1] != "127.0.0.2" || rows[3][6] != "" {
		t.Fatalf("host without ports %q", rows[3])
	}
	var j bytes.Buffer
	if err := ScanJSON(&j, "s1", sample()); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Scan   string         `json:"scan_id"`
		Result results.Result `json:"result"`
	}
	if err := json.Unmarshal(j.Bytes(), &back); err != nil || back.Scan != "s1" || back.Result.Hosts[0].Ports[0].CPE[0] != "cpe:/a:openbsd:openssh:9.2p1" {
		t.Fatalf("JSON read back: %v %+v", err, back)
	}
}

func TestDiffExports(t *testing.T) {
	d := results.Diff{HostsAppeared: []string{"127.0.0.3"}, HostsDisappeared: []string{},
		PortChanges:    []results.PortChange{{Host: "127.0.0.1", Protocol: "tcp", Port: 80, From: "open", To: "closed"}},
		ServiceChanges: []results.ServiceDiff{{Host: "127.0.0.1", Protocol: "tcp", Port: 22, Field: "version", From: "9.2p1", To: "9.6p1"}}}
	var b bytes.Buffer
	if err := DiffCSV(&b, "a", "b", d); err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, b.Bytes())
	if len(rows) != 4 || rows[1][2] != "host_appeared" || rows[2][7] != "open" || rows[3][6] != "version" || rows[3][8] != "9.6p1" {
		t.Fatalf("diff rows %q", rows)
	}
	var j bytes.Buffer
	if err := DiffJSON(&j, "a", "b", d); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Changes results.Diff `json:"changes"`
	}
	if err := json.Unmarshal(j.Bytes(), &back); err != nil || back.Changes.ServiceChanges[0].To != "9.6p1" {
		t.Fatalf("diff JSON %v %s", err, j.Bytes())
	}
}

func TestInventoryCSV(t *testing.T) {
	f := &inventory.Found{Hosts: []inventory.HostFacts{{Client: "alice", Address: "10.0.0.1", Hostnames: []string{"a", "b"}, LastScan: "s9",
		Ports: []inventory.PortFacts{{Protocol: "tcp", Port: 3389, State: "open", Service: "ms-wbt-server", LastScan: "s9", LastSeen: "2026-12-01T10:00:00Z", CPE: []string{}}}},
		{Client: "alice", Address: "10.0.0.2", Ports: []inventory.PortFacts{}, PortsOmitted: 7}}}
	var b bytes.Buffer
	if err := InventoryCSV(&b, f); err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, b.Bytes())
	if len(rows) != 3 || len(rows[1]) != len(InventoryHeader) || len(rows[2]) != len(InventoryHeader) || rows[1][9] != "3389" || rows[1][19] != "s9" || rows[1][2] != "a b" {
		t.Fatalf("inventory rows %q", rows)
	}
	// The ports an answer left out of a host are said, not lost silently.
	if last := len(InventoryHeader) - 1; InventoryHeader[last] != "host_ports_omitted" || rows[1][last] != "0" || rows[2][last] != "7" {
		t.Fatalf("host_ports_omitted: %q", rows)
	}
	c := &inventory.Changes{Changes: []inventory.Change{{At: "2026-12-01T10:00:00Z", Scan: "s9", Client: "alice", Address: "10.0.0.1", Kind: "host_appeared", To: "-1 open"}}}
	b.Reset()
	if err := ChangesCSV(&b, c); err != nil {
		t.Fatal(err)
	}
	if rows := readCSV(t, b.Bytes()); len(rows) != 2 || rows[1][5] != "" || rows[1][8] != "'-1 open" {
		t.Fatalf("changes rows %q", rows)
	}
}

func notice(n int) Notice {
	d := results.Diff{HostsAppeared: []string{"127.0.0.9"}}
	for i := range n {
		d.PortChanges = append(d.PortChanges, results.PortChange{Host: "127.0.0.1", Protocol: "tcp", Port: 1000 + i, From: "closed", To: "open"})
	}
	d.ServiceChanges = []results.ServiceDiff{{Host: "127.0.0.1", Protocol: "tcp", Port: 22, Field: "product", From: "", To: "<!channel> *bold* & `x`"}}
	return Notice{Watch: "lab", Scan: "s2", Baseline: "s1", Targets: "127.0.0.1", At: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC), Diff: d}
}

// CheckSlack checks body against what Slack documents for incoming
// webhooks and Block Kit: a "text" string and/or a "blocks" array of at
// most 50 blocks; header text plain_text of at most 150 characters;
// section text mrkdwn or plain_text of at most 3,000; context elements.
func CheckSlack(body []byte) error {
	var m struct {
		Text   *string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
			Elements []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"elements"`
		} `json:"blocks"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return err
	}
	if m.Text == nil && m.Blocks == nil {
		return fmt.Errorf("neither text nor blocks")
	}
	if len(m.Blocks) > 50 {
		return fmt.Errorf("%d blocks, more than 50", len(m.Blocks))
	}
	for i, b := range m.Blocks {
		switch b.Type {
		case "header":
			if b.Text == nil || b.Text.Type != "plain_text" || len([]rune(b.Text.Text)) > 150 {
				return fmt.Errorf("block %d: header needs plain_text of at most 150 characters", i)
			}
		case "section":
			if b.Text == nil || (b.Text.Type != "mrkdwn" && b.Text.Type != "plain_text") || len([]rune(b.Text.Text)) > 3000 || b.Text.Text == "" {
				return fmt.Errorf("block %d: section text must be mrkdwn or plain_text, 1 to 3000 characters (%d)", i, len(b.Text.Text))
			}
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > 10 {
				return fmt.Errorf("block %d: context needs 1 to 10 elements", i)
			}
		default:
			return fmt.Errorf("block %d: unexpected type %q", i, b.Type)
		}
	}
	if strings.Contains(string(body), "<!channel>") {
		return fmt.Errorf("remote text not escaped: %s", body)
	}
	return nil
}

// CheckTeams checks body against the message a Teams incoming webhook
// or Workflow reads: type "message", attachments with contentType
// application/vnd.microsoft.card.adaptive and an AdaptiveCard content
// (type, version, body of elements with a type).
func CheckTeams(body []byte) error {
	var m struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string          `json:"contentType"`
			ContentURL  json.RawMessage `json:"contentUrl"`
			Content     struct {
				Schema  string `json:"$schema"`
				Type    string `json:"type"`
				Version string `json:"version"`
				Body    []struct {
					Type  string `json:"type"`
					Text  string `json:"text"`
					Facts []struct {
						Title string `json:"title"`
						Value string `json:"value"`
					} `json:"facts"`
				} `json:"body"`
			} `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return err
	}
	if m.Type != "message" || len(m.Attachments) != 1 {
		return fmt.Errorf("want type message and one attachment: %s", body)
	}
	a := m.Attachments[0]
	if a.ContentType != "application/vnd.microsoft.card.adaptive" || a.Content.Type != "AdaptiveCard" || a.Content.Version == "" || len(a.Content.Body) == 0 {
		return fmt.Errorf("attachment is not an Adaptive Card: %+v", a)
	}
	for i, e := range a.Content.Body {
		switch e.Type {
		case "TextBlock":
			if e.Text == "" {
				return fmt.Errorf("body %d: TextBlock without text", i)
			}
		case "FactSet":
			if len(e.Facts) == 0 {
				return fmt.Errorf("body %d: FactSet without facts", i)
			}
		default:
			return fmt.Errorf("body %d: unexpected element %q", i, e.Type)
		}
	}
	return nil
}

func TestSlackShape(t *testing.T) {
	for _, n := range []int{0, 3, 400} {
		b, err := Slack(notice(n))
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckSlack(b); err != nil {
			t.Errorf("%d changes: %v", n, err)
		}
	}
	b, _ := Slack(notice(400))
	if !strings.Contains(string(b), "more changes") {
		t.Errorf("a long change list does not say what was left out")
	}
}

func TestTeamsShape(t *testing.T) {
	for _, n := range []int{0, 3, 400} {
		b, err := Teams(notice(n))
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckTeams(b); err != nil {
			t.Errorf("%d changes: %v", n, err)
		}
		if len(b) > 28<<10 {
			t.Errorf("%d changes: %d bytes, over Teams' 28 KB message limit", n, len(b))
		}
	}
}

func TestCheckFormat(t *testing.T) {
	if f, err := CheckFormat(""); err != nil || f != FormatJSON {
		t.Fatal(f, err)
	}
	if _, err := CheckFormat("discord"); err == nil || !strings.Contains(err.Error(), "webhook_format") {
		t.Fatal(err)
	}
}
