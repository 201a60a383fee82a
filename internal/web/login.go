package web

import (
	"crypto/subtle"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/nmap-mcp/nmap-mcp/internal/auth"
)

// Sign-in through the lab's identity provider (Config.Login): /auth/login
// sends the browser to the provider with a fresh state, nonce and PKCE
// verifier kept here (bounded, 10 minutes) and a cookie holding the state
// (SameSite=Lax, so it comes back with the provider's redirect);
// /auth/callback needs that cookie to equal the state it is given — a
// sign-in started in another browser cannot be finished in this one — and
// then redeems the code once. The session lasts no longer than the
// person's access token: a person removed at the provider loses the web
// view when it expires.

// loginCookie carries a pending sign-in's state.
const loginCookie = "nmap_mcp_login"

// pendingTTL bounds a sign-in at the provider; maxPending bounds how many
// may be under way.
const (
	pendingTTL = 10 * time.Minute
	maxPending = 1000
)

type pendingLogin struct {
	nonce, verifier, next string
	expires               time.Time
}

// providerLogin starts a sign-in at the provider.
func (h *Handler) providerLogin(w http.ResponseWriter, r *http.Request) {
	state, err := randomHex(32)
	if err != nil {
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	nonce, err := randomHex(16)
	if err != nil {
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	verifier := oauth2.GenerateVerifier()
	to, err := h.cfg.Login.AuthURL(r.Context(), state, nonce, verifier)
	if err != nil {
		h.cfg.Log.Warn("provider sign-in unavailable", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		h.render(w, r, "signin", nil, h.signinData(safeNext(r.URL.Query().Get("next")), "The identity provider cannot be reached now; try again, or sign in with a token."))
		return
	}
	now := h.now()
	h.mu.Lock()
	for k, p := range h.pending {
		if now.After(p.expires) {
			delete(h.pending, k)
		}
	}
	if len(h.pending) >= maxPending {
		h.mu.Unlock()
		http.Error(w, "Service Unavailable: too many sign-ins under way; try again in a few minutes", http.StatusServiceUnavailable)
		return
	}
	h.pending[state] = &pendingLogin{nonce: nonce, verifier: verifier, next: safeNext(r.URL.Query().Get("next")), expires: now.Add(pendingTTL)}
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: state, Path: "/auth/", HttpOnly: true, Secure: h.cfg.Secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(pendingTTL / time.Second)})
	http.Redirect(w, r, to, http.StatusFound)
}

// providerCallback finishes a sign-in at the provider.
func (h *Handler) providerCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	c, err := r.Cookie(loginCookie)
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/auth/", HttpOnly: true, Secure: h.cfg.Secure,
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
	if err != nil || state == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) != 1 {
		h.refuseLogin(w, r, http.StatusBadRequest, "", "This sign-in was not started in this browser (its state does not match); start again.")
		return
	}
	h.mu.Lock()
	p, ok := h.pending[state]
	delete(h.pending, state) // once only
	h.mu.Unlock()
	if !ok || h.now().After(p.expires) {
		h.refuseLogin(w, r, http.StatusBadRequest, "", "This sign-in has expired or was already used; start again.")
		return
	}
	if e := q.Get("error"); e != "" {
		h.refuseLogin(w, r, http.StatusUnauthorized, p.next, "The identity provider refused the sign-in: "+e+" "+q.Get("error_description"))
		return
	}
	id, err := h.cfg.Login.Finish(r.Context(), q.Get("code"), p.verifier, p.nonce)
	if err != nil {
		h.cfg.Log.Info("provider sign-in refused", "remote", r.RemoteAddr, "err", err)
		h.refuseLogin(w, r, http.StatusUnauthorized, p.next, "The sign-in could not be checked: "+err.Error())
		return
	}
	if !id.Has(auth.Read) && !id.Has(auth.Approve) {
		h.refuseLogin(w, r, http.StatusForbidden, p.next, "Your account at the identity provider has no role on this server (it needs the read, scan, approve or admin role).")
		return
	}
	expires := h.now().Add(h.cfg.SessionTTL)
	if id.Expires.Before(expires) {
		expires = id.Expires
	}
	sess, err := h.newSessionFor(person{client: id.Name, admin: id.Has(auth.Admin), approver: id.Has(auth.Approve), read: id.Has(auth.Read)}, expires)
	if err != nil {
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	if h.cfg.Seen != nil {
		h.cfg.Seen(id)
	}
	h.cfg.Log.Info("web sign-in through the identity provider", "client", id.Name, "remote", r.RemoteAddr, "until", expires)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: sess.id, Path: "/", HttpOnly: true, Secure: h.cfg.Secure,
		SameSite: http.SameSiteStrictMode, Expires: sess.expires})
	// A page of our own goes on to next: the browser arrived from the
	// provider, and a redirect would carry that cross-site navigation on,
	// so that the SameSite=Strict session cookie would not be sent.
	h.render(w, r, "signedin", nil, map[string]any{"Next": p.next, "Client": id.Name})
}

func (h *Handler) refuseLogin(w http.ResponseWriter, r *http.Request, status int, next, msg string) {
	w.WriteHeader(status)
	h.render(w, r, "signin", nil, h.signinData(safeNext(next), msg))
}

// signinData is the sign-in page's data.
func (h *Handler) signinData(next, errMsg string) map[string]any {
	d := map[string]any{"Next": next, "Provider": h.cfg.Login != nil}
	if errMsg != "" {
		d["Error"] = errMsg
	}
	return d
}
