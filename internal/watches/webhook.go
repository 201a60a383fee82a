package watches

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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

// send delivers body (c in the watch's webhook format) to url in the
// background: up to four attempts; a 2xx
// answer ends them. Before each attempt alive must still say yes (the
// watch exists, is not paused, its client and webhook are allowed);
// otherwise the delivery is dropped. Failures are logged and counted.
func (d *deliverer) send(url string, body []byte, c *Change, alive func() bool) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		var last error
		for attempt := 0; attempt <= len(d.backoff); attempt++ {
			if attempt > 0 {
				time.Sleep(d.backoff[attempt-1])
			}
			if alive != nil && !alive() {
				d.log.Info("watch webhook dropped: the watch was deleted or paused", "watch", c.Watch, "watch_id", c.WatchID)
				return
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

// CheckWebhook accepts an http(s) URL that is one of the allowed URLs or
// under one, and returns it re-serialised: that form is stored and sent.
// The URL and each allowed entry are parsed, not compared as text:
//
//   - refused outright: credentials, a fragment, backslashes (also
//     %5c), spaces and control characters, dot-segments ("." and "..",
//     also percent-encoded, in any case, even encoded twice) and encoded
//     slashes (%2f) in the path, malformed percent-encoding;
//   - scheme, host (case-insensitive) and port (the scheme's default when
//     none is given) must equal an entry's exactly;
//   - the path must start with the entry's path by whole segments:
//     https://hooks.lab/nmap allows https://hooks.lab/nmap and
//     https://hooks.lab/nmap/lab, not https://hooks.lab/nmapx;
//   - an entry with a query allows only that exact query.
//
// A refusal is a *FieldError naming the webhook and the rule.
func CheckWebhook(raw string, allow []string) (string, error) {
	u, rule := parseWebhook(raw)
	if rule != "" {
		return "", &FieldError{"webhook", raw, rule}
	}
	for _, entry := range allow {
		p, rule := parseWebhook(entry)
		if rule != "" {
			continue // a malformed entry allows nothing
		}
		if under(u, p) {
			return u.URL.String(), nil
		}
	}
	allowed := "none are allowed"
	if len(allow) > 0 {
		allowed = "allowed: " + strings.Join(allow, ", ")
	}
	return "", &FieldError{"webhook", raw, "is not one of, or under, the URLs in watches.webhook_allow (" + allowed + "), so results cannot be sent there"}
}

// webhookURL is a parsed, checked webhook URL or allowlist entry.
type webhookURL struct {
	URL      url.URL // re-serialisable form
	host     string  // lower case, without port
	port     string  // explicit or the scheme's default
	segments []string
}

// parseWebhook parses and checks raw; rule says why it is refused.
func parseWebhook(raw string) (*webhookURL, string) {
	for _, r := range raw {
		if r <= ' ' || r == 0x7f || r == '\\' {
			return nil, "must not contain backslashes, spaces or control characters"
		}
	}
	lower := strings.ToLower(raw)
	if strings.Contains(lower, "%5c") {
		return nil, "must not contain backslashes, even percent-encoded (%5c)"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		return nil, "must be an http or https URL"
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" || u.Host == "" {
		return nil, "must be an http or https URL with a host"
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return nil, "must not carry credentials"
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, "must not have a fragment (#)"
	}
	host := strings.ToLower(u.Hostname())
	if host == "" || strings.ContainsAny(host, "%") {
		return nil, "must name a host"
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[scheme]
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, "must have a port from 1 to 65535"
	}
	w := &webhookURL{host: host, port: port}
	// The path as sent, split into segments; each is checked decoded,
	// repeatedly, so that no receiver's decoding can make a dot-segment
	// or a separator of it.
	escaped := u.EscapedPath()
	for _, seg := range strings.Split(strings.TrimPrefix(escaped, "/"), "/") {
		dec := seg
		for range 4 {
			next, err := url.PathUnescape(dec)
			if err != nil {
				return nil, "has malformed percent-encoding in its path"
			}
			if next == "." || next == ".." || dec == "." || dec == ".." {
				return nil, "must not contain dot-segments (. or ..) in its path, even percent-encoded"
			}
			if strings.ContainsAny(next, "/\\") {
				return nil, "must not contain encoded slashes or backslashes in its path"
			}
			if next == dec {
				break
			}
			dec = next
		}
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(segs) > 0 && segs[len(segs)-1] == "" {
		segs = segs[:len(segs)-1] // a trailing slash
	}
	w.segments = segs
	query := ""
	if u.RawQuery != "" || u.ForceQuery {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return nil, "has a malformed query"
		}
		query = q.Encode()
	}
	hostport := host
	if u.Port() != "" {
		hostport = joinHostPort(host, u.Port())
	} else if strings.Contains(host, ":") {
		hostport = "[" + host + "]"
	}
	w.URL = url.URL{Scheme: scheme, Host: hostport, Path: path, RawQuery: query}
	return w, ""
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// under reports whether u is entry p or under it.
func under(u, p *webhookURL) bool {
	if u.URL.Scheme != p.URL.Scheme || u.host != p.host || u.port != p.port {
		return false
	}
	if p.URL.RawQuery != "" && u.URL.RawQuery != p.URL.RawQuery {
		return false
	}
	if len(u.segments) < len(p.segments) {
		return false
	}
	for i, s := range p.segments {
		if u.segments[i] != s {
			return false
		}
	}
	return true
}
