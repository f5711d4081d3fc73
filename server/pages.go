package server

import (
	"embed"
	"errors"
	"html/template"
	"net/http"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

//go:embed web
var webFS embed.FS

var pages = template.Must(template.ParseFS(webFS, "web/*.html"))

// contentSecurityPolicy allows the pages nothing but their own stylesheet
// and form posts to this origin: no script at all, no framing.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (s *Server) render(w http.ResponseWriter, status int, name string, data map[string]any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		s.log.Error("rendering page", "page", name, "err", err)
	}
}

// loginPage is GET /login.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "login.html", map[string]any{"Title": "Sign in", "RD": r.URL.Query().Get("rd")})
}

// renderLogin shows the login form again after a failed form post, with
// a message that does not tell which usernames exist.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusUnauthorized, "Wrong username or password."
	var limited *errRateLimited
	switch {
	case errors.As(err, &limited):
		status, msg = http.StatusTooManyRequests, "Too many sign-in attempts. Wait a minute and try again."
	case errors.Is(err, users.ErrDisabled):
		status, msg = http.StatusForbidden, "This account is disabled. Contact your administrator."
	case errors.Is(err, users.ErrBadCredentials):
	default:
		if e := toError(err); e != nil {
			status, msg = statusOf[e.Code], e.Message
		} else {
			s.log.Error("login failed", "err", err)
			status, msg = http.StatusServiceUnavailable, "Sign-in is unavailable right now. Try again shortly."
		}
	}
	s.render(w, status, "login.html", map[string]any{"Title": "Sign in", "Error": msg, "RD": r.Form.Get("rd"), "Username": r.PostForm.Get("username")})
}

// accountPage is GET /account: the user's sessions.
func (s *Server) accountPage(w http.ResponseWriter, r *http.Request) {
	sess := session.FromContext(r.Context())
	name, err := s.username(r.Context(), sess.UserID)
	var list []*session.Session
	if err == nil {
		list, err = s.sessions.List(r.Context(), sess.UserID)
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.render(w, http.StatusOK, "account.html", map[string]any{"Title": "Your account", "Username": name, "Sessions": viewSessions(list, sess.ID)["sessions"]})
}

// stylesheet serves the embedded stylesheet.
func stylesheet(w http.ResponseWriter, r *http.Request) {
	css, _ := webFS.ReadFile("web/style.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(css)
}
