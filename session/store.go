package session

import (
	"context"
	"slices"
	"time"
)

// Session is one server-side session: the record a Store keeps and the value
// the Manager hands to callers. It never holds the token itself, only its
// Hash.
type Session struct {
	// ID is the public session ID: random, unique, safe to show in lists,
	// logs and URLs. It is not a credential.
	ID string
	// TokenHash is SHA-256 of the current token.
	TokenHash Hash
	// PrevTokenHash is SHA-256 of the token this one replaced by periodic
	// rotation, zero if none. It is accepted until RotatedAt plus the
	// grace window; presented later, it signals theft.
	PrevTokenHash Hash
	// UserID identifies the authenticated user.
	UserID string
	// Roles are the user's roles when the session was authenticated. A
	// change of roles is a privilege change and calls for a new token.
	Roles []string

	// CreatedAt is when the session was created.
	CreatedAt time.Time
	// AuthenticatedAt is when the user last proved who they are (login,
	// second factor, re-authentication, password change).
	AuthenticatedAt time.Time
	// AMR lists how the user proved who they are, as RFC 8176
	// authentication method references (AMRPassword, AMROTP, ...), each
	// once, in the order proven. AAL derives the assurance level from it.
	AMR []string
	// RotatedAt is when TokenHash was issued.
	RotatedAt time.Time
	// LastSeenAt is when the session was last used, to within the
	// Manager's touch interval.
	LastSeenAt time.Time
	// IdleDeadline is when the session ends unless used again.
	IdleDeadline time.Time
	// AbsoluteDeadline is when the session ends, however active.
	AbsoluteDeadline time.Time
	// Remember is true for an opt-in "remember me" session, whose cookie
	// outlives the browser and whose timeouts are the remember-me ones.
	Remember bool

	// CreatedIP and CreatedUserAgent describe the client that logged in.
	CreatedIP, CreatedUserAgent string
	// LastIP and LastUserAgent describe the client that last used the
	// session (updated with LastSeenAt).
	LastIP, LastUserAgent string

	// Data is application data, a JSON document of at most
	// Config.MaxDataSize bytes, empty if none. Read and write it with
	// DataAs and Manager.SetData.
	Data []byte
	// Version counts updates; Store.Update succeeds only when it matches
	// the stored one (compare-and-swap).
	Version int64
}

// ExpiresAt is when the session ends if not used again: the earlier of
// its idle and absolute deadlines.
func (s *Session) ExpiresAt() time.Time {
	if s.IdleDeadline.Before(s.AbsoluteDeadline) {
		return s.IdleDeadline
	}
	return s.AbsoluteDeadline
}

// Expired reports whether the session has ended by time at now.
func (s *Session) Expired(now time.Time) bool { return !now.Before(s.ExpiresAt()) }

// AAL is the session's authenticator assurance level (NIST SP 800-63B):
// 2 when the user proved who they are with more than one factor, or with
// one multi-factor authenticator (AMR holds AMRMultiFactor), 1 otherwise.
func (s *Session) AAL() int {
	if slices.Contains(s.AMR, AMRMultiFactor) {
		return 2
	}
	return 1
}

// Clone returns a deep copy of s.
func (s *Session) Clone() *Session {
	c := *s
	c.Roles = append([]string(nil), s.Roles...)
	c.AMR = append([]string(nil), s.AMR...)
	c.Data = append([]byte(nil), s.Data...)
	return &c
}

// Limit bounds the number of live sessions one user may hold, enforced by
// Store.Create atomically with the insert.
type Limit struct {
	// Max is the most live sessions a user may hold; 0 means no limit.
	Max int
	// Reject makes Create fail with ErrTooManySessions at the limit; by
	// default the oldest sessions (by CreatedAt) are deleted to make room.
	Reject bool
}

// Store keeps sessions. Implementations must be safe for concurrent use,
// by several processes where the backend is shared, and must pass
// storetest.Run.
//
// Expired sessions (Session.Expired at the store's clock) are never
// returned, whatever a sweeper has done: they count as not found. A
// backend that fails returns an error other than ErrNotFound, and callers
// treat it as "cannot tell", never as "valid".
type Store interface {
	// Create inserts s (s.Version is 1). When lim.Max > 0 and the user
	// already holds lim.Max live sessions, it deletes the oldest ones and
	// returns their IDs, or with lim.Reject returns ErrTooManySessions;
	// the count and the insert are one atomic step.
	Create(ctx context.Context, s *Session, lim Limit) (evicted []string, err error)
	// ByHash returns the live session whose TokenHash or PrevTokenHash is
	// h, or ErrNotFound.
	ByHash(ctx context.Context, h Hash) (*Session, error)
	// ByID returns the live session with the public ID id, or ErrNotFound.
	ByID(ctx context.Context, id string) (*Session, error)
	// Update replaces the stored session s.ID with s if the stored Version
	// equals s.Version, and then increments s.Version. It returns
	// ErrConflict if the versions differ and ErrNotFound if the session is
	// gone. LastSeenAt, LastIP, LastUserAgent and IdleDeadline never move
	// backwards: a concurrent Touch is not lost.
	Update(ctx context.Context, s *Session) error
	// Touch records use of session id: it sets LastSeenAt, LastIP and
	// LastUserAgent from t and IdleDeadline to t.IdleDeadline, only where
	// that moves them forward, without changing Version. It returns
	// ErrNotFound if the session is gone.
	Touch(ctx context.Context, id string, t TouchInfo) error
	// Delete removes session id. It returns ErrNotFound if there was none.
	Delete(ctx context.Context, id string) error
	// ListByUser returns the user's live sessions, oldest first.
	ListByUser(ctx context.Context, userID string) ([]*Session, error)
	// DeleteByUser removes the user's sessions except the one with ID
	// except (none if empty) and returns the IDs removed.
	DeleteByUser(ctx context.Context, userID, except string) ([]string, error)
}

// TouchInfo is what Store.Touch records about one use of a session.
type TouchInfo struct {
	At           time.Time
	IP           string
	UserAgent    string
	IdleDeadline time.Time
}

// Sweeper is implemented by stores whose backend does not expire data by
// itself. The Manager calls it periodically (see Manager.Sweep).
type Sweeper interface {
	// DeleteExpired removes up to limit sessions that expired before now
	// and returns them, so that their end can be reported.
	DeleteExpired(ctx context.Context, now time.Time, limit int) ([]*Session, error)
}
