package export

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// Webhook formats a watch can post in.
const (
	FormatJSON  = "json"  // the generic change event (the default)
	FormatSlack = "slack" // a Slack incoming-webhook message
	FormatTeams = "teams" // a Microsoft Teams message with an Adaptive Card
)

// Formats lists the webhook formats, for validation and schemas.
var Formats = []string{FormatJSON, FormatSlack, FormatTeams}

// CheckFormat accepts a webhook format ("" is FormatJSON) and returns it.
func CheckFormat(f string) (string, error) {
	if f == "" {
		return FormatJSON, nil
	}
	if !slices.Contains(Formats, f) {
		return "", fmt.Errorf("invalid webhook_format %q: must be one of %s", f, strings.Join(Formats, ", "))
	}
	return f, nil
}

// Notice is a watch's change, to be told to people.
type Notice struct {
	Watch    string
	Scan     string
	Baseline string
	Targets  string
	At       time.Time
	Diff     results.Diff
}

// Lines says what changed, one line per change, at most max lines (the
// last says how many more).
func (n Notice) Lines(max int) []string {
	var out []string
	for _, h := range n.Diff.HostsAppeared {
		out = append(out, "+ host "+h+" appeared")
	}
	for _, h := range n.Diff.HostsDisappeared {
		out = append(out, "- host "+h+" disappeared")
	}
	for _, p := range n.Diff.PortChanges {
		out = append(out, fmt.Sprintf("~ %s %d/%s %s -> %s", p.Host, p.Port, p.Protocol, orNone(p.From), orNone(p.To)))
	}
	for _, s := range n.Diff.ServiceChanges {
		out = append(out, fmt.Sprintf("~ %s %d/%s %s %q -> %q", s.Host, s.Port, s.Protocol, s.Field, s.From, s.To))
	}
	if max > 0 && len(out) > max {
		more := len(out) - (max - 1)
		out = append(out[:max-1], fmt.Sprintf("… and %d more changes", more))
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(not listed)"
	}
	return s
}

// count is the number of changes.
func (n Notice) count() int {
	return len(n.Diff.HostsAppeared) + len(n.Diff.HostsDisappeared) + len(n.Diff.PortChanges) + len(n.Diff.ServiceChanges)
}

// Title is the notice's one-line summary.
func (n Notice) Title() string {
	count := n.count()
	plural := "s"
	if count == 1 {
		plural = ""
	}
	return fmt.Sprintf("nmap-mcp watch %q: %d change%s on %s", n.Watch, count, plural, n.Targets)
}

// slackEscape escapes what Slack's mrkdwn reads as markup (&, <, >):
// remote data must not mention @channel or make links.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Slack limits (Block Kit): a header's plain text at most 150
// characters, a section's text at most 3,000, at most 50 blocks.
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
)

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8Start(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// Slack is the notice as a Slack incoming-webhook message: "text" (the
// notification's fallback) and "blocks" (a header, the changes in
// preformatted sections, a context line naming the scans).
func Slack(n Notice) ([]byte, error) {
	type text struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	type block struct {
		Type     string `json:"type"`
		Text     *text  `json:"text,omitempty"`
		Elements []text `json:"elements,omitempty"`
	}
	blocks := []block{{Type: "header", Text: &text{"plain_text", cut(n.Title(), slackHeaderMax)}}}
	// Changes in code blocks, each section within Slack's limit.
	var chunk []string
	size := 0
	flush := func() {
		if len(chunk) > 0 {
			blocks = append(blocks, block{Type: "section", Text: &text{"mrkdwn", "```" + strings.Join(chunk, "\n") + "```"}})
			chunk, size = nil, 0
		}
	}
	for _, l := range n.Lines(200) {
		l = cut(slackEscape(strings.ReplaceAll(l, "`", "'")), 500)
		if size+len(l)+8 > slackSectionMax {
			flush()
			if len(blocks) >= 48 {
				break
			}
		}
		chunk = append(chunk, l)
		size += len(l) + 1
	}
	flush()
	blocks = append(blocks, block{Type: "context", Elements: []text{{"mrkdwn", slackEscape(fmt.Sprintf("scan %s, compared with %s, at %s",
		n.Scan, n.Baseline, n.At.UTC().Format(time.RFC3339)))}}})
	return json.Marshal(struct {
		Text   string  `json:"text"`
		Blocks []block `json:"blocks"`
	}{slackEscape(n.Title()), blocks})
}

// teamsChangesMax bounds the JSON bytes of a Teams message's change
// lines (Teams refuses a message over 28 KB).
const teamsChangesMax = 20 << 10

// Teams is the notice as a Microsoft Teams message: the envelope that
// Teams incoming webhooks and Workflows ("when a Teams webhook request
// is received") read, {"type": "message", "attachments": [{"contentType":
// "application/vnd.microsoft.card.adaptive", "content": AdaptiveCard}]},
// with an Adaptive Card 1.4: a title, a fact set (watch, targets, scans,
// time) and the changes.
func Teams(n Notice) ([]byte, error) {
	type fact struct {
		Title string `json:"title"`
		Value string `json:"value"`
	}
	type element struct {
		Type     string `json:"type"`
		Text     string `json:"text,omitempty"`
		Weight   string `json:"weight,omitempty"`
		Size     string `json:"size,omitempty"`
		Wrap     bool   `json:"wrap,omitempty"`
		FontType string `json:"fontType,omitempty"`
		Facts    []fact `json:"facts,omitempty"`
	}
	type card struct {
		Schema  string    `json:"$schema"`
		Type    string    `json:"type"`
		Version string    `json:"version"`
		Body    []element `json:"body"`
	}
	type attachment struct {
		ContentType string  `json:"contentType"`
		ContentURL  *string `json:"contentUrl"`
		Content     card    `json:"content"`
	}
	// Card text is markdown: remote values are kept literal.
	md := strings.NewReplacer("\\", "\\\\", "*", "\\*", "_", "\\_", "[", "\\[", "]", "\\]", "`", "\\`", "<", "&lt;", ">", "&gt;")
	body := []element{
		{Type: "TextBlock", Text: md.Replace(n.Title()), Weight: "Bolder", Size: "Medium", Wrap: true},
		{Type: "FactSet", Facts: []fact{{"Watch", md.Replace(n.Watch)}, {"Targets", md.Replace(n.Targets)}, {"Scan", n.Scan},
			{"Compared with", n.Baseline}, {"At", n.At.UTC().Format(time.RFC3339)}}},
	}
	// The changes within teamsChangesMax bytes of JSON: escaping (and
	// JSON's \u003c for each < of "&lt;") can make a line of banners
	// ten times longer, and Teams refuses a message over 28 KB whole.
	var lines []string
	size, total := 0, n.count()
	for _, l := range n.Lines(100) {
		l = md.Replace(cut(l, 500))
		j, _ := json.Marshal(l)
		if size+len(j)+4 > teamsChangesMax {
			lines = append(lines, fmt.Sprintf("… and %d more changes", total-len(lines)))
			break
		}
		lines = append(lines, l)
		size += len(j) + 4
	}
	body = append(body, element{Type: "TextBlock", Text: strings.Join(lines, "\n\n"), Wrap: true, FontType: "Monospace"})
	return json.Marshal(struct {
		Type        string       `json:"type"`
		Attachments []attachment `json:"attachments"`
	}{"message", []attachment{{ContentType: "application/vnd.microsoft.card.adaptive", Content: card{
		Schema: "http://adaptivecards.io/schemas/adaptive-card.json", Type: "AdaptiveCard", Version: "1.4", Body: body}}}})
}
