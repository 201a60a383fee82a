package watches_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/auth"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// These tests drive the watches' lifecycle (identity, names, revocation,
// webhooks) against a fake runner: no Docker engine is needed and they run
// under -short. The real engine is used in watches_e2e_test.go.

// fakeRunner plays a container: it reports the scan as started, writes a
// result with one open port, and ends when the test releases it or when
// its context is cancelled (the container "killed").
type fakeRunner struct {
	mu      sync.Mutex
	release map[string]chan struct{}
	started chan string
	count   int
	port    int // the open port each scan reports (default 22)
}

func newFakeRunner() *fakeRunner {
	return &fakeRunner{release: map[string]chan struct{}{}, started: make(chan string, 16)}
}

func (f *fakeRunner) gate(id string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.release[id]
	if !ok {
		ch = make(chan struct{})
		f.release[id] = ch
	}
	return ch
}

func (f *fakeRunner) finish(id string) { close(f.gate(id)) }

func (f *fakeRunner) Run(ctx context.Context, job executor.Job) (*executor.Result, error) {
	id := job.Spec.Labels[sandbox.LabelScanID]
	f.mu.Lock()
	f.count++
	port := f.port
	f.mu.Unlock()
	if port == 0 {
		port = 22
	}
	emit := func(step executor.Step) {
		if job.OnEvent != nil {
			job.OnEvent(executor.Event{Step: step, ContainerID: "c-" + id, At: time.Now()})
		}
	}
	emit("started")
	defer emit("removed")
	f.started <- id
	xml := `<?xml version="1.0"?><nmaprun scanner="nmap" args="nmap" version="7.93">` +
		`<host><status state="up" reason="conn-refused"/><address addr="127.0.0.1" addrtype="ipv4"/>` +
		fmt.Sprintf(`<ports><port protocol="tcp" portid="%d"><state state="open" reason="syn-ack"/></port></ports></host>`, port)
	res := &executor.Result{ContainerID: "c-" + id}
	select {
	case <-f.gate(id):
		xml += `<runstats><finished elapsed="1" exit="success"/><hosts up="1" down="0" total="1"/></runstats></nmaprun>`
		if job.Stdout != nil {
			_, _ = io.WriteString(job.Stdout, xml)
		}
		res.Stdout = []byte(xml)
		return res, nil
	case <-ctx.Done():
		res.Canceled = true
		return res, fmt.Errorf("scan cancelled, container killed: %w", context.Cause(ctx))
	}
}

func (f *fakeRunner) Close(context.Context) error { return nil }

func (f *fakeRunner) runs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

type fixture struct {
	st     *store.Store
	scans  *scans.Service
	runner *fakeRunner
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, trail := testkit.OpenHistory(t)
	f := &fixture{st: st, runner: newFakeRunner()}
	f.scans = scans.New(scans.Config{Sandbox: sandbox.Options{Limits: sandbox.DefaultLimits()}, MaxAddresses: 16, Concurrency: 4, QueueSize: 4, PerClient: 4},
		scans.Deps{Runner: f.runner, Image: images.Info{ID: "sha256:fake", Tag: "nmap-mcp/nmap:fake"}, Store: st, Audit: trail})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.scans.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return f
}

// run runs ws's scheduler until the test ends.
func run(t *testing.T, ws *watches.Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ws.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (f *fixture) started(t *testing.T) string {
	t.Helper()
	select {
	case id := <-f.runner.started:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no scan started")
		return ""
	}
}

var lab = scanargs.Request{Targets: "127.0.0.1", Ports: "22"}

func as(client string) context.Context { return scans.WithClient(context.Background(), client) }

// A watch deleted while its run is under way, and a watch of the same
// name made at once by another client: the first client's scan is
// cancelled and never becomes the second watch's baseline or last scan.
func TestDeletedWatchRunIsDropped(t *testing.T) {
	f := newFixture(t)
	ws := watches.New(f.st, f.scans, watches.Config{MinInterval: time.Second}, nil)
	run(t, ws)
	if _, err := ws.Create(as("alice"), "lab", lab, time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	aliceScan := f.started(t)
	if err := ws.Delete(as("alice"), "lab"); err != nil {
		t.Fatal(err)
	}
	bob, err := ws.Create(as("bob"), "lab", lab, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	// Let alice's scan end, if it still runs, and give a wrong save time.
	f.runner.finish(aliceScan)
	testkit.Eventually(10*time.Second, func() bool {
		rec, err := f.st.Get(context.Background(), aliceScan, "")
		return err == nil && store.Finished(rec.Status)
	})
	time.Sleep(300 * time.Millisecond)
	got, err := ws.Get(as("bob"), "lab")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != bob.ID || got.LastScan == aliceScan || got.Baseline == aliceScan {
		t.Fatalf("alice's scan %s reached bob's watch: %+v", aliceScan, got)
	}
	if rec, _ := f.st.Get(context.Background(), aliceScan, ""); rec.Status != store.Cancelled {
		t.Fatalf("the deleted watch's scan is %s; want cancelled", rec.Status)
	}
	// bob's own run is his baseline.
	bobScan := f.started(t)
	f.runner.finish(bobScan)
	testkit.Eventually(10*time.Second, func() bool {
		got, _ = ws.Get(as("bob"), "lab")
		return got != nil && got.Baseline == bobScan
	})
	if got.Baseline != bobScan || got.LastChange != nil {
		t.Fatalf("bob's watch after its run: %+v", got)
	}
}

// Names are per client: another client's watch of the same name neither
// blocks a name nor is revealed; each client reads its own.
// A client's watches are bounded (watches.max_per_client); another
// client's count does not use up its room, and a deleted watch frees a
// place. (Fake runner: nothing is scanned.)
func TestWatchesPerClientBounded(t *testing.T) {
	f := newFixture(t)
	ws := watches.New(f.st, f.scans, watches.Config{MinInterval: time.Second, MaxPerClient: 2}, nil)
	for _, name := range []string{"a", "b"} {
		if _, err := ws.Create(as("alice"), name, lab, time.Hour, ""); err != nil {
			t.Fatal(err)
		}
	}
	var fe *watches.FieldError
	if _, err := ws.Create(as("alice"), "c", lab, time.Hour, ""); !errors.As(err, &fe) || !strings.Contains(err.Error(), "watches.max_per_client") {
		t.Fatalf("alice's third watch: %v; want a refusal naming watches.max_per_client", err)
	}
	if _, err := ws.Create(as("bob"), "a", lab, time.Hour, ""); err != nil {
		t.Fatalf("bob's first watch: %v", err)
	}
	if err := ws.Delete(as("alice"), "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Create(as("alice"), "c", lab, time.Hour, ""); err != nil {
		t.Fatalf("alice's watch after a delete: %v", err)
	}
}

func TestWatchNamesPerClient(t *testing.T) {
	f := newFixture(t)
	ws := watches.New(f.st, f.scans, watches.Config{MinInterval: time.Second}, nil)
	a, err := ws.Create(as("alice"), "lab", lab, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ws.Create(as("bob"), "lab", lab, 2*time.Hour, "")
	if err != nil {
		t.Fatalf("bob's lab refused because alice has one: %v", err)
	}
	var exists *store.WatchExistsError
	if _, err := ws.Create(as("alice"), "lab", lab, time.Hour, ""); !errors.As(err, &exists) {
		t.Fatalf("alice's second lab: %v", err)
	}
	for _, c := range []struct {
		client string
		id     string
	}{{"alice", a.ID}, {"bob", b.ID}} {
		got, err := ws.Get(as(c.client), "lab")
		if err != nil || got.ID != c.id {
			t.Fatalf("%s's lab: %+v %v", c.client, got, err)
		}
		list, _ := ws.List(as(c.client))
		if len(list) != 1 || list[0].ID != c.id {
			t.Fatalf("%s lists %+v", c.client, list)
		}
	}
	// Another client's watch, named in full, is not found, like an unknown.
	var nf *store.NotFoundError
	if _, err := ws.Get(as("bob"), "alice/lab"); !errors.As(err, &nf) {
		t.Fatalf("bob reads alice/lab: %v", err)
	}
	admin := scans.WithAdmin(as("root"))
	if got, err := ws.Get(admin, "alice/lab"); err != nil || got.ID != a.ID {
		t.Fatalf("an admin reads alice/lab: %+v %v", got, err)
	}
	if err := ws.Delete(as("bob"), "lab"); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Get(as("alice"), "lab"); err != nil {
		t.Fatalf("bob's delete took alice's watch: %v", err)
	}
}

// A watch whose client no longer exists is paused at its next run and
// says why; it does not scan.
func TestRevokedClientPausesWatch(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	clients := map[string]bool{"alice": true, "bob": true}
	exists := func(c string) bool { mu.Lock(); defer mu.Unlock(); return clients[c] }
	ws := watches.New(f.st, f.scans, watches.Config{MinInterval: time.Second, ClientExists: exists}, nil)
	if _, err := ws.Create(as("alice"), "lab", lab, time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	delete(clients, "alice")
	mu.Unlock()
	run(t, ws)
	var got *store.Watch
	testkit.Eventually(10*time.Second, func() bool {
		got, _ = ws.Get(as("alice"), "lab")
		return got != nil && got.Paused != ""
	})
	if !strings.Contains(got.Paused, `"alice" no longer exists`) || got.Runs != 0 {
		t.Fatalf("watch of a removed client: %+v", got)
	}
	if n := f.runner.runs(); n != 0 {
		t.Fatalf("%d scans ran as a removed client", n)
	}
	if _, err := ws.Resume(as("alice"), "lab"); err == nil || !strings.Contains(err.Error(), "no longer exists") {
		t.Fatalf("resume while the client is gone: %v", err)
	}
}

// A webhook the allowlist no longer allows (the deployment changed it and
// restarted) pauses the watch at its next run: nothing is scanned or sent.
func TestWebhookNoLongerAllowedPausesWatch(t *testing.T) {
	f := newFixture(t)
	var posts int
	var mu sync.Mutex
	recv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { mu.Lock(); posts++; mu.Unlock() }))
	defer recv.Close()
	before := watches.New(f.st, f.scans, watches.Config{MinInterval: time.Second, WebhookAllow: []string{recv.URL + "/hooks"}}, nil)
	if _, err := before.Create(as("alice"), "lab", lab, time.Hour, recv.URL+"/hooks/lab"); err != nil {
		t.Fatal(err)
	}
	after := watches.New(f.st, f.scans, watches.Config{MinInterval: time.Second, WebhookAllow: []string{recv.URL + "/other"}}, nil)
	run(t, after)
	var got *store.Watch
	testkit.Eventually(10*time.Second, func() bool {
		got, _ = after.Get(as("alice"), "lab")
		return got != nil && got.Paused != ""
	})
	if !strings.Contains(got.Paused, "webhook") || !strings.Contains(got.Paused, "watches.webhook_allow") {
		t.Fatalf("paused for %q", got.Paused)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := f.runner.runs(); n != 0 || posts != 0 {
		t.Fatalf("%d scans, %d posts after the webhook was disallowed", n, posts)
	}
}

// Webhook URLs are parsed, not compared as text: dot-segments (also
// percent-encoded, in any case), backslashes, another port or host, and a
// path that only starts with the allowed one's text are refused; an
// allowed URL is stored re-serialised.
func TestWebhookURLs(t *testing.T) {
	f := newFixture(t)
	allow := []string{"http://hooks.lab/hook", "https://hooks.lab:8443/nmap/"}
	ws := watches.New(f.st, f.scans, watches.Config{MinInterval: time.Second, WebhookAllow: allow}, nil)
	for i, bad := range []string{
		"http://hooks.lab/hook/../admin",
		"http://hooks.lab/hook/%2e%2e/admin",
		"http://hooks.lab/hook/%2E%2e/admin",
		"http://hooks.lab/hook/.%2E/admin",
		"http://hooks.lab/hook/%252e%252e/admin",
		"http://hooks.lab/hook/./x",
		"http://hooks.lab/hook/..",
		"http://hooks.lab/hook\\..\\admin",
		"http://hooks.lab/hook/%5c../admin",
		"http://hooks.lab/hook/a%2f..%2fadmin",
		"http://hooks.lab/hookx",
		"http://hooks.lab:8080/hook/x",
		"http://hooks.lab.evil.example/hook",
		"http://hooks.lab@evil.example/hook",
		"https://hooks.lab/hook/x",
		"https://hooks.lab:8443/nmapx",
		"https://hooks.lab/nmap/x",
		"http://hooks.lab/hook/x#frag",
		"http://hooks.lab/hook/x y",
	} {
		_, err := ws.Create(as("alice"), fmt.Sprintf("w%d", i), lab, time.Hour, bad)
		var fe *watches.FieldError
		if !errors.As(err, &fe) || fe.Field != "webhook" {
			t.Errorf("%s: %v; want a refusal of the webhook", bad, err)
		}
	}
	for i, c := range []struct{ in, sent string }{
		{"http://hooks.lab/hook", "http://hooks.lab/hook"},
		{"http://HOOKS.lab:80/hook/lab", "http://hooks.lab:80/hook/lab"},
		{"https://hooks.lab:8443/nmap/a/b?x=1&a=2", "https://hooks.lab:8443/nmap/a/b?a=2&x=1"},
		{"http://hooks.lab/hook/%7Euser", "http://hooks.lab/hook/~user"},
	} {
		w, err := ws.Create(as("alice"), fmt.Sprintf("ok%d", i), lab, time.Hour, c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if w.Webhook != c.sent {
			t.Errorf("%s stored as %s; want %s", c.in, w.Webhook, c.sent)
		}
	}
}

// A change is posted, signed, to the webhook in its re-serialised form
// (the form that was checked), and told to Notify.
func TestChangePostedToCheckedURL(t *testing.T) {
	f := newFixture(t)
	type post struct{ uri, sig, body string }
	posts := make(chan post, 4)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		posts <- post{r.RequestURI, r.Header.Get(watches.SignatureHeader), string(b)}
	}))
	defer recv.Close()
	ws := watches.New(f.st, f.scans, watches.Config{MinInterval: time.Second, WebhookAllow: []string{recv.URL + "/hooks"}, WebhookSecret: "k"}, nil)
	notified := make(chan string, 4)
	ws.Notify = func(w *store.Watch) { notified <- w.ID }
	hook := strings.Replace(recv.URL, "http://", "HTTP://", 1) + "/hooks/%6Cab"
	w, err := ws.Create(as("alice"), "lab", lab, time.Second, hook)
	if err != nil {
		t.Fatal(err)
	}
	if w.Webhook != recv.URL+"/hooks/lab" {
		t.Fatalf("stored %s", w.Webhook)
	}
	run(t, ws)
	f.runner.finish(f.started(t)) // the baseline: 22 open
	f.runner.mu.Lock()
	f.runner.port = 80
	f.runner.mu.Unlock()
	second := f.started(t)
	f.runner.finish(second)
	select {
	case p := <-posts:
		if p.uri != "/hooks/lab" || p.sig != watches.Sign("k", []byte(p.body)) || !strings.Contains(p.body, second) || !strings.Contains(p.body, w.ID) {
			t.Fatalf("post %+v", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook post")
	}
	if id := <-notified; id != w.ID {
		t.Fatalf("notified %s", id)
	}
}

// A provider's person's watch runs while the person stands (a valid token
// within auth.standing_hours, kept in the store) and pauses once they do
// not: a person removed at the provider gets no new token. The same
// composition as app.New's; fake runner, no engine.
func TestProviderPersonStanding(t *testing.T) {
	f := newFixture(t)
	standing := auth.NewStanding(f.st, time.Hour, nil)
	ctx := context.Background()
	standing.Seen(ctx, auth.Identity{Name: "alice", Expires: time.Now().Add(10 * time.Minute)})
	standing.Seen(ctx, auth.Identity{Name: "carol", Expires: time.Now().Add(-2 * time.Hour)})
	ws := watches.New(f.st, f.scans, watches.Config{MinInterval: time.Second,
		ClientExists: func(c string) bool { return standing.Holds(ctx, c) }}, nil)
	for _, who := range []string{"alice", "carol", "dave"} {
		if _, err := ws.Create(as(who), "lab", lab, time.Hour, ""); err != nil {
			t.Fatal(err)
		}
	}
	run(t, ws)
	f.runner.finish(f.started(t))
	testkit.Eventually(10*time.Second, func() bool {
		a, _ := ws.Get(as("alice"), "lab")
		c, _ := ws.Get(as("carol"), "lab")
		d, _ := ws.Get(as("dave"), "lab")
		return a != nil && a.Runs == 1 && c != nil && c.Paused != "" && d != nil && d.Paused != "" && f.runner.runs() == 1
	})
	if n := f.runner.runs(); n != 1 {
		t.Fatalf("%d scans ran; want alice's only", n)
	}
	// The standing outlives the process: another Standing on the store.
	if !auth.NewStanding(f.st, time.Hour, nil).Holds(ctx, "alice") || auth.NewStanding(f.st, time.Hour, nil).Holds(ctx, "carol") {
		t.Fatal("standing not kept in the store")
	}
}
