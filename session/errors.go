package session

import "errors"

var (
	// ErrNotFound means there is no live session for the token or ID:
	// unknown, malformed, expired, revoked or unreadable. It is a normal
	// outcome, not a failure.
	ErrNotFound = errors.New("session: not found")
	// ErrConflict means a compare-and-swap update lost to a concurrent
	// one: reload the session and try again.
	ErrConflict = errors.New("session: concurrent update")
	// ErrTooManySessions means the user holds the maximum number of
	// sessions and the limit rejects new ones.
	ErrTooManySessions = errors.New("session: too many sessions for user")
	// ErrDataTooLarge means application data exceeds Config.MaxDataSize.
	ErrDataTooLarge = errors.New("session: data too large")
	// ErrInvalidRecord is wrapped by stores that find a stored session
	// they cannot decode. The Manager treats such a session as not found
	// (an invalid session, not a server error).
	ErrInvalidRecord = errors.New("session: invalid stored session")
)
