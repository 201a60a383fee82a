package web_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// session is one Chromium tab driven by a browser test: started with the
// tests' flags (no sandbox inside the test's container, nothing fetched in
// the background), ended with the test.
type session struct {
	t   *testing.T
	ctx context.Context
}

// newSession starts Chromium at path browser for at most d.
func newSession(t *testing.T, browser string, d time.Duration) *session {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	bctx, cancelTime := context.WithTimeout(bctx, d)
	t.Cleanup(func() { cancelTime(); cancelBrowser(); cancelAlloc() })
	return &session{t: t, ctx: bctx}
}

// do runs steps, failing the test with what on an error.
func (s *session) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	if err := chromedp.Do(s.ctx, steps...); err != nil {
		s.t.Fatalf("%s: %v", what, err)
	}
}

// text is the text of the element sel selects.
func (s *session) text(sel string) string {
	s.t.Helper()
	v, err := chromedp.Run(s.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		s.t.Fatalf("read %s: %v", sel, err)
	}
	return v
}

// eval is the string value of a JavaScript expression on the page.
func (s *session) eval(expr string, opts ...chromedp.EvaluateOption) string {
	s.t.Helper()
	v, err := chromedp.Run(s.ctx, chromedp.Evaluate[string](expr, opts...))
	if err != nil {
		s.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}
