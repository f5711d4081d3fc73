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

// The admin console: role "admin" only (adminPage). Every action is one
// call to the app, as in the admin API, so both audit the same events.
// Actions that end sessions or remove an account ask for confirmation
// first (confirmed).

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
	var (
		list    []*users.User
		factors map[string]users.FactorSummary
	)
	if err == nil {
		list, err = s.app.Users(r.Context(), s.actor(r))
	}
	if err == nil {
		factors, err = s.app.UserFactors(r.Context(), s.actor(r), list)
	}
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	me := session.FromContext(r.Context()).UserID
	for _, u := range list {
		uv := viewUser(u)
		uv.SecondFactors = viewFactors(factors[u.ID])
		d.Users = append(d.Users, userRow{uv, u.ID == me})
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
	u, err := s.app.CreateUser(r.Context(), s.actor(r), d.Username, r.PostForm.Get("password"), splitRoles(d.Role))
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
	Roles    string // the roles field
	Sessions sessionTable
}

// adminUserPage is GET /admin/users/{user}: the user, their roles and
// status, and their sessions.
func (s *Server) adminUserPage(w http.ResponseWriter, r *http.Request) {
	u, list, err := s.app.UserSessions(r.Context(), s.actor(r), r.PathValue("user"))
	var (
		v       view
		factors map[string]users.FactorSummary
	)
	if err == nil {
		v, err = s.signedIn(r, "User "+u.Username, "users")
	}
	if err == nil {
		factors, err = s.app.UserFactors(r.Context(), s.actor(r), []*users.User{u})
	}
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	me := session.FromContext(r.Context())
	uv := viewUser(u)
	uv.SecondFactors = viewFactors(factors[u.ID])
	v.Data = userData{
		User: uv, Self: u.ID == me.UserID, Created: u.CreatedAt.UTC().Format("2 Jan 2006"),
		Roles:    strings.Join(u.Roles, ", "),
		Sessions: sessionTable{s.sessionRows(list, me.ID), userPage(u) + "/sessions/", "End session"},
	}
	s.render(w, http.StatusOK, "admin_user.html", v)
}

// userForm reads the form posted from the {user}'s page. It answers
// failures itself, as userFailed, and returns ok false then.
func (s *Server) userForm(w http.ResponseWriter, r *http.Request) bool {
	if err := parseForm(r); err != nil {
		s.userFailed(w, r, err)
		return false
	}
	return true
}

// userFailed answers a form post from the {user}'s page that failed with
// err: back to the page with the error (formRefused), so that the
// browser's URL stays on the page.
func (s *Server) userFailed(w http.ResponseWriter, r *http.Request, err error) {
	s.formRefused(w, r, formPage(r.URL.EscapedPath()), err)
}

// changed answers an admin change of the {user} from their page: back to
// the page with the notice named notice, or (err not nil) the page with
// the error.
func (s *Server) changed(w http.ResponseWriter, r *http.Request, notice string, u *users.User, n int, err error) {
	if err != nil {
		s.userFailed(w, r, err)
		return
	}
	done(w, r, userPage(u), notice, n)
}

// confirmation is what the confirmation page asks.
type confirmation struct {
	Question, Consequence, Button string
	// Action is where the confirmed form posts; Back is where Cancel goes.
	Action, Back string
}

// confirmed reports whether r's form says confirm=yes. If not, it shows
// the confirmation page c, whose button posts the same action again with
// confirm=yes, and returns false.
func (s *Server) confirmed(w http.ResponseWriter, r *http.Request, c confirmation) bool {
	if r.PostForm.Get("confirm") == "yes" {
		return true
	}
	v, err := s.signedIn(r, c.Question, "users")
	if err != nil {
		s.pageErr(w, r, err)
		return false
	}
	c.Action = r.URL.Path
	v.Data = c
	s.render(w, http.StatusOK, "confirm.html", v)
	return false
}

// confirmFirst reads the form posted from the {user}'s page and reports
// whether the action it asks for is confirmed. If not, it has answered: with
// the confirmation page that ask words for the user, or with the user's
// page and an error.
func (s *Server) confirmFirst(w http.ResponseWriter, r *http.Request, ask func(username string) confirmation) bool {
	if !s.userForm(w, r) {
		return false
	}
	u, err := s.app.User(r.Context(), s.actor(r), r.PathValue("user"))
	if err != nil {
		s.userFailed(w, r, err)
		return false
	}
	c := ask(u.Username)
	c.Back = userPage(u)
	return s.confirmed(w, r, c)
}

// adminSetRolesForm is POST /admin/users/{user}/roles: the user's sessions
// end, so the new roles apply from their next sign-in.
func (s *Server) adminSetRolesForm(w http.ResponseWriter, r *http.Request) {
	if !s.userForm(w, r) {
		return
	}
	u, n, err := s.app.SetRoles(r.Context(), s.actor(r), r.PathValue("user"), splitRoles(r.PostForm.Get("roles")))
	s.changed(w, r, "roles", u, n, err)
}

// adminDisableForm is POST /admin/users/{user}/disable, once confirmed.
func (s *Server) adminDisableForm(w http.ResponseWriter, r *http.Request) {
	if !s.confirmFirst(w, r, func(name string) confirmation {
		return confirmation{
			Question:    "Disable " + name + "?",
			Consequence: name + " is signed out everywhere and cannot sign in until the account is enabled again.",
			Button:      "Disable " + name,
		}
	}) {
		return
	}
	u, n, err := s.app.SetDisabled(r.Context(), s.actor(r), r.PathValue("user"), true)
	s.changed(w, r, "disabled", u, n, err)
}

// adminEnableForm is POST /admin/users/{user}/enable.
func (s *Server) adminEnableForm(w http.ResponseWriter, r *http.Request) {
	if !s.userForm(w, r) {
		return
	}
	u, n, err := s.app.SetDisabled(r.Context(), s.actor(r), r.PathValue("user"), false)
	s.changed(w, r, "enabled", u, n, err)
}

// adminResetPasswordForm is POST /admin/users/{user}/password: password
// and confirm_password, typed twice, which is its confirmation. The
// user's sessions end.
func (s *Server) adminResetPasswordForm(w http.ResponseWriter, r *http.Request) {
	if !s.userForm(w, r) {
		return
	}
	f := r.PostForm
	if f.Get("password") != f.Get("confirm_password") {
		backWithError(w, r, formPage(r.URL.EscapedPath()), "password-mismatch")
		return
	}
	u, n, err := s.app.ResetPassword(r.Context(), s.actor(r), r.PathValue("user"), f.Get("password"))
	s.changed(w, r, "password-reset", u, n, err)
}

// adminDeleteUserForm is POST /admin/users/{user}/delete, once confirmed:
// back to the users page.
func (s *Server) adminDeleteUserForm(w http.ResponseWriter, r *http.Request) {
	if !s.confirmFirst(w, r, func(name string) confirmation {
		return confirmation{
			Question:    "Delete " + name + "?",
			Consequence: name + " is signed out everywhere and the account is removed for good. The audit log keeps its history.",
			Button:      "Delete " + name,
		}
	}) {
		return
	}
	_, n, err := s.app.DeleteUser(r.Context(), s.actor(r), r.PathValue("user"))
	if err != nil {
		s.userFailed(w, r, err)
		return
	}
	done(w, r, "/admin", "deleted", n)
}

// adminRevokeUserForm is POST /admin/users/{user}/revoke, once confirmed:
// end every session of the user.
func (s *Server) adminRevokeUserForm(w http.ResponseWriter, r *http.Request) {
	if !s.confirmFirst(w, r, func(name string) confirmation {
		return confirmation{
			Question:    "End every session of " + name + "?",
			Consequence: name + " is signed out on every device and has to sign in again.",
			Button:      "End all sessions",
		}
	}) {
		return
	}
	u, n, err := s.app.RevokeUserSessions(r.Context(), s.actor(r), r.PathValue("user"))
	s.changed(w, r, "revoked-all", u, n, err)
}

// adminRevokeSessionForm is POST /admin/users/{user}/sessions/{id}/revoke:
// end one session of the user.
func (s *Server) adminRevokeSessionForm(w http.ResponseWriter, r *http.Request) {
	u, err := s.app.User(r.Context(), s.actor(r), r.PathValue("user"))
	if err == nil {
		err = s.app.RevokeSession(r.Context(), s.actor(r), u.ID, r.PathValue("id"))
	}
	s.changed(w, r, "revoked", u, 1, err)
}

// auditPageSize is how many events the audit page shows at once.
const auditPageSize = 50

// eventLabels names every event type on the audit page: the session
// events and the account events (audit.AccountTypes).
var eventLabels = map[string]string{
	string(session.EventCreated):        "Session created",
	string(session.EventRotated):        "Session token renewed",
	string(session.EventRevoked):        "Session ended",
	string(session.EventExpired):        "Session expired",
	string(session.EventTheftSuspected): "Stolen token suspected",
	string(session.EventInvalid):        "Unreadable session",
	audit.LoginSucceeded:                "Signed in",
	audit.LoginFailed:                   "Sign-in failed",
	audit.PasswordChanged:               "Password changed",
	audit.PasswordReset:                 "Password reset",
	audit.RolesChanged:                  "Roles changed",
	audit.UserCreated:                   "User created",
	audit.UserDisabled:                  "User disabled",
	audit.UserEnabled:                   "User enabled",
	audit.UserDeleted:                   "User deleted",
	audit.TOTPEnabled:                   "Authenticator app added",
	audit.TOTPDisabled:                  "Authenticator app removed",
	audit.RecoveryCodesGenerated:        "Recovery codes generated",
	audit.RecoveryCodeUsed:              "Recovery code used",
	audit.PasskeyAdded:                  "Passkey added",
	audit.PasskeyRemoved:                "Passkey removed",
	audit.SecondFactorsReset:            "Two-step verification reset",
	audit.WebhookRetried:                "Webhook deliveries retried",
}

// sessionTypes are the session events the audit page filters by, in order.
var sessionTypes = []session.EventType{session.EventCreated, session.EventRotated, session.EventRevoked, session.EventExpired, session.EventTheftSuspected, session.EventInvalid}

// eventFilter is one choice of the audit page's event filter; a Value
// ending in "." selects a family.
type eventFilter struct{ Value, Label string }

// eventFilters are the audit page's event filter choices: every type,
// grouped in families.
var eventFilters = func() []eventFilter {
	f := []eventFilter{{"", "All events"}, {"login.", "Sign-ins (all)"}}
	add := func(types ...string) {
		for _, t := range types {
			f = append(f, eventFilter{t, eventLabels[t]})
		}
	}
	add(audit.LoginSucceeded, audit.LoginFailed)
	f = append(f, eventFilter{"session.", "Sessions (all)"})
	for _, t := range sessionTypes {
		add(string(t))
	}
	add(audit.PasswordChanged, audit.PasswordReset, audit.RolesChanged)
	f = append(f, eventFilter{"user.", "Accounts (all)"})
	add(audit.UserCreated, audit.UserDisabled, audit.UserEnabled, audit.UserDeleted)
	add(audit.TOTPEnabled, audit.TOTPDisabled, audit.RecoveryCodesGenerated, audit.RecoveryCodeUsed,
		audit.PasskeyAdded, audit.PasskeyRemoved, audit.SecondFactorsReset, audit.WebhookRetried)
	return f
}()

// eventLabel is the audit page's name for an event type.
func eventLabel(typ string) string {
	if l, ok := eventLabels[typ]; ok {
		return l
	}
	return typ
}

// loginFailures words the reasons of login.failed events.
var loginFailures = map[string]string{
	audit.ReasonBadCredentials: "wrong username or password",
	audit.ReasonDisabled:       "account disabled",
	audit.ReasonBusy:           "server busy",
}

// eventRow is an audit event as the audit page shows it.
type eventRow struct {
	audit.Event
	Label, Actor, Device string
}

// auditData is the audit page's data.
type auditData struct {
	User, Type string // the filters
	Types      []eventFilter
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
	d := auditData{User: q.Get("user"), Type: q.Get("type"), Types: eventFilters}
	v.Data = &d
	aq, err := auditQuery(r, auditPageSize)
	var events []audit.Event
	if err == nil {
		events, err = s.app.Audit(r.Context(), s.actor(r), aq)
	}
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
			if n, err := s.app.Username(r.Context(), e.Actor); err == nil {
				name = n
			}
			actors[e.Actor] = name
		}
		row := eventRow{Event: e, Label: eventLabel(e.Type), Actor: name}
		if r, ok := loginFailures[e.Reason]; ok && e.Type == audit.LoginFailed {
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
