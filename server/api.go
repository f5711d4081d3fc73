package server

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// authed passes on requests with a valid session (cookie or bearer) and
// answers the others: 401, 429 after a flood of invalid tokens, 403 for a
// cross-origin state change by cookie, 503 when the store is down.
func (s *Server) authed(next http.Handler) http.Handler {
	return s.sessions.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if session.FromContext(r.Context()) == nil {
			if s.presentsCredential(r) {
				if ok, wait := s.invalidToken.allow(s.clientIP(r), s.cfg.Now()); !ok {
					s.deny(w, r, &errRateLimited{"invalid_token", wait}, false)
					return
				}
			}
			if wantsHTML(r) && r.Method == http.MethodGet {
				http.Redirect(w, r, s.loginURL(r, r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			writeJSONError(w, http.StatusUnauthorized, errUnauthenticated)
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
	me := session.FromContext(r.Context())
	target, err := s.sessions.Get(r.Context(), r.PathValue("id"))
	if err == nil && target.UserID != me.UserID {
		err = session.ErrNotFound
	}
	if err == nil {
		err = s.sessions.Revoke(r.Context(), target.ID, me.UserID, "signed out by the user")
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if target.ID == me.ID {
		s.sessions.Logout(w, r) // the cookie of an ended session goes too
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": 1})
}

// revokeMyOthers is POST /api/v1/sessions/revoke-others.
func (s *Server) revokeMyOthers(w http.ResponseWriter, r *http.Request) {
	me := session.FromContext(r.Context())
	n, err := s.sessions.RevokeUser(r.Context(), me.UserID, me.ID, me.UserID, "signed out everywhere else")
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
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
	sess, u, err := s.currentUser(r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	// A stolen session must not become a way to guess the password.
	if ok, wait := s.loginAccount.allow(u.Username, s.cfg.Now()); !ok {
		s.writeLoginErr(w, r, &errRateLimited{"login_account", wait})
		return
	}
	if ok, err := s.accounts.CheckPassword(r.Context(), u, req.Current); err != nil || !ok {
		if err == nil {
			err = errorf("wrong_password", "The current password is wrong.")
		}
		s.writeErr(w, r, err)
		return
	}
	if err := s.accounts.SetPassword(r.Context(), u, req.New); err != nil {
		s.writeErr(w, r, err)
		return
	}
	body := map[string]any{}
	_, fromCookie := s.sessions.TokenFromRequest(r)
	var rotated *session.Session
	if fromCookie {
		rotated, err = s.sessions.Renew(w, r, session.Change{Reauthenticated: true})
	} else {
		var token string
		rotated, token, err = s.sessions.Rotate(r.Context(), sess.ID, session.Change{Reauthenticated: true})
		body["token"] = token
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	n, err := s.sessions.RevokeUser(r.Context(), u.ID, sess.ID, u.ID, "password changed")
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.Record(r.Context(), audit.Event{Type: "password.changed", UserID: u.ID, Username: u.Username, SessionID: sess.ID, Actor: u.ID, IP: s.clientIP(r), UserAgent: r.UserAgent()})
	body["session"], body["revoked"] = viewSession(rotated, rotated.ID), n
	writeJSON(w, http.StatusOK, body)
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
	u, err := s.accounts.Add(r.Context(), req.Username, req.Password, req.Roles)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.recordAdmin(r, "user.created", u, "")
	writeJSON(w, http.StatusCreated, map[string]any{"user": viewUser(u)})
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
	s.adminChange(w, r, "roles.changed", func(u *users.User) error { return s.accounts.SetRoles(r.Context(), u, req.Roles) })
}

func (s *Server) adminDisable(w http.ResponseWriter, r *http.Request) {
	s.adminChange(w, r, "user.disabled", func(u *users.User) error { return s.accounts.SetDisabled(r.Context(), u, true) })
}

func (s *Server) adminEnable(w http.ResponseWriter, r *http.Request) {
	s.adminChange(w, r, "user.enabled", func(u *users.User) error { return s.accounts.SetDisabled(r.Context(), u, false) })
}

// adminChange applies change to the {user}, ends their sessions and
// answers {"user","revoked"}.
func (s *Server) adminChange(w http.ResponseWriter, r *http.Request, event string, change func(*users.User) error) {
	u, err := s.adminTarget(r)
	if err == nil {
		err = change(u)
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	n, err := s.endAll(r, u, event)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.recordAdmin(r, event, u, "")
	writeJSON(w, http.StatusOK, map[string]any{"user": viewUser(u), "revoked": n})
}

func (s *Server) adminRevokeSession(w http.ResponseWriter, r *http.Request) {
	if err := s.sessions.Revoke(r.Context(), r.PathValue("id"), session.FromContext(r.Context()).UserID, "revoked by an admin"); err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": 1})
}

// adminAudit is GET /api/v1/admin/audit?user=&type=&before=&limit=.
func (s *Server) adminAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := audit.Filter{Type: q.Get("type")}
	if ref := q.Get("user"); ref != "" {
		u, err := s.accounts.Lookup(r.Context(), ref)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		f.UserID = u.ID
	}
	for name, dst := range map[string]*int64{"before": &f.Before} {
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				s.writeErr(w, r, errorf("invalid", name+" must be a non-negative integer."))
				return
			}
			*dst = n
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxLimit {
			s.writeErr(w, r, errorf("invalid", fmt.Sprintf("limit must be between 1 and %d.", audit.MaxLimit)))
			return
		}
		f.Limit = n
	}
	events, err := s.audit.Query(r.Context(), f)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if events == nil {
		events = []audit.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
}

// recordAdmin audits an admin's action on u.
func (s *Server) recordAdmin(r *http.Request, event string, u *users.User, reason string) {
	s.Record(r.Context(), audit.Event{Type: event, UserID: u.ID, Username: u.Username, Actor: session.FromContext(r.Context()).UserID, Reason: reason, IP: s.clientIP(r), UserAgent: r.UserAgent()})
}
