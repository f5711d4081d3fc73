package session

import (
	"context"
	"time"
)

// EventType names a session lifecycle event.
type EventType string

// The lifecycle events a Manager reports.
const (
	EventCreated        EventType = "session.created"
	EventRotated        EventType = "session.rotated"
	EventExtended       EventType = "session.extended"
	EventRevoked        EventType = "session.revoked"
	EventExpired        EventType = "session.expired"
	EventTheftSuspected EventType = "session.theft_suspected"
	EventInvalid        EventType = "session.invalid"
)

// Reasons the Manager gives for the revocations it makes itself. Callers
// of Revoke and RevokeUser pass their own.
const (
	ReasonLogout     = "logout"
	ReasonLimit      = "session limit"
	ReasonTheft      = "rotated token reused"
	ReasonLoginAgain = "replaced by a new login"
)

// Event is one session lifecycle event, for an audit log. It carries the
// public session ID, never a token.
type Event struct {
	Type      EventType
	Time      time.Time
	SessionID string
	UserID    string
	// Actor is who caused the event: a user ID, "system", or whatever
	// the caller of Revoke named.
	Actor string
	// Reason says why, for revocations and theft signals.
	Reason    string
	IP        string
	UserAgent string
}

// EventSink receives lifecycle events. Record is called synchronously on
// the request path after the store change it reports has been made; a
// slow sink slows requests, so queue if needed.
type EventSink interface {
	Record(ctx context.Context, e Event)
}

// EventFunc adapts a function to EventSink.
type EventFunc func(ctx context.Context, e Event)

// Record calls f(ctx, e).
func (f EventFunc) Record(ctx context.Context, e Event) { f(ctx, e) }
