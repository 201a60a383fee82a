package web

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A paused watch says so on the watches page, and why (issue 20, item 4).
func TestWatchesPageSaysPaused(t *testing.T) {
	h, err := New(Config{Watches: fakeWatches{{ID: "0123456789abcdef", Name: "lab", Client: "alice", Request: []byte(`{"targets":"10.0.0.1"}`),
		Interval: time.Hour, Paused: `its client "alice" no longer exists <b>`, PausedAt: time.Now()}},
		Authenticate: func(tok string) (string, bool, bool) { return "alice", false, tok == "good-token" }}, &fakeScans{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := signIn(t, srv, "good-token", srv.URL).Cookies()[0]
	_, body := get(t, srv, "/watches", c)
	for _, want := range []string{`class="paused"`, "<strong>paused</strong>", "no longer exists &lt;b&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("watches page lacks %q:\n%s", want, body)
		}
	}
}
