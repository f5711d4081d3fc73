package app

import (
	"context"
	"errors"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// maxChangeTries bounds how often an account change is redone after
// another change of the same account won the race (users.ErrConflict).
const maxChangeTries = 5

// maxRoles bounds the roles one user holds.
const maxRoles = 32

// CreateUser adds a user with password and roles.
func (a *App) CreateUser(ctx context.Context, actor Actor, username, password string, roles []string) (*users.User, error) {
	if !actor.Admin {
		return nil, ErrForbidden
	}
	if len(roles) > maxRoles {
		return nil, Errorf(CodeInvalid, "A user holds at most %d roles.", maxRoles)
	}
	u, err := a.accounts.Add(ctx, username, password, roles)
	if err != nil {
		return nil, err
	}
	a.recordBy(ctx, actor, audit.UserCreated, u, "")
	return u, nil
}

// CreateFirstAdmin creates the user "admin" with role admin and password,
// if there is no user at all, and reports whether it did. Several
// instances starting at once create one admin between them.
func (a *App) CreateFirstAdmin(ctx context.Context, password string) (bool, error) {
	n, err := a.accounts.Directory().Count(ctx)
	if err != nil || n > 0 {
		return false, err
	}
	u, err := a.accounts.Add(ctx, "admin", password, []string{users.RoleAdmin})
	switch {
	case errors.Is(err, users.ErrExists): // another instance was first
		return false, nil
	case err != nil:
		return false, err
	}
	a.recordBy(ctx, Actor{ID: session.ActorSystem}, audit.UserCreated, u, "first start")
	return true, nil
}

// Users returns every user, ordered by username.
func (a *App) Users(ctx context.Context, actor Actor) ([]*users.User, error) {
	if !actor.Admin {
		return nil, ErrForbidden
	}
	return a.accounts.Directory().List(ctx)
}

// User returns the user ref names: a user ID, or a username.
func (a *App) User(ctx context.Context, actor Actor, ref string) (*users.User, error) {
	if !actor.Admin {
		return nil, ErrForbidden
	}
	return a.accounts.Lookup(ctx, ref)
}

// UserSessions returns the user ref names and their live sessions.
func (a *App) UserSessions(ctx context.Context, actor Actor, ref string) (*users.User, []*session.Session, error) {
	u, err := a.User(ctx, actor, ref)
	if err != nil {
		return nil, nil, err
	}
	list, err := a.sessions.List(ctx, u.ID)
	return u, list, err
}

// SetRoles replaces the roles of the user ref names and ends their
// sessions: they sign in again and get the new roles with a new token.
// Removing the role admin from the last enabled admin is refused.
func (a *App) SetRoles(ctx context.Context, actor Actor, ref string, roles []string) (*users.User, int, error) {
	if len(roles) > maxRoles {
		return nil, 0, Errorf(CodeInvalid, "A user holds at most %d roles.", maxRoles)
	}
	return a.changeUser(ctx, actor, ref, audit.RolesChanged, func(u *users.User) error {
		return a.accounts.SetRoles(ctx, u, roles)
	})
}

// SetDisabled disables (ending every session) or enables the user ref
// names. Disabling the last enabled admin is refused.
func (a *App) SetDisabled(ctx context.Context, actor Actor, ref string, disabled bool) (*users.User, int, error) {
	typ := audit.UserEnabled
	if disabled {
		typ = audit.UserDisabled
	}
	return a.changeUser(ctx, actor, ref, typ, func(u *users.User) error {
		return a.accounts.SetDisabled(ctx, u, disabled)
	})
}

// ResetPassword sets the password of the user ref names, as an admin or
// the command line does when a user cannot, and ends every session of
// theirs.
func (a *App) ResetPassword(ctx context.Context, actor Actor, ref, password string) (*users.User, int, error) {
	return a.changeUser(ctx, actor, ref, audit.PasswordReset, func(u *users.User) error {
		return a.setPassword(ctx, u, password)
	})
}

// DeleteUser deletes the user ref names and ends their sessions; the
// audit log keeps their history. Deleting the last enabled admin is
// refused.
func (a *App) DeleteUser(ctx context.Context, actor Actor, ref string) (*users.User, int, error) {
	return a.changeUser(ctx, actor, ref, audit.UserDeleted, func(u *users.User) error {
		return a.accounts.Directory().Delete(ctx, u)
	})
}

// RevokeUserSessions ends every session of the user ref names.
func (a *App) RevokeUserSessions(ctx context.Context, actor Actor, ref string) (*users.User, int, error) {
	u, err := a.User(ctx, actor, ref)
	if err != nil {
		return nil, 0, err
	}
	n, err := a.sessions.RevokeUser(ctx, u.ID, "", actor.ID, revokeReason(actor))
	return u, n, err
}

// RevokeSession ends session id. If ref is not "", the session must be
// one of that user's (the page it is ended from shows them); else
// session.ErrNotFound.
func (a *App) RevokeSession(ctx context.Context, actor Actor, ref, id string) error {
	if !actor.Admin {
		return ErrForbidden
	}
	if ref != "" {
		u, err := a.accounts.Lookup(ctx, ref)
		if err != nil {
			return err
		}
		s, err := a.sessions.Get(ctx, id)
		if err != nil {
			return err
		}
		if s.UserID != u.ID {
			return session.ErrNotFound
		}
	}
	return a.sessions.Revoke(ctx, id, actor.ID, revokeReason(actor))
}

// revokeReason is the audit reason of a revocation by actor.
func revokeReason(actor Actor) string {
	if actor.ID == ActorCLI {
		return "revoked from the command line"
	}
	return "revoked by an admin"
}

// changeUser applies change to the user ref names, as read from the
// directory, redoing it if another change of the account won the race;
// audits it as typ; and then ends every session of the user, since a
// change of password, privilege or status takes effect at once. The
// change is stored before the sessions end, so a login racing it either
// sees it (SignIn re-reads the account) or has its session ended here.
func (a *App) changeUser(ctx context.Context, actor Actor, ref, typ string, change func(*users.User) error) (*users.User, int, error) {
	if !actor.Admin {
		return nil, 0, ErrForbidden
	}
	var u *users.User
	var err error
	for range maxChangeTries {
		if u, err = a.accounts.Lookup(ctx, ref); err != nil {
			return nil, 0, err
		}
		if err = change(u); !errors.Is(err, users.ErrConflict) {
			break
		}
	}
	if err != nil {
		return nil, 0, err
	}
	a.recordBy(ctx, actor, typ, u, "")
	n, err := a.sessions.RevokeUser(ctx, u.ID, "", actor.ID, typ)
	if err != nil {
		return nil, 0, err
	}
	return u, n, nil
}

// Me returns the actor's own account.
func (a *App) Me(ctx context.Context, actor Actor) (*users.User, error) {
	return a.accounts.Directory().ByID(ctx, actor.ID)
}

// MySessions returns the actor's live sessions.
func (a *App) MySessions(ctx context.Context, actor Actor) ([]*session.Session, error) {
	return a.sessions.List(ctx, actor.ID)
}

// SignOut ends one of the actor's own sessions (possibly the one acting);
// another user's session is session.ErrNotFound.
func (a *App) SignOut(ctx context.Context, actor Actor, id string) error {
	s, err := a.sessions.Get(ctx, id)
	if err != nil {
		return err
	}
	if s.UserID != actor.ID {
		return session.ErrNotFound
	}
	return a.sessions.Revoke(ctx, s.ID, actor.ID, "signed out by the user")
}

// SignOutOthers ends every session of the actor but the one acting, and
// returns how many it ended.
func (a *App) SignOutOthers(ctx context.Context, actor Actor) (int, error) {
	return a.sessions.RevokeUser(ctx, actor.ID, actor.SessionID, actor.ID, "signed out everywhere else")
}

// AuditQuery selects audit events: User (an ID or a username), Type (an
// event type, or a family ending in "."), Before (an event ID, for
// paging) and Limit (1 to audit.MaxLimit; 0 for audit.DefaultLimit).
type AuditQuery struct {
	User, Type string
	Before     int64
	Limit      int
}

// Audit returns the events q selects, newest first.
func (a *App) Audit(ctx context.Context, actor Actor, q AuditQuery) ([]audit.Event, error) {
	if !actor.Admin {
		return nil, ErrForbidden
	}
	if len(q.Type) > 64 {
		return nil, Errorf(CodeInvalid, "type is at most 64 characters.")
	}
	if q.Before < 0 {
		return nil, Errorf(CodeInvalid, "before must be a non-negative integer.")
	}
	if q.Limit < 0 || q.Limit > audit.MaxLimit {
		return nil, Errorf(CodeInvalid, "limit must be between 1 and %d.", audit.MaxLimit)
	}
	f := audit.Filter{Type: q.Type, Before: q.Before, Limit: q.Limit}
	switch {
	case users.IsUserID(q.User): // a deleted user's history too
		f.UserID = q.User
	case q.User != "":
		u, err := a.accounts.Lookup(ctx, q.User)
		if err != nil {
			return nil, err
		}
		f.UserID = u.ID
	}
	return a.audit.Query(ctx, f)
}
