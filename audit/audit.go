// Package audit defines sessiond's audit log: every session and account
// event, with who caused it and why, kept and queryable per user.
//
// A Log appends events and answers queries newest first, a page at a time
// (Filter.Before); a Pruner deletes events older than a retention period.
// users/sqliteusers and users/pgusers implement both, beside the accounts,
// and pass the conformance suite in users/directorytest. An Event names a
// session by its public ID and has no field for a token or a password;
// it does hold IP addresses and user agents, which are personal data.
package audit

import (
	"context"
	"time"
)

// Event is one audit record. It names sessions by their public ID and never
// holds a token or a password.
type Event struct {
	// ID orders events; the log assigns it.
	ID   int64     `json:"id"`
	Time time.Time `json:"time"`
	// Type is a session.EventType ("session.created", ...) or one of the
	// account events below.
	Type      string `json:"type"`
	UserID    string `json:"user_id,omitempty"`
	Username  string `json:"username,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	// Actor is who caused the event: a user ID, "system", or "cli".
	Actor     string `json:"actor,omitempty"`
	Reason    string `json:"reason,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// The account event types (Event.Type). The session event types are
// session.EventType values ("session.created", ...). Types of one family
// share the prefix up to the first ".", which Filter.Type can select.
const (
	LoginSucceeded = "login.succeeded"
	LoginFailed    = "login.failed"
	// Reauthenticated: a signed-in user proved who they are again (a
	// password, a second factor); Reason lists the methods proven.
	Reauthenticated = "login.reauthenticated"
	PasswordChanged = "password.changed" // by the user
	PasswordReset   = "password.reset"   // by an admin or the command line
	RolesChanged    = "roles.changed"
	UserCreated     = "user.created"
	UserDisabled    = "user.disabled"
	UserEnabled     = "user.enabled"
	UserDeleted     = "user.deleted"

	// Second factors: enrolments by the user, recovery codes generated
	// (a set, which voids the previous one) and used at sign-in, and an
	// admin's reset of every factor.
	TOTPEnabled            = "totp.enabled"
	TOTPDisabled           = "totp.disabled"
	RecoveryCodesGenerated = "recovery_codes.generated"
	RecoveryCodeUsed       = "recovery_codes.used"
	SecondFactorsReset     = "second_factors.reset"
	PasskeyAdded           = "passkey.added"
	PasskeyRemoved         = "passkey.removed"

	// WebhookRetried: an admin made a webhook's dead letters due again;
	// Reason names the hook and how many.
	WebhookRetried = "webhooks.retried"
)

// AccountTypes lists the account event types, in the order a person would
// look for them.
var AccountTypes = []string{LoginSucceeded, LoginFailed, Reauthenticated, PasswordChanged, PasswordReset, RolesChanged, UserCreated, UserDisabled, UserEnabled, UserDeleted,
	TOTPEnabled, TOTPDisabled, RecoveryCodesGenerated, RecoveryCodeUsed, PasskeyAdded, PasskeyRemoved, SecondFactorsReset, WebhookRetried}

// The reasons of LoginFailed events.
const (
	ReasonBadCredentials = "bad_credentials"
	ReasonDisabled       = "disabled"
	ReasonRateLimited    = "rate_limited"
	ReasonBusy           = "busy"
	// ReasonBadPasskey is a passkey answer that does not verify;
	// ReasonClonedAuthenticator a passkey bound to one authenticator
	// whose signature count went backwards: a copy of its key.
	ReasonBadPasskey          = "bad_passkey"
	ReasonClonedAuthenticator = "cloned_authenticator"
)

// Filter selects events for Query. Zero fields select everything.
type Filter struct {
	UserID string
	// Type selects one event type, or with a trailing "." a family
	// ("session." selects every session event).
	Type string
	// Before selects events with ID below it, for paging back in time.
	Before int64
	// Limit caps the number of events returned; 0 (or less) means
	// DefaultLimit, and at most MaxLimit are returned.
	Limit int
}

// The bounds on Filter.Limit.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// EffectiveLimit is the number of events f asks for, within the bounds.
func (f Filter) EffectiveLimit() int {
	switch {
	case f.Limit <= 0:
		return DefaultLimit
	case f.Limit > MaxLimit:
		return MaxLimit
	}
	return f.Limit
}

// Log stores audit events.
type Log interface {
	// Append stores e, assigning its ID.
	Append(ctx context.Context, e *Event) error
	// Query returns the events f selects, newest first.
	Query(ctx context.Context, f Filter) ([]Event, error)
}

// Pruner is implemented by a Log that can delete old events, for a
// retention period: sessiond's periodic sweep calls DeleteBefore with the
// present less --audit-retention.
type Pruner interface {
	// DeleteBefore deletes up to limit of the events whose Time is before
	// t, oldest first, and returns how many it deleted; a limit of 0 or
	// less deletes none. Events with the zero Time are kept: their age is
	// unknown. Callers delete in batches, each of limit events at most,
	// so that no one call holds up other writers for long. Several
	// callers, through one handle or several, may run it at once: each
	// event is deleted, and counted, by one of them.
	DeleteBefore(ctx context.Context, t time.Time, limit int) (int, error)
}
