package watches_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

// Each webhook format is posted to a local receiver when a watch finds a
// change, in the shape its service documents: Slack's incoming-webhook
// message (text and Block Kit blocks), Teams' message with an Adaptive
// Card in attachments, and the generic change event by default. Fake
// runner: no engine, -short.
func TestWebhookFormats(t *testing.T) {
	for _, format := range []string{"", "json", "slack", "teams"} {
		t.Run("format="+format, func(t *testing.T) {
			f := newFixture(t)
			posts := make(chan []byte, 4)
			recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("%s with %s", r.Method, r.Header.Get("Content-Type"))
				}
				b, _ := io.ReadAll(r.Body)
				posts <- b
			}))
			defer recv.Close()
			ws := watches.New(f.st, f.scans, watches.Config{MinInterval: time.Second, WebhookAllow: []string{recv.URL + "/hooks"}}, nil)
			w, err := ws.Create(as("alice"), "lab", lab, time.Second, recv.URL+"/hooks/lab")
			if err != nil {
				t.Fatal(err)
			}
			if err := ws.SetWebhookFormat(as("alice"), w.ID, format); err != nil {
				t.Fatal(err)
			}
			run(t, ws)
			f.runner.finish(f.started(t)) // the baseline: 22 open
			f.runner.mu.Lock()
			f.runner.port = 80
			f.runner.mu.Unlock()
			f.runner.finish(f.started(t))
			var body []byte
			select {
			case body = <-posts:
			case <-time.After(10 * time.Second):
				t.Fatal("no webhook post")
			}
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("not JSON: %s", body)
			}
			switch format {
			case "slack":
				blocks, _ := m["blocks"].([]any)
				text, _ := m["text"].(string)
				section, _ := blocks[1].(map[string]any)["text"].(map[string]any)
				if text == "" || len(blocks) != 3 || blocks[0].(map[string]any)["type"] != "header" || section["type"] != "mrkdwn" ||
					!strings.Contains(section["text"].(string), "22/tcp open -&gt; (not listed)") {
					t.Fatalf("Slack message %s", body)
				}
			case "teams":
				att, _ := m["attachments"].([]any)
				if m["type"] != "message" || len(att) != 1 || att[0].(map[string]any)["contentType"] != "application/vnd.microsoft.card.adaptive" ||
					att[0].(map[string]any)["content"].(map[string]any)["type"] != "AdaptiveCard" {
					t.Fatalf("Teams message %s", body)
				}
			default:
				if m["watch_id"] != w.ID || m["changes"] == nil {
					t.Fatalf("generic event %s", body)
				}
			}
		})
	}
	f := newFixture(t)
	ws := watches.New(f.st, f.scans, watches.Config{MinInterval: time.Second}, nil)
	w, err := ws.Create(as("alice"), "lab", lab, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	var fe *watches.FieldError
	if err := ws.SetWebhookFormat(as("alice"), w.ID, "discord"); !errors.As(err, &fe) || fe.Field != "webhook_format" {
		t.Fatalf("unknown format: %v", err)
	}
	if err := ws.SetWebhookFormat(as("bob"), w.ID, "slack"); err == nil {
		t.Fatal("bob set the format of alice's watch")
	}
}
