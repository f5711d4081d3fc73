package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/session"
)

// noStore is the Cache-Control value of every forward-auth answer, shared
// (net/http only reads header values) to save resolve an allocation.
var noStore = []string{"no-store"}

// identity is who a request comes from.
type identity struct {
	session  *session.Session
	username string
	// assertion is the X-Session-Assertion value (see Server.assert),
	// shared and not to be changed; nil without Config.Assertions.
	assertion []string
}

// setHeaders sets the identity headers in h: Remote-User, Remote-Groups
// (the roles, comma-separated), X-User-Id, X-Session-Id, and three times
// in RFC 3339, UTC, to the second:
//   - X-Session-Expires-At: when the session ends if it is not used
//     again, the earlier of its idle and its absolute deadline. A request
//     moves the idle deadline on (to within Config.TouchInterval), so the
//     value can be later on the next answer, never later than the
//     absolute deadline.
//   - X-Session-Absolute-Expires-At: when the session ends however active
//     it is (the absolute deadline; the login's "remember me" lengthens
//     it). It never moves, so an app can warn before a forced sign-in.
//   - X-Session-Authenticated-At: when the user last proved who they are.
//
// and X-Session-AAL (1 or 2) and X-Session-AMR (how the user proved who
// they are, RFC 8176 values, comma-separated; empty for a session that
// records none), and X-Session-Assertion if the identity carries one.
//
// The keys are written canonical, and the values share one array and the
// times and methods one string, to keep the resolve path's allocations
// down.
func (id *identity) setHeaders(h http.Header) {
	s := id.session
	const n = len("2006-01-02T15:04:05Z") // a UTC time in RFC 3339, as AppendFormat writes it
	var buf [3*n + 32]byte                // and the methods: "pwd,otp,mfa" and the like
	b := s.ExpiresAt().UTC().AppendFormat(buf[:0], time.RFC3339)
	end1 := len(b)
	b = s.AbsoluteDeadline.UTC().AppendFormat(b, time.RFC3339)
	end2 := len(b)
	b = s.AuthenticatedAt.UTC().AppendFormat(b, time.RFC3339)
	end3 := len(b)
	for i, m := range s.AMR {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m...)
	}
	str := string(b) // one allocation for the three times and the methods
	aal := "1"
	if s.AAL() == 2 {
		aal = "2"
	}
	v := [...]string{
		id.username,
		strings.Join(s.Roles, ","),
		s.UserID,
		s.ID,
		str[:end1],
		str[end1:end2],
		str[end2:end3],
		aal,
		str[end3:],
	}
	vals := v[:]
	h["Remote-User"] = vals[0:1:1]
	h["Remote-Groups"] = vals[1:2:2]
	h["X-User-Id"] = vals[2:3:3]
	h["X-Session-Id"] = vals[3:4:4]
	h["X-Session-Expires-At"] = vals[4:5:5]
	h["X-Session-Absolute-Expires-At"] = vals[5:6:6]
	h["X-Session-Authenticated-At"] = vals[6:7:7]
	h["X-Session-Aal"] = vals[7:8:8]
	h["X-Session-Amr"] = vals[8:9:9]
	if id.assertion != nil {
		h["X-Session-Assertion"] = id.assertion
	}
}

type identityKey struct{}

// withIdentity returns ctx carrying id, and notes id in the access log
// line of ctx's request (noteSession).
func withIdentity(ctx context.Context, id *identity) context.Context {
	noteSession(ctx, id.session.UserID, id.session.ID)
	return context.WithValue(ctx, identityKey{}, id)
}

func identityFrom(ctx context.Context) *identity {
	id, _ := ctx.Value(identityKey{}).(*identity)
	return id
}

// identify validates the token r carries. It returns errUnauthenticated
// without a valid one, a rate-limit *app.Error when the client has
// presented too many invalid credentials, and another error if the store
// fails.
func (s *Server) identify(r *http.Request) (identity, error) {
	ctx := withStoreDeadline(r.Context(), time.Now().Add(s.cfg.StoreTimeout))
	defer ctx.stop()
	sess, err := s.sessions.LoadContext(ctx, r)
	if errors.Is(err, session.ErrNotFound) {
		if err := s.countInvalid(r); err != nil {
			return identity{}, err
		}
		return identity{}, errUnauthenticated
	}
	if err != nil {
		return identity{}, err
	}
	name, err := s.app.Username(ctx, sess.UserID)
	if err != nil {
		return identity{}, err
	}
	return identity{session: sess, username: name}, nil
}

// countInvalid counts the credentials r presents, none of which is valid,
// against the client's invalid-token limit, and returns the rate-limit
// error once the client is over it.
func (s *Server) countInvalid(r *http.Request) error {
	n := s.sessions.PresentedCredentials(r)
	if n == 0 {
		return nil
	}
	if ok, wait := s.invalidToken.allowN(app.ClientNetwork(s.clientIP(r)), n, s.cfg.Now()); !ok {
		return &app.Error{Code: app.CodeRateLimited, Message: "Too many requests with invalid credentials; slow down.", RetryAfter: wait}
	}
	return nil
}

// resolve is the forward-auth endpoint, at /resolve and under /resolve/
// (Envoy's ext_authz appends the original path): 200 with identity headers for a
// valid session, else 401 (or 429, or 503 if the store is down: never a
// 200 it cannot vouch for). For a browser the 401 carries Location: the
// login page, returning to the original URL. With ?redirect=1 (for
// Traefik and Caddy, which pass the answer on to the browser) it is a
// 302 instead. It is the handler the muxes route to, under observe.
func (s *Server) resolve(w http.ResponseWriter, r *http.Request) {
	if _, id := s.answerResolve(w, r, time.Now()); id.session != nil {
		noteSession(r.Context(), id.session.UserID, id.session.ID)
	}
}

// resolveObserved is resolve with its own access log line and HTTP
// metrics, for resolveFirst: it knows the status and the session without
// wrapping w or adding to r's context, and builds the line only if its
// level is enabled.
func (s *Server) resolveObserved(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status, id := s.answerResolve(w, r, start)
	d := time.Since(start)
	s.metrics.observe(s.metrics.resolveRoute, status, d)
	var userID, sessionID string
	if id.session != nil {
		userID, sessionID = id.session.UserID, id.session.ID
	}
	s.logAccess(r, s.metrics.resolveRoute.route, status, d, userID, sessionID)
}

// answerResolve answers a resolve request that started at start, counts
// it in the resolve metrics and returns the status it answered with and,
// for a 200, the identity. A valid session passes only if it meets the
// route's policy (see policy) and the second-factor requirement of its
// user's roles.
func (s *Server) answerResolve(w http.ResponseWriter, r *http.Request, start time.Time) (int, identity) {
	defer func() { s.metrics.resolveDuration.Observe(time.Since(start).Seconds()) }()
	var pol policy
	if r.URL.Path == "/resolve" { // under /resolve/ the query is the original request's (Envoy)
		var err error
		if pol, err = s.policies.get(r.URL.RawQuery); err != nil {
			return s.badPolicy(w, r, err), identity{}
		}
	}
	id, err := s.identify(r)
	if err == nil {
		if e := pol.check(id.session, s.app.RequiresSecondFactor(id.session.Roles), s.cfg.Now()); e != nil {
			err = e
		}
	}
	if err == nil {
		err = s.assert(r, &id)
	}
	if err != nil {
		return s.deny(w, r, err, pol.redirect), identity{}
	}
	s.metrics.resolvedOK.Inc()
	h := w.Header()
	id.setHeaders(h)
	h["Cache-Control"] = noStore
	if pol.appCookie {
		s.setAppCookies(h, r)
	}
	// 200 by returning: net/http writes the status and this map when the
	// handler returns (copying the map either way).
	return http.StatusOK, id
}

// setAppCookies sets in h the Cookie header of r without sessiond's
// session cookie (see removeCookie), if any cookie is left: what the app
// may see, for a proxy that copies it into the request in place of the
// client's (policy app_cookie=1).
func (s *Server) setAppCookies(h http.Header, r *http.Request) {
	c := http.Header{"Cookie": r.Header["Cookie"]}
	removeCookie(c, s.sessions.Config().Cookie.Name)
	if v := c["Cookie"]; len(v) > 0 {
		h["Cookie"] = v
	}
}

// badPolicy answers a resolve request whose policy query is wrong: 400,
// which every proxy turns into an error page, so that a mistyped policy
// protects its route by refusing everyone. It is logged, for the operator
// who wrote it.
func (s *Server) badPolicy(w http.ResponseWriter, r *http.Request, err error) int {
	s.metrics.resolves.WithLabelValues("bad_policy").Inc()
	s.log.WarnContext(r.Context(), "resolve: the route's policy (query string, or ext_authz context_extensions) is wrong; every request is refused", "err", err)
	setBodyHeaders(w.Header())
	e := app.Errorf(app.CodeBadRequest, "The resolve policy is misconfigured: %s.", strings.TrimPrefix(err.Error(), errPolicy.Error()+": "))
	writeError(w, e)
	return status(e.Code)
}

// deny answers a request identify or the policy refused, and returns the
// status it answered with. Browsers get a way to the step they lack: a
// Location header to the login page, the second-factor step or the
// re-authentication page, or with redirect a 302 there. A missing role
// leads nowhere: a browser gets a page saying so (with redirect, since
// only then does the proxy show it).
func (s *Server) deny(w http.ResponseWriter, r *http.Request, err error, redirect bool) int {
	setBodyHeaders(w.Header())
	var e *app.Error
	errors.As(err, &e)
	switch {
	case e != nil && e.Code == app.CodeRateLimited:
		s.metrics.resolves.WithLabelValues("rate_limited").Inc()
		s.metrics.rateLimited.WithLabelValues("invalid_token").Inc()
		writeError(w, e)
		return status(e.Code)
	case err == errUnauthenticated:
		s.metrics.resolves.WithLabelValues("unauthenticated").Inc()
		return s.sendToStep(w, r, e, s.loginAgainURL(r, s.originalURL(r)), redirect)
	case e == errNeedsSecondFactor:
		s.metrics.resolves.WithLabelValues("second_factor_required").Inc()
		return s.sendToStep(w, r, e, s.stepURL("/login/second-factor", s.originalURL(r)), redirect)
	case e == errNeedsReauth:
		s.metrics.resolves.WithLabelValues("reauth_required").Inc()
		return s.sendToStep(w, r, e, s.stepURL("/login/reauth", s.originalURL(r)), redirect)
	case e == errAudience:
		s.metrics.resolves.WithLabelValues("bad_host").Inc()
		writeError(w, e)
		return status(e.Code)
	case e == errLacksRole:
		s.metrics.resolves.WithLabelValues("forbidden").Inc()
		if redirect && wantsHTML(r) {
			s.renderForbidden(w, r)
			return http.StatusForbidden
		}
		writeError(w, e)
		return status(e.Code)
	case r.Context().Err() != nil:
		s.metrics.resolves.WithLabelValues("canceled").Inc()
	default:
		s.metrics.resolves.WithLabelValues("store_unavailable").Inc()
	}
	e = s.clientError(r, err)
	writeError(w, e)
	return status(e.Code)
}

// sendToStep refuses a request with e (a 401), pointing a browser at loc,
// the page of the step it lacks: in Location, or with redirect as a 302.
func (s *Server) sendToStep(w http.ResponseWriter, r *http.Request, e *app.Error, loc string, redirect bool) int {
	if wantsHTML(r) {
		w.Header().Set("Location", loc)
		if redirect {
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, loc, http.StatusFound)
			return http.StatusFound
		}
	}
	writeError(w, e)
	return status(e.Code)
}

// isResolve reports whether path is the resolve endpoint's.
func isResolve(path string) bool {
	return path == "/resolve" || strings.HasPrefix(path, "/resolve/")
}

// originalURL is the URL the browser asked the proxy for: X-Original-URL
// (nginx), or X-Forwarded-Proto, -Host and -Uri (Traefik, Caddy), or the
// path after /resolve with Host (Envoy ext_authz), each believed only from
// a loopback peer or a trusted proxy (see trusted); or the request itself
// when sessiond is the proxy. It only ever becomes a login redirect's rd,
// which login checks again.
func (s *Server) originalURL(r *http.Request) string {
	if !isResolve(r.URL.Path) {
		return r.URL.RequestURI()
	}
	if !s.trusted(peerAddr(r)) {
		return ""
	}
	proto := "https"
	if r.Header.Get("X-Forwarded-Proto") == "http" {
		proto = "http"
	}
	switch {
	case r.Header.Get("X-Original-URL") != "":
		return r.Header.Get("X-Original-URL")
	case r.Header.Get("X-Forwarded-Host") != "":
		return (&url.URL{Scheme: proto, Host: r.Header.Get("X-Forwarded-Host")}).String() + r.Header.Get("X-Forwarded-Uri")
	case strings.HasPrefix(r.URL.Path, "/resolve/"):
		u := url.URL{Scheme: proto, Host: r.Host, Path: strings.TrimPrefix(r.URL.Path, "/resolve"), RawQuery: r.URL.RawQuery}
		return u.String()
	}
	return ""
}
