package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/assertion"
)

// jwksPath is where the public keys of the assertions are served, with
// Config.Assertions: the well-known path that JOSE libraries and OpenID
// Connect discovery use.
const jwksPath = "/.well-known/jwks.json"

// jwksCacheControl lets verifiers and caches keep the key set for
// assertion.JWKSMaxAge; a new key is published longer than that before
// it signs.
var jwksCacheControl = []string{"public, max-age=300"}

// jwks serves the public keys of the assertions as a JWK Set.
func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = []string{"application/jwk-set+json"}
	h["Cache-Control"] = jwksCacheControl
	w.Write(s.cfg.Assertions.JWKS())
}

// errAudience refuses a request whose original host cannot be an
// assertion's audience.
var errAudience = &app.Error{Code: app.CodeBadRequest, Message: "The original request's host is not a valid host name."}

// assert puts the assertion about id, for the original request's host,
// in id, if Config.Assertions is set. It fails if no key is known to sign
// now (the key store has been unreachable too long): the request is then
// refused as a store failure would have it.
func (s *Server) assert(r *http.Request, id *identity) error {
	a := s.cfg.Assertions
	if a == nil {
		return nil
	}
	var aud string
	if a.Audience() == "" {
		aud = s.originalHost(r)
	}
	h, err := a.Header(id.session, id.username, aud)
	switch {
	case errors.Is(err, assertion.ErrAudience):
		return errAudience
	case errors.Is(err, assertion.ErrExpired):
		return errUnauthenticated // it expired since identify checked it
	}
	if err != nil {
		return fmt.Errorf("identity assertion: %w", err)
	}
	id.assertion = h
	return nil
}

// originalHost is the host the browser asked the proxy for, lower case:
// that of X-Original-URL (nginx), or X-Forwarded-Host (Traefik, Caddy),
// each believed only from a loopback peer or a trusted proxy; else the
// request's Host (Envoy ext_authz, which sends the original one, and
// sessiond itself as the proxy).
func (s *Server) originalHost(r *http.Request) string {
	host := r.Host
	if isResolve(r.URL.Path) && s.trusted(peerAddr(r)) {
		if o := r.Header.Get("X-Original-URL"); o != "" {
			if u, err := url.Parse(o); err == nil && u.Host != "" {
				host = u.Host
			}
		} else if f := r.Header.Get("X-Forwarded-Host"); f != "" {
			host = f
		}
	}
	return strings.ToLower(host)
}
