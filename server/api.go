package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// authed passes on requests with a valid session (cookie or bearer) and
// answers the others: 401 (a browser's GET is sent to the login page), 429
// after a flood of invalid tokens, 403 for a cross-origin state change by
// cookie, 503 when the store is down.
func (s *Server) authed(next http.Handler) http.Handler {
	return s.requireSession(next, func(w http.ResponseWriter, r *http.Request) {
		if wantsHTML(r) && r.Method == http.MethodGet {
			http.Redirect(w, r, s.loginURL(r, r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		writeJSONError(w, http.StatusUnauthorized, errUnauthenticated)
	})
}

// requireSession is authed with the answer to a request without a valid
// session left to unauthenticated. Every route behind it gets the session
// middleware's checks, CSRF defence included.
func (s *Server) requireSession(next http.Handler, unauthenticated http.HandlerFunc) http.Handler {
	return s.sessions.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if session.FromContext(r.Context()) == nil {
			if s.presentsCredential(r) {
				if ok, wait := s.invalidToken.allow(s.clientIP(r), s.cfg.Now()); !ok {
					s.deny(w, r, &errRateLimited{"invalid_token", wait}, false)
					return
				}
			}
			unauthenticated(w, r)
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// adminOnly passes on requests whose session holds the admin role.
func (s *Server) adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !hasRole(session.FromContext(r.Context()), "admin") {
			writeJSONError(w, http.StatusForbidden, errorf("forbidden", "This needs the admin role."))
			return
		}
		next(w, r)
	}
}

func hasRole(s *session.Session, role string) bool {
	for _, r := range s.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// currentUser returns the user of the request's session.
func (s *Server) currentUser(r *http.Request) (*session.Session, *users.User, error) {
	sess := session.FromContext(r.Context())
	u, err := s.accounts.Directory().ByID(r.Context(), sess.UserID)
	return sess, u, err
}

// whoami is GET /api/v1/session.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	sess, u, err := s.currentUser(r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"session": viewSession(sess, sess.ID), "user": viewUser(u)})
}

// mySessions is GET /api/v1/sessions: where the user is signed in.
func (s *Server) mySessions(w http.ResponseWriter, r *http.Request) {
	sess := session.FromContext(r.Context())
	list, err := s.sessions.List(r.Context(), sess.UserID)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewSessions(list, sess.ID))
}

// revokeMySession is DELETE /api/v1/sessions/{id}: sign out one of the
// user's own sessions. Another user's session is "not found".
func (s *Server) revokeMySession(w http.ResponseWriter, r *http.Request) {
	if _, err := s.revokeOwn(w, r, r.PathValue("id")); err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": 1})
}

// revokeOwn ends session id of the user r is signed in as; another user's
// session is session.ErrNotFound. If id is r's own session, its cookie is
// expired on w too, and self is true.
func (s *Server) revokeOwn(w http.ResponseWriter, r *http.Request, id string) (self bool, err error) {
	me := session.FromContext(r.Context())
	target, err := s.sessions.Get(r.Context(), id)
	if err == nil && target.UserID != me.UserID {
		err = session.ErrNotFound
	}
	if err == nil {
		err = s.sessions.Revoke(r.Context(), target.ID, me.UserID, "signed out by the user")
	}
	if err != nil {
		return false, err
	}
	if target.ID == me.ID {
		s.sessions.Logout(w, r) // the cookie of an ended session goes too
		return true, nil
	}
	return false, nil
}

// revokeMyOthers is POST /api/v1/sessions/revoke-others.
func (s *Server) revokeMyOthers(w http.ResponseWriter, r *http.Request) {
	n, err := s.revokeOthers(r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

// revokeOthers ends every session of r's user but r's own and returns how
// many it ended.
func (s *Server) revokeOthers(r *http.Request) (int, error) {
	me := session.FromContext(r.Context())
	return s.sessions.RevokeUser(r.Context(), me.UserID, me.ID, me.UserID, "signed out everywhere else")
}

// changePassword is POST /api/v1/password: it re-checks the current
// password, sets the new one, gives this session a new token (a new cookie,
// or "token" in the body for a bearer client) and ends every other session.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Current string `json:"current_password"`
		New     string `json:"new_password"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	ch, err := s.setOwnPassword(w, r, req.Current, req.New)
	if err != nil {
		s.writeLoginErr(w, r, err)
		return
	}
	body := map[string]any{"session": viewSession(ch.session, ch.session.ID), "revoked": ch.revoked}
	if ch.token != "" {
		body["token"] = ch.token
	}
	writeJSON(w, http.StatusOK, body)
}

// passwordChange is what setOwnPassword did.
type passwordChange struct {
	session *session.Session // r's session, with its new token
	token   string           // the new token for a bearer client; "" if it went out as a cookie
	revoked int              // how many other sessions ended
}

// setOwnPassword changes the password of r's user from current to next:
// it re-checks current (under the per-account login rate limit, so that a
// stolen session is no way to guess the password), gives r's session a
// new token (a cookie set on w, or passwordChange.token for a bearer
// client), ends every other session and audits the change. A wrong
// current password is the "wrong_password" Error; a rate limit an
// *errRateLimited.
func (s *Server) setOwnPassword(w http.ResponseWriter, r *http.Request, current, next string) (passwordChange, error) {
	var ch passwordChange
	sess, u, err := s.currentUser(r)
	if err != nil {
		return ch, err
	}
	if ok, wait := s.loginAccount.allow(u.Username, s.cfg.Now()); !ok {
		return ch, &errRateLimited{"login_account", wait}
	}
	if ok, err := s.accounts.CheckPassword(r.Context(), u, current); err != nil || !ok {
		if err == nil {
			err = errorf("wrong_password", "The current password is wrong.")
		}
		return ch, err
	}
	if err := s.accounts.SetPassword(r.Context(), u, next); err != nil {
		return ch, err
	}
	if _, fromCookie := s.sessions.TokenFromRequest(r); fromCookie {
		ch.session, err = s.sessions.Renew(w, r, session.Change{Reauthenticated: true})
	} else {
		ch.session, ch.token, err = s.sessions.Rotate(r.Context(), sess.ID, session.Change{Reauthenticated: true})
	}
	if err != nil {
		return ch, err
	}
	if ch.revoked, err = s.sessions.RevokeUser(r.Context(), u.ID, sess.ID, u.ID, "password changed"); err != nil {
		return ch, err
	}
	s.Record(r.Context(), audit.Event{Type: "password.changed", UserID: u.ID, Username: u.Username, SessionID: sess.ID, Actor: u.ID, IP: s.clientIP(r), UserAgent: r.UserAgent()})
	return ch, nil
}

// adminTarget returns the user named by the {user} path value (ID or
// username).
func (s *Server) adminTarget(r *http.Request) (*users.User, error) {
	return s.accounts.Lookup(r.Context(), r.PathValue("user"))
}

func (s *Server) adminCreateUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string   `json:"username"`
		Password string   `json:"password"`
		Roles    []string `json:"roles"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	u, err := s.createUser(r, req.Username, req.Password, req.Roles)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user": viewUser(u)})
}

// createUser adds a user on behalf of the admin making r and audits it.
func (s *Server) createUser(r *http.Request, username, password string, roles []string) (*users.User, error) {
	u, err := s.accounts.Add(r.Context(), username, password, roles)
	if err != nil {
		return nil, err
	}
	s.recordAdmin(r, "user.created", u, "")
	return u, nil
}

func (s *Server) adminListUsers(w http.ResponseWriter, r *http.Request) {
	list, err := s.accounts.Directory().List(r.Context())
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	out := make([]userView, 0, len(list))
	for _, u := range list {
		out = append(out, viewUser(u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

func (s *Server) adminUserSessions(w http.ResponseWriter, r *http.Request) {
	u, err := s.adminTarget(r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	list, err := s.sessions.List(r.Context(), u.ID)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewSessions(list, session.FromContext(r.Context()).ID))
}

func (s *Server) adminRevokeUser(w http.ResponseWriter, r *http.Request) {
	u, err := s.adminTarget(r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	n, err := s.endAll(r, u, "revoked by an admin")
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

// endAll ends every session of u on behalf of the admin making r.
func (s *Server) endAll(r *http.Request, u *users.User, reason string) (int, error) {
	return s.sessions.RevokeUser(r.Context(), u.ID, "", session.FromContext(r.Context()).UserID, reason)
}

// adminSetRoles replaces a user's roles. A change of privilege ends the
// user's sessions: they sign in again and get the new roles with a new
// token.
func (s *Server) adminSetRoles(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Roles []string `json:"roles"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	if req.Roles == nil {
		s.writeErr(w, r, errorf("invalid", "roles is required (an empty list removes every role)."))
		return
	}
	s.adminChange(w, r, "roles.changed", s.setRoles(r, req.Roles))
}

func (s *Server) adminDisable(w http.ResponseWriter, r *http.Request) {
	s.adminChange(w, r, "user.disabled", s.setDisabled(r, true))
}

func (s *Server) adminEnable(w http.ResponseWriter, r *http.Request) {
	s.adminChange(w, r, "user.enabled", s.setDisabled(r, false))
}

// setRoles and setDisabled are the changes changeUser makes for the
// admin API and console.
func (s *Server) setRoles(r *http.Request, roles []string) func(*users.User) error {
	return func(u *users.User) error { return s.accounts.SetRoles(r.Context(), u, roles) }
}

func (s *Server) setDisabled(r *http.Request, disabled bool) func(*users.User) error {
	return func(u *users.User) error { return s.accounts.SetDisabled(r.Context(), u, disabled) }
}

// adminChange applies change to the {user}, ends their sessions and
// answers {"user","revoked"}.
func (s *Server) adminChange(w http.ResponseWriter, r *http.Request, event string, change func(*users.User) error) {
	u, n, err := s.changeUser(r, r.PathValue("user"), event, change)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": viewUser(u), "revoked": n})
}

// changeUser applies change to the user ref names (ID or username) on
// behalf of the admin making r, ends the user's sessions (a change of
// privilege or status takes effect at once), audits it as event and
// returns the user and how many sessions ended.
func (s *Server) changeUser(r *http.Request, ref, event string, change func(*users.User) error) (*users.User, int, error) {
	u, err := s.accounts.Lookup(r.Context(), ref)
	if err == nil {
		err = change(u)
	}
	if err != nil {
		return nil, 0, err
	}
	n, err := s.endAll(r, u, event)
	if err != nil {
		return nil, 0, err
	}
	s.recordAdmin(r, event, u, "")
	return u, n, nil
}

func (s *Server) adminRevokeSession(w http.ResponseWriter, r *http.Request) {
	if err := s.revokeAsAdmin(r, r.PathValue("id")); err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": 1})
}

// revokeAsAdmin ends session id on behalf of the admin making r.
func (s *Server) revokeAsAdmin(r *http.Request, id string) error {
	return s.sessions.Revoke(r.Context(), id, session.FromContext(r.Context()).UserID, "revoked by an admin")
}

// adminAudit is GET /api/v1/admin/audit?user=&type=&before=&limit=.
func (s *Server) adminAudit(w http.ResponseWriter, r *http.Request) {
	events, err := s.queryAudit(r, r.URL.Query())
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if events == nil {
		events = []audit.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
}

// queryAudit returns the audit events q selects: user (ID or username),
// type (an event type, or a family ending in "."), before (an event ID)
// and limit.
func (s *Server) queryAudit(r *http.Request, q url.Values) ([]audit.Event, error) {
	f := audit.Filter{Type: q.Get("type")}
	if ref := q.Get("user"); ref != "" {
		u, err := s.accounts.Lookup(r.Context(), ref)
		if err != nil {
			return nil, err
		}
		f.UserID = u.ID
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, errorf("invalid", "before must be a non-negative integer.")
		}
		f.Before = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxLimit {
			return nil, errorf("invalid", fmt.Sprintf("limit must be between 1 and %d.", audit.MaxLimit))
		}
		f.Limit = n
	}
	return s.audit.Query(r.Context(), f)
}

// recordAdmin audits an admin's action on u.
func (s *Server) recordAdmin(r *http.Request, event string, u *users.User, reason string) {
	s.Record(r.Context(), audit.Event{Type: event, UserID: u.ID, Username: u.Username, Actor: session.FromContext(r.Context()).UserID, Reason: reason, IP: s.clientIP(r), UserAgent: r.UserAgent()})
}
