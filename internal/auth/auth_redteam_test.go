package auth_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/auth"
)

// jwksDown answers the provider's discovery but not its keys.
type jwksDown struct{}

func (jwksDown) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/jwks") {
		return nil, errors.New("connection refused (test: jwks_uri down)")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestKeysUnreachableIsNotARefusal: the provider's discovery answered but
// its jwks_uri does not, and no key is held yet: a good token cannot be
// checked, which is not a refused token (503, so the client keeps it),
// not 401 invalid_token (the client throws the token away and sends its
// person through the provider again). Real provider (node), not -short.
func TestKeysUnreachableIsNotARefusal(t *testing.T) {
	op := startOP(t)
	tok := token(t, op, "robot", "nmap:read", audience)
	v := verifier(t, op, func(c *auth.Config) { c.HTTPClient = &http.Client{Transport: jwksDown{}} })
	_, err := v.Verify(context.Background(), tok)
	var ae *auth.Error
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("Verify = %v, want a provider error (503), not a refused token", err)
	}
	if !strings.Contains(err.Error(), "keys") {
		t.Fatalf("error %q does not say the provider's keys cannot be fetched", err)
	}
}
