package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// keySet is the provider's JWKS as go-oidc's verifier reads it
// (oidc.KeySet): fetched again every refresh, and for a key id it does not
// know at most once per refetch. go-oidc's RemoteKeySet would keep a key
// the provider dropped until some unknown key id came, and would fetch for
// every token it cannot verify.
type keySet struct {
	url     string
	client  *http.Client
	algs    []jose.SignatureAlgorithm
	refresh time.Duration
	refetch time.Duration

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	fetchedAt time.Time
	err       error
	// inflight is closed when the fetch under way ends; nil when none
	// is. The lock is not held during a fetch.
	inflight chan struct{}
}

func newKeySet(u string, c *http.Client, algs []string, refresh, refetch time.Duration) *keySet {
	k := &keySet{url: u, client: c, refresh: refresh, refetch: refetch}
	for _, a := range algs {
		k.algs = append(k.algs, jose.SignatureAlgorithm(a))
	}
	return k
}

// maxJWKS bounds the key set document.
const maxJWKS = 1 << 20

// VerifySignature checks a JWS with the provider's key of its key id and
// returns its payload. The algorithms were checked by go-oidc; they are
// checked again here, at parse.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, k.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed or disallowed JWS: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("the token must carry exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, fetched, err := k.current(ctx, false)
	if err != nil {
		return nil, err
	}
	if payload, ok := verifyWith(jws, keys, kid); ok {
		return payload, nil
	}
	if !fetched && !hasKid(keys, kid) {
		// An unknown key id: the provider may have rotated; look again
		// (bounded by refetch).
		if keys, _, err = k.current(ctx, true); err != nil {
			return nil, err
		}
		if payload, ok := verifyWith(jws, keys, kid); ok {
			return payload, nil
		}
	}
	if !hasKid(keys, kid) {
		return nil, fmt.Errorf("the token's signing key %q is not among the provider's keys", kid)
	}
	return nil, errors.New("the token's signature does not verify")
}

func hasKid(keys []jose.JSONWebKey, kid string) bool {
	for _, key := range keys {
		if key.KeyID == kid {
			return true
		}
	}
	return false
}

func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) ([]byte, bool) {
	for _, key := range keys {
		if kid != "" && key.KeyID != kid || !key.Valid() || !key.IsPublic() || key.Use != "" && key.Use != "sig" {
			continue
		}
		if payload, err := jws.Verify(&key); err == nil {
			return payload, true
		}
	}
	return nil, false
}

// current returns the keys, fetching them when they are older than the
// refresh (or, with unknown, than the refetch bound). fetched says the
// keys were fetched for this call. While a fetch is under way (the
// provider may be slow), a caller that only needs the keys already held
// gets them at once; one that needs new keys (an unknown key id, or none
// held yet) waits for that fetch instead of starting another.
func (k *keySet) current(ctx context.Context, unknown bool) ([]jose.JSONWebKey, bool, error) {
	k.mu.Lock()
	age := time.Since(k.fetchedAt)
	stale := k.fetchedAt.IsZero() || age >= k.refresh || unknown && age >= k.refetch
	if !stale || k.inflight != nil && k.keys != nil && !unknown {
		keys, err := k.keys, k.err
		k.mu.Unlock()
		if keys == nil && err != nil {
			return nil, false, err
		}
		return keys, false, nil
	}
	if wait := k.inflight; wait != nil {
		k.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, false, fmt.Errorf("wait for the provider's keys: %w", ctx.Err())
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.keys == nil && k.err != nil {
			return nil, true, k.err
		}
		return k.keys, true, nil
	}
	done := make(chan struct{})
	k.inflight = done
	k.mu.Unlock()
	keys, err := k.fetch(ctx)
	k.mu.Lock()
	defer func() {
		k.inflight = nil
		close(done)
		k.mu.Unlock()
	}()
	k.fetchedAt = time.Now()
	if err != nil {
		k.err = err
		if k.keys != nil {
			// Keep the last good keys through a provider's hiccup; they
			// are dropped when a fetch succeeds without them.
			return k.keys, true, nil
		}
		return nil, true, err
	}
	k.keys, k.err = keys, nil
	return keys, true, nil
}

// unavailable is the last fetch's error when no key is held: nothing
// can be verified until the provider's keys are fetched.
func (k *keySet) unavailable() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		return k.err
	}
	return nil
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("the provider's jwks_uri %q: %w", k.url, err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the provider's keys from %s: %w", k.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	if err != nil {
		return nil, fmt.Errorf("fetch the provider's keys from %s: %w", k.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch the provider's keys from %s: %s", k.url, resp.Status)
	}
	if len(body) > maxJWKS {
		return nil, fmt.Errorf("the provider's keys at %s are larger than %d bytes", k.url, maxJWKS)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("the provider's keys at %s: %w", k.url, err)
	}
	return set.Keys, nil
}

// loopbackURL says whether u's host is a loopback address or localhost.
func loopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := p.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
