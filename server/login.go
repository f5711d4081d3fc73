package server

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sessiond/sessiond/app"
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
	// TOTP or RecoveryCode is the second factor, for a user who has one,
	// sent with the password (API clients).
	TOTP         string `json:"totp"`
	RecoveryCode string `json:"recovery_code"`
}

var errCredentialsRequired = app.Errorf(app.CodeInvalid, "Username and password are required.")

// readCredentials reads a JSON or HTML-form login body.
func readCredentials(w http.ResponseWriter, r *http.Request) (credentials, error) {
	var c credentials
	if isForm(r) {
		if err := r.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return c, errTooLarge
			}
			return c, app.Errorf(app.CodeBadRequest, "The form is malformed.")
		}
		c.Username, c.Password = r.PostForm.Get("username"), r.PostForm.Get("password")
		c.Remember = r.PostForm.Get("remember") != ""
		c.RD = r.Form.Get("rd")
	} else if err := decodeJSON(w, r, &c); err != nil {
		return c, err
	}
	if c.Username == "" || c.Password == "" {
		return c, errCredentialsRequired
	}
	return c, nil
}

// signIn checks c (app.SignIn) after the cross-origin check, counting
// successes and failures in the metrics, and starts the session with
// start, whose user and ID go to the access log line. With pending, a user
// with a second factor who sent no code gets a pending sign-in
// (*app.SecondFactorRequired with a Ticket).
func (s *Server) signIn(r *http.Request, c credentials, pending bool, start app.StartFunc) (*users.User, *session.Session, error) {
	if err := s.sessions.Config().CrossOrigin.Check(r); err != nil {
		return nil, nil, session.ErrCrossOrigin
	}
	u, sess, err := s.app.SignIn(r.Context(), app.Credentials{
		Username: c.Username, Password: c.Password, Remember: c.Remember,
		TOTP: c.TOTP, RecoveryCode: c.RecoveryCode, Pending: pending,
	}, s.sessions.ClientOf(r), start)
	if err == nil {
		s.metrics.logins.Inc()
		noteSession(r.Context(), u.ID, sess.ID)
	} else {
		if reason := loginFailure(err); reason != "" {
			s.metrics.loginFailures.WithLabelValues(reason).Inc()
		}
		if e := app.ErrorOf(err); e != nil && e.Code == app.CodeRateLimited {
			s.metrics.rateLimited.WithLabelValues("login").Inc()
		}
	}
	return u, sess, err
}

// loginFailure is the metrics reason of a failed sign-in, "" for a
// technical failure.
func loginFailure(err error) string {
	switch e := app.ErrorOf(err); {
	case e == nil:
		return ""
	case e.Code == app.CodeBadCredentials:
		return audit.ReasonBadCredentials
	case e.Code == app.CodeAccountDisabled:
		return audit.ReasonDisabled
	case e.Code == app.CodeRateLimited:
		return audit.ReasonRateLimited
	case e.Code == app.CodeBusy:
		return audit.ReasonBusy
	}
	return ""
}

// login is POST /login: JSON answers {"session","user"}, a form post is
// redirected to rd (same origin only) or /account. The token travels only
// in the Set-Cookie header. For a user with a second factor who sent no
// code, the password begins a pending sign-in instead: its ticket goes in
// a cookie of its own (pendingCookie), and a form post goes on to the
// second-factor step, JSON gets {"second_factor_required":true,"methods"}.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	form := isForm(r)
	fail := func(err error) {
		if form {
			s.renderLogin(w, r, err)
			return
		}
		s.writeErr(w, r, err)
	}
	c, err := readCredentials(w, r)
	if err != nil {
		fail(err)
		return
	}
	u, sess, err := s.signIn(r, c, true, func(l session.Login) (*session.Session, error) { return s.sessions.Login(w, r, l) })
	var pending *app.SecondFactorRequired
	if errors.As(err, &pending) {
		http.SetCookie(w, s.pendingCookie(pending.Ticket, int(app.PendingSignInTTL/time.Second)))
		if form {
			http.Redirect(w, r, s.stepURL("/login/second-factor", s.safeRedirect(r, c.RD)), http.StatusSeeOther)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"second_factor_required": true, "methods": pending.Methods})
		return
	}
	if err != nil {
		fail(err)
		return
	}
	if form {
		next := s.safeRedirect(r, c.RD)
		if sess.AAL() < 2 && s.app.RequiresSecondFactor(sess.Roles) {
			next = s.stepURL("/login/second-factor", next) // which leads to setting one up
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"session": viewSession(sess, sess.ID), "user": viewUser(u)})
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
		s.writeErr(w, r, errCredentialsRequired)
		return
	}
	var token string
	_, sess, err := s.signIn(r, c, false, func(l session.Login) (*session.Session, error) {
		sess, tok, err := s.sessions.Create(r.Context(), l)
		token = tok
		return sess, err
	})
	var pending *app.SecondFactorRequired
	if errors.As(err, &pending) {
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"error":                  map[string]any{"code": app.CodeSecondFactorRequired, "message": "This account has two-step verification: send \"totp\" or \"recovery_code\" with the password."},
			"second_factor_required": true, "methods": pending.Methods,
		})
		return
	}
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
