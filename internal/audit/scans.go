package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Admitted records a scan's admission: who asked, the request as sent,
// the targets as they will be scanned, the argv, the image and the limits.
func (l *Log) Admitted(_ context.Context, r *store.Record) error {
	limits, _ := json.Marshal(r.Limits)
	return l.Append(Record{Event: Admitted, ScanID: r.ID, Client: r.Client, Request: r.Request, Targets: r.Targets,
		Argv: r.Argv, ImageID: r.ImageID, Limits: limits, Approval: grant(r)})
}

// Denied records a scan an approval rule asked for that was denied or not
// answered in time: who asked, the request, and the answer. Nothing ran.
func (l *Log) Denied(_ context.Context, r *store.Record) error {
	return l.Append(Record{Event: DeniedEvent, ScanID: r.ID, Client: r.Client, Request: r.Request, Targets: r.Targets,
		Outcome: r.Status, Error: clip(r.Error, 1000), Approval: grant(r)})
}

func grant(r *store.Record) json.RawMessage {
	if r.Approval == nil {
		return nil
	}
	b, _ := json.Marshal(r.Approval)
	return b
}

// Ended records a scan's outcome, duration and the sha256 of its result.
func (l *Log) Ended(_ context.Context, r *store.Record) error {
	rec := Record{Event: Ended, ScanID: r.ID, Client: r.Client, Outcome: r.Status, DurationMS: r.Duration().Milliseconds(), Error: clip(r.Error, 1000)}
	if r.Result != nil {
		b, _ := json.Marshal(r.Result)
		sum := sha256.Sum256(b)
		rec.ResultSHA256 = hex.EncodeToString(sum[:])
	}
	return l.Append(rec)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}
