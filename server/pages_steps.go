package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// The sign-in steps after the password: the second factor (of a pending
// sign-in, or to raise a live session to AAL2) and re-authentication. Each
// takes a form (the pages, no JavaScript) or JSON, and returns the browser
// to rd (same origin only) when it is done.

// pendingCookieName is the name of the cookie that holds a pending
// sign-in's ticket: the session cookie's name with "-pending", so that it
// shares the session cookie's __Host- prefix and its guarantees.
func (s *Server) pendingCookieName() string { return s.sessions.Config().Cookie.Name + "-pending" }

// pendingCookie is the cookie holding ticket for maxAge seconds (-1
// deletes it). It is sent on same-site requests only (SameSite=Strict):
// the second-factor step is a page of this site.
func (s *Server) pendingCookie(ticket string, maxAge int) *http.Cookie {
	c := s.sessions.Config().Cookie
	return &http.Cookie{
		Name: s.pendingCookieName(), Value: ticket, Path: "/", Domain: c.Domain, MaxAge: maxAge,
		Secure: !c.InsecureDevelopmentNoSecureFlag, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	}
}

// pendingTicket is the ticket of r's pending sign-in cookie, "" if none.
func (s *Server) pendingTicket(r *http.Request) string {
	c, err := r.Cookie(s.pendingCookieName())
	if err != nil {
		return ""
	}
	return c.Value
}

// secondFactorData is what the second-factor page shows.
type secondFactorData struct {
	RD string
	// Methods the user can prove; nil: none enrolled yet.
	Methods []string
	// RecoveryCode says recovery codes are among them.
	RecoveryCode bool
	// StepUp says the user is signed in and a route asks for more.
	StepUp bool
	// TOTP says a code from an authenticator app is among them; Passkey
	// is the button that checks a passkey instead, nil if none.
	TOTP    bool
	Passkey *passkeyButton
}

// secondFactorPage is GET /login/second-factor: the code form for a
// pending sign-in, or for a signed-in user whom a route sent here for
// AAL2; a user with no second factor is told to set one up; anyone else
// goes to the login page.
func (s *Server) secondFactorPage(w http.ResponseWriter, r *http.Request) {
	rd := s.safeRedirect(r, r.URL.Query().Get("rd"))
	d := secondFactorData{RD: rd}
	v := view{Title: "Two-step verification", Data: &d}
	var err error
	if ticket := s.pendingTicket(r); ticket != "" {
		_, d.Methods, err = s.app.PendingSignIn(r.Context(), ticket)
	}
	sess := session.FromContext(r.Context())
	switch e := app.ErrorOf(err); {
	case err == nil && d.Methods != nil:
	case err != nil && (e == nil || e.Code != app.CodeUnauthenticated):
		s.pageErr(w, r, err)
		return
	case sess == nil:
		http.SetCookie(w, s.pendingCookie("", -1))
		http.Redirect(w, r, s.loginURL(rd), http.StatusSeeOther)
		return
	case sess.AAL() >= 2:
		http.Redirect(w, r, rd, http.StatusSeeOther)
		return
	default:
		d.StepUp = true
		if d.Methods, err = s.app.SecondFactorMethods(r.Context(), s.actor(r)); err != nil {
			s.pageErr(w, r, err)
			return
		}
		v.User, _ = s.app.Username(r.Context(), sess.UserID)
		v.Admin = s.actor(r).Admin
	}
	for _, m := range d.Methods {
		d.RecoveryCode = d.RecoveryCode || m == app.MethodRecoveryCode
		d.TOTP = d.TOTP || m == app.MethodTOTP
	}
	d.Passkey = s.passkeySecondFactor(r, d.Methods, d.RD)
	v.Script = d.Passkey != nil
	s.render(w, http.StatusOK, "second_factor.html", v)
}

// stepCode is the body of POST /login/second-factor: a TOTP code or a
// recovery code; a form sends either as "code".
type stepCode struct {
	TOTP         string `json:"totp"`
	RecoveryCode string `json:"recovery_code"`
	RD           string `json:"rd"`
}

// readCode reads a JSON or form body of the second-factor step. A form's
// "code" of 6 digits (spaces aside) is a TOTP code, anything else a
// recovery code.
func readCode(w http.ResponseWriter, r *http.Request) (stepCode, error) {
	var c stepCode
	if !isForm(r) {
		err := decodeJSON(w, r, &c)
		return c, err
	}
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return c, errTooLarge
		}
		return c, app.Errorf(app.CodeBadRequest, "The form is malformed.")
	}
	c.RD = r.PostForm.Get("rd")
	code := r.PostForm.Get("code")
	if digits := strings.ReplaceAll(code, " ", ""); len(digits) == 6 && strings.Trim(digits, "0123456789") == "" {
		c.TOTP = digits
	} else {
		c.RecoveryCode = code
	}
	return c, nil
}

// secondFactor is POST /login/second-factor: it completes the pending
// sign-in of r's pending cookie (a session cookie is set, the pending one
// deleted), or else raises r's session to AAL2 (with a new token: a
// cookie, or for a bearer client in the JSON answer). A form is sent on
// to rd; JSON gets {"session","user"} (and "token" for a bearer client).
func (s *Server) secondFactor(w http.ResponseWriter, r *http.Request) {
	form := isForm(r)
	c, err := readCode(w, r)
	if err == nil && s.sessions.Config().CrossOrigin.Check(r) != nil {
		err = session.ErrCrossOrigin
	}
	var (
		u     *users.User
		sess  *session.Session
		token = new(string)
	)
	ticket := s.pendingTicket(r)
	signedIn := session.FromContext(r.Context()) != nil
	if err == nil && ticket != "" {
		u, sess, err = s.app.CompleteSecondFactor(r.Context(), ticket, c.TOTP, c.RecoveryCode, s.sessions.ClientOf(r),
			func(l session.Login) (*session.Session, error) { return s.sessions.Login(w, r, l) })
		if err == nil || isCode(err, app.CodeUnauthenticated) {
			http.SetCookie(w, s.pendingCookie("", -1))
		}
		if isCode(err, app.CodeUnauthenticated) && signedIn {
			err, ticket = nil, "" // a stale pending sign-in beside a live session: raise that
		}
	}
	switch {
	case err != nil || ticket != "":
	case signedIn:
		var rotate app.RotateFunc
		rotate, token = s.rotateOwn(w, r)
		sess, err = s.app.StepUp(r.Context(), s.actor(r), c.TOTP, c.RecoveryCode, rotate)
		if err == nil {
			u, err = s.app.Me(r.Context(), s.actor(r))
		}
	default:
		err = errUnauthenticated
	}
	if err != nil {
		if isCode(err, app.CodeRateLimited) {
			s.metrics.rateLimited.WithLabelValues("login").Inc()
		}
		if !form {
			s.writeErr(w, r, err)
			return
		}
		if isCode(err, app.CodeUnauthenticated) {
			http.Redirect(w, r, s.loginURL(s.safeRedirect(r, c.RD)), http.StatusSeeOther)
			return
		}
		s.formFailed(w, r, err, func(status int, msg string) {
			v := view{Title: "Two-step verification", Error: msg, Data: &secondFactorData{RD: s.safeRedirect(r, c.RD), Methods: []string{app.MethodTOTP}, RecoveryCode: true, TOTP: true}}
			s.render(w, status, "second_factor.html", v)
		})
		return
	}
	s.metrics.logins.Inc()
	noteSession(r.Context(), sess.UserID, sess.ID)
	if form {
		http.Redirect(w, r, s.safeRedirect(r, c.RD), http.StatusSeeOther)
		return
	}
	body := map[string]any{"session": viewSession(sess, sess.ID), "user": viewUser(u)}
	if *token != "" {
		body["token"] = *token
	}
	writeJSON(w, http.StatusOK, body)
}

// reauthPage is GET /login/reauth, for a signed-in user: the password
// form that refreshes the session's authentication time.
func (s *Server) reauthPage(w http.ResponseWriter, r *http.Request) {
	v, err := s.signedIn(r, "Confirm it is you", "")
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	pk := s.passkeyCheck(r)
	v.Data, v.Script = loginData{RD: s.safeRedirect(r, r.URL.Query().Get("rd")), Passkey: pk}, pk != nil
	s.render(w, http.StatusOK, "reauth.html", v)
}

// reauth is POST /login/reauth: the signed-in user's password (form or
// JSON {"password"}) refreshes the session's authentication time, with a
// new token (a cookie, or for a bearer client in the JSON answer). A
// form is sent on to rd; JSON gets {"session"} (and "token").
func (s *Server) reauth(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Password string `json:"password"`
		RD       string `json:"rd"`
	}
	form := isForm(r)
	var err error
	if form {
		if err = r.ParseForm(); err == nil {
			req.Password, req.RD = r.PostForm.Get("password"), r.PostForm.Get("rd")
		} else {
			err = app.Errorf(app.CodeBadRequest, "The form is malformed.")
		}
	} else {
		err = decodeJSON(w, r, &req)
	}
	var sess *session.Session
	rotate, token := s.rotateOwn(w, r)
	if err == nil {
		sess, err = s.app.Reauthenticate(r.Context(), s.actor(r), req.Password, rotate)
	}
	if err != nil {
		if !form {
			s.writeErr(w, r, err)
			return
		}
		s.formFailed(w, r, err, func(status int, msg string) {
			v, verr := s.signedIn(r, "Confirm it is you", "")
			if verr != nil {
				s.pageErr(w, r, verr)
				return
			}
			v.Error, v.Notice = msg, ""
			v.Data = loginData{RD: s.safeRedirect(r, req.RD)}
			s.render(w, status, "reauth.html", v)
		})
		return
	}
	if form {
		http.Redirect(w, r, s.safeRedirect(r, req.RD), http.StatusSeeOther)
		return
	}
	body := map[string]any{"session": viewSession(sess, sess.ID)}
	if *token != "" {
		body["token"] = *token
	}
	writeJSON(w, http.StatusOK, body)
}

// rotateOwn returns the RotateFunc that gives r's own session its new
// token: as a cookie on w, or, for a bearer client, in *token.
func (s *Server) rotateOwn(w http.ResponseWriter, r *http.Request) (app.RotateFunc, *string) {
	token := new(string)
	return func(ch session.Change) (*session.Session, error) {
		if !session.PresentedAsBearer(r.Context()) {
			return s.sessions.Renew(w, r, ch)
		}
		sess, tok, err := s.sessions.Rotate(r.Context(), session.FromContext(r.Context()).ID, ch)
		*token = tok
		return sess, err
	}, token
}

// assured passes on requests whose session has the AAL its user's roles
// require (app.SecondFactorPolicy), and refuses the others: a browser is
// sent to the second-factor step and back (for a form post, back to the
// form's page) when page is set or it asks for HTML, any other client
// gets 401 second_factor_required. It guards the admin API and console; a
// user's own account stays open at AAL1, since it is where a second factor
// is set up.
func (s *Server) assured(next http.HandlerFunc, page bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := session.FromContext(r.Context())
		if sess.AAL() >= 2 || !s.app.RequiresSecondFactor(sess.Roles) {
			next(w, r)
			return
		}
		if !page && !wantsHTML(r) {
			writeError(w, errNeedsSecondFactor)
			return
		}
		back := r.URL.RequestURI()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			back = formPage(r.URL.Path)
		}
		http.Redirect(w, r, s.stepURL("/login/second-factor", back), http.StatusSeeOther)
	}
}

// isCode reports whether err is, for a client, an error with code.
func isCode(err error, code app.Code) bool {
	e := app.ErrorOf(err)
	return e != nil && e.Code == code
}

// renderForbidden is the page a browser sees when a proxy shows it
// resolve's refusal of a user who lacks the route's role: it says so and
// leads nowhere that would send the browser back (no redirect loop).
func (s *Server) renderForbidden(w http.ResponseWriter, _ *http.Request) {
	s.render(w, http.StatusForbidden, "forbidden.html", view{Title: "No access to this page"})
}
