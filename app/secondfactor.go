package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// Signing in with a second factor. When the password is right and the
// user has a second factor, SignIn starts no session: it returns a
// *SecondFactorRequired with a pending sign-in, a random ticket that the
// transport hands to the client (a short-lived cookie) and that nothing
// but CompleteSecondFactor accepts. The pending sign-in is a challenge in
// the user directory (users.Factors), so any instance can complete what
// another began; it lasts PendingSignInTTL, and is used up when the
// session starts. It is not a session: no route that asks for one, and
// no /resolve, accepts it.

// PendingSignInTTL is how long a pending sign-in waits for its second
// factor.
const PendingSignInTTL = 5 * time.Minute

// challengeSecondFactor is the users.Challenge Kind of a pending sign-in.
const challengeSecondFactor = "second-factor"

// The second-factor methods a user may be asked for (SecondFactorRequired.Methods).
const (
	MethodTOTP         = "totp"
	MethodRecoveryCode = "recovery_code"
	MethodPasskey      = "passkey"
)

// SecondFactorRequired is the error SignIn returns when the password was
// right and the user must prove a second factor: Ticket names the pending
// sign-in, Methods what the user can prove. Its Code is
// CodeSecondFactorRequired (see ErrorOf).
type SecondFactorRequired struct {
	Ticket  string
	Methods []string
}

func (e *SecondFactorRequired) Error() string {
	return "app: a second factor is required to complete the sign-in"
}

// errPendingGone is a ticket that names no pending sign-in: unknown,
// expired, used, or its account changed since.
var errPendingGone = Errorf(CodeUnauthenticated, "This sign-in has expired or was already completed; sign in again.")

// pendingData is what a pending sign-in keeps.
type pendingData struct {
	Version  int64 `json:"version"` // the account's, when the password was checked
	Remember bool  `json:"remember"`
}

// methods returns the second-factor methods u has, nil if none.
func (a *App) methods(ctx context.Context, u *users.User) ([]string, error) {
	if a.factors == nil {
		return nil, nil
	}
	all, err := a.factors.FactorSummaries(ctx, []string{u.ID})
	if err != nil {
		return nil, err
	}
	f := all[u.ID]
	var m []string
	if f.TOTP {
		m = append(m, MethodTOTP)
	}
	if f.Passkeys > 0 {
		m = append(m, MethodPasskey)
	}
	if m != nil && f.RecoveryCodes > 0 {
		m = append(m, MethodRecoveryCode)
	}
	return m, nil
}

// afterPassword is SignIn's step after a right password for u: it starts
// the session with start if u has no second factor, or if c carries a
// right code; else it begins a pending sign-in and returns
// *SecondFactorRequired.
func (a *App) afterPassword(ctx context.Context, u *users.User, c Credentials, client session.Client, start StartFunc) (*session.Session, error) {
	methods, err := a.methods(ctx, u)
	if err != nil {
		return nil, err
	}
	amr := []string{session.AMRPassword}
	switch {
	case methods == nil:
	case c.TOTP != "" || c.RecoveryCode != "":
		proven, err := a.verifySecondFactor(ctx, u, c.TOTP, c.RecoveryCode, client)
		if err != nil {
			return nil, err
		}
		amr = session.MergeAMR(amr, proven...)
	case !c.Pending:
		return nil, &SecondFactorRequired{Methods: methods}
	default:
		ticket, err := a.beginPending(ctx, u, c.Remember)
		if err != nil {
			return nil, err
		}
		return nil, &SecondFactorRequired{Ticket: ticket, Methods: methods}
	}
	return a.startSession(ctx, u, amr, c.Remember, client, start)
}

// beginPending stores a pending sign-in for u and returns its ticket.
func (a *App) beginPending(ctx context.Context, u *users.User, remember bool) (string, error) {
	data, err := json.Marshal(pendingData{Version: u.Version, Remember: remember})
	if err != nil {
		return "", err
	}
	var b [32]byte
	rand.Read(b[:])
	ticket := base64.RawURLEncoding.EncodeToString(b[:])
	err = a.factors.PutChallenge(ctx, &users.Challenge{
		ID: ticket, Kind: challengeSecondFactor, UserID: u.ID, Data: data,
		ExpiresAt: time.Now().Add(PendingSignInTTL),
	})
	return ticket, err
}

// PendingSignIn returns the user of the pending sign-in ticket names and
// the methods they can prove, or an *Error (CodeUnauthenticated) if there
// is none.
func (a *App) PendingSignIn(ctx context.Context, ticket string) (*users.User, []string, error) {
	u, _, err := a.pending(ctx, ticket)
	if err != nil {
		return nil, nil, err
	}
	methods, err := a.methods(ctx, u)
	return u, methods, err
}

// pending returns the user and data of the pending sign-in ticket names,
// as long as the account is as it was when the password was checked.
func (a *App) pending(ctx context.Context, ticket string) (*users.User, pendingData, error) {
	var d pendingData
	if a.factors == nil || len(ticket) != 43 {
		return nil, d, errPendingGone
	}
	ch, err := a.factors.Challenge(ctx, ticket, challengeSecondFactor)
	if errors.Is(err, users.ErrNotFound) {
		return nil, d, errPendingGone
	} else if err != nil {
		return nil, d, err
	}
	if err := json.Unmarshal(ch.Data, &d); err != nil {
		return nil, d, errPendingGone
	}
	u, err := a.accounts.Directory().ByID(ctx, ch.UserID)
	if errors.Is(err, users.ErrNotFound) {
		return nil, d, errPendingGone
	} else if err != nil {
		return nil, d, err
	}
	if u.Version != d.Version || u.Disabled {
		return nil, d, errPendingGone // changed since the password was checked
	}
	return u, d, nil
}

// CompleteSecondFactor completes the pending sign-in ticket names with a
// TOTP code or a recovery code (see verifySecondFactor: under the sign-in
// throttle, a code used once), sent from client, and starts the session
// with start, at AAL2. A wrong code leaves the pending sign-in for another
// try (the throttle bounds them); a right one uses it up, so that of two
// completions at once only one starts a session.
func (a *App) CompleteSecondFactor(ctx context.Context, ticket, totp, recoveryCode string, client session.Client, start StartFunc) (*users.User, *session.Session, error) {
	return a.completePending(ctx, ticket, client, start, func(u *users.User) ([]string, error) {
		return a.verifySecondFactor(ctx, u, totp, recoveryCode, client)
	})
}

// completePending completes the pending sign-in ticket names with the
// methods prove returns for its user, and starts the session.
func (a *App) completePending(ctx context.Context, ticket string, client session.Client, start StartFunc, prove func(*users.User) ([]string, error)) (*users.User, *session.Session, error) {
	u, d, err := a.pending(ctx, ticket)
	if err != nil {
		return nil, nil, err
	}
	proven, err := prove(u)
	if err != nil {
		return nil, nil, err
	}
	if _, err := a.factors.TakeChallenge(ctx, ticket, challengeSecondFactor); errors.Is(err, users.ErrNotFound) {
		return nil, nil, errPendingGone // completed at the same time
	} else if err != nil {
		return nil, nil, err
	}
	sess, err := a.startSession(ctx, u, session.MergeAMR([]string{session.AMRPassword}, proven...), d.Remember, client, start)
	if err != nil {
		return nil, nil, err
	}
	return u, sess, nil
}

// SecondFactorMethods returns the second-factor methods the actor's
// account has: nil if none, and the transport then leads the user to
// enrol one.
func (a *App) SecondFactorMethods(ctx context.Context, actor Actor) ([]string, error) {
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return nil, err
	}
	return a.methods(ctx, u)
}

// StepUp raises the actor's own session to AAL2 with a TOTP code or a
// recovery code (see verifySecondFactor), giving it a new token with
// rotate (see raise): what a route with an aal=2 policy asks of a session
// that began with a password alone.
func (a *App) StepUp(ctx context.Context, actor Actor, totp, recoveryCode string, rotate RotateFunc) (*session.Session, error) {
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return nil, err
	}
	proven, err := a.verifySecondFactor(ctx, u, totp, recoveryCode, actor.Client)
	if err != nil {
		return nil, err
	}
	return a.raise(ctx, actor, proven, rotate)
}
