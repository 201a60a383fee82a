// Package auth makes the server an OAuth 2.1 resource server of a lab's
// identity provider (MCP authorization): it checks the provider's access
// tokens — signature against the provider's published keys, issuer,
// audience (this server), expiry within a clock skew, and an allowed
// signing algorithm — names the person from a claim, and maps the token's
// scopes or groups to the server's roles (read, scan, approve, admin). It
// also describes the server as a protected resource (RFC 9728) and signs
// people in to the web view with the authorization-code flow and PKCE
// (login.go).
//
// Validation is go-oidc's and go-jose's, never parsing of our own; the
// keys are refreshed on a fixed interval (so a key rotated out of the
// provider's set stops verifying within it) and fetched again for an
// unknown key id at most once per RefetchEvery, so junk tokens cannot make
// the server hammer the provider.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Role is what a person may do.
type Role string

// The roles. Admin implies every other; scan implies read.
const (
	Read    Role = "read"
	Scan    Role = "scan"
	Approve Role = "approve"
	Admin   Role = "admin"
)

// Roles lists the roles in a fixed order.
var Roles = []Role{Read, Scan, Approve, Admin}

// Grant says which token scopes or group names give a role: any one of
// them does.
type Grant struct {
	Scopes []string `yaml:"scopes"`
	Groups []string `yaml:"groups"`
}

// DefaultGrants give each role when the config names none: the scopes
// nmap:read and nmap:scan, and for the privileged roles the provider's
// groups nmap-approvers and nmap-admins. A client asks for scopes, and
// many providers grant what a client asks for; groups are what the
// provider's administrators assign, so approve and admin come from them
// unless the config maps scopes to them.
func DefaultGrants() map[Role]Grant {
	return map[Role]Grant{
		Read:    {Scopes: []string{"nmap:read"}},
		Scan:    {Scopes: []string{"nmap:scan"}},
		Approve: {Groups: []string{"nmap-approvers"}},
		Admin:   {Groups: []string{"nmap-admins"}},
	}
}

// Config configures the resource server.
type Config struct {
	// Issuer is the provider's issuer URL; its discovery document
	// (/.well-known/openid-configuration) names its keys and endpoints.
	Issuer string
	// Audience is this server's canonical MCP URL (…/mcp): only tokens
	// issued for it are accepted.
	Audience string
	// Algorithms are the accepted signing algorithms (default RS256,
	// ES256). "none" and HMAC algorithms are never accepted.
	Algorithms []string
	// JWKSRefresh is how often the provider's keys are fetched again
	// (default 5 min); RefetchEvery bounds extra fetches for an unknown
	// key id (default 30 s).
	JWKSRefresh  time.Duration
	RefetchEvery time.Duration
	// ClockSkew is tolerated on exp and nbf (default 60 s).
	ClockSkew time.Duration
	// IdentityClaim names the person (default "sub"); GroupsClaim holds
	// their groups (default "groups").
	IdentityClaim string
	GroupsClaim   string
	// Grants map scopes and groups to roles (default DefaultGrants).
	Grants map[Role]Grant
	// Reserved says whether a name belongs to a static token (or to
	// "local"): a person of that name is refused rather than merged
	// with the token's client.
	Reserved func(name string) bool
	// HTTPClient reaches the provider (default: 10 s timeout).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Identity is a verified token's person.
type Identity struct {
	// Name is the client identity: records, audit, budgets, tenancy.
	Name    string
	Scopes  []string
	Groups  []string
	Expires time.Time
	roles   map[Role]bool
}

// Has says whether the identity holds r (admin holds every role, scan
// holds read).
func (id Identity) Has(r Role) bool {
	if id.roles[Admin] || id.roles[r] {
		return true
	}
	return r == Read && id.roles[Scan]
}

// Error is a refused token: Code is the OAuth error code
// (invalid_token) and Description says why, for the WWW-Authenticate
// header and the log.
type Error struct {
	Code        string
	Description string
	Err         error
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }
func (e *Error) Unwrap() error { return e.Err }

// maxDescription bounds a refusal's description (in runes): it may
// quote what the token says (a key id, anyone's to send unsigned), and it
// goes to a header, a body and a log line.
const maxDescription = 300

func invalid(err error, format string, a ...any) *Error {
	d := fmt.Sprintf(format, a...)
	if utf8.RuneCountInString(d) > maxDescription {
		d = string([]rune(d)[:maxDescription]) + "..."
	}
	return &Error{Code: "invalid_token", Description: d, Err: err}
}

// Verifier checks the provider's access tokens. It reaches the provider
// only when a token arrives (discovery is retried, at most every 10 s,
// until it succeeds), so a server starts while its provider is down and
// static tokens keep working.
type Verifier struct {
	cfg  Config
	algs []string

	// rediscover and discoverTimeout are rediscoverEvery and the
	// discovery's timeout (tests shorten them).
	rediscover, discoverTimeout time.Duration

	mu        sync.Mutex
	discovery *discovered
	triedAt   time.Time
	lastErr   error
}

type discovered struct {
	provider *oidc.Provider
	keys     *keySet
	verifier *oidc.IDTokenVerifier
}

// jwksURI is the one field of the discovery document go-oidc's Provider
// does not keep.
type jwksURI struct {
	JWKS string `json:"jwks_uri"`
}

// rediscoverEvery bounds how often a failed discovery is tried again.
const rediscoverEvery = 10 * time.Second

// New checks cfg and returns a Verifier; it does not reach the provider.
func New(cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Audience == "" {
		return nil, errors.New("auth.audience: empty; give this server's canonical MCP URL (or derive it with DeriveAudience)")
	}
	if cfg.JWKSRefresh <= 0 {
		cfg.JWKSRefresh = 5 * time.Minute
	}
	if cfg.RefetchEvery <= 0 {
		cfg.RefetchEvery = 30 * time.Second
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = time.Minute
	}
	if cfg.IdentityClaim == "" {
		cfg.IdentityClaim = "sub"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if len(cfg.Grants) == 0 {
		cfg.Grants = DefaultGrants()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Reserved == nil {
		cfg.Reserved = func(string) bool { return false }
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = []string{oidc.RS256, oidc.ES256}
	}
	return &Verifier{cfg: cfg, algs: algs, rediscover: rediscoverEvery, discoverTimeout: 10 * time.Second}, nil
}

// allowedAlgs are the asymmetric algorithms a config may name.
var allowedAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}

// Validate checks the config's rules, naming the key, the value and the
// rule.
func (c Config) Validate() error {
	if !strings.HasPrefix(c.Issuer, "https://") && !strings.HasPrefix(c.Issuer, "http://") {
		return fmt.Errorf("auth.issuer %q: must be the provider's issuer URL (https://…; http:// only for a provider on loopback)", c.Issuer)
	}
	if !strings.HasPrefix(c.Issuer, "https://") && !loopbackURL(c.Issuer) {
		return fmt.Errorf("auth.issuer %q: must use https unless the provider is on loopback", c.Issuer)
	}
	// An empty audience is derived from the listening address
	// (DeriveAudience) before New, which needs one.
	if c.Audience != "" && !strings.HasPrefix(c.Audience, "https://") && !strings.HasPrefix(c.Audience, "http://") {
		return fmt.Errorf("auth.audience %q: must be this server's canonical MCP URL, e.g. https://scanner.lab:8808/mcp", c.Audience)
	}
	for _, a := range c.Algorithms {
		if !slices.Contains(allowedAlgs, a) {
			return fmt.Errorf("auth.algorithms: %q is not accepted; use asymmetric algorithms only (%s)", a, strings.Join(allowedAlgs, ", "))
		}
	}
	for r := range c.Grants {
		if !slices.Contains(Roles, r) {
			return fmt.Errorf("auth.roles: %q is not a role; the roles are read, scan, approve and admin", r)
		}
	}
	if c.ClockSkew < 0 || c.ClockSkew > 10*time.Minute {
		return fmt.Errorf("auth.clock_skew_seconds %d: must be from 0 to 600", int(c.ClockSkew/time.Second))
	}
	return nil
}

// DeriveAudience is the canonical MCP URL of a server listening on addr
// (http, or https with tls): refused for an address that names no single
// host (0.0.0.0, ::), where auth.audience must be given.
func DeriveAudience(addr string, tls bool) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	if err != nil || host == "" || ip != nil && ip.IsUnspecified() {
		return "", fmt.Errorf("auth.audience: must be set (this server's canonical URL, e.g. https://scanner.lab:8808/mcp) "+
			"when serve --http listens on %q, which names no single host", addr)
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/mcp", nil
}

// Audience is the canonical URL tokens must be issued for.
func (v *Verifier) Audience() string { return v.cfg.Audience }

// Issuer is the provider's issuer URL.
func (v *Verifier) Issuer() string { return v.cfg.Issuer }

// ScopeFor is the scope a client asks for to get role r (the first the
// config names), or "" if only groups give it.
func (v *Verifier) ScopeFor(r Role) string {
	if s := v.cfg.Grants[r].Scopes; len(s) > 0 {
		return s[0]
	}
	return ""
}

// ScopesSupported lists every scope that gives a role.
func (v *Verifier) ScopesSupported() []string {
	var out []string
	for _, r := range Roles {
		for _, s := range v.cfg.Grants[r].Scopes {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// Verify checks an access token and returns its person. A refused token
// is an *Error; a provider that cannot be reached is another error.
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, error) {
	d, err := v.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	tok, err := d.verifier.Verify(ctx, raw)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return Identity{}, invalid(err, "the token expired at %s", exp.Expiry.UTC().Format(time.RFC3339))
		}
		if kerr := d.keys.unavailable(); kerr != nil {
			// No key is held and the provider's keys cannot be fetched:
			// the token could not be checked, which is not a refusal.
			return Identity{}, fmt.Errorf("the identity provider %s's keys cannot be fetched: %w", v.cfg.Issuer, kerr)
		}
		return Identity{}, invalid(err, "%s", strings.TrimPrefix(err.Error(), "oidc: "))
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, invalid(err, "the token's claims cannot be read")
	}
	name, _ := claims[v.cfg.IdentityClaim].(string)
	if err := checkName(v.cfg.IdentityClaim, name); err != nil {
		return Identity{}, invalid(nil, "%s", err.Error())
	}
	if v.cfg.Reserved(name) {
		return Identity{}, invalid(nil, "the token's %s %q is the name of one of this server's static tokens (or local); "+
			"rename the token or map another claim (auth.identity_claim)", v.cfg.IdentityClaim, name)
	}
	id := Identity{Name: name, Expires: tok.Expiry, roles: map[Role]bool{}}
	id.Scopes = stringsOf(claims["scope"])
	if len(id.Scopes) == 0 {
		id.Scopes = stringsOf(claims["scp"]) // Entra ID
	}
	id.Groups = stringsOf(claims[v.cfg.GroupsClaim])
	for r, g := range v.cfg.Grants {
		if overlaps(g.Scopes, id.Scopes) || overlaps(g.Groups, id.Groups) {
			id.roles[r] = true
		}
	}
	return id, nil
}

// checkName holds the rule of a person's name: 1-128 letters, digits and
// . _ @ + : -, the characters of user names, e-mail addresses and the
// providers' subject ids.
func checkName(claim, name string) error {
	if name == "" {
		return fmt.Errorf("the token has no %s claim (auth.identity_claim) to name its person", claim)
	}
	if utf8.RuneCountInString(name) > 128 {
		return fmt.Errorf("the token's %s is longer than 128 characters", claim)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._@+:-", r)
		if !ok {
			return fmt.Errorf("the token's %s %q has a character (%q) outside letters, digits and . _ @ + : -", claim, name, r)
		}
	}
	return nil
}

func stringsOf(v any) []string {
	switch t := v.(type) {
	case string:
		return strings.Fields(t)
	case []any:
		var out []string
		for _, e := range t {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func overlaps(want, have []string) bool {
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

// discover reads the provider's discovery document once, trying again
// no sooner than rediscoverEvery after a failed attempt ended.
func (v *Verifier) discover(ctx context.Context) (*discovered, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.discovery != nil {
		return v.discovery, nil
	}
	now := time.Now()
	if !v.triedAt.IsZero() && now.Sub(v.triedAt) < v.rediscover {
		return nil, v.lastErr
	}
	// The back-off counts from the attempt's end: the requests queued on
	// the lock behind a provider that hangs then fail with its error at
	// once instead of each making an attempt of their own.
	defer func() { v.triedAt = time.Now() }()
	cctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), v.cfg.HTTPClient), v.discoverTimeout)
	defer cancel()
	p, err := oidc.NewProvider(cctx, v.cfg.Issuer)
	if err != nil {
		v.lastErr = fmt.Errorf("the identity provider %s cannot be reached: %w", v.cfg.Issuer, err)
		return nil, v.lastErr
	}
	var ep jwksURI
	if err := p.Claims(&ep); err != nil || ep.JWKS == "" {
		v.lastErr = fmt.Errorf("the identity provider %s's discovery document has no jwks_uri", v.cfg.Issuer)
		return nil, v.lastErr
	}
	keys := newKeySet(ep.JWKS, v.cfg.HTTPClient, v.algs, v.cfg.JWKSRefresh, v.cfg.RefetchEvery)
	v.discovery = &discovered{provider: p, keys: keys, verifier: v.tokenVerifier(keys, v.cfg.Audience)}
	v.lastErr = nil
	return v.discovery, nil
}

// tokenVerifier checks tokens of the provider signed with keys and issued
// for audience (this server for access tokens, the web client for ID
// tokens), within the clock skew.
func (v *Verifier) tokenVerifier(keys oidc.KeySet, audience string) *oidc.IDTokenVerifier {
	skew := v.cfg.ClockSkew
	return oidc.NewVerifier(v.cfg.Issuer, keys, &oidc.Config{
		ClientID:             audience,
		SupportedSigningAlgs: v.algs,
		// go-oidc allows no skew on exp: look at the token from skew ago.
		Now: func() time.Time { return v.cfg.Now().Add(-skew) },
	})
}

// ProtectedResource is the RFC 9728 metadata document of this server.
type ProtectedResource struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
}

// Metadata is the server's protected resource metadata.
func (v *Verifier) Metadata() ProtectedResource {
	return ProtectedResource{Resource: v.cfg.Audience, AuthorizationServers: []string{v.cfg.Issuer},
		ScopesSupported: v.ScopesSupported(), BearerMethodsSupported: []string{"header"}, ResourceName: "nmap-mcp"}
}
