package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// LoginConfig is the web view's client at the provider.
type LoginConfig struct {
	// ClientID is the web view's client; Secret its secret ("" for a
	// public client, which PKCE protects).
	ClientID string
	Secret   string
	// RedirectURL is the view's callback (…/auth/callback), registered
	// at the provider.
	RedirectURL string
	// Scopes are asked for besides openid (default: every scope that
	// gives a role).
	Scopes []string
}

// Login signs people in to the web view: the authorization-code flow with
// PKCE (S256), a state and a nonce, asking for an access token for this
// server (the resource parameter, RFC 8707) that Verify then checks like
// any MCP client's, so a person has the same name and roles in both.
type Login struct {
	v   *Verifier
	cfg LoginConfig
}

// NewLogin returns the web view's sign-in through the provider.
func (v *Verifier) NewLogin(cfg LoginConfig) (*Login, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("auth.web.client_id: empty; name the web view's client registered at the provider")
	}
	if !strings.HasPrefix(cfg.RedirectURL, "https://") && !strings.HasPrefix(cfg.RedirectURL, "http://") {
		return nil, fmt.Errorf("auth.web.redirect_url %q: must be an absolute URL ending in /auth/callback", cfg.RedirectURL)
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = v.ScopesSupported()
	}
	return &Login{v: v, cfg: cfg}, nil
}

func (l *Login) oauth(d *discovered) *oauth2.Config {
	return &oauth2.Config{ClientID: l.cfg.ClientID, ClientSecret: l.cfg.Secret, RedirectURL: l.cfg.RedirectURL,
		Endpoint: d.provider.Endpoint(), Scopes: append([]string{oidc.ScopeOpenID}, l.cfg.Scopes...)}
}

// AuthURL is where the browser goes to sign in: state and nonce are the
// caller's random values, verifier its PKCE verifier
// (oauth2.GenerateVerifier).
func (l *Login) AuthURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	d, err := l.v.discover(ctx)
	if err != nil {
		return "", err
	}
	return l.oauth(d).AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce),
		oauth2.SetAuthURLParam("resource", l.v.cfg.Audience)), nil
}

// Finish redeems the callback's code with the verifier, checks the ID
// token (signature, issuer, this client as audience, the nonce) and the
// access token (as Verify does), and returns the person.
func (l *Login) Finish(ctx context.Context, code, verifier, nonce string) (Identity, error) {
	d, err := l.v.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	cctx := oidc.ClientContext(ctx, l.v.cfg.HTTPClient)
	tok, err := l.oauth(d).Exchange(cctx, code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", l.v.cfg.Audience))
	if err != nil {
		return Identity{}, fmt.Errorf("redeem the sign-in code at the provider: %w", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return Identity{}, errors.New("the provider's answer has no ID token (is openid among the client's scopes?)")
	}
	idv := l.v.tokenVerifier(d.keys, l.cfg.ClientID)
	idt, err := idv.Verify(cctx, rawID)
	if err != nil {
		return Identity{}, fmt.Errorf("the provider's ID token: %w", err)
	}
	if idt.Nonce == "" || idt.Nonce != nonce {
		return Identity{}, errors.New("the provider's ID token does not carry this sign-in's nonce")
	}
	id, err := l.v.Verify(ctx, tok.AccessToken)
	if err != nil {
		return Identity{}, fmt.Errorf("the provider's access token for %s: %w (the provider must issue JWT access tokens for this resource)", l.v.cfg.Audience, err)
	}
	return id, nil
}
