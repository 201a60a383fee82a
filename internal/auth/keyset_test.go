package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// The key cache against a stand-in jwks_uri (an httptest server serving a
// public key made here; no token is signed): no provider, no engine, runs
// under -short.

// TestKeySetSlowProviderStallsOnlyTheAsker: while the provider's jwks_uri
// hangs, a token with an unknown key id (anyone can send one) fetches the
// keys again; that fetch held the cache's lock for up to the client's
// timeout, so every other person's token, whose key was already known,
// waited behind it. Now only callers that need the new keys wait.
func TestKeySetSlowProviderStallsOnlyTheAsker(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	hanging := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) > 1 {
			close(hanging)
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = w.Write(set)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	k := newKeySet(srv.URL, &http.Client{Timeout: 3 * time.Second}, []string{"ES256"}, time.Hour, time.Millisecond)
	ctx := context.Background()
	if keys, _, err := k.current(ctx, false); err != nil || len(keys) != 1 {
		t.Fatalf("first fetch: %v %v", keys, err)
	}
	time.Sleep(5 * time.Millisecond)               // past the refetch bound
	go func() { _, _, _ = k.current(ctx, true) }() // an unknown key id
	<-hanging
	start := time.Now()
	keys, _, err := k.current(ctx, false)
	if took := time.Since(start); took > 1500*time.Millisecond || err != nil || len(keys) != 1 {
		t.Fatalf("a known key's check took %s (%d keys, %v) while another caller's fetch hung; want the cached keys at once", took, len(keys), err)
	}
}
