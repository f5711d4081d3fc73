package server

import (
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sessiond/sessiond/app"
)

// reservedPaths are sessiond's own in upstream mode (Config.Upstream): a
// path that ends in "/" reserves every path under it ("/api/v1/" covers
// "/api/v1/session"), any other reserves itself and every path under it
// ("/account" covers "/account/password"). sessiond answers them, with its
// own 404 or 405 where it has no such route, and they never reach the
// app. Every other path is the app's, /resolve, /metrics, /healthz and
// /readyz included: Server.Internal serves those. With Config.Assertions,
// jwksPath is sessiond's too.
var reservedPaths = []string{"/login", "/logout", "/account", "/admin", "/api/v1/", "/static/"}

// reserved reports whether path is one of reservedPaths' (see there).
func reserved(path string) bool {
	for _, p := range reservedPaths {
		rest, ok := strings.CutPrefix(path, p)
		if ok && (rest == "" || rest[0] == '/' || strings.HasSuffix(p, "/")) {
			return true
		}
	}
	return false
}

// strippedHeaders are the request headers that tell an app who is calling
// or where the request comes from. In upstream mode the client's copies of
// all of them are removed before a request reaches the app, in every
// spelling: names compare case-insensitively with "_" read as "-", since
// CGI, WSGI and Rack servers hand Remote-User and Remote_User to the app
// alike, as HTTP_REMOTE_USER. A header is stripped if its name is one of
// exact or begins with one of prefixes (all written in lower case).
// sessiond then sets its own: X-Forwarded-For, X-Forwarded-Host and
// X-Forwarded-Proto (see setForwarded) and the identity headers of a
// resolve answer (Remote-User, Remote-Groups, X-User-Id, X-Session-…).
var strippedHeaders = struct{ exact, prefixes []string }{
	exact: []string{
		// Identity, as single-sign-on proxies and apps name it.
		"x-user", "x-email", "x-auth-user",
		// The client's address and the original request, as proxies and
		// CDNs pass them on.
		"forwarded", "x-real-ip", "x-client-ip", "client-ip", "true-client-ip",
		"cf-connecting-ip", "cf-connecting-ipv6", "fastly-client-ip",
		"x-cluster-client-ip", "x-proxyuser-ip", "x-envoy-external-address",
		"x-host", "x-rewrite-url",
	},
	prefixes: []string{
		"remote-",                    // Remote-User, -Groups, -Email, -Name (sessiond, Authelia, Authentik)
		"x-remote-",                  // X-Remote-User, -Group, -Extra-… (Kubernetes' request-header authentication)
		"x-user-",                    // X-User-Id (sessiond) and the like
		"x-session-",                 // X-Session-Id, -Expires-At, -Authenticated-At (sessiond)
		"x-auth-request-",            // X-Auth-Request-User, -Email, -Groups (oauth2-proxy)
		"x-authenticated-",           // X-Authenticated-Userid, -Groups (Kong)
		"x-webauth-",                 // X-WEBAUTH-USER (Grafana's auth proxy)
		"x-forwarded-",               // -For, -Host, -Proto, -Port, -Prefix, -Uri, -User, -Email, -Groups, …
		"x-original-",                // X-Original-URL, -URI, -Host, -Forwarded-For (nginx, ingress-nginx)
		"x-amzn-oidc-",               // AWS load balancers
		"x-goog-authenticated-user-", // Google's Identity-Aware Proxy
		"x-ms-client-principal",      // Azure App Service authentication
		"cf-access-",                 // Cloudflare Access
		"tailscale-user-",            // Tailscale Serve
	},
}

// isStripped reports whether a request header named name is one of
// strippedHeaders, in any spelling.
func isStripped(name string) bool {
	for _, p := range strippedHeaders.prefixes {
		if headerIs(name, p, true) {
			return true
		}
	}
	for _, e := range strippedHeaders.exact {
		if headerIs(name, e, false) {
			return true
		}
	}
	return false
}

// headerIs reports whether name equals want (with prefix, begins with
// it), comparing ASCII letters case-insensitively and reading "_" in name
// as "-". want is lower case.
func headerIs(name, want string, prefix bool) bool {
	if len(name) < len(want) || !prefix && len(name) != len(want) {
		return false
	}
	for i := range len(want) {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// stripHeaders deletes every header of h that isStripped names.
func stripHeaders(h http.Header) {
	for k := range h {
		if isStripped(k) {
			delete(h, k)
		}
	}
}

// bodyIdleTimeout bounds the wait for each read of a request body on its
// way to the app. It stands in for the server's ReadTimeout, which bounds
// the whole request: an upload may take as long as it keeps moving, and
// one that stalls this long is cut off.
const bodyIdleTimeout = 30 * time.Second

// idleBody is a request body that moves its connection's read deadline
// bodyIdleTimeout ahead of each read, until done is set (the handler has
// returned, and the connection may be reading another request).
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done atomic.Bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	if !b.done.Load() {
		b.rc.SetReadDeadline(time.Now().Add(bodyIdleTimeout)) // an error means no deadline to move
	}
	return b.ReadCloser.Read(p)
}

// proxy is the authenticating reverse proxy in front of Config.Upstream.
// A request reaches the app only with a valid session and, if a browser
// sent it with the session cookie, only if it passes the cross-origin
// check (Config.CrossOrigin of the session Manager) or is a safe method.
// Its body streams through, unbounded in size. The app gets the identity
// headers and sessiond's forwarding headers in place of any the client
// sent (strippedHeaders), and neither the bearer token nor the session
// cookie; its answer reaches the client as it is, with HSTS added when
// sessiond serves TLS and the app sets none.
func (s *Server) proxy() http.Handler {
	cookie := s.sessions.Config().Cookie.Name
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(s.cfg.Upstream)
			pr.Out.Host = pr.In.Host
			stripHeaders(pr.Out.Header)
			stripHeaders(pr.Out.Trailer)
			s.setForwarded(pr)
			if id := identityFrom(pr.In.Context()); id != nil {
				id.setHeaders(pr.Out.Header) // X-Session-Assertion too, with Config.Assertions
			}
			// The app never sees sessiond's token.
			pr.Out.Header.Del("Authorization")
			removeCookie(pr.Out.Header, cookie)
		},
		ModifyResponse: func(res *http.Response) error {
			if len(res.Header["Strict-Transport-Security"]) == 0 {
				s.setHSTS(res.Header)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				s.log.DebugContext(r.Context(), "client left before the app answered", "err", err)
			} else {
				s.log.WarnContext(r.Context(), "upstream failed", "err", err)
			}
			s.setHSTS(w.Header())
			setBodyHeaders(w.Header())
			writeError(w, app.Errorf(app.CodeUpstreamUnavailable, "The application is unavailable."))
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := s.identify(r)
		if err != nil {
			s.setHSTS(w.Header())
			s.deny(w, r, err, true)
			return
		}
		if _, fromCookie := s.sessions.TokenFromRequest(r); fromCookie {
			if err := s.sessions.Config().CrossOrigin.Check(r); err != nil {
				s.setHSTS(w.Header())
				setBodyHeaders(w.Header())
				// As the session middleware refuses a cross-origin
				// request: a page for browsers, JSON for the others.
				s.sessions.Config().WriteError(w, r, http.StatusForbidden, "cross_origin", "Cross-origin request refused.")
				return
			}
		}
		if err := s.assert(r, &id); err != nil {
			s.setHSTS(w.Header())
			s.deny(w, r, err, true)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			body := &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w)}
			defer body.done.Store(true)
			r.Body = body
		}
		rp.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), &id)))
	})
}

// setForwarded sets the forwarding headers of the request to the app, the
// client's copies being gone: X-Forwarded-Host is the Host the client
// asked for; X-Forwarded-For is the client's address and X-Forwarded-Proto
// the scheme it used, as sessiond sees them: from the connection, or from
// the forwarding headers of a proxy it trusts (see Server.trusted).
func (s *Server) setForwarded(pr *httputil.ProxyRequest) {
	pr.SetXForwarded()
	if !s.trusted(peerAddr(pr.In)) {
		return
	}
	pr.Out.Header.Set("X-Forwarded-For", s.clientIP(pr.In))
	if p := pr.In.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		pr.Out.Header.Set("X-Forwarded-Proto", p)
	}
}

// removeCookie deletes the cookies named name, whatever their value, from
// the Cookie headers of h, and leaves every other byte of them as it was:
// an app's cookie values are its own business, whether or not they follow
// RFC 6265. A name counts as name with any white space around it trimmed
// (Unicode spaces too), more than the session reads as its cookie, so
// that no spelling of sessiond's cookie reaches the app. A Cookie header
// left with no cookie goes.
func removeCookie(h http.Header, name string) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	kept := lines[:0:0]
	for _, line := range lines {
		parts := strings.Split(line, ";")
		keep := parts[:0]
		for _, part := range parts {
			n, _, _ := strings.Cut(part, "=")
			if strings.TrimSpace(n) != name {
				keep = append(keep, part)
			}
		}
		if len(keep) == len(parts) {
			kept = append(kept, line)
			continue
		}
		if rest := strings.TrimLeft(strings.Join(keep, ";"), " \t"); strings.Trim(rest, " \t;") != "" {
			kept = append(kept, rest)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = kept
}
