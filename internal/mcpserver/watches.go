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

	"github.com/nmap-mcp/nmap-mcp/internal/scan"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

type watchCreateArgs struct {
	Name            string `json:"name" minLength:"1" maxLength:"63" desc:"a name for the watch: lowercase letters, digits, dots, hyphens, underscores. Example: lab-web"`
	IntervalSeconds int    `json:"interval_seconds" min:"1" desc:"seconds between runs (at least the deployment's minimum, 900 by default). Example: 3600"`
	Webhook         string `json:"webhook,omitempty" desc:"optional URL to POST each change to (signed; must be allowed by the deployment). Example: https://hooks.lab/nmap"`
	scan.Request
}

type watchNameArgs struct {
	Name string `json:"name" minLength:"1" maxLength:"63" desc:"the watch's name. Example: lab-web"`
}

// watchOutput is one watch in structuredContent.
type watchOutput struct {
	Name            string `json:"name" desc:"the watch's name"`
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
	Resource        string `json:"resource" desc:"watch://NAME: subscribe to it to be told when a run finds a change"`
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

func watchOf(w *store.Watch) watchOutput {
	return watchOutput{Name: w.Name, Client: w.Client, Targets: watches.Targets(w), IntervalSeconds: int(w.Interval.Seconds()), Webhook: w.Webhook,
		NextRun: when(w.NextRun), LastRun: when(w.LastRun), LastScan: w.LastScan, LastStatus: w.LastStatus, Baseline: w.Baseline,
		LastChange: watches.ChangeText(w), LastChangeAt: when(w.LastChangeAt), Runs: w.Runs, Resource: "watch://" + w.Name}
}

func watchText(w watchOutput) string {
	var b strings.Builder
	fmt.Fprintf(&b, "watch %s (%s): %s every %d s; next run %s; %d runs", w.Name, w.Client, w.Targets, w.IntervalSeconds, w.NextRun, w.Runs)
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
		mcp.WithDescription("Delete one of your watches; its past scans stay in the history. Example: {\"name\": \"lab-web\"}."),
		withInput(watchNameArgs{}, nil),
	}...)
	s.AddTool(del, h.checked("watch_delete", watchNameArgs{}, nil, h.watchDelete))
	s.AddResourceTemplate(mcp.NewResourceTemplate("watch://{name}", "watch",
		mcp.WithTemplateDescription("One watch as JSON: its scan, interval, last run, baseline and the latest change found. "+
			"Subscribe (resources/subscribe) to be told when a run finds a change."),
		mcp.WithTemplateMIMEType("application/json")), h.readWatch)
}

func (h *handlers) watchCreate(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var a watchCreateArgs
	if err := req.BindArguments(&a); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	w, err := h.Watches.Create(ctx, a.Name, a.Request, time.Duration(a.IntervalSeconds)*time.Second, a.Webhook)
	if err != nil {
		h.Refused("watch")
		return mcp.NewToolResultError("Watch not created: " + err.Error()), nil
	}
	out := watchOf(w)
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
		o := watchOf(w)
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
	if err := h.Watches.Delete(ctx, a.Name); err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	return mcp.NewToolResultText("deleted watch " + a.Name), nil
}

func (h *handlers) readWatch(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	name, ok := strings.CutPrefix(req.Params.URI, "watch://")
	if !ok || name == "" {
		return nil, fmt.Errorf("resource %q: not a watch:// URI", req.Params.URI)
	}
	w, err := h.Watches.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(watchOf(w), "", "  ")
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "application/json", Text: string(b)}}, nil
}

// Subscriptions remembers which sessions subscribed to which watch://
// resources, and as which client, so that a change is told only to the
// sessions that may see the watch.
type Subscriptions struct {
	mu  sync.Mutex
	srv *server.MCPServer
	// by session id: uri → viewer ("" for an admin)
	subs map[string]map[string]string
	log  *slog.Logger
}

// NewSubscriptions returns an empty registry; New wires its hooks.
func NewSubscriptions() *Subscriptions {
	return &Subscriptions{subs: map[string]map[string]string{}}
}

func (r *Subscriptions) hooks(h *server.Hooks, viewer func(context.Context) string) {
	add := func(ctx context.Context, uris []string) {
		sess := server.ClientSessionFromContext(ctx)
		if sess == nil {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		m := r.subs[sess.SessionID()]
		if m == nil {
			m = map[string]string{}
			r.subs[sess.SessionID()] = m
		}
		for _, uri := range uris {
			m[uri] = viewer(ctx)
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
// see w, that it changed (notifications/resources/updated).
func (r *Subscriptions) Changed(w *store.Watch) {
	uri := "watch://" + w.Name
	r.mu.Lock()
	var to []string
	for sid, m := range r.subs {
		if viewer, ok := m[uri]; ok && (viewer == "" || viewer == w.Client) {
			to = append(to, sid)
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
	for _, sid := range to {
		// A session that has gone meanwhile is not an error.
		err := srv.SendNotificationToSpecificClient(sid, mcp.MethodNotificationResourceUpdated, map[string]any{"uri": uri})
		if errors.Is(err, server.ErrSessionNotFound) {
			r.mu.Lock()
			delete(r.subs, sid)
			r.mu.Unlock()
		} else if err != nil && log != nil {
			log.Warn("could not tell a session that a watch changed", "watch", w.Name, "err", err)
		}
	}
}
