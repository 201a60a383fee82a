// Package oidcop starts a real, OpenID-certified OpenID Provider for tests:
// the npm package oidc-provider (version [Version]) run by node on
// 127.0.0.1, on a free port, over plain HTTP. Tests get their tokens from
// it through the real grants (client_credentials, authorization code with
// PKCE, dynamic client registration), never by minting them by hand.
//
// [Start] installs oidc-provider into a cache folder outside the repo when
// it is missing (NMAP_MCP_OIDC_PROVIDER, else nmap-mcp-oidcop in
// $XDG_CACHE_HOME or ~/.cache; scripts/test.sh installs it there first),
// runs the embedded script op.mjs from node's command line (no file is
// written), and stops node when the test ends; node also exits by itself
// when the test process dies, even by a panic or SIGKILL. Without node (or
// without npm while the package is not installed) the test skips, except
// under CI, where it fails.
//
// # Tokens
//
// Every resource in [Config] is a resource indicator (RFC 8707). Access
// tokens for it are JWTs (RFC 9068, header typ "at+jwt") signed RS256 with
// the provider's key (kid in the header, key in the JWKS), with iss = the
// issuer, aud = the resource, exp = iat + AccessTokenTTL, scope = the
// granted scopes of [Config.Scopes], client_id, jti, and sub = the login
// (user tokens) or the client id (client_credentials). User tokens also
// carry preferred_username (the login) and groups (from [Config.Groups]; a
// client id listed there gets its groups in client_credentials tokens).
// An authorization request without a resource parameter gets the first
// resource; the token endpoint uses the granted resource when the request
// names none.
//
// ID tokens (RS256) carry sub, preferred_username, groups, name and the
// request's nonce; userinfo the same claims. Every requested OIDC scope and
// resource scope is granted at once (no consent page). Clients allowed the
// refresh_token grant get refresh tokens (offline_access not needed); a
// refresh reads the groups anew. PKCE (S256) is required for public
// clients, and for all clients with [Config.RequirePKCE]. Only
// response_type=code is served. Dynamic client registration
// ([Config.Registration]) is open: no initial access token.
// /.well-known/oauth-authorization-server answers as
// /.well-known/openid-configuration does.
//
// # Signing in over HTTP (what Provider.Login does)
//
// Any login is accepted; the account id is the login. A client that is not
// written in Go (the TypeScript SDK test) signs in with these requests
// ([LoginScript] makes them with fetch), sending back every cookie the OP
// set (they are path-scoped: a jar, or simply all of them on every request
// to the OP, both work):
//
//  1. GET the authorization URL (ISSUER/auth?response_type=code&client_id=…
//     &redirect_uri=…&code_challenge=…&code_challenge_method=S256&state=…
//     [&scope=…][&resource=…][&nonce=…]) without following redirects:
//     303, Location /interaction/UID, cookies _interaction and
//     _interaction_resume (and their .sig). An error the OP can send back
//     to the client is a redirect to redirect_uri?error=…; one it cannot
//     (unknown client, bad redirect_uri) is a 400 HTML page.
//  2. GET ISSUER/interaction/UID: 200, an HTML form (optional: step 3
//     needs only UID).
//  3. POST ISSUER/interaction/UID/login, Content-Type
//     application/x-www-form-urlencoded, body login=alice: 303, Location
//     ISSUER/auth/UID (the interaction is finished through the provider's
//     interactionFinished).
//  4. GET ISSUER/auth/UID: 303, Location redirect_uri?code=…&state=…&iss=…,
//     and a _session cookie (a later authorization request of the same
//     cookie holder goes straight to the client, signed in as alice).
//
// With prompt=consent (which offline_access needs) step 4 answers 303 to
// ISSUER/interaction/UID2 instead: its GET grants what was asked and
// answers 303 to ISSUER/auth/UID2, whose GET is step 4 again.
// [Provider.Login] follows every redirect that stays on the OP, posts the
// login when it gets the login page, and returns the first redirect that
// leaves the OP.
//
// # Control
//
// [Provider.Rotate] replaces the signing key (new RSA key, new kid, the old
// one gone from the JWKS) and [Provider.SetGroups] changes a login's
// groups, on the same issuer, through loopback control routes that need a
// random token only this process knows. Rotation keeps sessions, grants,
// tokens and dynamically registered clients.
package oidcop

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

//go:embed op.mjs
var script []byte

// LoginScript is an ES module (login.mjs) exporting async function
// login(authorizeURL, user): the sign-in steps of the package doc with
// fetch, returning the redirect URL that leaves the provider, as
// [Provider.Login] does. A JavaScript test (the MCP TypeScript SDK's) writes
// it next to its own script and calls it from redirectToAuthorization.
//
//go:embed login.mjs
var LoginScript []byte

// Version is the oidc-provider release the harness installs and runs.
const Version = "9.13.3"

// Config is what the provider serves.
type Config struct {
	// Resource is the resource indicator (and so the audience) for which
	// JWT access tokens are issued, e.g. "http://127.0.0.1:PORT/mcp".
	Resource string
	// Resources are more resource indicators, e.g. another audience a test
	// needs a token for. Resource and Resources together need at least one.
	Resources []string
	// Scopes are the resource scopes, e.g. "nmap:scan", "nmap:read".
	Scopes []string
	// Clients are the statically registered clients.
	Clients []Client
	// Groups gives each login (or client id) its groups, for the groups
	// claim of ID tokens, userinfo and access tokens.
	Groups map[string][]string
	// AccessTokenTTL is the lifetime of access tokens; 0 means 10 minutes.
	// It counts in whole seconds.
	AccessTokenTTL time.Duration
	// Registration enables open dynamic client registration (RFC 7591)
	// at the registration_endpoint, without an initial access token.
	Registration bool
	// RequirePKCE requires PKCE of every client, not only public ones.
	RequirePKCE bool
}

// Client is a statically registered client.
type Client struct {
	// ClientID is the client's id; required.
	ClientID string
	// Secret is the client secret (client_secret_basic); "" makes a
	// public client (token_endpoint_auth_method none, PKCE required).
	Secret string
	// RedirectURIs are the client's redirect URIs, needed for the
	// authorization_code grant.
	RedirectURIs []string
	// GrantTypes are the client's grant types. Empty means
	// authorization_code and refresh_token when RedirectURIs are set, plus
	// client_credentials when Secret is set.
	GrantTypes []string
}

// Provider is a running test OpenID Provider.
type Provider struct {
	issuer  string
	control string // the control routes' token
	cmd     *exec.Cmd
	stdin   io.Closer
	exited  chan struct{} // closed when node has exited
	log     *tailBuffer   // node's stdout after the first line, and stderr
	http    *http.Client
	once    sync.Once
	startup time.Duration
}

// need skips the test for a missing tool, except under CI, where it fails:
// a test that needs the OP must not skip silently there.
func need(t testing.TB, msg string) {
	t.Helper()
	msg += " (Debian: apt-get install nodejs npm; scripts/test.sh installs oidc-provider)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; it is required under CI")
	}
	t.Skip(msg)
}

// Start starts a provider serving cfg and registers its removal with
// t.Cleanup. The provider answers discovery when Start returns. A bad cfg
// or a provider that does not come up fails the test; a machine without
// node skips it (fails it under CI).
func Start(t testing.TB, cfg Config) *Provider {
	t.Helper()
	spec, err := cfg.spec()
	if err != nil {
		t.Fatalf("oidcop: %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		need(t, "the test OpenID Provider needs node")
	}
	dir, err := CacheDir()
	if err != nil {
		t.Fatalf("oidcop: %v", err)
	}
	if !installed(dir) {
		if _, err := exec.LookPath("npm"); err != nil {
			need(t, "the test OpenID Provider needs oidc-provider@"+Version+" in "+dir+", and npm to install it")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := Install(ctx, dir); err != nil {
		t.Fatalf("oidcop: %v", err)
	}
	p, err := start(ctx, node, dir, spec)
	if err != nil {
		t.Fatalf("oidcop: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("oidcop: the provider's log:\n%s", p.log.String())
		}
		p.Close()
	})
	return p
}

// spec is the configuration op.mjs reads.
type spec struct {
	Resources      []string            `json:"resources"`
	Scopes         []string            `json:"scopes"`
	Clients        []clientSpec        `json:"clients"`
	Groups         map[string][]string `json:"groups"`
	AccessTokenTTL int64               `json:"accessTokenTTL"`
	Registration   bool                `json:"registration"`
	RequirePKCE    bool                `json:"requirePKCE"`
}

type clientSpec struct {
	ClientID      string   `json:"client_id"`
	ClientSecret  string   `json:"client_secret,omitempty"`
	RedirectURIs  []string `json:"redirect_uris"`
	GrantTypes    []string `json:"grant_types"`
	ResponseTypes []string `json:"response_types"`
	AuthMethod    string   `json:"token_endpoint_auth_method"`
}

var scopeToken = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]+$`)

// spec checks cfg and turns it into what op.mjs reads.
func (cfg Config) spec() (spec, error) {
	s := spec{Scopes: cfg.Scopes, Groups: cfg.Groups, Registration: cfg.Registration, RequirePKCE: cfg.RequirePKCE}
	seen := map[string]bool{}
	for _, r := range append([]string{cfg.Resource}, cfg.Resources...) {
		if r == "" || seen[r] {
			continue
		}
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || strings.Contains(r, "#") {
			return spec{}, fmt.Errorf("config: resource %q: want an absolute http(s) URL without fragment", r)
		}
		seen[r] = true
		s.Resources = append(s.Resources, r)
	}
	if len(s.Resources) == 0 {
		return spec{}, errors.New("config: Resource and Resources are empty: want at least one resource indicator")
	}
	for _, sc := range cfg.Scopes {
		if !scopeToken.MatchString(sc) {
			return spec{}, fmt.Errorf("config: scope %q: want one scope token (printable ASCII, no space, quote or backslash)", sc)
		}
	}
	switch ttl := cfg.AccessTokenTTL; {
	case ttl == 0:
		s.AccessTokenTTL = 600
	case ttl < time.Second:
		return spec{}, fmt.Errorf("config: AccessTokenTTL %v: want 0 (10 minutes) or at least 1s", ttl)
	default:
		s.AccessTokenTTL = int64(ttl / time.Second)
	}
	ids := map[string]bool{}
	for i, c := range cfg.Clients {
		if c.ClientID == "" {
			return spec{}, fmt.Errorf("config: Clients[%d]: ClientID is empty", i)
		}
		if ids[c.ClientID] {
			return spec{}, fmt.Errorf("config: Clients[%d]: ClientID %q is there twice", i, c.ClientID)
		}
		ids[c.ClientID] = true
		cs := clientSpec{ClientID: c.ClientID, ClientSecret: c.Secret, RedirectURIs: c.RedirectURIs, GrantTypes: c.GrantTypes, AuthMethod: "client_secret_basic"}
		if cs.RedirectURIs == nil {
			cs.RedirectURIs = []string{}
		}
		if c.Secret == "" {
			cs.AuthMethod = "none"
		}
		if len(cs.GrantTypes) == 0 {
			if len(c.RedirectURIs) > 0 {
				cs.GrantTypes = append(cs.GrantTypes, "authorization_code", "refresh_token")
			}
			if c.Secret != "" {
				cs.GrantTypes = append(cs.GrantTypes, "client_credentials")
			}
			if len(cs.GrantTypes) == 0 {
				return spec{}, fmt.Errorf("config: client %q: no RedirectURIs, no Secret and no GrantTypes: it could get no token", c.ClientID)
			}
		}
		cs.ResponseTypes = []string{}
		for _, g := range cs.GrantTypes {
			switch g {
			case "authorization_code":
				if len(c.RedirectURIs) == 0 {
					return spec{}, fmt.Errorf("config: client %q: grant type authorization_code needs RedirectURIs", c.ClientID)
				}
				cs.ResponseTypes = []string{"code"}
			case "client_credentials":
				if c.Secret == "" {
					return spec{}, fmt.Errorf("config: client %q: grant type client_credentials needs a Secret", c.ClientID)
				}
			case "refresh_token":
			default:
				return spec{}, fmt.Errorf("config: client %q: grant type %q: want authorization_code, refresh_token or client_credentials", c.ClientID, g)
			}
		}
		s.Clients = append(s.Clients, cs)
	}
	if s.Clients == nil {
		s.Clients = []clientSpec{}
	}
	return s, nil
}

// start runs node on the script, in the cache folder so that it finds
// oidc-provider, and waits until the provider answers discovery. It writes
// no file: the script and its configuration go on node's command line and
// environment.
func start(ctx context.Context, node, cache string, s spec) (p *Provider, err error) {
	t0 := time.Now()
	cfgJSON, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	control, err := randomToken()
	if err != nil {
		return nil, err
	}
	log := &tailBuffer{max: 64 << 10}
	first := &firstLine{rest: log, line: make(chan string, 1)}
	cmd := exec.Command(node, "--input-type=module", "-e", string(script))
	cmd.Dir = cache
	cmd.Env = append(os.Environ(), "OIDCOP_CONFIG="+string(cfgJSON), "OIDCOP_CONTROL_TOKEN="+control, "NODE_ENV=test")
	cmd.Stdout = first
	cmd.Stderr = log
	stdin, err := cmd.StdinPipe() // node exits when it closes
	if err != nil {
		return nil, fmt.Errorf("node stdin: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	p = &Provider{
		control: control,
		cmd:     cmd,
		stdin:   stdin,
		exited:  make(chan struct{}),
		log:     log,
		http:    &http.Client{Transport: tr, Timeout: time.Minute},
	}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	defer func() {
		if err != nil {
			p.Close()
			err = fmt.Errorf("%w; the provider's log:\n%s", err, log.String())
		}
	}()
	var line string
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case line = <-first.line:
	case <-p.exited:
		return nil, fmt.Errorf("node exited before listening: %v", cmd.ProcessState)
	case <-timer.C:
		return nil, errors.New("node did not listen within 30s")
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for node: %w", ctx.Err())
	}
	var ready struct{ Port int }
	if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.Port <= 0 {
		return nil, fmt.Errorf("node's first line %q: want {\"port\":N}", line)
	}
	p.issuer = "http://" + net.JoinHostPort("127.0.0.1", fmt.Sprint(ready.Port))
	var disc struct{ Issuer string }
	if err := p.getJSON(ctx, p.issuer+"/.well-known/openid-configuration", &disc); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if disc.Issuer != p.issuer {
		return nil, fmt.Errorf("discovery: issuer %q, want %q", disc.Issuer, p.issuer)
	}
	p.startup = time.Since(t0)
	return p, nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return fmt.Sprintf("%x", b), nil
}

// Close stops node. It is registered with
// t.Cleanup by Start; calling it earlier is fine, and more than once too.
func (p *Provider) Close() {
	p.once.Do(func() {
		p.stdin.Close()
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// Issuer is the provider's issuer, http://127.0.0.1:PORT (no path).
func (p *Provider) Issuer() string { return p.issuer }

// AuthURL is the authorization endpoint.
func (p *Provider) AuthURL() string { return p.issuer + "/auth" }

// TokenURL is the token endpoint.
func (p *Provider) TokenURL() string { return p.issuer + "/token" }

// JWKSURL is the provider's JSON Web Key Set.
func (p *Provider) JWKSURL() string { return p.issuer + "/jwks" }

// RegistrationURL is the dynamic client registration endpoint (served
// with Config.Registration).
func (p *Provider) RegistrationURL() string { return p.issuer + "/reg" }

// StartupTime is how long Start took from launching node until discovery
// answered (installation not counted).
func (p *Provider) StartupTime() time.Duration { return p.startup }

// Log is what node wrote so far (the last 64 KiB): warnings and errors of
// the provider.
func (p *Provider) Log() string { return p.log.String() }

// tokenError is an OAuth error response.
type tokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// ClientCredentials runs a client_credentials grant for resource with
// scope (space-separated; "" asks for none) and returns the JWT access
// token. secret "" sends no client authentication.
func (p *Provider) ClientCredentials(ctx context.Context, clientID, secret, scope, resource string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	if resource != "" {
		form.Set("resource", resource)
	}
	if secret == "" {
		form.Set("client_id", clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("client_credentials for %q: %w", clientID, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("client_credentials for %q: %w", clientID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("client_credentials for %q: read answer: %w", clientID, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e tokenError
		_ = json.Unmarshal(body, &e)
		return "", fmt.Errorf("client_credentials for %q: %s: %s: %s", clientID, resp.Status, e.Error, e.Description)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("client_credentials for %q: answer %q has no access_token", clientID, body)
	}
	return tok.AccessToken, nil
}

// Login signs login in at the authorization URL authorizeURL (an
// authorization request to this provider, built by the test's client) as
// described in the package doc, and returns the redirect that leaves the
// provider: the client's redirect_uri with code and state, or with error.
// It holds its own cookie jar, so every call is a new browser.
func (p *Provider) Login(ctx context.Context, authorizeURL, login string) (*url.URL, error) {
	if login == "" {
		return nil, errors.New("login: the login is empty")
	}
	op, _ := url.Parse(p.issuer)
	next, err := url.Parse(authorizeURL)
	if err != nil {
		return nil, fmt.Errorf("login: authorization URL %q: %w", authorizeURL, err)
	}
	if next.Scheme != op.Scheme || next.Host != op.Host {
		return nil, fmt.Errorf("login: authorization URL %q is not on the provider %s", authorizeURL, p.issuer)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, fmt.Errorf("login: cookie jar: %w", err)
	}
	c := &http.Client{
		Transport:     p.http.Transport,
		Timeout:       p.http.Timeout,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	method, body := http.MethodGet, ""
	for step := 0; step < 12; step++ {
		req, err := http.NewRequestWithContext(ctx, method, next.String(), strings.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("login: %w", err)
		}
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("login: %s %s: %w", method, next.Path, err)
		}
		page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := resp.Location()
			if err != nil {
				return nil, fmt.Errorf("login: %s %s: %s without Location: %w", method, next.Path, resp.Status, err)
			}
			if loc.Scheme != op.Scheme || loc.Host != op.Host {
				return loc, nil
			}
			next, method, body = loc, http.MethodGet, ""
		case resp.StatusCode == http.StatusOK && method == http.MethodGet && interactionPath.MatchString(next.Path):
			next = next.ResolveReference(&url.URL{Path: next.Path + "/login"})
			method, body = http.MethodPost, url.Values{"login": {login}}.Encode()
		default:
			return nil, fmt.Errorf("login: %s %s: %s: %s", method, next.Path, resp.Status, textOf(page))
		}
	}
	return nil, errors.New("login: more than 12 steps on the provider")
}

var (
	interactionPath = regexp.MustCompile(`^/interaction/[^/]+$`)
	tags            = regexp.MustCompile(`(?s)<style.*?</style>|<script.*?</script>|<[^>]*>`)
	spaces          = regexp.MustCompile(`\s+`)
)

// textOf is an HTML error page as short text.
func textOf(page []byte) string {
	s := strings.TrimSpace(spaces.ReplaceAllString(tags.ReplaceAllString(string(page), " "), " "))
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}

// Rotate replaces the provider's signing key: a new RSA key with a new
// kid signs what is issued from now on, and the JWKS holds only it. The
// issuer, clients, sessions and tokens stay.
func (p *Provider) Rotate(ctx context.Context) error {
	if err := p.controlCall(ctx, "rotate", nil); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	return nil
}

// SetGroups sets the groups of login (or client id) for the tokens and
// ID tokens issued from now on; nil or empty removes all.
func (p *Provider) SetGroups(ctx context.Context, login string, groups []string) error {
	if login == "" {
		return errors.New("set groups: the login is empty")
	}
	if groups == nil {
		groups = []string{}
	}
	if err := p.controlCall(ctx, "groups", map[string]any{"login": login, "groups": groups}); err != nil {
		return fmt.Errorf("set groups of %q: %w", login, err)
	}
	return nil
}

func (p *Provider) controlCall(ctx context.Context, action string, v any) error {
	body := []byte("{}")
	if v != nil {
		var err error
		if body, err = json.Marshal(v); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.issuer+"/control/"+action, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Oidcop-Control", p.control)
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// KeyIDs lists the kids of the provider's JWKS.
func (p *Provider) KeyIDs(ctx context.Context) ([]string, error) {
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := p.getJSON(ctx, p.JWKSURL(), &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	kids := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids, nil
}

func (p *Provider) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, textOf(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// firstLine hands the first line written to it over line, and the rest to
// rest.
type firstLine struct {
	mu   sync.Mutex
	buf  []byte
	done bool
	line chan string
	rest io.Writer
}

func (f *firstLine) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return f.rest.Write(p)
	}
	f.buf = append(f.buf, p...)
	if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
		f.done = true
		f.line <- string(f.buf[:i])
		if _, err := f.rest.Write(f.buf[i+1:]); err != nil {
			return 0, err
		}
		f.buf = nil
	}
	return len(p), nil
}
