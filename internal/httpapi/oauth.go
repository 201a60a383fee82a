package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/nmap-mcp/nmap-mcp/internal/auth"
)

// MCP authorization: with an identity provider configured (Config.Auth)
// the server is an OAuth 2.1 resource server. It publishes its protected
// resource metadata (RFC 9728) at /.well-known/oauth-protected-resource
// and at the path-suffixed /.well-known/oauth-protected-resource/mcp,
// answers a request without a valid token 401 with
// `WWW-Authenticate: Bearer resource_metadata="…", scope="…"` pointing
// there and naming the scopes to ask for, and a
// token without the role a request needs 403 insufficient_scope naming
// the scope that gives it.

var (
	errNoToken      = errors.New("send Authorization: Bearer <token>")
	errUnknownToken = errors.New("that token is not one of this server's tokens")
)

// metadataPath is the RFC 9728 document's path; the path-suffixed form
// adds the resource's path (/mcp).
const metadataPath = "/.well-known/oauth-protected-resource"

// metadataURL is the absolute URL of the metadata document of /mcp.
func (s *Server) metadataURL() string {
	base := strings.TrimSuffix(s.cfg.Auth.Audience(), "/mcp")
	return base + metadataPath + "/mcp"
}

// verify checks a provider's access token.
func (s *Server) verify(ctx context.Context, raw string) (identity, error) {
	id, err := s.cfg.Auth.Verify(ctx, raw)
	if err != nil {
		return identity{}, err
	}
	if s.d.Seen != nil && id.Has(auth.Scan) {
		// Standing keeps a person's watches scanning: only a token that
		// may scan renews it, so taking the role away pauses them.
		s.d.Seen(id)
	}
	return identity{name: id.Name, provider: true, expires: id.Expires, admin: id.Has(auth.Admin), approver: id.Has(auth.Approve),
		read: id.Has(auth.Read), scan: id.Has(auth.Scan)}, nil
}

// refuseAuth answers a request whose token is missing or refused: 401
// with the challenge (503 when the provider cannot be reached to check a
// token, so that clients do not throw their tokens away).
func (s *Server) refuseAuth(w http.ResponseWriter, r *http.Request, err error) {
	var te *auth.Error
	switch {
	case s.cfg.Auth != nil && !errors.Is(err, errNoToken) && !errors.Is(err, errUnknownToken) && !errors.As(err, &te):
		s.d.Refused("auth_provider")
		s.d.Log.Warn("cannot check a provider's token", "err", err)
		http.Error(w, "Service Unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	case s.cfg.Auth != nil:
		s.d.Refused("auth")
		challenge := fmt.Sprintf(`Bearer resource_metadata=%q`, s.metadataURL())
		if sc := s.challengeScope(); sc != "" {
			challenge += fmt.Sprintf(`, scope=%q`, sc)
		}
		if te != nil {
			challenge += fmt.Sprintf(`, error=%q, error_description=%q`, te.Code, headerSafe(te.Description))
			s.d.Log.Info("provider token refused", "remote", r.RemoteAddr, "reason", te.Description)
		} else if errors.Is(err, errUnknownToken) {
			challenge += `, error="invalid_token", error_description="not a token of this server"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		http.Error(w, "Unauthorized: "+err.Error()+"; get a token for "+s.cfg.Auth.Audience()+" from "+s.cfg.Auth.Issuer()+
			" (the metadata at "+s.metadataURL()+" says how), or send a static token", http.StatusUnauthorized)
	default:
		s.d.Refused("auth")
		w.Header().Set("WWW-Authenticate", `Bearer realm="nmap-mcp"`)
		http.Error(w, "Unauthorized: send Authorization: Bearer <token> (make one with nmap-mcp token add NAME)", http.StatusUnauthorized)
	}
}

// challengeScope is the scope a 401 tells the client to ask for (RFC 6750
// section 3; the MCP authorization spec's scope selection puts it before
// the metadata's scopes_supported): the scopes of the read and scan roles,
// what an MCP client needs for its work. Without it a client asks for
// every scope the metadata lists, nmap:admin too, and a provider that
// grants what is asked makes every person an admin who sees every scan.
// Approve (the web view's) and admin stay the provider's to give: by a
// group, or to a client that asks for their scopes itself. "" when only
// groups give read and scan.
func (s *Server) challengeScope() string {
	var scopes []string
	for _, r := range []auth.Role{auth.Read, auth.Scan} {
		if sc := s.cfg.Auth.ScopeFor(r); sc != "" && !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	return strings.Join(scopes, " ")
}

// headerSafe keeps a description inside a quoted header parameter.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '\''
		}
		return r
	}, s)
}

// refuseScope answers 403 insufficient_scope naming the scope that gives
// role r.
func (s *Server) refuseScope(w http.ResponseWriter, r auth.Role) {
	s.d.Refused("scope")
	scope := string(r)
	if s.cfg.Auth != nil {
		if sc := s.cfg.Auth.ScopeFor(r); sc != "" {
			scope = sc
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope=%q, resource_metadata=%q, error_description=%q`,
			scope, s.metadataURL(), "this request needs the "+string(r)+" role"))
	}
	http.Error(w, fmt.Sprintf("Forbidden: insufficient_scope: this request needs the %s role (scope %s)", r, scope), http.StatusForbidden)
}

// scanTools are the tools that start or stop scans: they need the scan
// role; every other request needs read.
var scanTools = map[string]bool{"nmap_scan": true, "cancel_scan": true, "watch_create": true, "watch_delete": true}

// requiredRole is the role a JSON-RPC request to /mcp needs: scan for
// tools that start or stop scans (and task cancellation), read for the
// rest. A body that is not one request (a response to the server, a
// notification) needs read; one that cannot be read as JSON-RPC needs
// scan: encoding/json fills what it can past a mistyped key (a "PARAMS":5
// before "params"), and the task layer, which keeps params raw, may read
// a request from it that this reading missed.
func requiredRole(body []byte) auth.Role {
	if len(bytes.TrimSpace(body)) == 0 {
		return auth.Read
	}
	if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '[' {
		// A batch needs the most any of its requests needs; one that
		// cannot be read needs scan, so nothing slips past.
		var batch []json.RawMessage
		if json.Unmarshal(b, &batch) != nil {
			return auth.Scan
		}
		for _, m := range batch {
			if requiredRole(m) == auth.Scan {
				return auth.Scan
			}
		}
		return auth.Read
	}
	var req struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &req) != nil {
		return auth.Scan
	}
	switch {
	case req.Method == "tools/call" && scanTools[req.Params.Name], req.Method == "tasks/cancel", req.Method == "tasks/update":
		return auth.Scan
	}
	return auth.Read
}

// protectedResource serves the RFC 9728 metadata document.
func (s *Server) protectedResource(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	_ = json.NewEncoder(w).Encode(s.cfg.Auth.Metadata())
}
