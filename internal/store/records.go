package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/approval"
	"github.com/nmap-mcp/nmap-mcp/internal/owner"
	"github.com/nmap-mcp/nmap-mcp/internal/results"
)

// NotFoundError names a scan ID the store does not have.
type NotFoundError struct {
	ID string
	// What is "watch" for a watch; empty for a scan.
	What string
}

func (e *NotFoundError) Error() string {
	if e.What == "watch" {
		return fmt.Sprintf("no watch named %q; watch_list shows the known ones", e.ID)
	}
	return fmt.Sprintf("no scan with id %q; list_scans shows the known ids", e.ID)
}

// Millis is t as stored: Unix milliseconds, 0 for the zero time.
func Millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// FromMillis is a stored time: Unix milliseconds (0: the zero time), in
// UTC.
func FromMillis(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// Begin writes a new record owned by this process, with status queued
// or pending-approval when r.Status says so, and running otherwise. The
// record of the same scan (id and client) waiting for approval, if
// stored, gives way to it in the same transaction.
func (s *Store) Begin(ctx context.Context, r *Record) error {
	if r.Status != Queued && r.Status != PendingApproval {
		r.Status = Running
	}
	r.OwnerPID, r.OwnerHost = os.Getpid(), owner.Host()
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now().UTC()
	}
	if r.Client == "" {
		r.Client = "local"
	}
	req := r.Request
	if len(req) == 0 {
		req = json.RawMessage("{}")
	}
	argv, _ := json.Marshal(r.Argv)
	limits, _ := json.Marshal(r.Limits)
	notes := notesJSON(r.Notes)
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if r.Status != PendingApproval {
			if _, err := tx.ExecContext(ctx, `DELETE FROM scans WHERE id = ? AND status = ? AND client = ?`, r.ID, PendingApproval, r.Client); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO scans (id, status, targets, scan_type, request, argv, image_id, image_tag,
		limits, client, owner_pid, owner_host, created_at, started_at, notes, approval) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			r.ID, r.Status, r.Targets, r.ScanType, string(req), string(argv), r.ImageID, r.ImageTag,
			string(limits), r.Client, r.OwnerPID, r.OwnerHost, Millis(r.CreatedAt), Millis(r.StartedAt), notes, approvalJSON(r.Approval))
		return err
	})
	if err != nil {
		return s.fail(fmt.Sprintf("record scan %s", r.ID), err)
	}
	return nil
}

// Import writes finished records in one transaction: for bulk imports and
// the history-scale benchmark, where a transaction per record would
// measure the disk, not the history.
func (s *Store) Import(ctx context.Context, recs []*Record) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("import", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO scans (id, status, targets, scan_type, request, argv, image_id, image_tag,
		limits, client, owner_pid, owner_host, created_at, started_at, ended_at, exit_code, error, raw_xml, raw_xml_truncated,
		result, hosts_up, open_ports, notes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return s.fail("import", err)
	}
	defer stmt.Close()
	for _, r := range recs {
		argv, _ := json.Marshal(r.Argv)
		limits, _ := json.Marshal(r.Limits)
		var result []byte
		if r.Result != nil {
			result, _ = json.Marshal(r.Result)
			r.HostsUp, r.OpenPorts = r.Result.Stats.HostsUp, r.Result.OpenPortCount()
		}
		req := r.Request
		if len(req) == 0 {
			req = json.RawMessage("{}")
		}
		if _, err := stmt.ExecContext(ctx, r.ID, r.Status, r.Targets, r.ScanType, string(req), string(argv), r.ImageID, r.ImageTag,
			string(limits), r.Client, r.OwnerPID, r.OwnerHost, Millis(r.CreatedAt), Millis(r.StartedAt), Millis(r.EndedAt), r.ExitCode, r.Error,
			r.RawXML, r.RawXMLTruncated, nullString(result), r.HostsUp, r.OpenPorts, notesJSON(r.Notes)); err != nil {
			return s.fail(fmt.Sprintf("import %s", r.ID), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return s.fail("import", err)
	}
	return nil
}

// Start marks a queued record running from startedAt.
func (s *Store) Start(ctx context.Context, id string, startedAt time.Time) error {
	_, err := s.exec(ctx, `UPDATE scans SET status = ?, started_at = ? WHERE id = ?`, Running, Millis(startedAt), id)
	if err != nil {
		return s.fail(fmt.Sprintf("start scan %s", id), err)
	}
	return nil
}

// Finish updates a record with its end: status, times, exit, raw XML
// (within the cap) and the decoded result.
func (s *Store) Finish(ctx context.Context, r *Record) error {
	xml := r.RawXML
	if len(xml) > s.maxXML {
		xml, r.RawXMLTruncated = xml[:s.maxXML], true
	}
	var result []byte
	if r.Result != nil {
		var err error
		if result, err = json.Marshal(r.Result); err != nil {
			return fmt.Errorf("encode result of scan %s: %w", r.ID, err)
		}
		r.HostsUp, r.OpenPorts = r.Result.Stats.HostsUp, r.Result.OpenPortCount()
	}
	if r.EndedAt.IsZero() {
		r.EndedAt = time.Now().UTC()
	}
	_, err := s.exec(ctx, `UPDATE scans SET status=?, started_at=?, ended_at=?, exit_code=?, error=?, raw_xml=?,
		raw_xml_truncated=?, result=?, hosts_up=?, open_ports=?, notes=? WHERE id=?`,
		r.Status, Millis(r.StartedAt), Millis(r.EndedAt), r.ExitCode, r.Error, xml, r.RawXMLTruncated, nullString(result),
		r.HostsUp, r.OpenPorts, notesJSON(r.Notes), r.ID)
	if err != nil {
		return s.fail(fmt.Sprintf("finish scan %s", r.ID), err)
	}
	return nil
}

func approvalJSON(g *approval.Grant) string {
	if g == nil {
		return ""
	}
	b, _ := json.Marshal(g)
	return string(b)
}

func notesJSON(notes []string) string {
	if len(notes) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(notes)
	return string(b)
}

func nullString(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// columns are those of a full record; summaryColumns leave the result
// out (NULL), so that lists never load full results.
const (
	baseColumns = `id, status, targets, scan_type, request, argv, image_id, image_tag, limits, client, owner_pid, owner_host,
	created_at, started_at, ended_at, exit_code, error, raw_xml_truncated, hosts_up, open_ports, notes, approval, `
	columns        = baseColumns + `result`
	summaryColumns = baseColumns + `NULL`
)

// qualified prefixes each column of a column list with p (a table's
// alias and a dot); NULL stays NULL.
func qualified(p, list string) string {
	cols := strings.Split(list, ",")
	for i, c := range cols {
		if c = strings.TrimSpace(c); c != "NULL" {
			c = p + c
		}
		cols[i] = c
	}
	return strings.Join(cols, ", ")
}

type scanner interface{ Scan(...any) error }

func scanRecord(row scanner) (*Record, error) {
	var (
		r                        Record
		req, argv, limits, notes string
		grant                    string
		created, started, ended  int64
		result                   sql.NullString
	)
	if err := row.Scan(&r.ID, &r.Status, &r.Targets, &r.ScanType, &req, &argv, &r.ImageID, &r.ImageTag, &limits, &r.Client,
		&r.OwnerPID, &r.OwnerHost, &created, &started, &ended, &r.ExitCode, &r.Error, &r.RawXMLTruncated,
		&r.HostsUp, &r.OpenPorts, &notes, &grant, &result); err != nil {
		return nil, err
	}
	if grant != "" {
		r.Approval = &approval.Grant{}
		if err := json.Unmarshal([]byte(grant), r.Approval); err != nil {
			return nil, fmt.Errorf("scan %s: bad approval: %w", r.ID, err)
		}
	}
	if err := json.Unmarshal([]byte(notes), &r.Notes); err != nil {
		return nil, fmt.Errorf("scan %s: bad notes: %w", r.ID, err)
	}
	r.Request = json.RawMessage(req)
	if err := json.Unmarshal([]byte(argv), &r.Argv); err != nil {
		return nil, fmt.Errorf("scan %s: bad argv: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(limits), &r.Limits); err != nil {
		return nil, fmt.Errorf("scan %s: bad limits: %w", r.ID, err)
	}
	r.CreatedAt, r.StartedAt, r.EndedAt = FromMillis(created), FromMillis(started), FromMillis(ended)
	if result.Valid {
		r.Result = &results.Result{}
		if err := json.Unmarshal([]byte(result.String), r.Result); err != nil {
			return nil, fmt.Errorf("scan %s: bad result: %w", r.ID, err)
		}
	}
	return &r, nil
}

// Get returns one record, without its raw XML. An unknown ID is a
// *NotFoundError. With a client, a scan another client started is not
// found either (the same error: ids of others' scans are not revealed).
func (s *Store) Get(ctx context.Context, id string, client string) (*Record, error) {
	r, err := scanRecord(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM scans WHERE id = ? AND (? = '' OR client = ?)`, id, client, client))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &NotFoundError{ID: id}
	}
	if err != nil {
		return nil, s.fail(fmt.Sprintf("get %s", id), err)
	}
	return r, nil
}

// RawXML returns a scan's raw XML as kept; client works as in Get.
func (s *Store) RawXML(ctx context.Context, id string, client string) ([]byte, error) {
	var xml []byte
	err := s.db.QueryRowContext(ctx, `SELECT raw_xml FROM scans WHERE id = ? AND (? = '' OR client = ?)`, id, client, client).Scan(&xml)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &NotFoundError{ID: id}
	}
	if err != nil {
		return nil, s.fail(fmt.Sprintf("raw xml of %s", id), err)
	}
	return xml, nil
}

// Filter selects records for List.
type Filter struct {
	Target   string    // a target token the scan listed, e.g. "127.0.0.1"
	Status   string    // one of Statuses, or empty for all
	Since    time.Time // created at or after
	Finished bool      // only scans that are no longer running
	// NoPending leaves out scans waiting for approval (their stored
	// records), so that offsets count only the others.
	NoPending bool
	Limit     int // at most this many, newest first (default 20)
	Offset    int // skip this many first (paging)
	// Client, when set, keeps only the scans this client started.
	Client string
}

// List returns summaries of records, newest first: without raw XML and
// without Result (HostsUp and OpenPorts summarise it).
func (s *Store) List(ctx context.Context, f Filter) ([]*Record, error) {
	var where []string
	var args []any
	// A target filter reads the target index (scan_targets, newest first)
	// and joins each hit to its scan; the other filters apply to the scan.
	q, col, order := `SELECT `+summaryColumns+` FROM scans`, "", ` ORDER BY created_at DESC, rowid DESC`
	if f.Target != "" {
		q = `SELECT ` + qualified("s.", summaryColumns) + ` FROM scan_targets t CROSS JOIN scans s ON s.id = t.id`
		col, order = "s.", ` ORDER BY t.created_at DESC, t.id DESC`
		where = append(where, `t.target = ?`)
		args = append(args, strings.ToLower(f.Target))
	}
	if f.Client != "" {
		where = append(where, col+`client = ?`)
		args = append(args, f.Client)
	}
	if f.Status != "" {
		where = append(where, col+`status = ?`)
		args = append(args, f.Status)
	}
	if f.Finished {
		where = append(where, col+`status NOT IN (?, ?, ?)`)
		args = append(args, Queued, Running, PendingApproval)
	}
	if f.NoPending {
		where = append(where, col+`status <> ?`)
		args = append(args, PendingApproval)
	}
	if !f.Since.IsZero() {
		where = append(where, col+`created_at >= ?`)
		args = append(args, f.Since.UnixMilli())
	}
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 20
	}
	q += order + ` LIMIT ? OFFSET ?`
	args = append(args, limit, max(f.Offset, 0))
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.fail("list", err)
	}
	defer rows.Close()
	out := []*Record{}
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, s.fail("list", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list", err)
	}
	return out, nil
}

// ParseSince reads an RFC 3339 time, or a duration meaning that long
// before now ("24h", "90m").
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("invalid since %q: must be an RFC 3339 time (2026-01-31T12:00:00Z) or a duration such as 24h", s)
}
