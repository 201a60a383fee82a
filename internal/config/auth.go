package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/auth"
)

// Auth configures the lab's identity provider (MCP authorization): with
// an issuer the HTTP server is an OAuth 2.1 resource server beside the
// static tokens.
type Auth struct {
	// Issuer is the provider's issuer URL; empty: no provider.
	Issuer string `yaml:"issuer"`
	// Audience is this server's canonical MCP URL; empty: derived from
	// http.addr (and TLS).
	Audience string `yaml:"audience"`
	// Algorithms are the accepted signing algorithms.
	Algorithms []string `yaml:"algorithms"`
	// JWKSRefreshSeconds is how often the provider's keys are read again.
	JWKSRefreshSeconds int `yaml:"jwks_refresh_seconds"`
	// ClockSkewSeconds is tolerated on a token's exp and nbf.
	ClockSkewSeconds int `yaml:"clock_skew_seconds"`
	// IdentityClaim names the person; GroupsClaim holds their groups.
	IdentityClaim string `yaml:"identity_claim"`
	GroupsClaim   string `yaml:"groups_claim"`
	// Roles map token scopes or groups to the roles read, scan, approve
	// and admin.
	Roles map[string]auth.Grant `yaml:"roles"`
	// StandingHours: a person's watches run while they have shown a valid
	// token within this many hours; after it they pause.
	StandingHours int `yaml:"standing_hours"`
	// Web is the web view's sign-in through the provider.
	Web AuthWeb `yaml:"web"`
}

// AuthWeb is the web view's client at the provider.
type AuthWeb struct {
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	RedirectURL      string `yaml:"redirect_url"`
}

// AuthResolved is the auth section, checked.
type AuthResolved struct {
	// Verifier is the resource server's config; nil: no provider.
	Verifier *auth.Config
	// Login is the web view's sign-in; nil: token sign-in only.
	Login *auth.LoginConfig
	// Standing is auth.standing_hours.
	Standing time.Duration
}

// resolveAuth checks the auth section against the HTTP section it
// serves beside.
func (c Config) resolveAuth() (AuthResolved, error) {
	a := c.Auth
	var r AuthResolved
	bad := func(key string, v any, rule string) error {
		return &KeyError{Key: key, Value: fmt.Sprint(v), Rule: rule}
	}
	if a.Issuer == "" {
		if a.Web.ClientID != "" || a.Audience != "" {
			return r, &KeyError{Key: "auth.issuer", Value: "", Rule: "is needed when auth.audience or auth.web.client_id is set"}
		}
		return r, nil
	}
	aud := a.Audience
	if aud != "" && !strings.HasSuffix(aud, "/mcp") {
		return r, &KeyError{Key: "auth.audience", Value: aud, Rule: "must be this server's MCP endpoint URL, ending in /mcp"}
	}
	switch {
	case a.JWKSRefreshSeconds < 0 || a.JWKSRefreshSeconds > 86400:
		return r, bad("auth.jwks_refresh_seconds", a.JWKSRefreshSeconds, "must be from 1 to 86400 (0: 300)")
	case a.StandingHours < 0 || a.StandingHours > 24*90:
		return r, bad("auth.standing_hours", a.StandingHours, "must be from 1 to 2160 (90 days; 0: 24)")
	}
	grants := map[auth.Role]auth.Grant{}
	for name, g := range a.Roles {
		grants[auth.Role(name)] = g
	}
	if len(grants) > 0 {
		for _, role := range auth.Roles {
			if _, ok := grants[role]; !ok {
				grants[role] = auth.DefaultGrants()[role]
			}
		}
	}
	// An empty audience is derived from the address serve --http listens
	// on (auth.DeriveAudience).
	v := &auth.Config{Issuer: a.Issuer, Audience: aud, Algorithms: a.Algorithms,
		JWKSRefresh: time.Duration(a.JWKSRefreshSeconds) * time.Second, ClockSkew: time.Duration(a.ClockSkewSeconds) * time.Second,
		IdentityClaim: a.IdentityClaim, GroupsClaim: a.GroupsClaim, Grants: grants}
	if err := v.Validate(); err != nil {
		return r, &KeyError{Key: "auth", Value: a.Issuer, Rule: err.Error()}
	}
	r.Verifier = v
	r.Standing = time.Duration(a.StandingHours) * time.Hour
	if r.Standing == 0 {
		r.Standing = 24 * time.Hour
	}
	if a.Web.ClientID != "" {
		// An empty redirect URL is the audience's origin + /auth/callback.
		l := &auth.LoginConfig{ClientID: a.Web.ClientID, RedirectURL: a.Web.RedirectURL}
		if a.Web.ClientSecretFile != "" {
			b, err := os.ReadFile(a.Web.ClientSecretFile)
			if err != nil {
				return r, &KeyError{Key: "auth.web.client_secret_file", Value: a.Web.ClientSecretFile, Rule: "must be a readable file holding the web client's secret: " + err.Error()}
			}
			l.Secret = strings.TrimSpace(string(b))
		}
		r.Login = l
	}
	return r, nil
}
