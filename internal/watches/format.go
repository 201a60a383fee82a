package watches

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nmap-mcp/nmap-mcp/internal/export"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// SetWebhookFormat chooses the format the watch id of the caller's
// client posts its changes in: "json" (the generic change event, the
// default), "slack" (a Slack incoming-webhook message) or "teams" (a
// Microsoft Teams message with an Adaptive Card). An unknown format is a
// *FieldError naming webhook_format.
func (s *Service) SetWebhookFormat(ctx context.Context, id, format string) error {
	f, err := export.CheckFormat(format)
	if err != nil {
		return &FieldError{"webhook_format", format, "must be one of json, slack, teams"}
	}
	w, err := s.store.WatchByID(ctx, id, s.scans.Viewer(ctx))
	if err != nil {
		return err
	}
	if err := s.store.SetWebhookFormat(ctx, w.ID, f); err != nil {
		return fmt.Errorf("watch %s: %w", w.Name, err)
	}
	return nil
}

// webhookBody is what a change is posted as, in the watch's format (the
// generic change event when the format cannot be read).
func (s *Service) webhookBody(ctx context.Context, w *store.Watch, c *Change) []byte {
	format, err := s.store.WebhookFormat(ctx, w.ID)
	if err != nil {
		s.log.Warn("watch webhook: its format could not be read; posting the generic change event", "watch", w.Name, "err", err)
	}
	n := export.Notice{Watch: c.Watch, Scan: c.Scan, Baseline: c.Baseline, Targets: c.Targets, At: c.At, Diff: c.Diff}
	var body []byte
	switch format {
	case export.FormatSlack:
		body, err = export.Slack(n)
	case export.FormatTeams:
		body, err = export.Teams(n)
	default:
		body, err = json.Marshal(c)
	}
	if err != nil {
		body, _ = json.Marshal(c)
	}
	return body
}
