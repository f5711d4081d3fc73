// Package server is sessiond's HTTP service: login and logout, the resolve
// endpoint for forward-auth proxies, bearer tokens for native clients,
// self-service and admin APIs, web pages, health and metrics; and Envoy's
// ext_authz over gRPC (Server.GRPC), answered by the resolve endpoint's
// code. It stands on package session for sessions and package users for
// accounts.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/assertion"
	"github.com/sessiond/sessiond/session"
)

// Config is the service's configuration beyond the session policy. Zero
// fields mean their documented defaults.
type Config struct {
	// PublicURL is the URL users reach sessiond at (through the proxy),
	// used to build login redirects. Default: taken from each request.
	PublicURL *url.URL
	// TrustedProxies are the peers, besides loopback ones, whose
	// X-Forwarded-For, X-Forwarded-Proto/Host/Uri and X-Original-URL
	// headers are believed. Peers on loopback (127.0.0.0/8, ::1) are
	// always believed: a proxy on the same host is the common case. From
	// any other peer these headers are ignored, and the client IP is the
	// TCP peer. Default: none besides loopback.
	TrustedProxies []netip.Prefix
	// TLS says sessiond itself serves HTTPS; it then sends HSTS.
	TLS bool
	// Upstream, if set, makes sessiond an authenticating reverse proxy for
	// this one app: every path but sessiond's own (reservedPaths) goes
	// there, for signed-in users only, with identity headers set (see
	// Server.proxy). The internal endpoints are then served by Internal
	// only, and their paths are the app's.
	Upstream *url.URL
	// SeparateInternal keeps the internal endpoints (/resolve and
	// /resolve/…, /healthz, /readyz, /metrics) off ServeHTTP, for a
	// deployment that serves Internal on a listener the public cannot
	// reach. Upstream implies it. Default: ServeHTTP serves them too.
	SeparateInternal bool
	// InvalidTokenInterval and InvalidTokenBurst limit the invalid
	// credentials (unknown or malformed tokens) a client IP may present:
	// Burst at once, then one per Interval. Defaults 100ms and 100.
	InvalidTokenInterval time.Duration
	InvalidTokenBurst    int
	// StoreTimeout bounds how long authenticating a request (resolve, the
	// API, the upstream proxy) waits for the session store and the user
	// directory: past it the answer is 503, so that a store that stops
	// answering (a lock, a partition that drops packets) costs callers a
	// bounded wait and never a 200. Default 2s.
	StoreTimeout time.Duration
	// Assertions, if set, signs the X-Session-Assertion header of every
	// 200 from /resolve and of every request passed to Upstream, and its
	// keys are served at /.well-known/jwks.json (see jwksPath). Default:
	// none (no assertion, no key set).
	Assertions *assertion.Issuer
	// Version is the version sessiond_build_info reports. Default "dev".
	Version string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.InvalidTokenInterval == 0 {
		c.InvalidTokenInterval = 100 * time.Millisecond
	}
	if c.InvalidTokenBurst == 0 {
		c.InvalidTokenBurst = 100
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = 2 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	return c
}

// Server is the sessiond HTTP service: the transport over an app.App.
type Server struct {
	cfg      Config
	app      *app.App
	sessions *session.Manager
	log      *slog.Logger
	metrics  *metrics
	handler  http.Handler
	internal http.Handler

	invalidToken *limiter
	// policies keeps the parsed policies of /resolve's query strings.
	policies policyCache
}

// Deps are the parts a Server is built from: those of its application
// layer. New sets the session policy's Events (metrics, after the audit
// log), ClientIP and WriteError.
type Deps = app.Deps

// New returns a Server. It fails if the session policy is unsafe.
func New(cfg Config, d Deps) (*Server, error) {
	cfg = cfg.withDefaults()
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:          cfg,
		log:          log,
		metrics:      newMetrics(cfg.Version),
		invalidToken: newLimiter(cfg.InvalidTokenInterval, cfg.InvalidTokenBurst),
	}
	sc := d.Session
	sc.Events = session.EventFunc(func(_ context.Context, e session.Event) {
		s.metrics.sessionEvents.WithLabelValues(sessionEventLabel(e.Type)).Inc()
	})
	sc.ClientIP = s.clientIP
	sc.WriteError = s.refuse
	d.Session, d.Logger = sc, log
	if d.Now == nil {
		d.Now = cfg.Now
	}
	a, err := app.New(d)
	if err != nil {
		return nil, err
	}
	if c, ok := d.Webhooks.(metricSource); ok {
		s.metrics.reg.MustRegister(c.Collectors()...)
	}
	s.app, s.sessions = a, a.Sessions()
	s.handler, s.internal = s.routes()
	return s, nil
}

// App returns the application layer the Server is the transport of.
func (s *Server) App() *app.App { return s.app }

// Sessions returns the server's session Manager.
func (s *Server) Sessions() *session.Manager { return s.sessions }

// ServeHTTP implements http.Handler: sessiond's pages and API, the
// internal endpoints unless Config.SeparateInternal or Config.Upstream is
// set, and with Upstream the app behind sessiond.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Internal returns the handler of the internal endpoints: /resolve (and
// /resolve/…) for forward-auth proxies, /healthz, /readyz and /metrics.
// They are for the proxy and the monitoring, not the public: serve them
// on a listener only those reach.
func (s *Server) Internal() http.Handler { return s.internal }

// routes returns the public handler (ServeHTTP's) and the internal one,
// each observed (access log, HTTP metrics; see observe), and creates the
// HTTP metrics of every route.
func (s *Server) routes() (public, internal http.Handler) {
	var patterns []string
	defer func() { s.metrics.initRoutes(patterns) }()
	mux := routeMux{http.NewServeMux(), &patterns}

	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("GET /static/style.css", stylesheet)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	// The steps after the password: each reads the session itself, if any.
	mux.Handle("GET /login/second-factor", s.sessions.Handler(http.HandlerFunc(s.secondFactorPage)))
	mux.Handle("POST /login/second-factor", s.sessions.Handler(http.HandlerFunc(s.secondFactor)))
	mux.HandleFunc("POST /api/v1/tokens", s.createToken)
	if s.cfg.Assertions != nil {
		mux.HandleFunc("GET "+jwksPath, s.jwks)
	}

	// Self-service: any signed-in user, by cookie or bearer token.
	self := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.authed(identified(h))) }
	self("GET /api/v1/session", s.whoami)
	self("GET /api/v1/sessions", s.mySessions)
	self("DELETE /api/v1/sessions/{id}", s.revokeMySession)
	self("POST /api/v1/sessions/revoke-others", s.revokeMyOthers)
	self("POST /api/v1/password", s.changePassword)
	self("GET /api/v1/mfa", s.myFactors)
	self("POST /api/v1/mfa/totp", s.beginTOTP)
	self("POST /api/v1/mfa/totp/confirm", s.confirmTOTP)
	self("DELETE /api/v1/mfa/totp", s.disableTOTP)
	self("POST /api/v1/mfa/recovery-codes", s.newRecoveryCodes)

	// Admin: role "admin" only.
	admin := func(pattern string, h http.HandlerFunc) {
		mux.Handle(pattern, s.authed(identified(s.assured(s.adminOnly(h), false))))
	}
	admin("POST /api/v1/admin/users", s.adminCreateUser)
	admin("GET /api/v1/admin/users", s.adminListUsers)
	admin("GET /api/v1/admin/users/{user}/sessions", s.adminUserSessions)
	admin("POST /api/v1/admin/users/{user}/revoke", s.adminRevokeUser)
	admin("PUT /api/v1/admin/users/{user}/roles", s.adminSetRoles)
	admin("POST /api/v1/admin/users/{user}/disable", s.adminDisable)
	admin("POST /api/v1/admin/users/{user}/enable", s.adminEnable)
	admin("POST /api/v1/admin/users/{user}/password", s.adminResetPassword)
	admin("DELETE /api/v1/admin/users/{user}", s.adminDeleteUser)
	admin("POST /api/v1/admin/users/{user}/second-factors/reset", s.adminResetFactors)
	admin("DELETE /api/v1/admin/sessions/{id}", s.adminRevokeSession)
	admin("GET /api/v1/admin/audit", s.adminAudit)
	admin("GET /api/v1/admin/webhooks", s.adminWebhooks)
	admin("POST /api/v1/admin/webhooks/{hook}/retry", s.adminRetryWebhook)

	// Web pages: any signed-in user, and the admin console for role
	// "admin" (403 page for others). Without a session a browser goes to
	// the login page; every form post passes the session middleware's
	// cross-origin check.
	page := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.pageAuthed(identified(h))) }
	console := func(pattern string, h http.HandlerFunc) { page(pattern, s.assured(s.adminPage(h), true)) }
	page("GET /login/reauth", s.reauthPage)
	mux.Handle("POST /login/reauth", s.authed(identified(s.reauth)))
	page("GET /account", s.accountPage)
	page("POST /account/sessions/{id}/revoke", s.accountRevoke)
	page("POST /account/sessions/revoke-others", s.accountRevokeOthers)
	page("POST /account/password", s.accountPassword)
	page("GET /account/totp", s.accountTOTPPage)
	page("POST /account/totp", s.accountBeginTOTP)
	page("POST /account/totp/confirm", s.accountConfirmTOTP)
	page("POST /account/totp/disable", s.accountDisableTOTP)
	page("POST /account/recovery-codes", s.accountRecoveryCodes)
	console("GET /admin", s.adminUsersPage)
	console("POST /admin/users", s.adminCreateUserForm)
	console("GET /admin/users/{user}", s.adminUserPage)
	console("POST /admin/users/{user}/roles", s.adminSetRolesForm)
	console("POST /admin/users/{user}/disable", s.adminDisableForm)
	console("POST /admin/users/{user}/enable", s.adminEnableForm)
	console("POST /admin/users/{user}/password", s.adminResetPasswordForm)
	console("POST /admin/users/{user}/delete", s.adminDeleteUserForm)
	console("POST /admin/users/{user}/revoke", s.adminRevokeUserForm)
	console("POST /admin/users/{user}/second-factors/reset", s.adminResetFactorsForm)
	console("POST /admin/users/{user}/sessions/{id}/revoke", s.adminRevokeSessionForm)
	console("GET /admin/audit", s.adminAuditPage)
	console("GET /admin/webhooks", s.adminWebhooksPage)
	console("POST /admin/webhooks/{hook}/retry", s.adminRetryWebhookForm)
	s.passkeyRoutes(mux, self, page)

	internalMux := routeMux{http.NewServeMux(), &patterns}
	s.internalRoutes(internalMux)
	patterns = append(patterns, routeExtAuthz) // Server.GRPC's checks
	internal = s.secure(s.resolveFirst(s.observe(s.jsonFallback(internalMux.ServeMux), "")))

	own := s.observe(s.jsonFallback(mux.ServeMux), "")
	if s.cfg.Upstream != nil {
		patterns = append(patterns, routeUpstream)
		// Every path but sessiond's own is the app's.
		own, app := s.secure(own), s.observe(s.proxy(), routeUpstream)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if reserved(r.URL.Path) || s.cfg.Assertions != nil && r.URL.Path == jwksPath {
				own.ServeHTTP(w, r)
				return
			}
			app.ServeHTTP(w, r)
		}), internal
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/account", http.StatusSeeOther) })
	if s.cfg.SeparateInternal {
		return s.secure(own), internal
	}
	s.internalRoutes(mux)
	return s.secure(s.resolveFirst(own)), internal
}

// identified notes the user and session of a request that passed the
// session middleware in its access log line (noteSession).
func identified(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if sess := session.FromContext(r.Context()); sess != nil {
			noteSession(r.Context(), sess.UserID, sess.ID)
		}
		next(w, r)
	}
}

// internalRoutes registers the internal endpoints on mux.
func (s *Server) internalRoutes(mux routeMux) {
	mux.HandleFunc("/resolve", s.resolve)
	mux.HandleFunc("/resolve/", s.resolve)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
}

// resolveFirst answers /resolve itself, with its access log line and
// HTTP metrics (resolveObserved), and passes every other request to next.
// Nearly every request is a forward-auth one to /resolve, whose pattern
// takes any method and host: the mux could only send it to resolve, and
// matching it there, or observing it as other routes are, costs more
// than answering it from the store's cache.
func (s *Server) resolveFirst(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/resolve" {
			s.resolveObserved(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// secure sets the headers every response carries and bounds bodies.
// Forward-auth answers are the exception: a proxy reads a 200 from
// /resolve for its identity headers and drops the rest, so those get
// only HSTS, and deny adds the others to the refusals, which have a body
// that may reach a browser. (Three headers fewer keep a 200's header map
// within one bucket group, which net/http clones on every response.)
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		s.setHSTS(h)
		if !isResolve(r.URL.Path) {
			setBodyHeaders(h)
		}
		if r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		next.ServeHTTP(w, r)
	})
}

// hsts is the Strict-Transport-Security value sessiond sends when it
// serves TLS (RFC 6797: browsers then refuse plain HTTP to this host).
var hsts = []string{"max-age=63072000; includeSubDomains"}

// setHSTS sets Strict-Transport-Security in h if sessiond serves TLS.
func (s *Server) setHSTS(h http.Header) {
	if s.cfg.TLS {
		h["Strict-Transport-Security"] = hsts
	}
}

// setBodyHeaders sets the headers that keep a browser from misreading or
// framing a response body, or leaking the URL in a Referer.
func setBodyHeaders(h http.Header) {
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["Referrer-Policy"] = []string{"no-referrer"}
	h["X-Frame-Options"] = []string{"DENY"}
}

// jsonFallback answers requests no route matches (404) or matches with
// another method (405, with Allow) in sessiond's JSON error shape.
func (s *Server) jsonFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		switch {
		case pattern == "":
		case strings.Contains(pattern, "{"):
			mux.ServeHTTP(w, r) // matches again, and sets the path values h reads
			return
		default:
			r.Pattern = pattern // as mux.ServeHTTP sets it
			h.ServeHTTP(w, r)
			return
		}
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if allow := probe.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		switch probe.status {
		case http.StatusMethodNotAllowed:
			writeError(w, app.Errorf(app.CodeMethodNotAllowed, "Method not allowed here."))
		case http.StatusNotFound:
			writeError(w, app.Errorf(app.CodeNotFound, "No such endpoint."))
		default: // a redirect the mux makes (e.g. path cleaning)
			for k, v := range probe.header {
				w.Header()[k] = v
			}
			w.WriteHeader(probe.status)
		}
	})
}

// statusProbe records the status and headers the mux's fallback writes.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(status int)      { p.status = status }

// clientIP is the client's address: the TCP peer, or, when the peer is
// trusted (see trusted), the nearest untrusted address in
// X-Forwarded-For, each hop vouched for by the trusted one after it. If
// every address there is trusted, it is the farthest that a trusted hop
// vouches for: a client on the proxy's own host, say.
func (s *Server) clientIP(r *http.Request) string {
	peer := peerAddr(r)
	if !s.trusted(peer) {
		return peer.String()
	}
	client := peer
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		client = a.Unmap()
		if !s.trusted(client) {
			break
		}
	}
	return client.String()
}

func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// trusted reports whether a is a peer whose forwarding headers are
// believed: a loopback address, as gunicorn and uvicorn trust by default,
// or one of Config.TrustedProxies.
func (s *Server) trusted(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// readyz answers 200 if the session store and the user directory answer.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	_, err := s.sessions.Get(ctx, "readiness-probe")
	if errors.Is(err, session.ErrNotFound) {
		_, err = s.app.Accounts().Directory().Count(ctx)
	}
	if err != nil {
		s.metrics.storeErrors.Inc()
		s.log.WarnContext(ctx, "not ready", "err", err)
		writeError(w, app.Errorf(app.CodeStoreUnavailable, "A store is unreachable."))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// loginURL is the login page's URL with rd set to return to.
func (s *Server) loginURL(returnTo string) string { return s.stepURL("/login", returnTo) }

// stepURL is the URL of the sign-in page at path (the login page, the
// second-factor step, re-authentication), under Config.PublicURL if set,
// with rd set to return to.
func (s *Server) stepURL(path, returnTo string) string {
	base := path
	if s.cfg.PublicURL != nil {
		base = strings.TrimSuffix(s.cfg.PublicURL.String(), "/") + path
	}
	if returnTo == "" {
		return base
	}
	return base + "?rd=" + url.QueryEscape(returnTo)
}
