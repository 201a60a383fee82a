package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/nmap-mcp/nmap-mcp/internal/auth"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit/oidcop"
)

// The tests below get every accepted token from a real OpenID provider
// (oidc-provider, run by node on loopback: internal/testkit/oidcop); the
// only tokens made here are the attacks (alg none, HS256 keyed with the
// public key), built from a real token.

const (
	audience = "http://127.0.0.1:1/mcp"
	other    = "http://127.0.0.1:2/mcp"
)

func startOP(t *testing.T) *oidcop.Provider {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an OpenID provider (node); not under -short")
	}
	return oidcop.Start(t, oidcop.Config{Resource: audience, Resources: []string{other},
		Scopes:  []string{"nmap:read", "nmap:scan", "nmap:approve", "nmap:admin"},
		Clients: []oidcop.Client{{ClientID: "robot", Secret: "robot-secret"}, {ClientID: "reader", Secret: "reader-secret"}},
		Groups:  map[string][]string{"reader": {"lab-auditors"}}})
}

// countingClient counts the requests to the provider's keys.
type countingClient struct {
	jwks atomic.Int64
}

func (c *countingClient) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/jwks") {
		c.jwks.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func verifier(t *testing.T, op *oidcop.Provider, mod func(*auth.Config)) *auth.Verifier {
	t.Helper()
	cfg := auth.Config{Issuer: op.Issuer(), Audience: audience,
		Reserved: func(n string) bool { return n == "ci" || n == "local" }}
	if mod != nil {
		mod(&cfg)
	}
	v, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func token(t *testing.T, op *oidcop.Provider, client, scope, resource string) string {
	t.Helper()
	tok, err := op.ClientCredentials(context.Background(), client, client+"-secret", scope, resource)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func refused(t *testing.T, err error, want string) {
	t.Helper()
	var ae *auth.Error
	if !errors.As(err, &ae) || ae.Code != "invalid_token" {
		t.Fatalf("want an invalid_token refusal containing %q, got %v", want, err)
	}
	if !strings.Contains(ae.Description, want) {
		t.Fatalf("refusal %q does not say %q", ae.Description, want)
	}
}

func TestVerifyAcceptsTheProvidersTokenAndMapsRoles(t *testing.T) {
	op := startOP(t)
	v := verifier(t, op, func(c *auth.Config) {
		c.Grants = map[auth.Role]auth.Grant{auth.Read: {Scopes: []string{"nmap:read"}, Groups: []string{"lab-auditors"}},
			auth.Scan: {Scopes: []string{"nmap:scan"}}}
	})
	ctx := context.Background()
	id, err := v.Verify(ctx, token(t, op, "robot", "nmap:scan", audience))
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "robot" || !id.Has(auth.Scan) || !id.Has(auth.Read) || id.Has(auth.Admin) || id.Has(auth.Approve) {
		t.Fatalf("identity %+v: want robot with scan (and so read) only", id)
	}
	if time.Until(id.Expires) < time.Minute {
		t.Fatalf("expiry %v is not the token's", id.Expires)
	}
	// A group gives a role without its scope; without nmap:scan no scan.
	id, err = v.Verify(ctx, token(t, op, "reader", "", audience))
	if err != nil {
		t.Fatal(err)
	}
	if !id.Has(auth.Read) || id.Has(auth.Scan) {
		t.Fatalf("reader %+v: want read (from the lab-auditors group) and no scan", id)
	}
}

func TestVerifyRefusals(t *testing.T) {
	op := startOP(t)
	ctx := context.Background()
	good := token(t, op, "robot", "nmap:scan", audience)

	t.Run("another audience", func(t *testing.T) {
		_, err := verifier(t, op, nil).Verify(ctx, token(t, op, "robot", "nmap:scan", other))
		refused(t, err, "audience")
	})
	t.Run("expired", func(t *testing.T) {
		// The same real token, checked 20 minutes on (it lives 10, the
		// skew is 1).
		v := verifier(t, op, func(c *auth.Config) { c.Now = func() time.Time { return time.Now().Add(20 * time.Minute) } })
		_, err := v.Verify(ctx, good)
		refused(t, err, "expired")
	})
	t.Run("within the clock skew", func(t *testing.T) {
		v := verifier(t, op, func(c *auth.Config) {
			c.ClockSkew = 5 * time.Minute
			c.Now = func() time.Time { return time.Now().Add(12 * time.Minute) }
		})
		if _, err := v.Verify(ctx, good); err != nil {
			t.Fatalf("a token 2 minutes past its expiry within a 5-minute skew: %v", err)
		}
	})
	t.Run("wrong issuer", func(t *testing.T) {
		op2 := startOP(t)
		_, err := verifier(t, op, nil).Verify(ctx, token(t, op2, "robot", "nmap:scan", audience))
		// Its key is not this issuer's: refused at the signature, before
		// the issuer is read.
		refused(t, err, "")
	})
	t.Run("alg none", func(t *testing.T) {
		parts := strings.Split(good, ".")
		none := b64(`{"alg":"none","typ":"at+jwt"}`) + "." + parts[1] + "."
		_, err := verifier(t, op, nil).Verify(ctx, none)
		refused(t, err, "")
	})
	t.Run("HS256 keyed with the public key", func(t *testing.T) {
		var set jose.JSONWebKeySet
		getJSON(t, op.JWKSURL(), &set)
		der, err := x509.MarshalPKIXPublicKey(set.Keys[0].Key)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(good, ".")
		for _, secret := range [][]byte{pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), der} {
			head := b64(`{"alg":"HS256","typ":"at+jwt","kid":"` + set.Keys[0].KeyID + `"}`)
			mac := hmac.New(sha256.New, secret)
			mac.Write([]byte(head + "." + parts[1]))
			forged := head + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
			_, err := verifier(t, op, nil).Verify(ctx, forged)
			refused(t, err, "")
		}
	})
	t.Run("a name of a static token", func(t *testing.T) {
		_, err := verifier(t, op, func(c *auth.Config) {
			c.Reserved = func(n string) bool { return n == "robot" }
		}).Verify(ctx, good)
		refused(t, err, "static tokens")
	})
	t.Run("no such claim", func(t *testing.T) {
		_, err := verifier(t, op, func(c *auth.Config) { c.IdentityClaim = "email" }).Verify(ctx, good)
		refused(t, err, "no email claim")
	})
}

// TestKeyRotation: a token signed with a key the provider dropped stops
// verifying within the refresh; a token with an unknown key id makes the
// server fetch the keys at most once per RefetchEvery, whatever the
// number of such tokens.
func TestKeyRotation(t *testing.T) {
	op := startOP(t)
	ctx := context.Background()
	counter := &countingClient{}
	v := verifier(t, op, func(c *auth.Config) {
		c.JWKSRefresh = 500 * time.Millisecond
		c.RefetchEvery = time.Hour
		c.HTTPClient = &http.Client{Transport: counter, Timeout: 10 * time.Second}
	})
	old := token(t, op, "robot", "nmap:scan", audience)
	if _, err := v.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := op.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := token(t, op, "robot", "nmap:scan", audience)
	time.Sleep(600 * time.Millisecond)
	// The refresh has read the new key, and dropped the old.
	if _, err := v.Verify(ctx, fresh); err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
	_, err := v.Verify(ctx, old)
	refused(t, err, "not among the provider's keys")

	// Junk with unknown key ids: no more fetches than the refresh needs.
	before := counter.jwks.Load()
	parts := strings.Split(fresh, ".")
	for i := range 50 {
		head := b64(`{"alg":"RS256","kid":"junk-` + string(rune('a'+i%26)) + `"}`)
		if _, err := v.Verify(ctx, head+"."+parts[1]+"."+parts[2]); err == nil {
			t.Fatal("junk verified")
		}
	}
	if n := counter.jwks.Load() - before; n > 1 {
		t.Fatalf("50 junk tokens made %d key fetches; want at most 1 (the refresh)", n)
	}

	// With a long refresh, a new key id is looked for at once (once per
	// RefetchEvery).
	v2 := verifier(t, op, func(c *auth.Config) { c.JWKSRefresh = time.Hour; c.RefetchEvery = time.Millisecond })
	if _, err := v2.Verify(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if err := op.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := v2.Verify(ctx, token(t, op, "robot", "nmap:scan", audience)); err != nil {
		t.Fatalf("a token of a key rotated in just now: %v", err)
	}
}

// TestProviderDown: a provider that cannot be reached is not a refused
// token (the caller answers 503, not 401), and the server does not try
// again more than every 10 s.
func TestProviderDown(t *testing.T) {
	v, err := auth.New(auth.Config{Issuer: "http://127.0.0.1:1", Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), "a.b.c")
	var ae *auth.Error
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("want a provider error, not a refusal: %v", err)
	}
	if !strings.Contains(err.Error(), "cannot be reached") {
		t.Fatalf("error %q does not say the provider cannot be reached", err)
	}
}

func TestConfigRules(t *testing.T) {
	for _, c := range []struct {
		cfg  auth.Config
		want string
	}{
		{auth.Config{Issuer: "idp.lab", Audience: audience}, "auth.issuer"},
		{auth.Config{Issuer: "http://idp.lab", Audience: audience}, "https"},
		{auth.Config{Issuer: "https://idp.lab", Audience: "scanner"}, "auth.audience"},
		{auth.Config{Issuer: "https://idp.lab", Audience: audience, Algorithms: []string{"HS256"}}, `"HS256" is not accepted`},
		{auth.Config{Issuer: "https://idp.lab", Audience: audience, Algorithms: []string{"none"}}, `"none" is not accepted`},
		{auth.Config{Issuer: "https://idp.lab", Audience: audience, Grants: map[auth.Role]auth.Grant{"root": {}}}, `"root" is not a role`},
	} {
		_, err := auth.New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: want an error with %q, got %v", c.cfg, c.want, err)
		}
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// By default the privileged roles come from the provider's groups, never
// from a scope the client asked for: the test provider grants every scope
// it is asked for, as many do.
func TestDefaultsPrivilegedRolesFromGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an OpenID provider (node); not under -short")
	}
	op := oidcop.Start(t, oidcop.Config{Resource: audience, Scopes: []string{"nmap:read", "nmap:scan", "nmap:approve", "nmap:admin"},
		Clients: []oidcop.Client{{ClientID: "robot", Secret: "robot-secret"}, {ClientID: "boss", Secret: "boss-secret"}},
		Groups:  map[string][]string{"boss": {"nmap-admins"}}})
	v := verifier(t, op, nil)
	ctx := context.Background()
	id, err := v.Verify(ctx, token(t, op, "robot", "nmap:read nmap:scan nmap:approve nmap:admin", audience))
	if err != nil {
		t.Fatal(err)
	}
	if !id.Has(auth.Scan) || id.Has(auth.Admin) || id.Has(auth.Approve) {
		t.Fatalf("a client that asked for every scope: %+v", id)
	}
	id, err = v.Verify(ctx, token(t, op, "boss", "nmap:read", audience))
	if err != nil {
		t.Fatal(err)
	}
	if !id.Has(auth.Admin) || !id.Has(auth.Scan) {
		t.Fatalf("a member of nmap-admins: %+v", id)
	}
	if got := strings.Join(v.ScopesSupported(), " "); got != "nmap:read nmap:scan" {
		t.Fatalf("scopes supported by default: %q", got)
	}
}
