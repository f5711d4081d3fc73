package server

import (
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// The web pages are server-rendered html/template pages with one embedded
// stylesheet. They need no JavaScript: every action is a form post to a
// route behind the session middleware (so CrossOriginProtection refuses it
// cross-origin), answered by a 303 redirect back to the page
// (POST-redirect-GET) with a notice, or with an error when what was typed
// is refused (formErrors), so the browser's URL stays on the page. The
// create-user form is the exception: refused, it shows the users page
// again with the username and roles typed, which a redirect would lose.

//go:embed web
var webFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"time":    func(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") },
	"seconds": func(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04:05 UTC") },
	"iso":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"join":    strings.Join,
}).ParseFS(webFS, "web/*.html"))

// contentSecurityPolicy allows the pages nothing but their own stylesheet
// and form posts to this origin: no script at all, no inline style, no
// framing.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// contentSecurityPolicyScript is contentSecurityPolicy for the pages that
// run a passkey ceremony (view.Script): they also load this origin's one
// script, /static/passkey.js, which posts JSON to this origin. Still no
// inline script.
const contentSecurityPolicyScript = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// view is what every page template gets.
type view struct {
	Title string
	// Nav is the current section: "account", "users" or "audit".
	Nav string
	// User is the signed-in username, "" when signed out; Admin says the
	// user may use the admin console.
	User  string
	Admin bool
	// Notice confirms what a form post did; Error says why it failed.
	Notice, Error string
	// Data is the page's own data.
	Data any
	// Script loads the passkey script (see contentSecurityPolicyScript).
	Script bool
}

func (s *Server) render(w http.ResponseWriter, status int, name string, v view) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	if v.Script {
		h.Set("Content-Security-Policy", contentSecurityPolicyScript)
	}
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, v); err != nil {
		s.log.Error("rendering page", "page", name, "err", err)
	}
}

// signedIn returns the view of a page for the signed-in user of r, with
// the notice named by r's "done" query parameter and the error named by its
// "error" parameter, if any.
func (s *Server) signedIn(r *http.Request, title, nav string) (view, error) {
	sess := session.FromContext(r.Context())
	name, err := s.app.Username(r.Context(), sess.UserID)
	if err != nil {
		return view{}, err
	}
	q := r.URL.Query()
	return view{Title: title, Nav: nav, User: name, Admin: s.actor(r).Admin, Notice: notice(q), Error: formErrors[q.Get("error")]}, nil
}

// notices are the confirmations a page shows after a form post, named by
// the "done" query parameter of the redirect: fixed texts, so that no link
// can put words on the page.
var notices = map[string]string{
	"signed-out": "Signed out of that session.",
	"created":    "User created.",
	"enabled":    "User enabled. They can sign in again.",
	"revoked":    "Session ended.",
	// Second factors.
	"totp-enabled":  "Two-step verification is on. Keep a set of recovery codes somewhere safe, for when your phone is not at hand.",
	"totp-disabled": "Two-step verification with an authenticator app is off.",

	"passkey-added":   "Passkey added. You can sign in with it without your password.",
	"passkey-renamed": "Passkey renamed.",
	"passkey-removed": "Passkey removed.",
}

// countedNotice is a notice about an action that ended sessions, worded
// for how many it ended: the "n" query parameter of the redirect.
type countedNotice struct {
	none, one, many string // for 0, 1 and n sessions (many has %d)
	unknown         string // without a count
}

// countedNotices are the notices with a count, named by "done" as notices.
var countedNotices = map[string]countedNotice{
	"signed-out-others": {
		none:    "No other session was signed in.",
		one:     "Signed out of 1 other session.",
		many:    "Signed out of %d other sessions.",
		unknown: "Signed out of every other session.",
	},
	"password": {
		none:    "Password changed. No other session was signed in.",
		one:     "Password changed. 1 other session was signed out.",
		many:    "Password changed. %d other sessions were signed out.",
		unknown: "Password changed. Every other session was signed out.",
	},
	"roles": {
		none:    "Roles saved. The user was not signed in, so the new roles apply from their next sign-in.",
		one:     "Roles saved. The user was signed out of 1 session, so the new roles apply from their next sign-in.",
		many:    "Roles saved. The user was signed out of %d sessions, so the new roles apply from their next sign-in.",
		unknown: "Roles saved. The user was signed out everywhere, so the new roles apply from their next sign-in.",
	},
	"disabled": {
		none:    "User disabled. They were not signed in anywhere.",
		one:     "User disabled and signed out of 1 session.",
		many:    "User disabled and signed out of %d sessions.",
		unknown: "User disabled and signed out everywhere.",
	},
	"revoked-all": {
		none:    "This user had no session to end.",
		one:     "The user's only session ended.",
		many:    "All %d sessions of this user ended.",
		unknown: "Every session of this user ended.",
	},
	"password-reset": {
		none:    "Password reset. The user was not signed in anywhere.",
		one:     "Password reset. The user was signed out of 1 session.",
		many:    "Password reset. The user was signed out of %d sessions.",
		unknown: "Password reset. The user was signed out everywhere.",
	},
	"second-factors-reset": {
		none:    "Two-step verification reset. The user was not signed in anywhere.",
		one:     "Two-step verification reset. The user was signed out of 1 session.",
		many:    "Two-step verification reset. The user was signed out of %d sessions.",
		unknown: "Two-step verification reset. The user was signed out everywhere.",
	},
	"webhooks-retried": {
		none:    "There was nothing to retry.",
		one:     "1 delivery will be retried.",
		many:    "%d deliveries will be retried.",
		unknown: "The deliveries will be retried.",
	},
	"deleted": {
		none:    "User deleted. They were not signed in anywhere.",
		one:     "User deleted and signed out of 1 session.",
		many:    "User deleted and signed out of %d sessions.",
		unknown: "User deleted and signed out everywhere.",
	},
}

// notice is the notice q names with "done" (and "n"), "" if none.
func notice(q url.Values) string {
	c, ok := countedNotices[q.Get("done")]
	if !ok {
		return notices[q.Get("done")]
	}
	n, err := strconv.Atoi(q.Get("n"))
	switch {
	case err != nil || n < 0:
		return c.unknown
	case n == 0:
		return c.none
	case n == 1:
		return c.one
	}
	return fmt.Sprintf(c.many, n)
}

// done redirects a form post back to page (POST-redirect-GET) with the
// notice named done and, for a counted notice, the count n.
func done(w http.ResponseWriter, r *http.Request, page, done string, n int) {
	q := url.Values{"done": {done}}
	if _, ok := countedNotices[done]; ok {
		q.Set("n", strconv.Itoa(n))
	}
	http.Redirect(w, r, page+"?"+q.Encode(), http.StatusSeeOther)
}

// formErrors are the errors a page shows after a form post refused for
// what was typed in it, named by the "error" query parameter of the
// redirect back to the page (POST-redirect-GET, so the browser stays on
// the page's URL): fixed texts, as notices are.
var formErrors = map[string]string{
	"password-mismatch": "The new password and its confirmation differ.",
	"password-wrong":    "The current password is wrong.",
	"password-same":     "The new password must differ from the current one.",
	"password-short":    fmt.Sprintf("Password must be at least %d characters.", users.MinPasswordLen),
	"password-long":     fmt.Sprintf("Password must be at most %d bytes.", users.MaxPasswordLen),
	"password-encoding": "Password must be valid UTF-8 text.",
	"password-username": "Password must not be the username.",
	"password-service":  "Password is the name of this service; choose another.",
	"password-common":   "Password is too common; choose another.",
	"roles-invalid":     "Each role must be 1 to 32 lowercase letters, digits, _ or -, separated by commas.",
	"roles-too-many":    "A user holds at most 32 roles.",
	"last-admin":        "This is the last enabled admin: make another user an admin first.",
	"not-found":         "No such user or session: it may have been deleted meanwhile.",
	"conflict":          "The account changed at the same time; try again.",
	"rate-limited":      "Too many attempts. Wait a minute and try again.",
	"invalid":           "That was not accepted. Check what you typed and try again.",
	// Second factors: the texts of the app's errors, so that
	// formErrorCode finds them.
	"code-wrong":     "The code is wrong or was already used.",
	"totp-on":        "Two-step verification is already on; turn it off first to enrol another authenticator.",
	"totp-off":       "Two-step verification is not on.",
	"totp-pending":   "No authenticator is being set up; start again.",
	"totp-restarted": "The set-up was started again meanwhile; scan the newest QR code and enter its code.",
	"passkey-name":   fmt.Sprintf("A passkey's name is at most %d characters.", users.MaxPasskeyNameLen),
}

// formErrorCodes finds the code of formErrors whose text is an app
// error's message.
var formErrorCodes = func() map[string]string {
	m := make(map[string]string, len(formErrors))
	for code, text := range formErrors {
		m[text] = code
	}
	return m
}()

// formErrorCode is the formErrors code for err, a form post's failure;
// ok is false for a backend failure, which pageErr answers.
func formErrorCode(err error) (code string, ok bool) {
	e := app.ErrorOf(err)
	if e == nil {
		return "", false
	}
	if code, ok := formErrorCodes[e.Message]; ok {
		return code, true
	}
	switch {
	case e.Code == app.CodeRateLimited:
		return "rate-limited", true
	case e.Code == app.CodeNotFound:
		return "not-found", true
	case e.Code == app.CodeConflict:
		return "conflict", true
	case e.Code == app.CodeInvalid && strings.HasPrefix(e.Message, "Role "):
		return "roles-invalid", true
	}
	return "invalid", true
}

// formRefused answers a form post that failed with err: back to page
// with the error's code (see formErrors), or an error page for a backend
// failure.
func (s *Server) formRefused(w http.ResponseWriter, r *http.Request, page string, err error) {
	code, ok := formErrorCode(err)
	if !ok {
		s.pageErr(w, r, err)
		return
	}
	backWithError(w, r, page, code)
}

// backWithError redirects a form post back to page (POST-redirect-GET)
// with the error named code in formErrors.
func backWithError(w http.ResponseWriter, r *http.Request, page, code string) {
	http.Redirect(w, r, page+"?"+url.Values{"error": {code}}.Encode(), http.StatusSeeOther)
}

// pageAuthed is authed for the web pages: a browser without a valid
// session is sent to the login page, to come back to the page it was on
// (for a form post, the page the form is on).
func (s *Server) pageAuthed(next http.HandlerFunc) http.Handler {
	return s.requireSession(next, func(w http.ResponseWriter, r *http.Request) {
		back := r.URL.RequestURI()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			back = formPage(r.URL.Path)
		}
		http.Redirect(w, r, s.loginAgainURL(r, back), http.StatusSeeOther)
	})
}

// formPage is the page whose forms post to path: /account for
// /account/..., /admin/users/{user} for /admin/users/{user}/..., else
// /admin.
func formPage(path string) string {
	if strings.HasPrefix(path, "/account") {
		return "/account"
	}
	if rest, ok := strings.CutPrefix(path, "/admin/users/"); ok {
		if user, _, ok := strings.Cut(rest, "/"); ok && user != "" {
			return "/admin/users/" + user
		}
	}
	return "/admin"
}

// adminPage passes on requests whose session holds the admin role and
// shows the others a 403 page.
func (s *Server) adminPage(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.actor(r).Admin {
			v, err := s.signedIn(r, "Not allowed", "")
			if err != nil {
				s.pageErr(w, r, err)
				return
			}
			v.Error = "The admin console needs the admin role, which your account does not have."
			s.render(w, http.StatusForbidden, "error.html", v)
			return
		}
		next(w, r)
	}
}

// pageErr answers a page request that failed with an error page (see
// clientError).
func (s *Server) pageErr(w http.ResponseWriter, r *http.Request, err error) {
	e := s.clientError(r, err)
	s.errorPage(w, r, status(e.Code), e)
}

// errorPage shows e's message on the error page, with the navigation of
// the signed-in user, if any.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, e *app.Error) {
	v := view{Title: "Something went wrong", Error: e.Message}
	if sess := session.FromContext(r.Context()); sess != nil {
		v.User, _ = s.app.Username(r.Context(), sess.UserID)
		v.Admin = s.actor(r).Admin
	}
	setRetryAfter(w.Header(), e.RetryAfter)
	s.render(w, status, "error.html", v)
}

// refuse answers a request the session middleware refused (see
// session.Config.WriteError): with an error page for a browser's
// navigation or form post, else in JSON.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	if code == string(app.CodeStoreUnavailable) {
		s.metrics.storeErrors.Inc()
	}
	e := app.Errorf(app.Code(code), "%s", message)
	if e.Code == errCrossOrigin.Code {
		e = errCrossOrigin
	}
	if wantsHTML(r) {
		s.errorPage(w, r, status, e)
	} else {
		writeError(w, e)
	}
}

// formError is the message a page shows for a failed form post, and its
// status; ok is false for a backend failure, which pageErr answers.
func formError(err error) (statusCode int, msg string, ok bool) {
	e := app.ErrorOf(err)
	if e == nil {
		return 0, "", false
	}
	if e.Code == app.CodeRateLimited {
		return status(e.Code), "Too many attempts. Wait a minute and try again.", true
	}
	return status(e.Code), e.Message, true
}

// formFailed answers a form post that failed with err: the page again
// (render) with a message for the client's errors, an error page for
// backend failures.
func (s *Server) formFailed(w http.ResponseWriter, r *http.Request, err error, render func(status int, msg string)) {
	status, msg, ok := formError(err)
	if !ok {
		s.pageErr(w, r, err)
		return
	}
	render(status, msg)
}

// loginData is the login page's data.
type loginData struct {
	RD, Username string
	Remember     bool
	// Passkey is the "Sign in with a passkey" button, nil where passkeys
	// cannot be used.
	Passkey *passkeyButton
}

// The login page's messages for why the browser is there: fixed texts,
// chosen by the query string, so that no link can put words on the page.
//
// endedNotice (why=ended) says only that the browser presented a session
// cookie naming no live session. Why that session ended (idle or absolute
// timeout, signed out from another device, a password change there, an
// administrator) is not known then: a store deletes an ended session and
// keeps no trace of it, and a request without a session reads no audit
// log. So one message covers every reason.
const (
	signedOutNotice = "You are signed out." // done=signed-out: sessiond signed this browser out
	endedNotice     = "Your session has ended: it expired, or it was signed out from another device or by an administrator. Sign in again to continue."
)

// loginPage is GET /login.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pk := s.loginPasskey(r)
	v := view{Title: "Sign in", Data: loginData{RD: q.Get("rd"), Passkey: pk}, Script: pk != nil}
	switch {
	case q.Get("done") == "signed-out":
		v.Notice = signedOutNotice
	case q.Get("why") == "ended":
		v.Notice = endedNotice
	}
	s.render(w, http.StatusOK, "login.html", v)
}

// loginAgainURL is the login page's URL for r, a request without a live
// session, returning to returnTo (see loginURL). If r presents a
// well-formed session cookie, that cookie names a session that has ended,
// and the URL says so with why=ended (see endedNotice). It costs no store
// call: the middleware has already looked the cookie up.
func (s *Server) loginAgainURL(r *http.Request, returnTo string) string {
	u := s.loginURL(returnTo)
	if _, fromCookie := s.sessions.TokenFromRequest(r); !fromCookie {
		return u
	}
	if strings.Contains(u, "?") {
		return u + "&why=ended"
	}
	return u + "?why=ended"
}

// renderLogin shows the login form again after a failed form post, with
// a message that does not tell which usernames exist: a disabled account
// is named only to someone who gave its password.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := http.StatusServiceUnavailable, "Sign-in is unavailable right now. Try again shortly."
	switch e := app.ErrorOf(err); {
	case e == nil:
		s.log.Error("login failed", "err", err)
	case e.Code == app.CodeRateLimited:
		setRetryAfter(w.Header(), e.RetryAfter)
		code, msg = status(e.Code), "Too many sign-in attempts. Wait a minute and try again."
	case e.Code == app.CodeAccountDisabled:
		code, msg = status(e.Code), "This account is disabled. Contact your administrator."
	case e.Code == app.CodeCrossOrigin:
		code, msg = status(e.Code), "This sign-in form was sent from another site, so it was refused. Sign in here instead."
	default:
		code, msg = status(e.Code), e.Message
	}
	d := loginData{RD: r.Form.Get("rd"), Username: r.PostForm.Get("username"), Remember: r.PostForm.Get("remember") != "", Passkey: s.loginPasskey(r)}
	s.render(w, code, "login.html", view{Title: "Sign in", Error: msg, Data: d, Script: d.Passkey != nil})
}

// stylesheet serves the embedded stylesheet.
func stylesheet(w http.ResponseWriter, r *http.Request) {
	css, _ := webFS.ReadFile("web/style.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(css)
}

// ago says how long before now t was, in words: "just now", "5 minutes
// ago", "3 hours ago", "2 days ago".
func ago(t, now time.Time) string {
	d := now.Sub(t)
	unit := func(n int, name string) string {
		if n == 1 {
			return "1 " + name + " ago"
		}
		return strconv.Itoa(n) + " " + name + "s ago"
	}
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return unit(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return unit(int(d/time.Hour), "hour")
	}
	return unit(int(d/(24*time.Hour)), "day")
}
