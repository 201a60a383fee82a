package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/app"
	"github.com/nmap-mcp/nmap-mcp/internal/auth"
	"github.com/nmap-mcp/nmap-mcp/internal/export"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
	"github.com/nmap-mcp/nmap-mcp/internal/watches"
)

// cmdWatch manages watches in the history file. They run while `serve`
// runs (stdio or HTTP), which picks up a watch added here at once.
func cmdWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = `Usage:
  nmap-mcp watch add NAME --every 1h [--ports P | --top-ports N] [--type T] [--webhook URL [--webhook-format json|slack|teams]] TARGETS...
  nmap-mcp watch list
  nmap-mcp watch show NAME [--client C]
  nmap-mcp watch rm NAME [--client C]
  nmap-mcp watch resume NAME [--client C]
Watches run while nmap-mcp serve runs; each run is an ordinary scan, compared with the last.
Names are unique per client: --client picks one when several clients have a watch of that name.
A watch whose client's token was removed, or whose webhook is no longer allowed, is paused;
resume runs it again once neither holds.
`
	sub, fs, set, ok, err := subcommand("watch", usage, args, stderr)
	if !ok {
		return err
	}
	var (
		req      scanargs.Request
		topPorts int
	)
	every := fs.Duration("every", time.Hour, "interval between runs (add)")
	client := fs.String("client", "", "the client whose watch it is, when several clients have a watch of that name (show, rm, resume)")
	webhook := fs.String("webhook", "", "URL to POST each change to; must be under watches.webhook_allow (add)")
	webhookFormat := fs.String("webhook-format", "json", "how changes are posted: json, slack or teams (add)")
	fs.StringVar(&req.ScanType, "type", "connect", "scan type: connect, syn, udp or ping (add)")
	fs.StringVar(&req.Ports, "ports", "", "ports, e.g. 22,80,443 (add)")
	fs.IntVar(&topPorts, "top-ports", 0, "the N most common ports (add)")
	fs.Usage = func() { fmt.Fprint(stderr, usage+"\nFlags:\n"); fs.PrintDefaults() }
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return flagErr(err)
	}
	if err := set.parsed(); err != nil {
		return err
	}
	if sub == "add" {
		if len(pos) < 2 {
			return fmt.Errorf("watch add takes a name and at least one target")
		}
		req.Targets = strings.Join(pos[1:], " ")
		if topPorts != 0 {
			req.TopPorts = &topPorts
		}
		logger, closeLog, err := set.logger(stderr)
		if err != nil {
			return err
		}
		defer closeLog()
		// The full stack: the policy checks the scan (scope, scripts).
		a, err := set.newApp(ctx, app.OneShot, logger, stderr)
		if err != nil {
			return err
		}
		defer a.Close()
		if _, err := export.CheckFormat(*webhookFormat); err != nil {
			return err
		}
		w, err := a.Watches().Create(ctx, pos[0], req, *every, *webhook)
		if err != nil {
			return err
		}
		if err := a.Watches().SetWebhookFormat(ctx, w.ID, *webhookFormat); err != nil {
			return fmt.Errorf("watch %s was made, but its webhook format was not recorded (it posts the generic event): %w", w.Name, err)
		}
		fmt.Fprintf(stdout, "watch %s: %s every %s; it runs while nmap-mcp serve runs\n", w.Name, req.Targets, w.Interval)
		return nil
	}
	st, err := set.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "list":
		ws, err := st.ListWatches(ctx, "")
		if err != nil {
			return err
		}
		for _, w := range ws {
			next := "next " + w.NextRun.Local().Format("2006-01-02 15:04:05")
			if w.Paused != "" {
				next = "PAUSED: " + w.Paused
			}
			fmt.Fprintf(stdout, "%-20s %-8s every %-8s runs %d  last %s %s  %s\n", w.Name, w.Client, w.Interval,
				w.Runs, w.LastScan, w.LastStatus, next)
		}
		return nil
	case "show":
		if len(pos) != 1 {
			return fmt.Errorf("watch show takes one name")
		}
		w, err := st.GetWatch(ctx, pos[0], *client)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			*store.Watch
			IntervalSeconds int `json:"interval_seconds"`
		}{w, int(w.Interval.Seconds())})
	case "rm":
		if len(pos) != 1 {
			return fmt.Errorf("watch rm takes one name")
		}
		w, err := st.GetWatch(ctx, pos[0], *client)
		if err != nil {
			return err
		}
		// A run under way in a serve is dropped when it ends: it is saved
		// by the watch's id, which is gone.
		if err := st.DeleteWatch(ctx, w.ID, w.Client); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted watch %s of %s\n", w.Name, w.Client)
		return nil
	case "resume":
		if len(pos) != 1 {
			return fmt.Errorf("watch resume takes one name")
		}
		w, err := st.GetWatch(ctx, pos[0], *client)
		if err != nil {
			return err
		}
		if w.Paused == "" {
			fmt.Fprintf(stdout, "watch %s of %s is not paused\n", w.Name, w.Client)
			return nil
		}
		if reason := pauseReason(ctx, set, st, w); reason != "" {
			return fmt.Errorf("watch %s of %s cannot resume: %s", w.Name, w.Client, reason)
		}
		if err := st.ResumeWatch(ctx, w.ID, w.Client, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "resumed watch %s of %s; it runs at once under nmap-mcp serve\n", w.Name, w.Client)
		return nil
	default:
		fmt.Fprintf(stderr, "nmap-mcp: unknown watch command %q\n%s", sub, usage)
		return &exitCode{2}
	}
}

// pauseReason says why w may not run under the settings, or "".
func pauseReason(ctx context.Context, s *settings, st *store.Store, w *store.Watch) string {
	if !app.ClientExists(s.Config)(w.Client) {
		if s.resolved.Auth.Verifier == nil {
			return fmt.Sprintf("its client %q has no token in http.tokens", w.Client)
		}
		if !auth.NewStanding(st, s.resolved.Auth.Standing, nil).Holds(ctx, w.Client) {
			return fmt.Sprintf("its client %q has no token in http.tokens, and has shown no valid token of the identity provider within auth.standing_hours", w.Client)
		}
	}
	if w.Webhook != "" {
		if _, err := watches.CheckWebhook(w.Webhook, s.Watches.WebhookAllow); err != nil {
			return err.Error()
		}
	}
	return ""
}
