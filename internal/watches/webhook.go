package watches

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Webhook headers: the signature is "sha256=" and the hex HMAC-SHA256 of
// the body under watches.webhook_secret.
const (
	SignatureHeader = "X-Nmap-Mcp-Signature"
	EventHeader     = "X-Nmap-Mcp-Event"
)

// Sign is the signature header's value for body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// deliverer posts change events in the background, with retries.
type deliverer struct {
	secret string
	log    *slog.Logger
	client *http.Client
	// backoff is the wait before each retry.
	backoff []time.Duration
	wg      sync.WaitGroup
	// failed counts deliveries given up; outcome, when set, is told of
	// each delivery's end ("delivered" or "failed").
	mu      sync.Mutex
	failed  int
	outcome func(string)
}

func newDeliverer(secret string, log *slog.Logger) *deliverer {
	return &deliverer{secret: secret, log: log, client: &http.Client{Timeout: 10 * time.Second,
		// A redirect could take the results outside the allowlist.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		backoff: []time.Duration{time.Second, 4 * time.Second, 16 * time.Second}}
}

// send delivers c to url in the background: up to four attempts; a 2xx
// answer ends them. Failures are logged and counted.
func (d *deliverer) send(url string, c *Change) {
	body, _ := json.Marshal(c)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		var last error
		for attempt := 0; attempt <= len(d.backoff); attempt++ {
			if attempt > 0 {
				time.Sleep(d.backoff[attempt-1])
			}
			if last = d.post(url, body); last == nil {
				d.report("delivered")
				return
			}
		}
		d.mu.Lock()
		d.failed++
		d.mu.Unlock()
		d.report("failed")
		d.log.Warn("watch webhook failed; giving up", "watch", c.Watch, "url", url, "err", last)
	}()
}

func (d *deliverer) post(url string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(EventHeader, "watch.changed")
	req.Header.Set(SignatureHeader, Sign(d.secret, body))
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

func (d *deliverer) wait() { d.wg.Wait() }

func (d *deliverer) report(outcome string) {
	if d.outcome != nil {
		d.outcome(outcome)
	}
}

// FailedDeliveries counts the webhook deliveries given up.
func (s *Service) FailedDeliveries() int {
	s.hook.mu.Lock()
	defer s.hook.mu.Unlock()
	return s.hook.failed
}
