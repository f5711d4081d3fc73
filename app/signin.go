package app

import (
	"context"
	"errors"
	"strings"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// Credentials are what a user signs in with.
type Credentials struct {
	Username, Password string
	// Remember asks for a "remember me" session.
	Remember bool
	// TOTP or RecoveryCode, if set, is the second factor of a user who
	// has one, checked in the same step (API clients). Without either,
	// such a user's sign-in fails with *SecondFactorRequired, which with
	// Pending names a pending sign-in for CompleteSecondFactor (the web
	// sign-in's next step).
	TOTP, RecoveryCode string
	Pending            bool
}

// StartFunc stores the session for l and hands it to the client: a
// cookie (session.Manager.Login) or a bearer token (session.Manager.Create,
// the token kept by the caller). It must pass l to the Manager unchanged,
// Confirm included.
type StartFunc func(l session.Login) (*session.Session, error)

// errAccountChanged is what a login's Confirm returns when the account
// changed after its password was checked.
var errAccountChanged = errors.New("app: account changed during sign-in")

// maxSignInTries bounds how often SignIn starts a session again when the
// account changed in a way that does not refuse the login (a new role).
const maxSignInTries = 3

// SignIn checks c, sent from client, and if it is right starts a session
// with start. It returns the user and the session, or:
//   - an *Error with CodeRateLimited and RetryAfter when the client must
//     wait (nothing is checked then);
//   - users.ErrBadCredentials for an unknown user or a wrong password
//     (alike in time and answer), users.ErrDisabled for a disabled
//     account with the right password, users.ErrBusy when too many
//     passwords are being checked;
//   - *SecondFactorRequired when the password is right, the user has a
//     second factor and c carries no code: the sign-in is pending (see
//     CompleteSecondFactor); ErrWrongCode for a wrong code in c;
//   - another error for a technical failure.
//
// Once the session is stored, the account is read again (through
// session.Login.Confirm): if it changed since the password was checked,
// the session is deleted before anyone holds its token, and the login
// fails (disabled, password changed, deleted) or starts again with the
// account as it is now. An admin change stores the account before it ends
// the user's sessions, so whichever comes first, no session with the old
// state survives.
func (a *App) SignIn(ctx context.Context, c Credentials, client session.Client, start StartFunc) (*users.User, *session.Session, error) {
	client = boundClient(client)
	account := c.Username
	if users.ValidateUsername(account) != nil {
		account = "" // no such user can exist; count the client alone
	}
	at, wait := a.throttle.begin(account, client.IP, a.now())
	if wait > 0 {
		return nil, nil, &Error{Code: CodeRateLimited, Message: "Too many sign-in attempts; wait and try again.", RetryAfter: wait}
	}
	var u *users.User
	err := users.ErrBadCredentials
	if account != "" {
		u, err = a.accounts.Authenticate(ctx, c.Username, c.Password)
	}
	if err != nil {
		a.signInFailed(ctx, at, c.Username, client, err)
		return nil, nil, err
	}

	sess, err := a.afterPassword(ctx, u, c, client, start)
	switch {
	case errors.Is(err, users.ErrBadCredentials) || errors.Is(err, users.ErrDisabled):
		a.signInFailed(ctx, at, c.Username, client, err)
		return nil, nil, err
	case err != nil:
		at.succeeded() // the password was right
		return nil, nil, err
	}
	at.succeeded()
	return u, sess, nil
}

// startSession starts a session with start for u, who has just proved who
// they are by the methods amr (RFC 8176), and audits the login. Once the
// session is stored, the account is read again (through
// session.Login.Confirm): if it changed since u was read, the session is
// deleted before anyone holds its token, and the login fails
// (users.ErrDisabled, users.ErrBadCredentials for a changed password or a
// deleted account, errAccountRace for other changes to a login that
// proved more than a password: its factors may be the ones reset) or,
// for a password alone, starts again with the account as it is now (new
// roles; *u is then updated to it). An admin change stores the account
// before it ends the user's sessions, so whichever comes first, no session
// with the old state survives.
func (a *App) startSession(ctx context.Context, u *users.User, amr []string, remember bool, client session.Client, start StartFunc) (*session.Session, error) {
	client = boundClient(client)
	passwordOnly := len(amr) == 1 && amr[0] == session.AMRPassword
	for try := 1; ; try++ {
		var now *users.User
		sess, err := start(session.Login{
			UserID: u.ID, Roles: u.Roles, AMR: amr, Remember: remember, Client: client,
			Confirm: func(ctx context.Context, _ *session.Session) error {
				cur, err := a.accounts.Directory().ByID(ctx, u.ID)
				switch {
				case errors.Is(err, users.ErrNotFound):
					return users.ErrBadCredentials // deleted meanwhile
				case err != nil:
					return err
				case cur.Version != u.Version:
					now = cur
					return errAccountChanged
				}
				return nil
			},
		})
		if !errors.Is(err, errAccountChanged) {
			if err != nil {
				return nil, err
			}
			a.record(ctx, audit.Event{Type: audit.LoginSucceeded, UserID: u.ID, Username: u.Username, SessionID: sess.ID, Actor: u.ID,
				Reason: strings.Join(sess.AMR, ","), IP: client.IP, UserAgent: client.UserAgent})
			return sess, nil
		}
		switch {
		case now.Disabled:
			return nil, users.ErrDisabled
		case now.PasswordHash != u.PasswordHash:
			return nil, users.ErrBadCredentials
		case passwordOnly && try < maxSignInTries:
			*u = *now
		default:
			return nil, errAccountRace
		}
	}
}

// raise gives the actor's own session a new token with rotate, recording
// that the user has just proved who they are again by the methods amr
// (merged into the session's AMR, which may raise its AAL) and refreshing
// its authenticated_at: a step-up or a re-authentication, which is a
// privilege change (DESIGN §3), and is audited.
func (a *App) raise(ctx context.Context, actor Actor, amr []string, rotate RotateFunc) (*session.Session, error) {
	sess, err := rotate(session.Change{Reauthenticated: true, AMR: amr})
	if err != nil {
		return nil, err
	}
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		u = &users.User{ID: actor.ID}
	}
	a.recordBy(ctx, actor, audit.Reauthenticated, u, strings.Join(amr, ","))
	return sess, nil
}

// Reauthenticate checks the actor's password, under the sign-in throttle
// (a stolen session is no faster way to guess it), and if it is right
// gives the actor's session a new token with authenticated_at refreshed
// (see raise): what a route with a max_age policy asks of a user who
// signed in too long ago. A wrong password is ErrWrongPassword.
func (a *App) Reauthenticate(ctx context.Context, actor Actor, password string, rotate RotateFunc) (*session.Session, error) {
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return nil, err
	}
	if err := a.checkPassword(ctx, u, password, actor.Client); err != nil {
		return nil, err
	}
	return a.raise(ctx, actor, []string{session.AMRPassword}, rotate)
}

// checkPassword checks the password of u, signed in from client, under
// the sign-in throttle: ErrWrongPassword if it is wrong, an *Error with
// CodeRateLimited when the client must wait first.
func (a *App) checkPassword(ctx context.Context, u *users.User, password string, client session.Client) error {
	at, wait := a.throttle.begin(u.Username, client.IP, a.now())
	if wait > 0 {
		return &Error{Code: CodeRateLimited, Message: "Too many attempts; wait and try again.", RetryAfter: wait}
	}
	switch ok, err := a.accounts.CheckPassword(ctx, u, password); {
	case err != nil:
		at.succeeded() // a technical failure is no guess
		return err
	case !ok:
		return ErrWrongPassword
	}
	at.succeeded()
	return nil
}

// signInFailed settles a login that failed with err: a wrong password
// stays counted by the throttle, other failures are refunded; the failure
// is audited with the account, if it exists, and never with a username
// that names no account.
func (a *App) signInFailed(ctx context.Context, at *attempt, username string, client session.Client, err error) {
	reason := ""
	switch {
	case errors.Is(err, users.ErrBadCredentials):
		reason = audit.ReasonBadCredentials
	case errors.Is(err, users.ErrDisabled):
		reason = audit.ReasonDisabled
		at.succeeded() // the password was right
	case errors.Is(err, users.ErrBusy):
		reason = audit.ReasonBusy
		at.succeeded()
	default:
		at.succeeded() // a technical failure is no guess
		return
	}
	e := audit.Event{Type: audit.LoginFailed, Reason: reason, IP: client.IP, UserAgent: client.UserAgent}
	if users.ValidateUsername(username) == nil {
		if known, err := a.accounts.Directory().ByUsername(ctx, username); err == nil {
			e.UserID, e.Username, e.Actor = known.ID, known.Username, known.ID
		}
	}
	a.record(ctx, e)
}

// RotateFunc gives the actor's own session a new token after a privilege
// change, applying ch, and hands it to the client: a cookie
// (session.Manager.Renew) or a bearer token (session.Manager.Rotate, the
// token kept by the caller).
type RotateFunc func(ch session.Change) (*session.Session, error)

// ChangePassword changes the actor's own password from current to next.
// It checks current under the sign-in throttle (the same limits as
// SignIn, so a stolen session is no faster way to guess the password),
// refuses a next that breaks the password rules or equals current, stores
// it, gives the actor's session a new token with rotate, and ends every
// other session of the user. It returns the actor's session and how many
// others ended. A wrong current password is ErrWrongPassword.
func (a *App) ChangePassword(ctx context.Context, actor Actor, current, next string, rotate RotateFunc) (*session.Session, int, error) {
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return nil, 0, err
	}
	if err := a.checkPassword(ctx, u, current, actor.Client); err != nil {
		return nil, 0, err
	}
	if err := a.setPassword(ctx, u, next); err != nil {
		return nil, 0, err
	}
	sess, err := rotate(session.Change{Reauthenticated: true, AMR: []string{session.AMRPassword}})
	if err != nil {
		return nil, 0, err
	}
	n, err := a.sessions.RevokeUser(ctx, u.ID, sess.ID, u.ID, "password changed")
	if err != nil {
		return nil, 0, err
	}
	a.recordBy(ctx, actor, audit.PasswordChanged, u, "")
	return sess, n, nil
}

// setPassword checks password against the rules and the user's current
// one, and stores it in u, which must be as read from the directory: a
// change made meanwhile is users.ErrConflict.
func (a *App) setPassword(ctx context.Context, u *users.User, password string) error {
	if err := users.ValidatePasswordFor(u.Username, password); err != nil {
		return err
	}
	same, err := a.accounts.CheckPassword(ctx, u, password)
	if err != nil {
		return err
	}
	if same {
		return ErrSamePassword
	}
	return a.accounts.SetPassword(ctx, u, password)
}
