package web

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/nmap-mcp/nmap-mcp/internal/auth"
)

// Sign-in through the lab's identity provider (Config.Login): /auth/login
// sends the browser to the provider with a fresh state, nonce and PKCE
// verifier, sealed (AES-GCM, a key of this process) into a cookie
// (SameSite=Lax, so it comes back with the provider's redirect, 10
// minutes). Nothing is kept on the server per sign-in, so starting many
// (the page needs no session) locks nobody out. /auth/callback needs that
// cookie to open and to hold the state it is given — a sign-in started in
// another browser cannot be finished in this one — clears it, and then
// redeems the code (once: the provider refuses a code again). The session
// lasts no longer than the person's access token: a person removed at the
// provider loses the web view when it expires.

// loginCookie carries a pending sign-in, sealed.
const loginCookie = "nmap_mcp_login"

// pendingTTL bounds a sign-in at the provider; maxNext bounds the page to
// go on to that the cookie carries.
const (
	pendingTTL = 10 * time.Minute
	maxNext    = 1024
)

// pendingLogin is a sign-in under way, as sealed in its cookie.
type pendingLogin struct {
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	Next     string    `json:"x"`
	Expires  time.Time `json:"e"`
}

// loginAD binds sealed values to their use.
var loginAD = []byte("nmap-mcp provider sign-in")

// newLoginSealer is the AEAD of this process's sign-in cookies.
func newLoginSealer() (cipher.AEAD, error) {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("sign-in cookie key: %w", err)
	}
	b, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("sign-in cookie key: %w", err)
	}
	return cipher.NewGCM(b)
}

func (h *Handler) sealLogin(p pendingLogin) (string, error) {
	plain, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("seal sign-in: %w", err)
	}
	nonce := make([]byte, h.loginSeal.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal sign-in: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(h.loginSeal.Seal(nonce, nonce, plain, loginAD)), nil
}

func (h *Handler) openLogin(v string) (pendingLogin, bool) {
	var p pendingLogin
	b, err := base64.RawURLEncoding.DecodeString(v)
	n := h.loginSeal.NonceSize()
	if err != nil || len(b) < n {
		return p, false
	}
	plain, err := h.loginSeal.Open(nil, b[:n], b[n:], loginAD)
	if err != nil || json.Unmarshal(plain, &p) != nil {
		return p, false
	}
	return p, true
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
	next := safeNext(r.URL.Query().Get("next"))
	if len(next) > maxNext {
		next = safeNext("")
	}
	sealed, err := h.sealLogin(pendingLogin{State: state, Nonce: nonce, Verifier: verifier, Next: next, Expires: h.now().Add(pendingTTL)})
	if err != nil {
		h.cfg.Log.Warn("provider sign-in", "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: sealed, Path: "/auth/", HttpOnly: true, Secure: h.cfg.Secure,
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
	var p pendingLogin
	ok := err == nil && state != ""
	if ok {
		p, ok = h.openLogin(c.Value)
	}
	if !ok || subtle.ConstantTimeCompare([]byte(p.State), []byte(state)) != 1 {
		h.refuseLogin(w, r, http.StatusBadRequest, "", "This sign-in was not started in this browser (its state does not match); start again.")
		return
	}
	if h.now().After(p.Expires) {
		h.refuseLogin(w, r, http.StatusBadRequest, "", "This sign-in has expired; start again.")
		return
	}
	if e := q.Get("error"); e != "" {
		h.refuseLogin(w, r, http.StatusUnauthorized, p.Next, "The identity provider refused the sign-in: "+e+" "+q.Get("error_description"))
		return
	}
	id, err := h.cfg.Login.Finish(r.Context(), q.Get("code"), p.Verifier, p.Nonce)
	if err != nil {
		h.cfg.Log.Info("provider sign-in refused", "remote", r.RemoteAddr, "err", err)
		h.refuseLogin(w, r, http.StatusUnauthorized, p.Next, "The sign-in could not be checked: "+err.Error())
		return
	}
	if !id.Has(auth.Read) && !id.Has(auth.Approve) {
		h.refuseLogin(w, r, http.StatusForbidden, p.Next, "Your account at the identity provider has no role on this server (it needs the read, scan, approve or admin role).")
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
	if h.cfg.Seen != nil && id.Has(auth.Scan) {
		// Standing keeps the person's watches scanning: only the scan
		// role renews it.
		h.cfg.Seen(id)
	}
	h.cfg.Log.Info("web sign-in through the identity provider", "client", id.Name, "remote", r.RemoteAddr, "until", expires)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: sess.id, Path: "/", HttpOnly: true, Secure: h.cfg.Secure,
		SameSite: http.SameSiteStrictMode, Expires: sess.expires})
	// A page of our own goes on to next: the browser arrived from the
	// provider, and a redirect would carry that cross-site navigation on,
	// so that the SameSite=Strict session cookie would not be sent.
	h.render(w, r, "signedin", nil, map[string]any{"Next": p.Next, "Client": id.Name})
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
