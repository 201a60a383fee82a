package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/export"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

type watchCreateArgs struct {
	Name            string `json:"name" minLength:"1" maxLength:"63" desc:"a name for the watch: lowercase letters, digits, dots, hyphens, underscores. Example: lab-web"`
	IntervalSeconds int    `json:"interval_seconds" min:"1" desc:"seconds between runs (at least the deployment's minimum, 900 by default). Example: 3600"`
	Webhook         string `json:"webhook,omitempty" desc:"optional URL to POST each change to (signed; must be allowed by the deployment). Example: https://hooks.lab/nmap"`
	WebhookFormat   string `json:"webhook_format,omitempty" enum:"json|slack|teams" default:"json" desc:"how changes are posted: json (a generic event), slack (a Slack incoming-webhook message), teams (a Teams message with an Adaptive Card). Example: slack"`
	scanargs.Request
}

type watchNameArgs struct {
	Name string `json:"name" minLength:"1" maxLength:"63" desc:"the watch's name. Example: lab-web"`
	// Client lets an admin name another client's watch.
	Client string `json:"client,omitempty" maxLength:"64" desc:"admins only: the client whose watch it is (default: your own). Example: alice"`
}

// ref is the watch the arguments name: NAME, or CLIENT/NAME.
func (a watchNameArgs) ref() string {
	if a.Client != "" {
		return a.Client + "/" + a.Name
	}
	return a.Name
}

// watchOutput is one watch in structuredContent.
type watchOutput struct {
	ID              string `json:"id" desc:"the watch's immutable id"`
	Name            string `json:"name" desc:"the watch's name (unique among its client's watches)"`
	Client          string `json:"client" desc:"the client that made it; its runs scan as this client"`
	Targets         string `json:"targets" desc:"what it scans"`
	IntervalSeconds int    `json:"interval_seconds" desc:"seconds between runs"`
	Webhook         string `json:"webhook" desc:"where changes are posted, or empty"`
	NextRun         string `json:"next_run" desc:"when it runs next (RFC 3339)"`
	LastRun         string `json:"last_run" desc:"when it last ran, or empty"`
	LastScan        string `json:"last_scan" desc:"the last run's scan id (get_scan)"`
	LastStatus      string `json:"last_status" desc:"the last run's status"`
	Baseline        string `json:"baseline" desc:"the scan the next run is compared with"`
	LastChange      string `json:"last_change" desc:"the latest change found, as text, or empty"`
	LastChangeAt    string `json:"last_change_at" desc:"when that change was found, or empty"`
	Runs            int    `json:"runs" desc:"how many runs so far"`
	Paused          string `json:"paused" desc:"why the watch is paused and does not run (its client was removed, its webhook is no longer allowed), or empty"`
	PausedAt        string `json:"paused_at" desc:"when it was paused, or empty"`
	Resource        string `json:"resource" desc:"watch://NAME (watch://CLIENT/NAME for another client's): subscribe to it to be told when a run finds a change"`
}

type watchListOutput struct {
	Watches []watchOutput `json:"watches" desc:"the caller's watches, by name"`
}

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// watchOf is w as the caller who names it ref sees it.
func watchOf(w *store.Watch, ref string) watchOutput {
	return watchOutput{ID: w.ID, Name: w.Name, Client: w.Client, Targets: watches.Targets(w), IntervalSeconds: int(w.Interval.Seconds()), Webhook: w.Webhook,
		NextRun: when(w.NextRun), LastRun: when(w.LastRun), LastScan: w.LastScan, LastStatus: w.LastStatus, Baseline: w.Baseline,
		LastChange: watches.ChangeText(w), LastChangeAt: when(w.LastChangeAt), Runs: w.Runs,
		Paused: w.Paused, PausedAt: when(w.PausedAt), Resource: "watch://" + ref}
}

func watchText(w watchOutput) string {
	var b strings.Builder
	fmt.Fprintf(&b, "watch %s (%s): %s every %d s; next run %s; %d runs", w.Name, w.Client, w.Targets, w.IntervalSeconds, w.NextRun, w.Runs)
	if w.Paused != "" {
		fmt.Fprintf(&b, "; PAUSED since %s: %s", w.PausedAt, w.Paused)
	}
	if w.LastScan != "" {
		fmt.Fprintf(&b, "; last scan %s %s", w.LastScan, w.LastStatus)
	}
	b.WriteString("\n")
	if w.LastChange != "" {
		fmt.Fprintf(&b, "last change at %s %s", w.LastChangeAt, w.LastChange)
	} else {
		b.WriteString("no change seen yet\n")
	}
	return b.String()
}

func watchTools(s *server.MCPServer, h *handlers) {
	create := mcp.NewTool("watch_create", []mcp.ToolOption{
		mcp.WithTitleAnnotation("Create watch"),
		mcp.WithReadOnlyHintAnnotation(false), mcp.WithDestructiveHintAnnotation(false),
		mcp.WithIdempotentHintAnnotation(false), mcp.WithOpenWorldHintAnnotation(true),
		mcp.WithDescription("Rescan targets on a schedule and report what changed (hosts appeared or gone, ports opened or closed, services changed). " +
			"Takes nmap_scan's parameters plus a name and an interval; the scan is checked now and refused if it could never run. " +
			"Subscribe to the watch://NAME resource to be notified of changes. Example: {\"name\": \"lab-web\", \"interval_seconds\": 3600, \"targets\": \"127.0.0.1\", \"ports\": \"22,80,443\"}."),
		withInput(watchCreateArgs{}, nil),
		withOutput(watchOutput{}),
	}...)
	s.AddTool(create, h.checked("watch_create", watchCreateArgs{}, nil, h.watchCreate))
	list := mcp.NewTool("watch_list", append(historyAnnotations("List watches"),
		mcp.WithDescription("List your watches with their last run, last change and next run."),
		withOutput(watchListOutput{}))...)
	s.AddTool(list, h.checked("watch_list", struct{}{}, nil, h.watchList))
	del := mcp.NewTool("watch_delete", []mcp.ToolOption{
		mcp.WithTitleAnnotation("Delete watch"),
		mcp.WithReadOnlyHintAnnotation(false), mcp.WithDestructiveHintAnnotation(true),
		mcp.WithIdempotentHintAnnotation(true), mcp.WithOpenWorldHintAnnotation(false),
		mcp.WithDescription("Delete one of your watches; a run under way is cancelled; its past scans stay in the history. Example: {\"name\": \"lab-web\"}."),
		withInput(watchNameArgs{}, nil),
	}...)
	s.AddTool(del, h.checked("watch_delete", watchNameArgs{}, nil, h.watchDelete))
	if h.Subscriptions != nil {
		h.Subscriptions.mu.Lock()
		h.Subscriptions.client = h.Scans.ClientName
		h.Subscriptions.mu.Unlock()
	}
	s.AddResourceTemplate(mcp.NewResourceTemplate("watch://{name}", "watch",
		mcp.WithTemplateDescription("One of your watches as JSON (watch://CLIENT/NAME: an admin reading another client's): its scan, interval, last run, baseline, the latest change found, and why it is paused if it is. "+
			"Subscribe (resources/subscribe) to be told when a run finds a change."),
		mcp.WithTemplateMIMEType("application/json")), h.readWatch)
	// Names are unique per client: an admin names another client's watch
	// in full.
	s.AddResourceTemplate(mcp.NewResourceTemplate("watch://{client}/{name}", "client watch",
		mcp.WithTemplateDescription("A watch named with its client, as an admin sees another client's (a client may name its own so too)."),
		mcp.WithTemplateMIMEType("application/json")), h.readWatch)
}

func (h *handlers) watchCreate(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var a watchCreateArgs
	if err := req.BindArguments(&a); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if _, err := export.CheckFormat(a.WebhookFormat); err != nil {
		h.Refused("validation")
		return mcp.NewToolResultError("Watch not created: " + err.Error()), nil
	}
	w, err := h.Watches.Create(ctx, a.Name, a.Request, time.Duration(a.IntervalSeconds)*time.Second, a.Webhook)
	if err != nil {
		h.Refused("watch")
		return mcp.NewToolResultError("Watch not created: " + err.Error()), nil
	}
	if err := h.Watches.SetWebhookFormat(ctx, w.ID, a.WebhookFormat); err != nil {
		return mcp.NewToolResultError("Watch created, but its webhook format was not recorded (it posts the generic event): " + err.Error()), nil
	}
	out := watchOf(w, h.Watches.Ref(ctx, w))
	return mcp.NewToolResultStructured(out, "created "+watchText(out)), nil
}

func (h *handlers) watchList(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	ws, err := h.Watches.List(ctx)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	out := watchListOutput{Watches: []watchOutput{}}
	var b strings.Builder
	for _, w := range ws {
		o := watchOf(w, h.Watches.Ref(ctx, w))
		out.Watches = append(out.Watches, o)
		b.WriteString(watchText(o))
	}
	if len(ws) == 0 {
		b.WriteString("no watches\n")
	}
	return mcp.NewToolResultStructured(out, b.String()), nil
}

func (h *handlers) watchDelete(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var a watchNameArgs
	if err := req.BindArguments(&a); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if err := h.Watches.Delete(ctx, a.ref()); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	return mcp.NewToolResultText("deleted watch " + a.ref() + "; its run under way, if any, was cancelled"), nil
}

func (h *handlers) readWatch(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	ref, ok := strings.CutPrefix(req.Params.URI, "watch://")
	if !ok || ref == "" {
		return nil, fmt.Errorf("resource %q: not a watch:// URI", req.Params.URI)
	}
	w, err := h.Watches.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(watchOf(w, h.Watches.Ref(ctx, w)), "", "  ")
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "application/json", Text: string(b)}}, nil
}

// Subscriptions remembers which sessions subscribed to which watch://
// resources, and as which client, so that a change is told only to the
// sessions that may see the watch.
type Subscriptions struct {
	mu  sync.Mutex
	srv *server.MCPServer
	// by session id: uri → who subscribed
	subs map[string]map[string]subscriber
	log  *slog.Logger
	// client names the caller of a context (set with the watch tools);
	// until set, the viewer stands for it.
	client func(context.Context) string
}

// subscriber is who subscribed to a watch:// resource: the client, and
// the viewer ("" for an admin, who may name other clients' watches).
type subscriber struct{ client, viewer string }

// NewSubscriptions returns an empty registry; New wires its hooks.
func NewSubscriptions() *Subscriptions {
	return &Subscriptions{subs: map[string]map[string]subscriber{}}
}

func (r *Subscriptions) hooks(h *server.Hooks, viewer func(context.Context) string) {
	add := func(ctx context.Context, uris []string) {
		sess := server.ClientSessionFromContext(ctx)
		if sess == nil {
			return
		}
		v := viewer(ctx)
		r.mu.Lock()
		defer r.mu.Unlock()
		c := v
		if r.client != nil {
			c = r.client(ctx)
		}
		m := r.subs[sess.SessionID()]
		if m == nil {
			m = map[string]subscriber{}
			r.subs[sess.SessionID()] = m
		}
		for _, uri := range uris {
			m[uri] = subscriber{client: c, viewer: v}
		}
	}
	// Up to protocol 2025-11-25: resources/subscribe and unsubscribe.
	h.AddAfterSubscribe(func(ctx context.Context, _ any, msg *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
		add(ctx, []string{msg.Params.URI})
	})
	// From 2026-07-28: a subscriptions/listen stream names the resources,
	// for as long as it is open.
	h.AddBeforeSubscriptionsListen(func(ctx context.Context, _ any, msg *mcp.SubscriptionsListenRequest) {
		add(ctx, msg.Params.Notifications.ResourceSubscriptions)
	})
	h.AddAfterSubscriptionsListen(func(ctx context.Context, _ any, msg *mcp.SubscriptionsListenRequest, _ *mcp.SubscriptionsListenResult) {
		if sess := server.ClientSessionFromContext(ctx); sess != nil {
			r.mu.Lock()
			for _, uri := range msg.Params.Notifications.ResourceSubscriptions {
				delete(r.subs[sess.SessionID()], uri)
			}
			r.mu.Unlock()
		}
	})
	h.AddAfterUnsubscribe(func(ctx context.Context, _ any, msg *mcp.UnsubscribeRequest, _ *mcp.EmptyResult) {
		if sess := server.ClientSessionFromContext(ctx); sess != nil {
			r.mu.Lock()
			delete(r.subs[sess.SessionID()], msg.Params.URI)
			r.mu.Unlock()
		}
	})
	h.AddOnUnregisterSession(func(_ context.Context, sess server.ClientSession) {
		r.mu.Lock()
		delete(r.subs, sess.SessionID())
		r.mu.Unlock()
	})
}

// Changed tells every session subscribed to w's resource, and allowed to
// see w, that it changed (notifications/resources/updated): its own
// client's sessions subscribed to watch://NAME, and sessions subscribed to
// watch://CLIENT/NAME that may see it (its client's, an admin's).
func (r *Subscriptions) Changed(w *store.Watch) {
	type target struct{ sid, uri string }
	r.mu.Lock()
	var to []target
	for sid, m := range r.subs {
		for _, uri := range toldOf(m, w) {
			to = append(to, target{sid, uri})
		}
	}
	srv, log := r.srv, r.log
	r.mu.Unlock()
	if srv == nil {
		return
	}
	if log != nil {
		log.Debug("watch changed: telling subscribers", "watch", w.Name, "sessions", len(to))
	}
	for _, t := range to {
		// A session that has gone meanwhile is not an error.
		err := srv.SendNotificationToSpecificClient(t.sid, mcp.MethodNotificationResourceUpdated, map[string]any{"uri": t.uri})
		if errors.Is(err, server.ErrSessionNotFound) {
			r.mu.Lock()
			delete(r.subs, t.sid)
			r.mu.Unlock()
		} else if err != nil && log != nil {
			log.Warn("could not tell a session that a watch changed", "watch", w.Name, "err", err)
		}
	}
}

// toldOf returns the URIs of a session's subscriptions m that name w and
// whose subscriber may see it: watch://NAME for w's own client,
// watch://CLIENT/NAME for w's client or an admin.
func toldOf(m map[string]subscriber, w *store.Watch) []string {
	own, full := "watch://"+w.Name, "watch://"+w.Client+"/"+w.Name
	var uris []string
	if sub, ok := m[own]; ok && sub.client == w.Client {
		uris = append(uris, own)
	}
	if sub, ok := m[full]; ok && (sub.viewer == "" || sub.viewer == w.Client) {
		uris = append(uris, full)
	}
	return uris
}
