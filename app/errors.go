package app

import (
	"errors"
	"fmt"
	"time"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// Code names a kind of failure a client may see. The transport maps each
// to its status (HTTP, exit code) in one table.
type Code string

// The codes. A code is stable: clients and scripts match on it.
const (
	CodeBadRequest          Code = "bad_request"
	CodeInvalid             Code = "invalid"
	CodeUnauthenticated     Code = "unauthenticated"
	CodeBadCredentials      Code = "bad_credentials"
	CodeWrongPassword       Code = "wrong_password"
	CodeWrongCode           Code = "wrong_code"
	CodeForbidden           Code = "forbidden"
	CodeCrossOrigin         Code = "cross_origin"
	CodeAccountDisabled     Code = "account_disabled"
	CodeNotFound            Code = "not_found"
	CodeMethodNotAllowed    Code = "method_not_allowed"
	CodeConflict            Code = "conflict"
	CodeLastAdmin           Code = "last_admin"
	CodeTooLarge            Code = "too_large"
	CodeUnsupportedMedia    Code = "unsupported_media"
	CodeRateLimited         Code = "rate_limited"
	CodeTooManySessions     Code = "too_many_sessions"
	CodeStoreUnavailable    Code = "store_unavailable"
	CodeBusy                Code = "busy"
	CodeInternal            Code = "internal"
	CodeUpstreamUnavailable Code = "upstream_unavailable"
	// CodeSecondFactorRequired: the password was right, or the session is
	// valid, but a second factor must be proven too.
	CodeSecondFactorRequired Code = "second_factor_required"
	// CodeReauthRequired: the session is valid, but the user proved who
	// they are too long ago for what they ask.
	CodeReauthRequired Code = "reauth_required"
)

// Error is a failure a client may see: a stable Code and a short Message
// that names no internal detail. Every other error is a technical failure
// (a store that did not answer), which the transport logs and answers
// without detail.
type Error struct {
	Code    Code
	Message string
	// RetryAfter, for CodeRateLimited, is how long the client must wait.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with code and the formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// The errors of the actions whose code and message never vary.
var (
	ErrWrongPassword = Errorf(CodeWrongPassword, "The current password is wrong.")
	// ErrWrongCode is a second-factor code (TOTP or recovery code) that
	// is wrong, malformed or already used; which is not told.
	ErrWrongCode    = Errorf(CodeWrongCode, "The code is wrong or was already used.")
	ErrSamePassword = Errorf(CodeInvalid, "The new password must differ from the current one.")
	ErrForbidden    = Errorf(CodeForbidden, "This needs the admin role.")
	errAccountRace  = Errorf(CodeConflict, "The account changed during sign-in; try again.")
)

// ErrorOf returns what a client may see of err: the *Error it is or wraps,
// or the Error that a known failure of package users or session stands
// for. It returns nil for a technical failure, which must not reach a
// client.
func ErrorOf(err error) *Error {
	var e *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return e
	case errors.As(err, new(*SecondFactorRequired)):
		return Errorf(CodeSecondFactorRequired, "The password is right; now prove your second factor.")
	case errors.Is(err, users.ErrBadCredentials):
		return Errorf(CodeBadCredentials, "Wrong username or password.")
	case errors.Is(err, users.ErrDisabled):
		return Errorf(CodeAccountDisabled, "This account is disabled.")
	case errors.Is(err, users.ErrExists):
		return Errorf(CodeConflict, "That username is taken.")
	case errors.Is(err, users.ErrNotFound):
		return Errorf(CodeNotFound, "No such user.")
	case errors.Is(err, users.ErrLastAdmin):
		return Errorf(CodeLastAdmin, "This is the last enabled admin: make another user an admin first.")
	case errors.Is(err, users.ErrConflict):
		return Errorf(CodeConflict, "The account changed at the same time; try again.")
	case errors.Is(err, users.ErrInvalid):
		return Errorf(CodeInvalid, "%s", invalidMessage(err))
	case errors.Is(err, users.ErrBusy):
		return Errorf(CodeBusy, "Too many sign-ins in progress; try again shortly.")
	case errors.Is(err, session.ErrNotFound):
		return Errorf(CodeNotFound, "No such session.")
	case errors.Is(err, session.ErrTooManySessions):
		return Errorf(CodeTooManySessions, "Too many active sessions; sign out elsewhere first.")
	case errors.Is(err, session.ErrCrossOrigin):
		return Errorf(CodeCrossOrigin, "This request was sent from another site, so it was refused. Nothing was changed.")
	case errors.Is(err, session.ErrConflict):
		return Errorf(CodeConflict, "The session changed concurrently; try again.")
	}
	return nil
}

// invalidMessage is the message of a users.ErrInvalid error without the
// package prefix, as a sentence.
func invalidMessage(err error) string {
	msg := err.Error()
	const prefix = "users: invalid: "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		msg = msg[len(prefix):]
	}
	if msg == "" {
		return "Invalid input."
	}
	if c := msg[0]; 'a' <= c && c <= 'z' {
		msg = string(c-'a'+'A') + msg[1:]
	}
	if msg[len(msg)-1] != '.' {
		msg += "."
	}
	return msg
}
