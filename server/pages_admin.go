package server

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// The admin console: role "admin" only (adminPage). Every action goes
// through the same functions as the admin API (createUser, changeUser,
// endAll, revokeAsAdmin, queryAudit), so both audit the same events.

// userRow is a user as the console lists them.
type userRow struct {
	userView
	Self bool // the admin looking
}

// usersData is the users page's data; Username and Roles refill the
// create form after a failed post.
type usersData struct {
	Users          []userRow
	Username, Role string
}

// adminUsersPage is GET /admin: every user, and a form to create one.
func (s *Server) adminUsersPage(w http.ResponseWriter, r *http.Request) {
	s.renderUsers(w, r, http.StatusOK, "", usersData{})
}

func (s *Server) renderUsers(w http.ResponseWriter, r *http.Request, status int, errMsg string, d usersData) {
	v, err := s.signedIn(r, "Users", "users")
	var list []*users.User
	if err == nil {
		list, err = s.accounts.Directory().List(r.Context())
	}
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	me := session.FromContext(r.Context()).UserID
	for _, u := range list {
		d.Users = append(d.Users, userRow{viewUser(u), u.ID == me})
	}
	v.Error, v.Data = errMsg, d
	s.render(w, status, "admin_users.html", v)
}

// adminCreateUserForm is POST /admin/users: username, password, roles.
func (s *Server) adminCreateUserForm(w http.ResponseWriter, r *http.Request) {
	var d usersData
	failed := func(status int, msg string) { s.renderUsers(w, r, status, msg, d) }
	if err := parseForm(r); err != nil {
		s.formFailed(w, r, err, failed)
		return
	}
	d.Username, d.Role = r.PostForm.Get("username"), r.PostForm.Get("roles")
	u, err := s.createUser(r, d.Username, r.PostForm.Get("password"), splitRoles(d.Role))
	if err != nil {
		s.formFailed(w, r, err, failed)
		return
	}
	done(w, r, userPage(u), "created", 0)
}

// splitRoles reads a list of roles separated by commas or spaces.
func splitRoles(v string) []string {
	roles := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if roles == nil {
		return []string{} // no roles, not "unchanged"
	}
	return roles
}

func userPage(u *users.User) string { return "/admin/users/" + url.PathEscape(u.ID) }

// userData is a user's page's data.
type userData struct {
	User     userView
	Self     bool
	Created  string
	Roles    string // the roles field: refilled after a failed post
	Sessions sessionTable
}

// adminUserPage is GET /admin/users/{user}: the user, their roles and
// status, and their sessions.
func (s *Server) adminUserPage(w http.ResponseWriter, r *http.Request) {
	s.renderUser(w, r, http.StatusOK, "", nil)
}

// renderUser shows the {user}'s page; roles, if not nil, refills the
// roles field.
func (s *Server) renderUser(w http.ResponseWriter, r *http.Request, status int, errMsg string, roles *string) {
	u, err := s.accounts.Lookup(r.Context(), r.PathValue("user"))
	var v view
	if err == nil {
		v, err = s.signedIn(r, "User "+u.Username, "users")
	}
	var list []*session.Session
	if err == nil {
		list, err = s.sessions.List(r.Context(), u.ID)
	}
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	me := session.FromContext(r.Context())
	d := userData{
		User: viewUser(u), Self: u.ID == me.UserID, Created: u.CreatedAt.UTC().Format("2 Jan 2006"),
		Roles:    strings.Join(u.Roles, ", "),
		Sessions: sessionTable{s.sessionRows(list, me.ID), userPage(u) + "/sessions/", "End session"},
	}
	if roles != nil {
		d.Roles = *roles
	}
	v.Error, v.Data = errMsg, d
	s.render(w, status, "admin_user.html", v)
}

// adminUserChange answers POST /admin/users/{user}/roles, .../disable and
// .../enable: change applied through changeUser, which ends the user's
// sessions, then back to the user's page with the notice named done.
func (s *Server) adminUserChange(event, notice string, change func(r *http.Request) func(*users.User) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		failed := func(status int, msg string) {
			roles := r.PostForm.Get("roles")
			s.renderUser(w, r, status, msg, &roles)
		}
		if err := parseForm(r); err != nil {
			s.formFailed(w, r, err, failed)
			return
		}
		u, n, err := s.changeUser(r, r.PathValue("user"), event, change(r))
		if err != nil {
			s.formFailed(w, r, err, failed)
			return
		}
		done(w, r, userPage(u), notice, n)
	}
}

func (s *Server) adminSetRolesForm() http.HandlerFunc {
	return s.adminUserChange("roles.changed", "roles", func(r *http.Request) func(*users.User) error {
		return s.setRoles(r, splitRoles(r.PostForm.Get("roles")))
	})
}

func (s *Server) adminDisableForm() http.HandlerFunc {
	return s.adminUserChange("user.disabled", "disabled", func(r *http.Request) func(*users.User) error { return s.setDisabled(r, true) })
}

func (s *Server) adminEnableForm() http.HandlerFunc {
	return s.adminUserChange("user.enabled", "enabled", func(r *http.Request) func(*users.User) error { return s.setDisabled(r, false) })
}

// adminRevokeUserForm is POST /admin/users/{user}/revoke: end every
// session of the user.
func (s *Server) adminRevokeUserForm(w http.ResponseWriter, r *http.Request) {
	u, err := s.accounts.Lookup(r.Context(), r.PathValue("user"))
	var n int
	if err == nil {
		n, err = s.endAll(r, u, "revoked by an admin")
	}
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	done(w, r, userPage(u), "revoked-all", n)
}

// adminRevokeSessionForm is POST /admin/users/{user}/sessions/{id}/revoke:
// end one session of the user.
func (s *Server) adminRevokeSessionForm(w http.ResponseWriter, r *http.Request) {
	u, err := s.accounts.Lookup(r.Context(), r.PathValue("user"))
	var target *session.Session
	if err == nil {
		target, err = s.sessions.Get(r.Context(), r.PathValue("id"))
	}
	if err == nil && target.UserID != u.ID {
		err = session.ErrNotFound
	}
	if err == nil {
		err = s.revokeAsAdmin(r, target.ID)
	}
	if err != nil {
		s.formFailed(w, r, err, func(status int, msg string) { s.renderUser(w, r, status, msg, nil) })
		return
	}
	done(w, r, userPage(u), "revoked", 1)
}

// auditPageSize is how many events the audit page shows at once.
const auditPageSize = 50

// eventTypes are the audit page's event filter choices, in order; a
// value ending in "." selects a family.
var eventTypes = []struct{ Value, Label string }{
	{"", "All events"},
	{"login.", "Sign-ins (all)"},
	{"login.succeeded", "Signed in"},
	{"login.failed", "Sign-in failed"},
	{"session.", "Sessions (all)"},
	{"session.created", "Session created"},
	{"session.rotated", "Session token renewed"},
	{"session.revoked", "Session ended"},
	{"session.expired", "Session expired"},
	{"session.theft_suspected", "Stolen token suspected"},
	{"password.changed", "Password changed"},
	{"user.", "Accounts (all)"},
	{"user.created", "User created"},
	{"user.disabled", "User disabled"},
	{"user.enabled", "User enabled"},
	{"roles.changed", "Roles changed"},
}

// eventLabel is the audit page's name for an event type.
func eventLabel(typ string) string {
	for _, t := range eventTypes {
		if t.Value == typ && !strings.HasSuffix(typ, ".") {
			return t.Label
		}
	}
	return typ
}

// loginFailures words the reasons of login.failed events.
var loginFailures = map[string]string{
	"bad_credentials": "wrong username or password",
	"disabled":        "account disabled",
	"busy":            "server busy",
}

// eventRow is an audit event as the audit page shows it.
type eventRow struct {
	audit.Event
	Label, Actor, Device string
}

// auditData is the audit page's data.
type auditData struct {
	User, Type string // the filters
	Types      []struct{ Value, Label string }
	Events     []eventRow
	Older      string // the link to older events, "" if none
}

// adminAuditPage is GET /admin/audit?user=&type=&before=: the audit log,
// newest first, auditPageSize events at a time.
func (s *Server) adminAuditPage(w http.ResponseWriter, r *http.Request) {
	v, err := s.signedIn(r, "Audit log", "audit")
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	q := r.URL.Query()
	d := auditData{User: q.Get("user"), Type: q.Get("type"), Types: eventTypes}
	v.Data = &d
	sel := url.Values{"user": {d.User}, "type": {d.Type}, "before": {q.Get("before")}, "limit": {strconv.Itoa(auditPageSize)}}
	events, err := s.queryAudit(r, sel)
	if err != nil {
		s.formFailed(w, r, err, func(status int, msg string) {
			v.Error = msg
			s.render(w, status, "admin_audit.html", v)
		})
		return
	}
	actors := map[string]string{}
	for _, e := range events {
		name, ok := actors[e.Actor]
		if !ok && e.Actor != "" {
			name = e.Actor
			if n, err := s.username(r.Context(), e.Actor); err == nil {
				name = n
			}
			actors[e.Actor] = name
		}
		row := eventRow{Event: e, Label: eventLabel(e.Type), Actor: name}
		if r, ok := loginFailures[e.Reason]; ok && e.Type == "login.failed" {
			row.Reason = r
		}
		if e.UserAgent != "" {
			row.Device = parseDevice(e.UserAgent).String()
		}
		d.Events = append(d.Events, row)
	}
	if len(events) == auditPageSize {
		older := url.Values{"before": {strconv.FormatInt(events[len(events)-1].ID, 10)}}
		for k, val := range map[string]string{"user": d.User, "type": d.Type} {
			if val != "" {
				older.Set(k, val)
			}
		}
		d.Older = "/admin/audit?" + older.Encode()
	}
	s.render(w, http.StatusOK, "admin_audit.html", v)
}
