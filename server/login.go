package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// credentials is the body of POST /login and POST /api/v1/tokens.
type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Remember bool   `json:"remember"`
	RD       string `json:"rd"`
}

// readCredentials reads a JSON or HTML-form login body.
func readCredentials(w http.ResponseWriter, r *http.Request) (credentials, error) {
	var c credentials
	if isForm(r) {
		if err := r.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return c, errorf("too_large", "The request body is too large.")
			}
			return c, errorf("bad_request", "The form is malformed.")
		}
		c.Username, c.Password = r.PostForm.Get("username"), r.PostForm.Get("password")
		c.Remember = r.PostForm.Get("remember") != ""
		c.RD = r.Form.Get("rd")
	} else if err := decodeJSON(w, r, &c); err != nil {
		return c, err
	}
	if c.Username == "" || c.Password == "" {
		return c, errorf("invalid", "Username and password are required.")
	}
	return c, nil
}

// authenticate checks c after the CSRF and rate-limit checks, and records
// the outcome in the audit log and metrics.
func (s *Server) authenticate(r *http.Request, c credentials) (*users.User, error) {
	if err := s.sessions.Config().CrossOrigin.Check(r); err != nil {
		return nil, session.ErrCrossOrigin
	}
	now := s.cfg.Now()
	ip := s.clientIP(r)
	for _, l := range []struct {
		name string
		lim  *limiter
		key  string
	}{{"login_ip", s.loginIP, ip}, {"login_account", s.loginAccount, strings.ToLower(c.Username)}} {
		if ok, wait := l.lim.allow(l.key, now); !ok {
			s.metrics.rateLimited.WithLabelValues(l.name).Inc()
			s.metrics.loginFailures.WithLabelValues("rate_limited").Inc()
			return nil, &errRateLimited{l.name, wait}
		}
	}
	u, err := s.accounts.Authenticate(r.Context(), c.Username, c.Password)
	ev := audit.Event{Type: "login.succeeded", IP: ip, UserAgent: r.UserAgent()}
	if u != nil {
		ev.UserID, ev.Username, ev.Actor = u.ID, u.Username, u.ID
	}
	switch {
	case errors.Is(err, users.ErrBadCredentials), errors.Is(err, users.ErrDisabled), errors.Is(err, users.ErrBusy):
		reason := map[bool]string{true: "disabled", false: "bad_credentials"}[errors.Is(err, users.ErrDisabled)]
		if errors.Is(err, users.ErrBusy) {
			reason = "busy"
		}
		s.metrics.loginFailures.WithLabelValues(reason).Inc()
		ev.Type, ev.Reason = "login.failed", reason
		if known, lerr := s.accounts.Directory().ByUsername(r.Context(), c.Username); lerr == nil {
			ev.UserID, ev.Username = known.ID, known.Username
		}
		s.Record(r.Context(), ev)
		return nil, err
	case err != nil:
		return nil, err
	}
	s.Record(r.Context(), ev)
	return u, nil
}

// login is POST /login: JSON answers {"session","user"}, a form post is
// redirected to rd (same origin only) or /account. The token travels only
// in the Set-Cookie header.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	form := isForm(r)
	fail := func(err error) {
		if form {
			s.renderLogin(w, r, err)
			return
		}
		s.writeLoginErr(w, r, err)
	}
	c, err := readCredentials(w, r)
	if err != nil {
		fail(err)
		return
	}
	u, err := s.authenticate(r, c)
	if err != nil {
		fail(err)
		return
	}
	sess, err := s.sessions.Login(w, r, session.Login{UserID: u.ID, Roles: u.Roles, Remember: c.Remember})
	if err != nil {
		fail(err)
		return
	}
	if form {
		http.Redirect(w, r, s.safeRedirect(r, c.RD), http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"session": viewSession(sess, sess.ID), "user": viewUser(u)})
}

// writeLoginErr answers a failed login, with Retry-After when limited.
func (s *Server) writeLoginErr(w http.ResponseWriter, r *http.Request, err error) {
	var limited *errRateLimited
	if errors.As(err, &limited) {
		w.Header().Set("Retry-After", strconv.Itoa(int(limited.wait.Seconds())+1))
		writeJSONError(w, http.StatusTooManyRequests, errorf("rate_limited", "Too many sign-in attempts; wait and try again."))
		return
	}
	s.writeErr(w, r, err)
}

// createToken is POST /api/v1/tokens: a login for native and API clients,
// answered with a bearer token in the body (never a cookie).
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var c credentials
	if err := decodeJSON(w, r, &c); err != nil {
		s.writeErr(w, r, err)
		return
	}
	if c.Username == "" || c.Password == "" {
		s.writeErr(w, r, errorf("invalid", "Username and password are required."))
		return
	}
	u, err := s.authenticate(r, c)
	if err != nil {
		s.writeLoginErr(w, r, err)
		return
	}
	sess, token, err := s.sessions.Create(r.Context(), session.Login{UserID: u.ID, Roles: u.Roles, Remember: c.Remember, Client: s.sessions.ClientOf(r)})
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": token, "session": viewSession(sess, sess.ID)})
}

// logout is POST /logout: the session ends on the server, the cookie is
// expired. A form post is redirected to the login page; others get 204.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if err := s.sessions.Logout(w, r); err != nil {
		if wantsHTML(r) {
			s.pageErr(w, r, err)
		} else {
			s.writeErr(w, r, err)
		}
		return
	}
	if isForm(r) || wantsHTML(r) {
		http.Redirect(w, r, "/login?done=signed-out", http.StatusSeeOther)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// safeRedirect returns rd if it points back into this site (a path, or an
// absolute URL on this host or, with a cookie Domain, a host under it), so
// that the login page is no open redirect; else /account.
func (s *Server) safeRedirect(r *http.Request, rd string) string {
	const home = "/account"
	if rd == "" || strings.ContainsAny(rd, "\\\r\n\t") {
		return home
	}
	u, err := url.Parse(rd)
	if err != nil {
		return home
	}
	if !u.IsAbs() {
		if u.Host != "" || !strings.HasPrefix(rd, "/") || strings.HasPrefix(rd, "//") {
			return home
		}
		return rd
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.User != nil {
		return home
	}
	host := u.Hostname()
	own := r.Host
	if s.cfg.PublicURL != nil {
		own = s.cfg.PublicURL.Host
	}
	if h, _, ok := strings.Cut(own, ":"); ok {
		own = h
	}
	domain := strings.TrimPrefix(s.sessions.Config().Cookie.Domain, ".")
	if strings.EqualFold(host, own) || domain != "" && (strings.EqualFold(host, domain) || strings.HasSuffix(strings.ToLower(host), "."+strings.ToLower(domain))) {
		return rd
	}
	return home
}

// Record appends e to the audit log and the service log. A failure to
// store it is logged, not returned: the event has happened.
func (s *Server) Record(ctx context.Context, e audit.Event) {
	if e.Time.IsZero() {
		e.Time = s.cfg.Now().UTC()
	}
	s.log.InfoContext(ctx, "audit", "type", e.Type, "user_id", e.UserID, "username", e.Username, "session_id", e.SessionID, "actor", e.Actor, "reason", e.Reason, "ip", e.IP)
	if err := s.audit.Append(ctx, &e); err != nil {
		s.metrics.storeErrors.Inc()
		s.log.ErrorContext(ctx, "audit log append failed", "type", e.Type, "err", err)
	}
}

// recordSessionEvent is the session Manager's event sink.
func (s *Server) recordSessionEvent(ctx context.Context, e session.Event) {
	s.metrics.sessionEvents.WithLabelValues(strings.TrimPrefix(string(e.Type), "session.")).Inc()
	if e.Type == session.EventExtended { // once a minute per active session: metrics only
		return
	}
	ev := audit.Event{Time: e.Time.UTC(), Type: string(e.Type), UserID: e.UserID, SessionID: e.SessionID, Actor: e.Actor, Reason: e.Reason, IP: e.IP, UserAgent: e.UserAgent}
	if e.UserID != "" {
		ev.Username, _ = s.username(ctx, e.UserID)
	}
	s.Record(ctx, ev)
}
