package web

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/export"
	"github.com/nmap-mcp/nmap-mcp/internal/inventory"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// The inventory pages: /inventory (a search with find_hosts' filters and
// its CSV at /inventory/csv) and /inventory/host/{address} (one host's
// ports and change log). A client sees its own inventory; an admin every
// client's. They answer from the inventory; nothing is scanned.

// addInventory parses the inventory pages and routes them; without an
// inventory (Config.Inventory nil) there are none.
func (h *Handler) addInventory(mux *http.ServeMux) error {
	if h.cfg.Inventory == nil {
		return nil
	}
	for _, name := range []string{"inventory", "host"} {
		t, err := template.New("").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("web: parse page %s: %w", name, err)
		}
		h.pages[name] = t
	}
	mux.HandleFunc("GET /inventory", h.signed(h.inventoryPage))
	mux.HandleFunc("GET /inventory/csv", h.signed(h.inventoryCSV))
	mux.HandleFunc("GET /inventory/host/{address}", h.signed(h.hostPage))
	return nil
}

// inventoryForm is the search form's values, as given.
type inventoryForm struct {
	Address, Port, Protocol, State, Service, Product, Version, SeenSince, ChangedSince, Gone string
	Offset                                                                                   string
}

func formOf(r *http.Request) inventoryForm {
	q := r.URL.Query()
	f := inventoryForm{Address: q.Get("address"), Port: q.Get("port"), Protocol: q.Get("protocol"), State: q.Get("state"),
		Service: q.Get("service"), Product: q.Get("product"), Version: q.Get("version"), SeenSince: q.Get("seen_since"),
		ChangedSince: q.Get("changed_since"), Gone: q.Get("gone"), Offset: q.Get("offset")}
	return f
}

// values is the form as a query string, without the offset.
func (f inventoryForm) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"address": f.Address, "port": f.Port, "protocol": f.Protocol, "state": f.State, "service": f.Service,
		"product": f.Product, "version": f.Version, "seen_since": f.SeenSince, "changed_since": f.ChangedSince, "gone": f.Gone} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// query reads the form into an inventory query for the session's viewer;
// an error names the field, its value and the rule.
func (f inventoryForm) query(sess *session, limit int) (inventory.Query, error) {
	q := inventory.Query{Address: strings.TrimSpace(f.Address), Protocol: f.Protocol, State: f.State, Service: strings.TrimSpace(f.Service),
		Product: strings.TrimSpace(f.Product), Version: strings.TrimSpace(f.Version), Gone: f.Gone, Limit: limit}
	if !sess.admin {
		q.Client = sess.client
	}
	if f.Offset != "" {
		n, err := strconv.Atoi(strings.TrimSpace(f.Offset))
		if err != nil || n < 0 {
			return q, fmt.Errorf("invalid offset %q: must be a number of hosts to skip, 0 or more", f.Offset)
		}
		q.Offset = n
	}
	if f.Port != "" {
		p, err := strconv.Atoi(strings.TrimSpace(f.Port))
		if err != nil || p < 1 || p > 65535 {
			return q, fmt.Errorf("invalid port %q: must be a number from 1 to 65535", f.Port)
		}
		q.Port = p
	}
	for _, w := range []struct {
		field, value string
		into         *time.Time
	}{{"seen since", f.SeenSince, &q.SeenSince}, {"changed since", f.ChangedSince, &q.ChangedSince}} {
		if w.value == "" {
			continue
		}
		t, err := store.ParseSince(strings.TrimSpace(w.value), time.Now())
		if err != nil {
			return q, fmt.Errorf("invalid %s %q: must be an RFC 3339 time or a duration such as 24h", w.field, w.value)
		}
		*w.into = t
	}
	return q, nil
}

type inventoryData struct {
	Form                           inventoryForm
	Protocols, States, GoneChoices []string
	Found                          *inventory.Found
	CSV                            template.URL
	Next                           string
	Error                          string
}

func (h *Handler) inventoryPage(w http.ResponseWriter, r *http.Request, sess *session) {
	f := formOf(r)
	if f.Gone == "" {
		f.Gone = inventory.GonePresent
	}
	d := inventoryData{Form: f, Protocols: inventory.Protocols, States: inventory.States,
		GoneChoices: []string{inventory.GonePresent, inventory.GoneOnly, inventory.GoneAny},
		// A URL this page made of url.Values: its query is already escaped.
		CSV: template.URL("/inventory/csv?" + f.values().Encode())}
	q, err := f.query(sess, 100)
	if err == nil {
		h.catchUp(r)
		d.Found, err = h.cfg.Inventory.Find(r.Context(), q)
	}
	if err != nil {
		d.Error, d.Found = err.Error(), nil
		w.WriteHeader(http.StatusBadRequest)
	} else if d.Found.More {
		v := f.values()
		v.Set("offset", strconv.Itoa(q.Offset+len(d.Found.Hosts)))
		d.Next = "/inventory?" + v.Encode()
	}
	h.render(w, r, "inventory", sess, d)
}

// inventoryCSV is the search's answer as CSV, up to inventory.MaxLimit
// hosts from the form's offset.
func (h *Handler) inventoryCSV(w http.ResponseWriter, r *http.Request, sess *session) {
	q, err := formOf(r).query(sess, inventory.MaxLimit)
	if err != nil {
		http.Error(w, "Bad Request: "+err.Error(), http.StatusBadRequest)
		return
	}
	h.catchUp(r)
	found, err := h.cfg.Inventory.Find(r.Context(), q)
	if err != nil {
		http.Error(w, "Bad Request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var b bytes.Buffer
	if err := export.InventoryCSV(&b, found); err != nil {
		h.fail(w, err)
		return
	}
	download(w, "text/csv; charset=utf-8", "inventory.csv", b.Bytes())
}

type hostData struct {
	Address  string
	Timeline *inventory.Timeline
}

func (h *Handler) hostPage(w http.ResponseWriter, r *http.Request, sess *session) {
	client := sess.client
	if sess.admin {
		client = ""
	}
	addr := r.PathValue("address")
	h.catchUp(r)
	tl, err := h.cfg.Inventory.Host(r.Context(), client, addr)
	if err != nil {
		http.Error(w, "Bad Request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(tl.Hosts) == 0 {
		http.Error(w, "Not Found: no host "+addr+" in the inventory", http.StatusNotFound)
		return
	}
	h.render(w, r, "host", sess, hostData{Address: addr, Timeline: tl})
}

// catchUp ingests scans finished since the inventory last looked, so that
// the page shows a scan that just ended, for at most
// inventory.CatchUpWait (see mcpserver's).
func (h *Handler) catchUp(r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), inventory.CatchUpWait)
	defer cancel()
	if _, err := h.cfg.Inventory.CatchUp(ctx, 20); err != nil && ctx.Err() == nil {
		h.cfg.Log.Warn("web: inventory catch-up failed", "err", err)
	}
}
