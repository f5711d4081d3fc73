package app

import (
	"context"
	"errors"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// startSession starts a session, with start, for u, who has just proved
// who they are by the methods amr, and re-reads the account once the
// session is stored, as SignIn does: a disabled or deleted account, or
// one changed meanwhile, leaves no session.
func (a *App) startSession(ctx context.Context, u *users.User, amr []string, remember bool, client session.Client, start StartFunc) (*session.Session, error) {
	return start(session.Login{
		UserID: u.ID, Roles: u.Roles, AMR: amr, Remember: remember, Client: client,
		Confirm: func(ctx context.Context, _ *session.Session) error {
			cur, err := a.accounts.Directory().ByID(ctx, u.ID)
			switch {
			case errors.Is(err, users.ErrNotFound):
				return users.ErrBadCredentials
			case err != nil:
				return err
			case cur.Disabled:
				return users.ErrDisabled
			case cur.Version != u.Version:
				return errAccountRace
			}
			return nil
		},
	})
}

// raise gives the actor's session a new token with rotate, its
// authentication time refreshed, after the user proved who they are again
// by the methods amr.
func (a *App) raise(ctx context.Context, actor Actor, amr []string, rotate RotateFunc) (*session.Session, error) {
	return rotate(session.Change{Reauthenticated: true, AMR: amr})
}
