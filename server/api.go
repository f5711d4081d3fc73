package server

import (
	"net/http"
	"strconv"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// The JSON API: each handler decodes the request, calls the app, and
// encodes its answer.

// authed passes on requests with a valid session (cookie or bearer) and
// answers the others: 401 (a browser's GET is sent to the login page), 429
// after a flood of invalid tokens, 403 for a cross-origin state change by
// cookie, 503 when the store is down.
func (s *Server) authed(next http.Handler) http.Handler {
	return s.requireSession(next, func(w http.ResponseWriter, r *http.Request) {
		if wantsHTML(r) && r.Method == http.MethodGet {
			http.Redirect(w, r, s.loginAgainURL(r, r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		writeError(w, errUnauthenticated)
	})
}

// requireSession is authed with the answer to a request without a valid
// session left to unauthenticated. Every route behind it gets the session
// middleware's checks, CSRF defence included.
func (s *Server) requireSession(next http.Handler, unauthenticated http.HandlerFunc) http.Handler {
	return s.sessions.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if session.FromContext(r.Context()) == nil {
			if err := s.countInvalid(r); err != nil {
				s.deny(w, r, err, false)
				return
			}
			unauthenticated(w, r)
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// adminOnly passes on requests whose session holds the admin role. The
// app checks the role again on every admin action.
func (s *Server) adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.actor(r).Admin {
			writeError(w, app.ErrForbidden)
			return
		}
		next(w, r)
	}
}

// actor is who makes r: the user of its session, from its client.
func (s *Server) actor(r *http.Request) app.Actor {
	return app.SessionActor(session.FromContext(r.Context()), s.sessions.ClientOf(r))
}

// whoami is GET /api/v1/session.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	u, err := s.app.Me(r.Context(), s.actor(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	sess := session.FromContext(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{"session": viewSession(sess, sess.ID), "user": viewUser(u)})
}

// mySessions is GET /api/v1/sessions: where the user is signed in.
func (s *Server) mySessions(w http.ResponseWriter, r *http.Request) {
	list, err := s.app.MySessions(r.Context(), s.actor(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewSessions(list, session.FromContext(r.Context()).ID))
}

// revokeMySession is DELETE /api/v1/sessions/{id}: sign out one of the
// user's own sessions (another user's is "not found"). Signing out this
// one expires its cookie too.
func (s *Server) revokeMySession(w http.ResponseWriter, r *http.Request) {
	if _, err := s.signOut(w, r, r.PathValue("id")); err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": 1})
}

// signOut ends session id of the user r is signed in as. If it is r's own
// session, its cookie is expired on w too, and self is true.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request, id string) (self bool, err error) {
	actor := s.actor(r)
	if err := s.app.SignOut(r.Context(), actor, id); err != nil {
		return false, err
	}
	if id != actor.SessionID {
		return false, nil
	}
	s.sessions.Logout(w, r) // the cookie of an ended session goes too
	return true, nil
}

// revokeMyOthers is POST /api/v1/sessions/revoke-others.
func (s *Server) revokeMyOthers(w http.ResponseWriter, r *http.Request) {
	n, err := s.app.SignOutOthers(r.Context(), s.actor(r))
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
	sess, token, n, err := s.setOwnPassword(w, r, req.Current, req.New)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	body := map[string]any{"session": viewSession(sess, sess.ID), "revoked": n}
	if token != "" {
		body["token"] = token
	}
	writeJSON(w, http.StatusOK, body)
}

// setOwnPassword changes the password of r's user (app.ChangePassword),
// handing r's session its new token as a cookie on w, or, for a bearer
// client, as token.
func (s *Server) setOwnPassword(w http.ResponseWriter, r *http.Request, current, next string) (sess *session.Session, token string, revoked int, err error) {
	rotate, tok := s.rotateOwn(w, r)
	sess, revoked, err = s.app.ChangePassword(r.Context(), s.actor(r), current, next, rotate)
	return sess, *tok, revoked, err
}

// adminCreateUser is POST /api/v1/admin/users.
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
	u, err := s.app.CreateUser(r.Context(), s.actor(r), req.Username, req.Password, req.Roles)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user": viewUser(u)})
}

// adminListUsers is GET /api/v1/admin/users.
func (s *Server) adminListUsers(w http.ResponseWriter, r *http.Request) {
	actor := s.actor(r)
	list, err := s.app.Users(r.Context(), actor)
	var factors map[string]users.FactorSummary
	if err == nil {
		factors, err = s.app.UserFactors(r.Context(), actor, list)
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	out := make([]userView, 0, len(list))
	for _, u := range list {
		v := viewUser(u)
		v.SecondFactors = viewFactors(factors[u.ID])
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

// adminUserSessions is GET /api/v1/admin/users/{user}/sessions.
func (s *Server) adminUserSessions(w http.ResponseWriter, r *http.Request) {
	_, list, err := s.app.UserSessions(r.Context(), s.actor(r), r.PathValue("user"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewSessions(list, session.FromContext(r.Context()).ID))
}

// adminRevokeUser is POST /api/v1/admin/users/{user}/revoke.
func (s *Server) adminRevokeUser(w http.ResponseWriter, r *http.Request) {
	_, n, err := s.app.RevokeUserSessions(r.Context(), s.actor(r), r.PathValue("user"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

// adminSetRoles is PUT /api/v1/admin/users/{user}/roles {"roles"}: the
// user's sessions end, so the new roles apply from their next sign-in.
func (s *Server) adminSetRoles(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Roles []string `json:"roles"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	if req.Roles == nil {
		s.writeErr(w, r, app.Errorf(app.CodeInvalid, "roles is required (an empty list removes every role)."))
		return
	}
	u, n, err := s.app.SetRoles(r.Context(), s.actor(r), r.PathValue("user"), req.Roles)
	s.answerChange(w, r, u, n, err)
}

// adminDisable is POST /api/v1/admin/users/{user}/disable.
func (s *Server) adminDisable(w http.ResponseWriter, r *http.Request) {
	u, n, err := s.app.SetDisabled(r.Context(), s.actor(r), r.PathValue("user"), true)
	s.answerChange(w, r, u, n, err)
}

// adminEnable is POST /api/v1/admin/users/{user}/enable.
func (s *Server) adminEnable(w http.ResponseWriter, r *http.Request) {
	u, n, err := s.app.SetDisabled(r.Context(), s.actor(r), r.PathValue("user"), false)
	s.answerChange(w, r, u, n, err)
}

// adminResetPassword is POST /api/v1/admin/users/{user}/password
// {"password"}: the user's sessions end.
func (s *Server) adminResetPassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	u, n, err := s.app.ResetPassword(r.Context(), s.actor(r), r.PathValue("user"), req.Password)
	s.answerChange(w, r, u, n, err)
}

// adminDeleteUser is DELETE /api/v1/admin/users/{user}: the user's
// sessions end; the audit log keeps their history.
func (s *Server) adminDeleteUser(w http.ResponseWriter, r *http.Request) {
	u, n, err := s.app.DeleteUser(r.Context(), s.actor(r), r.PathValue("user"))
	s.answerChange(w, r, u, n, err)
}

// answerChange answers an admin change of user u that ended n sessions:
// {"user","revoked"}, or err.
func (s *Server) answerChange(w http.ResponseWriter, r *http.Request, u *users.User, n int, err error) {
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": viewUser(u), "revoked": n})
}

// adminRevokeSession is DELETE /api/v1/admin/sessions/{id}.
func (s *Server) adminRevokeSession(w http.ResponseWriter, r *http.Request) {
	if err := s.app.RevokeSession(r.Context(), s.actor(r), "", r.PathValue("id")); err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": 1})
}

// adminAudit is GET /api/v1/admin/audit?user=&type=&before=&limit=.
func (s *Server) adminAudit(w http.ResponseWriter, r *http.Request) {
	q, err := auditQuery(r, 0)
	var events []audit.Event
	if err == nil {
		events, err = s.app.Audit(r.Context(), s.actor(r), q)
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if events == nil {
		events = []audit.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
}

// auditQuery reads user, type, before and limit from r's query; limit,
// if not 0, replaces the query's.
func auditQuery(r *http.Request, limit int) (app.AuditQuery, error) {
	v := r.URL.Query()
	q := app.AuditQuery{User: v.Get("user"), Type: v.Get("type"), Limit: limit}
	if b := v.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return q, app.Errorf(app.CodeInvalid, "before must be a non-negative integer.")
		}
		q.Before = n
	}
	if l := v.Get("limit"); l != "" && limit == 0 {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > audit.MaxLimit {
			return q, app.Errorf(app.CodeInvalid, "limit must be between 1 and %d.", audit.MaxLimit)
		}
		q.Limit = n
	}
	return q, nil
}
