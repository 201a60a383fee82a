package web

import (
	"fmt"
	"html/template"
	"io"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Report writes a standalone HTML page for one scan (for `scans show
// --html`): the scan page's content with its style inline and a
// Content-Security-Policy that allows no script at all.
func Report(w io.Writer, rec *store.Record) error {
	pages, err := parsePages()
	if err != nil {
		return err
	}
	return execute(w, pages["report"], page{Title: "scan " + rec.ID, Data: viewOf(rec, false, 100, rec.Status)})
}

// DiffReport writes a standalone HTML page for the diff of two scans.
func DiffReport(w io.Writer, before, after *store.Record) error {
	pages, err := parsePages()
	if err != nil {
		return err
	}
	d := diffData{A: before.ID, B: after.ID, Before: before, After: after, Diff: results.Compare(before.Result, after.Result)}
	return execute(w, pages["diffreport"], page{Title: "diff " + before.ID + " → " + after.ID, Data: d})
}

func execute(w io.Writer, t interface {
	ExecuteTemplate(io.Writer, string, any) error
}, p page) error {
	css, err := assets.ReadFile("static/style.css")
	if err != nil {
		return fmt.Errorf("web: read style: %w", err)
	}
	if err := t.ExecuteTemplate(w, "layout", struct {
		Page  page
		Title string
		CSS   template.CSS
	}{p, p.Title, template.CSS(css)}); err != nil { // our own embedded file

		return fmt.Errorf("web: write report: %w", err)
	}
	return nil
}
