package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nmap-mcp/nmap-mcp/internal/auth"
	"github.com/nmap-mcp/nmap-mcp/internal/scans"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit/oidcop"
)

// MCP authorization against a real OpenID provider (oidc-provider on
// loopback, internal/testkit/oidcop; node, no engine). Tools here are
// stand-ins that say who called; the scans are the end-to-end tests'.

const oauthAudience = "http://127.0.0.1:8808/mcp"

func oauthServer(t *testing.T) (*Server, *oidcop.Provider, string, *[]auth.Identity) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an OpenID provider (node); not under -short")
	}
	op := oidcop.Start(t, oidcop.Config{Resource: oauthAudience,
		Scopes:  []string{"nmap:read", "nmap:scan", "nmap:approve", "nmap:admin"},
		Clients: []oidcop.Client{{ClientID: "robot", Secret: "robot-secret"}, {ClientID: "ci", Secret: "ci-secret"}}})
	v, err := auth.New(auth.Config{Issuer: op.Issuer(), Audience: oauthAudience, Reserved: func(n string) bool { return n == "ci" }})
	if err != nil {
		t.Fatal(err)
	}
	secret, tok, err := NewToken("ci")
	if err != nil {
		t.Fatal(err)
	}
	m := server.NewMCPServer("t", "1")
	whoami := func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(scans.ClientOf(ctx)), nil
	}
	m.AddTool(mcp.NewTool("nmap_scan"), whoami)
	m.AddTool(mcp.NewTool("list_scans"), whoami)
	var seen []auth.Identity
	s, err := New(Config{Addr: "0.0.0.0:8808", Tokens: []Token{tok}, Auth: v},
		Deps{MCP: m, Seen: func(id auth.Identity) { seen = append(seen, id) }})
	if err != nil {
		t.Fatal(err)
	}
	return s, op, secret, &seen
}

func providerToken(t *testing.T, op *oidcop.Provider, client, scope string) string {
	t.Helper()
	tok, err := op.ClientCredentials(context.Background(), client, client+"-secret", scope, oauthAudience)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// call initializes a session with token and calls tool, returning the
// HTTP status, the challenge and the tool's text.
func call(t *testing.T, s *Server, token, tool string) (int, string, string) {
	t.Helper()
	rec := do(s, http.MethodPost, "/mcp", token, "", initBody)
	if rec.Code != http.StatusOK {
		return rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body.String()
	}
	sid := rec.Header().Get(server.HeaderKeySessionID)
	req := func(body string) *http.Request {
		r, _ := http.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json, text/event-stream")
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set(server.HeaderKeySessionID, sid)
		return r
	}
	rec2 := serve(s, req(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if rec2.Code/100 != 2 {
		t.Fatalf("initialized: %d %s", rec2.Code, rec2.Body)
	}
	rec3 := serve(s, req(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"`+tool+`","arguments":{}}}`))
	return rec3.Code, rec3.Header().Get("WWW-Authenticate"), rec3.Body.String()
}

func TestOAuthResourceServer(t *testing.T) {
	s, op, static, seen := oauthServer(t)

	t.Run("metadata", func(t *testing.T) {
		for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
			rec := do(s, http.MethodGet, path, "", "", "")
			var md auth.ProtectedResource
			if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &md) != nil {
				t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
			}
			if md.Resource != oauthAudience || len(md.AuthorizationServers) != 1 || md.AuthorizationServers[0] != op.Issuer() ||
				!strings.Contains(strings.Join(md.ScopesSupported, " "), "nmap:scan") {
				t.Fatalf("%s: %+v", path, md)
			}
		}
	})
	t.Run("401 points to the metadata", func(t *testing.T) {
		for _, tok := range []string{"", "nmcp_not-a-token", "a.b.c"} {
			rec := do(s, http.MethodPost, "/mcp", tok, "", initBody)
			ch := rec.Header().Get("WWW-Authenticate")
			if rec.Code != 401 || !strings.Contains(ch, `resource_metadata="http://127.0.0.1:8808/.well-known/oauth-protected-resource/mcp"`) {
				t.Fatalf("token %q: %d %q", tok, rec.Code, ch)
			}
			if tok != "" && !strings.Contains(ch, `error="invalid_token"`) {
				t.Fatalf("token %q: challenge %q has no invalid_token", tok, ch)
			}
		}
	})
	t.Run("a person scans under their own name", func(t *testing.T) {
		code, _, body := call(t, s, providerToken(t, op, "robot", "nmap:scan"), "nmap_scan")
		if code != 200 || !strings.Contains(body, `"text":"robot"`) {
			t.Fatalf("%d %s", code, body)
		}
		if len(*seen) == 0 || (*seen)[0].Name != "robot" {
			t.Fatalf("standing not told: %+v", *seen)
		}
	})
	t.Run("403 insufficient_scope names the scope", func(t *testing.T) {
		tok := providerToken(t, op, "robot", "nmap:read")
		if code, _, body := call(t, s, tok, "list_scans"); code != 200 || !strings.Contains(body, `"text":"robot"`) {
			t.Fatalf("read with nmap:read: %d %s", code, body)
		}
		code, ch, body := call(t, s, tok, "nmap_scan")
		if code != 403 || !strings.Contains(ch, `error="insufficient_scope"`) || !strings.Contains(ch, `scope="nmap:scan"`) ||
			!strings.Contains(body, "nmap:scan") {
			t.Fatalf("scan with nmap:read: %d %q %s", code, ch, body)
		}
		// A batch cannot carry a scan past the check.
		rec := do(s, http.MethodPost, "/mcp", tok, "", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nmap_scan"}}]`)
		if rec.Code != 403 {
			t.Fatalf("batch: %d %s", rec.Code, rec.Body)
		}
		// No role at all: not even read.
		code, ch, _ = call(t, s, providerToken(t, op, "robot", ""), "list_scans")
		if code != 403 || !strings.Contains(ch, `scope="nmap:read"`) {
			t.Fatalf("no scope: %d %q", code, ch)
		}
	})
	t.Run("static tokens beside the provider", func(t *testing.T) {
		if code, _, body := call(t, s, static, "nmap_scan"); code != 200 || !strings.Contains(body, `"text":"ci"`) {
			t.Fatalf("static token: %d %s", code, body)
		}
	})
	t.Run("a person cannot take a static token's name", func(t *testing.T) {
		rec := do(s, http.MethodPost, "/mcp", providerToken(t, op, "ci", "nmap:scan"), "", initBody)
		if rec.Code != 401 || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "static tokens") {
			t.Fatalf("%d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	})
	t.Run("a session stays its person's", func(t *testing.T) {
		rec := do(s, http.MethodPost, "/mcp", providerToken(t, op, "robot", "nmap:scan"), "", initBody)
		sid := rec.Header().Get(server.HeaderKeySessionID)
		r, _ := http.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json, text/event-stream")
		r.Header.Set("Authorization", "Bearer "+static)
		r.Header.Set(server.HeaderKeySessionID, sid)
		if rec := serve(s, r); rec.Code != 404 {
			t.Fatalf("ci used robot's session: %d", rec.Code)
		}
	})
}

// TestOAuthProviderDown: a token that cannot be checked because the
// provider is down is 503, not 401 (the client keeps its token), and
// static tokens keep working.
func TestOAuthProviderDown(t *testing.T) {
	v, err := auth.New(auth.Config{Issuer: "http://127.0.0.1:1", Audience: oauthAudience})
	if err != nil {
		t.Fatal(err)
	}
	secret, tok, err := NewToken("ci")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Addr: "127.0.0.1:0", Tokens: []Token{tok}, Auth: v}, Deps{MCP: server.NewMCPServer("t", "1")})
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(s, http.MethodPost, "/mcp", "x.y.z", "", initBody); rec.Code != 503 {
		t.Fatalf("provider down: %d %s", rec.Code, rec.Body)
	}
	if rec := do(s, http.MethodPost, "/mcp", secret, "", initBody); rec.Code != 200 {
		t.Fatalf("static token with the provider down: %d %s", rec.Code, rec.Body)
	}
}

// Regression (TestTypeScriptSDKOAuth): a 401 names the scopes to ask for,
// those of read and scan. Without them the TypeScript SDK asked for every
// scope of scopes_supported, nmap:admin too, and the provider granted it:
// every person was an admin who saw every scan. Roles given by groups
// only leave the parameter out. No provider is reached (no token is
// checked); runs under -short.
func TestOAuthChallengeScope(t *testing.T) {
	for _, c := range []struct {
		name   string
		grants map[auth.Role]auth.Grant
		want   string
	}{
		{"default", nil, `, scope="nmap:read nmap:scan"`},
		{"own scopes", map[auth.Role]auth.Grant{auth.Read: {Scopes: []string{"lab.read"}}, auth.Scan: {Scopes: []string{"lab.scan", "lab.all"}},
			auth.Approve: {Scopes: []string{"lab.approve"}}, auth.Admin: {Scopes: []string{"lab.admin"}}}, `, scope="lab.read lab.scan"`},
		{"scan implies read, one scope", map[auth.Role]auth.Grant{auth.Read: {Scopes: []string{"lab"}}, auth.Scan: {Scopes: []string{"lab"}},
			auth.Approve: {Groups: []string{"a"}}, auth.Admin: {Groups: []string{"b"}}}, `, scope="lab"`},
		{"groups only", map[auth.Role]auth.Grant{auth.Read: {Groups: []string{"r"}}, auth.Scan: {Groups: []string{"s"}},
			auth.Approve: {Scopes: []string{"nmap:approve"}}, auth.Admin: {Scopes: []string{"nmap:admin"}}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := auth.New(auth.Config{Issuer: "http://127.0.0.1:1", Audience: oauthAudience, Grants: c.grants})
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(Config{Addr: "127.0.0.1:0", Auth: v}, Deps{MCP: server.NewMCPServer("t", "1")})
			if err != nil {
				t.Fatal(err)
			}
			rec := do(s, http.MethodPost, "/mcp", "", "", initBody)
			want := `Bearer resource_metadata="http://127.0.0.1:8808/.well-known/oauth-protected-resource/mcp"` + c.want
			if ch := rec.Header().Get("WWW-Authenticate"); rec.Code != 401 || ch != want {
				t.Fatalf("%d %q, want 401 %q", rec.Code, ch, want)
			}
			rec = do(s, http.MethodPost, "/mcp", "nmcp_not-a-token", "", initBody)
			if ch := rec.Header().Get("WWW-Authenticate"); rec.Code != 401 || !strings.HasPrefix(ch, want+`, error="invalid_token"`) {
				t.Fatalf("unknown token: %d %q", rec.Code, ch)
			}
		})
	}
}

func serve(s *Server, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, r)
	return rec
}

// A provider person's event stream (GET /mcp) ends when their token does
// (red-team note: it kept delivering after it); the client reconnects
// with a fresh token, which a removed person does not get.
func TestOAuthStreamEndsWithToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an OpenID provider (node); not under -short")
	}
	op := oidcop.Start(t, oidcop.Config{Resource: oauthAudience, Scopes: []string{"nmap:read", "nmap:scan"},
		Clients: []oidcop.Client{{ClientID: "robot", Secret: "robot-secret"}}, AccessTokenTTL: 2 * time.Second})
	v, err := auth.New(auth.Config{Issuer: op.Issuer(), Audience: oauthAudience})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Addr: "127.0.0.1:0", Auth: v}, Deps{MCP: server.NewMCPServer("t", "1")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	tok := providerToken(t, op, "robot", "nmap:read")
	rec := do(s, http.MethodPost, "/mcp", tok, "", initBody)
	sid := rec.Header().Get(server.HeaderKeySessionID)
	if rec.Code != 200 || sid == "" {
		t.Fatalf("initialize: %d", rec.Code)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set(server.HeaderKeySessionID, sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET stream: %d", resp.StatusCode)
	}
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, resp.Body); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second): // without the bound it lives on (heartbeats every 30 s)
		t.Fatal("the stream outlived its token")
	}
}
