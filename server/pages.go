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
)

// The web pages are server-rendered html/template pages with one embedded
// stylesheet. They need no JavaScript: every action is a form post to a
// route behind the session middleware (so CrossOriginProtection refuses it
// cross-origin), answered by a 303 redirect back to the page with a notice
// (POST-redirect-GET), or by the page again with an error.

//go:embed web
var webFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"time": func(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") },
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"join": strings.Join,
}).ParseFS(webFS, "web/*.html"))

// contentSecurityPolicy allows the pages nothing but their own stylesheet
// and form posts to this origin: no script at all, no inline style, no
// framing.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

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
}

func (s *Server) render(w http.ResponseWriter, status int, name string, v view) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, v); err != nil {
		s.log.Error("rendering page", "page", name, "err", err)
	}
}

// signedIn returns the view of a page for the signed-in user of r, with
// the notice named by r's "done" query parameter, if any.
func (s *Server) signedIn(r *http.Request, title, nav string) (view, error) {
	sess := session.FromContext(r.Context())
	name, err := s.app.Username(r.Context(), sess.UserID)
	if err != nil {
		return view{}, err
	}
	return view{Title: title, Nav: nav, User: name, Admin: s.actor(r).Admin, Notice: notice(r.URL.Query())}, nil
}

// notices are the confirmations a page shows after a form post, named by
// the "done" query parameter of the redirect (with "n", a count, where it
// has %d): fixed texts, so that no link can put words on the page.
var notices = map[string]string{
	"signed-out":        "Signed out of that session.",
	"signed-out-others": "Signed out of every other session (%d).",
	"password":          "Password changed. Every other session was signed out (%d).",
	"created":           "User created.",
	"roles":             "Roles saved. The user was signed out everywhere (%d sessions), so the new roles apply from their next sign-in.",
	"disabled":          "User disabled and signed out everywhere (%d sessions).",
	"enabled":           "User enabled. They can sign in again.",
	"revoked":           "Session ended.",
	"revoked-all":       "Every session of this user ended (%d).",
	"password-reset":    "Password reset. The user was signed out everywhere (%d sessions).",
	"deleted":           "User deleted and signed out everywhere (%d sessions).",
}

func notice(q url.Values) string {
	msg := notices[q.Get("done")]
	if !strings.Contains(msg, "%d") {
		return msg
	}
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n < 0 {
		return strings.Replace(msg, " (%d)", "", 1)
	}
	return fmt.Sprintf(msg, n)
}

// done redirects a form post back to page (POST-redirect-GET) with the
// notice named done and count n.
func done(w http.ResponseWriter, r *http.Request, page, done string, n int) {
	q := url.Values{"done": {done}}
	if strings.Contains(notices[done], "%d") {
		q.Set("n", strconv.Itoa(n))
	}
	http.Redirect(w, r, page+"?"+q.Encode(), http.StatusSeeOther)
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
		http.Redirect(w, r, s.loginURL(r, back), http.StatusSeeOther)
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
func formError(err error) (status_ int, msg string, ok bool) {
	e := app.ErrorOf(err)
	if e == nil {
		return 0, "", false
	}
	if e.Code == app.CodeRateLimited {
		return status(e.Code), "Too many attempts. Wait a minute and try again.", true
	}
	return status(e.Code), e.Message, true
}

// loginData is the login page's data.
type loginData struct {
	RD, Username string
	Remember     bool
}

// loginPage is GET /login.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	v := view{Title: "Sign in", Data: loginData{RD: r.URL.Query().Get("rd")}}
	if r.URL.Query().Get("done") == "signed-out" {
		v.Notice = "You are signed out."
	}
	s.render(w, http.StatusOK, "login.html", v)
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
	d := loginData{RD: r.Form.Get("rd"), Username: r.PostForm.Get("username"), Remember: r.PostForm.Get("remember") != ""}
	s.render(w, code, "login.html", view{Title: "Sign in", Error: msg, Data: d})
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
