package oidcop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// These tests run the real provider under node (no Docker engine); they
// skip without node, except under CI. Their provider holds no port but the
// loopback one it picked.

// TestMain fails the package when a node process started here outlives
// the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if kids := nodeChildren(); len(kids) > 0 {
		fmt.Fprintf(os.Stderr, "oidcop: LEAK: node processes left running: %v\n", kids)
		code = 1
	}
	os.Exit(code)
}

// nodeChildren lists the node processes whose parent is this process.
func nodeChildren() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		var name string
		ppid := -1
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "Name:"); ok {
				name = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if name == "node" && ppid == os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

const (
	mcpResource   = "http://127.0.0.1:1/mcp"
	otherResource = "http://127.0.0.1:2/other"
	redirectURI   = "http://127.0.0.1:3/callback"
)

var allScopes = []string{"nmap:scan", "nmap:read", "nmap:approve", "nmap:admin"}

func testConfig() Config {
	return Config{
		Resource:  mcpResource,
		Resources: []string{otherResource},
		Scopes:    allScopes,
		Clients: []Client{
			{ClientID: "svc", Secret: "s3cret:/+"},
			{ClientID: "cli", RedirectURIs: []string{redirectURI}},
			{ClientID: "web", Secret: "web-secret", RedirectURIs: []string{redirectURI}},
		},
		Groups:         map[string][]string{"alice": {"scanners", "approvers"}, "svc": {"robots"}},
		AccessTokenTTL: 5 * time.Minute,
		Registration:   true,
	}
}

// atClaims are the claims of an access token that the tests look at.
type atClaims struct {
	jwt.Claims
	Scope             string   `json:"scope"`
	ClientID          string   `json:"client_id"`
	PreferredUsername string   `json:"preferred_username"`
	Groups            []string `json:"groups"`
}

// verifyAT checks the JWT access token against the provider's JWKS and
// returns its claims and kid.
func verifyAT(t *testing.T, p *Provider, token string) (atClaims, string) {
	t.Helper()
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse access token: %v", err)
	}
	h := tok.Headers[0]
	if h.Algorithm != "RS256" || h.ExtraHeaders["typ"] != "at+jwt" || h.KeyID == "" {
		t.Fatalf("access token header: alg %q typ %v kid %q, want RS256, at+jwt and a kid", h.Algorithm, h.ExtraHeaders["typ"], h.KeyID)
	}
	keys := jwks(t, p).Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("the JWKS has %d keys with kid %q, want 1", len(keys), h.KeyID)
	}
	var c atClaims
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		t.Fatalf("verify access token: %v", err)
	}
	return c, h.KeyID
}

func jwks(t *testing.T, p *Provider) *jose.JSONWebKeySet {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := p.getJSON(context.Background(), p.JWKSURL(), &set); err != nil {
		t.Fatal(err)
	}
	return &set
}

func TestDiscoveryAndClientCredentials(t *testing.T) {
	p := Start(t, testConfig())
	t.Logf("start-up: %v", p.StartupTime())
	ctx := context.Background()
	if !strings.HasPrefix(p.Issuer(), "http://127.0.0.1:") {
		t.Fatalf("issuer %q", p.Issuer())
	}
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		var d map[string]any
		if err := p.getJSON(ctx, p.Issuer()+path, &d); err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{
			"issuer": p.Issuer(), "jwks_uri": p.JWKSURL(), "authorization_endpoint": p.AuthURL(),
			"token_endpoint": p.TokenURL(), "registration_endpoint": p.RegistrationURL(),
		} {
			if d[k] != want {
				t.Errorf("%s: %s = %v, want %s", path, k, d[k], want)
			}
		}
		if fmt.Sprint(d["response_types_supported"]) != "[code]" || fmt.Sprint(d["code_challenge_methods_supported"]) != "[S256]" {
			t.Errorf("%s: response types %v, PKCE methods %v; want [code], [S256]", path, d["response_types_supported"], d["code_challenge_methods_supported"])
		}
	}

	before := time.Now()
	at, err := p.ClientCredentials(ctx, "svc", "s3cret:/+", "nmap:scan nmap:read", mcpResource)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := verifyAT(t, p, at)
	if c.Issuer != p.Issuer() || fmt.Sprint(c.Audience) != "["+mcpResource+"]" || c.Subject != "svc" || c.ClientID != "svc" || c.Scope != "nmap:scan nmap:read" {
		t.Errorf("claims: iss %q aud %v sub %q client_id %q scope %q", c.Issuer, c.Audience, c.Subject, c.ClientID, c.Scope)
	}
	if fmt.Sprint(c.Groups) != "[robots]" || c.PreferredUsername != "" {
		t.Errorf("client token: groups %v preferred_username %q, want [robots] and none", c.Groups, c.PreferredUsername)
	}
	if ttl := c.Expiry.Time().Sub(c.IssuedAt.Time()); ttl != 5*time.Minute {
		t.Errorf("exp - iat = %v, want 5m", ttl)
	}
	if d := c.IssuedAt.Time().Sub(before.Truncate(time.Second)); d < 0 || d > time.Minute {
		t.Errorf("iat %v is not now", c.IssuedAt.Time())
	}

	// Another audience; no scope asked, none granted.
	at, err = p.ClientCredentials(ctx, "svc", "s3cret:/+", "", otherResource)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := verifyAT(t, p, at); fmt.Sprint(c.Audience) != "["+otherResource+"]" || c.Scope != "" {
		t.Errorf("other resource: aud %v scope %q", c.Audience, c.Scope)
	}
	// No resource: the first one.
	at, err = p.ClientCredentials(ctx, "svc", "s3cret:/+", "nmap:admin", "")
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := verifyAT(t, p, at); fmt.Sprint(c.Audience) != "["+mcpResource+"]" || c.Scope != "nmap:admin" {
		t.Errorf("default resource: aud %v scope %q", c.Audience, c.Scope)
	}

	for name, call := range map[string]func() error{
		"wrong secret": func() error { _, err := p.ClientCredentials(ctx, "svc", "nope", "", mcpResource); return err },
		"unknown resource": func() error {
			_, err := p.ClientCredentials(ctx, "svc", "s3cret:/+", "", "http://127.0.0.1:9/x")
			return err
		},
		"public client": func() error { _, err := p.ClientCredentials(ctx, "cli", "", "", mcpResource); return err },
	} {
		if err := call(); err == nil {
			t.Errorf("%s: got a token", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// codeFlow runs the authorization code flow with PKCE for conf's client as
// login, with golang.org/x/oauth2 and Login, asking for resource, and
// returns the token and the nonce sent.
func codeFlow(t *testing.T, p *Provider, conf *oauth2.Config, login, resource string, extra ...oauth2.AuthCodeOption) (*oauth2.Token, string) {
	t.Helper()
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	state, nonce := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}, extra...)
	if slices.Contains(conf.Scopes, "openid") { // the OP refuses a nonce without it
		opts = append(opts, oauth2.SetAuthURLParam("nonce", nonce))
	}
	if resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", resource))
	}
	back, err := p.Login(ctx, conf.AuthCodeURL(state, opts...), login)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Scheme + "://" + back.Host + back.Path; got != redirectURI {
		t.Fatalf("Login returned %s, want the redirect URI %s", back, redirectURI)
	}
	q := back.Query()
	if q.Get("state") != state || q.Get("code") == "" || q.Get("iss") != p.Issuer() {
		t.Fatalf("redirect %s: want state, code and iss", back)
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok, nonce
}

func TestAuthorizationCodePKCE(t *testing.T) {
	p := Start(t, testConfig())
	ctx := context.Background()
	conf := &oauth2.Config{
		ClientID:    "cli",
		Endpoint:    oauth2.Endpoint{AuthURL: p.AuthURL(), TokenURL: p.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: redirectURI,
		Scopes:      []string{"openid", "profile", "nmap:scan", "nmap:read"},
	}
	tok, nonce := codeFlow(t, p, conf, "alice", mcpResource)
	c, _ := verifyAT(t, p, tok.AccessToken)
	if fmt.Sprint(c.Audience) != "["+mcpResource+"]" || c.Subject != "alice" || c.PreferredUsername != "alice" ||
		fmt.Sprint(c.Groups) != "[scanners approvers]" || c.Scope != "nmap:scan nmap:read" || c.ClientID != "cli" {
		t.Errorf("access token: aud %v sub %q preferred_username %q groups %v scope %q client_id %q",
			c.Audience, c.Subject, c.PreferredUsername, c.Groups, c.Scope, c.ClientID)
	}

	op, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := op.Verifier(&oidc.Config{ClientID: "cli"}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var idc struct {
		PreferredUsername string   `json:"preferred_username"`
		Groups            []string `json:"groups"`
	}
	if err := idt.Claims(&idc); err != nil {
		t.Fatal(err)
	}
	if idt.Nonce != nonce || idt.Subject != "alice" || idc.PreferredUsername != "alice" || fmt.Sprint(idc.Groups) != "[scanners approvers]" {
		t.Errorf("ID token: nonce %q (want %q) sub %q preferred_username %q groups %v", idt.Nonce, nonce, idt.Subject, idc.PreferredUsername, idc.Groups)
	}

	if tok.RefreshToken == "" {
		t.Error("no refresh token for a client allowed refresh_token")
	}
	// offline_access needs prompt=consent: the consent prompt comes up and
	// the interaction page grants it. Then out of her groups: the
	// refreshed token and the next sign-in's tokens say so.
	offline := *conf
	offline.Scopes = append(slices.Clone(conf.Scopes), "offline_access")
	tok, _ = codeFlow(t, p, &offline, "alice", mcpResource, oauth2.SetAuthURLParam("prompt", "consent"))
	if tok.RefreshToken == "" || tok.Extra("scope") != "nmap:scan nmap:read" {
		t.Fatalf("prompt=consent with offline_access: refresh token %q, scope %v", tok.RefreshToken, tok.Extra("scope"))
	}
	if err := p.SetGroups(ctx, "alice", nil); err != nil {
		t.Fatal(err)
	}
	refreshed, err := offline.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if c, _ := verifyAT(t, p, refreshed.AccessToken); len(c.Groups) != 0 || c.PreferredUsername != "alice" || fmt.Sprint(c.Audience) != "["+mcpResource+"]" {
		t.Errorf("refreshed after SetGroups(nil): groups %v preferred_username %q aud %v", c.Groups, c.PreferredUsername, c.Audience)
	}
	tok, _ = codeFlow(t, p, conf, "alice", "")
	if c, _ := verifyAT(t, p, tok.AccessToken); len(c.Groups) != 0 || fmt.Sprint(c.Audience) != "["+mcpResource+"]" {
		t.Errorf("after SetGroups(nil), no resource asked: groups %v aud %v", c.Groups, c.Audience)
	}

	// A confidential client; the other resource.
	web := *conf
	web.ClientID, web.ClientSecret = "web", "web-secret"
	web.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	tok, _ = codeFlow(t, p, &web, "bob", otherResource)
	if c, _ := verifyAT(t, p, tok.AccessToken); fmt.Sprint(c.Audience) != "["+otherResource+"]" || c.PreferredUsername != "bob" || len(c.Groups) != 0 {
		t.Errorf("web client: aud %v preferred_username %q groups %v", c.Audience, c.PreferredUsername, c.Groups)
	}

	// A public client without PKCE is sent back with an error.
	back, err := p.Login(ctx, conf.AuthCodeURL("s"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if back.Query().Get("error") != "invalid_request" {
		t.Errorf("no PKCE: %s, want error=invalid_request", back)
	}
	// An unknown redirect URI is an error page of the OP.
	bad := *conf
	bad.RedirectURL = "http://127.0.0.1:4/elsewhere"
	if _, err := p.Login(ctx, bad.AuthCodeURL("s", oauth2.S256ChallengeOption("x")), "alice"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("bad redirect_uri: %v, want a 400", err)
	}
}

// TestLoginScript signs in with LoginScript under node, as a JavaScript
// test would, and exchanges the code it brings back.
func TestLoginScript(t *testing.T) {
	p := Start(t, testConfig())
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "login.mjs"), LoginScript, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := &oauth2.Config{
		ClientID:    "cli",
		Endpoint:    oauth2.Endpoint{AuthURL: p.AuthURL(), TokenURL: p.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: redirectURI,
		Scopes:      []string{"nmap:read"},
	}
	verifier := oauth2.GenerateVerifier()
	u := conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--input-type=module", "-e",
		`import { login } from './login.mjs'; console.log((await login(process.argv[1], 'dave')).href);`, u)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node login.mjs: %v\n%s", err, out)
	}
	back, err := url.Parse(strings.TrimSpace(string(out)))
	if err != nil || back.Query().Get("state") != "st" || back.Query().Get("code") == "" {
		t.Fatalf("login.mjs returned %q (%v)", out, err)
	}
	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := verifyAT(t, p, tok.AccessToken); c.PreferredUsername != "dave" || c.Scope != "nmap:read" {
		t.Errorf("token: preferred_username %q scope %q", c.PreferredUsername, c.Scope)
	}
}

// TestRegistration registers a public client as the MCP TypeScript SDK
// does and signs in with it.
func TestRegistration(t *testing.T) {
	p := Start(t, testConfig())
	body := `{"client_name":"sdk","redirect_uris":["` + redirectURI + `"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none","scope":"nmap:scan nmap:read"}`
	resp, err := http.Post(p.RegistrationURL(), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reg struct {
		ClientID string `json:"client_id"`
		Error    string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %s %v %+v", resp.Status, err, reg)
	}
	conf := &oauth2.Config{
		ClientID:    reg.ClientID,
		Endpoint:    oauth2.Endpoint{AuthURL: p.AuthURL(), TokenURL: p.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: redirectURI,
		Scopes:      []string{"nmap:scan"},
	}
	tok, _ := codeFlow(t, p, conf, "carol", mcpResource)
	if c, _ := verifyAT(t, p, tok.AccessToken); c.Scope != "nmap:scan" || c.ClientID != reg.ClientID || c.PreferredUsername != "carol" {
		t.Errorf("registered client's token: scope %q client_id %q preferred_username %q", c.Scope, c.ClientID, c.PreferredUsername)
	}
}

func TestRotate(t *testing.T) {
	p := Start(t, testConfig())
	ctx := context.Background()
	issuer := p.Issuer()
	old, err := p.ClientCredentials(ctx, "svc", "s3cret:/+", "nmap:scan", mcpResource)
	if err != nil {
		t.Fatal(err)
	}
	_, oldKid := verifyAT(t, p, old)
	if err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	kids, err := p.KeyIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(kids) != 1 || kids[0] == oldKid {
		t.Fatalf("after Rotate the JWKS has kids %v; want one, not the old %q", kids, oldKid)
	}
	if p.Issuer() != issuer {
		t.Fatalf("issuer changed: %q -> %q", issuer, p.Issuer())
	}
	if len(jwks(t, p).Key(oldKid)) != 0 {
		t.Fatal("the old key is still in the JWKS")
	}
	at, err := p.ClientCredentials(ctx, "svc", "s3cret:/+", "nmap:scan", mcpResource)
	if err != nil {
		t.Fatal(err)
	}
	if _, kid := verifyAT(t, p, at); kid != kids[0] {
		t.Errorf("new token signed by %q, want %q", kid, kids[0])
	}
	// Clients and sign-in still work on the rebuilt provider.
	conf := &oauth2.Config{
		ClientID:    "cli",
		Endpoint:    oauth2.Endpoint{AuthURL: p.AuthURL(), TokenURL: p.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: redirectURI,
		Scopes:      []string{"openid"},
	}
	codeFlow(t, p, conf, "alice", mcpResource)
	// The control routes want the token.
	resp, err := http.Post(p.Issuer()+"/control/rotate", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("control without its token: %s, want 403", resp.Status)
	}
}

// TestCloseLeavesNothing: after Close no node process and no port is left,
// and Start wrote no temp file.
func TestCloseLeavesNothing(t *testing.T) {
	before := ourTemp(t)
	p := Start(t, testConfig())
	pid := p.cmd.Process.Pid
	issuer := p.Issuer()
	p.Close()
	p.Close()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("node %d after Close: kill -0 says %v, want ESRCH", pid, err)
	}
	if _, err := http.Get(issuer + "/jwks"); err == nil {
		t.Errorf("the provider still answers after Close")
	}
	if after := ourTemp(t); !slices.Equal(before, after) {
		t.Errorf("temp files: %v before, %v after", before, after)
	}
}

// ourTemp lists the nmap-mcp-* entries of the temp folder.
func ourTemp(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "nmap-mcp-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestConfigErrors needs no node: bad configurations fail before it runs.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "at least one resource"},
		{Config{Resource: "/mcp"}, `resource "/mcp"`},
		{Config{Resource: "http://h/x#f"}, "without fragment"},
		{Config{Resource: "http://h/", Scopes: []string{"a b"}}, `scope "a b"`},
		{Config{Resource: "http://h/", AccessTokenTTL: time.Millisecond}, "AccessTokenTTL"},
		{Config{Resource: "http://h/", Clients: []Client{{}}}, "ClientID is empty"},
		{Config{Resource: "http://h/", Clients: []Client{{ClientID: "a", Secret: "s"}, {ClientID: "a", Secret: "s"}}}, "twice"},
		{Config{Resource: "http://h/", Clients: []Client{{ClientID: "a"}}}, "could get no token"},
		{Config{Resource: "http://h/", Clients: []Client{{ClientID: "a", GrantTypes: []string{"client_credentials"}}}}, "needs a Secret"},
		{Config{Resource: "http://h/", Clients: []Client{{ClientID: "a", GrantTypes: []string{"authorization_code"}}}}, "needs RedirectURIs"},
		{Config{Resource: "http://h/", Clients: []Client{{ClientID: "a", Secret: "s", GrantTypes: []string{"password"}}}}, `"password"`},
	} {
		_, err := tc.cfg.spec()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one saying %q", tc.cfg, err, tc.want)
		}
	}
	s, err := Config{Resource: "http://h/a", Resources: []string{"http://h/a", "http://h/b"}, Clients: []Client{
		{ClientID: "both", Secret: "s", RedirectURIs: []string{"http://127.0.0.1/cb"}},
	}}.spec()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Resources, []string{"http://h/a", "http://h/b"}) || s.AccessTokenTTL != 600 ||
		!slices.Equal(s.Clients[0].GrantTypes, []string{"authorization_code", "refresh_token", "client_credentials"}) ||
		s.Clients[0].AuthMethod != "client_secret_basic" {
		t.Errorf("spec: %+v", s)
	}
}
