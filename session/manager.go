package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// A Manager creates, validates, rotates and ends sessions in a Store,
// following its Config. It is safe for concurrent use, and any number of
// Managers (in any number of processes) may share one Store.
type Manager struct {
	store Store
	cfg   Config
	log   *slog.Logger
}

// New returns a Manager for store with policy cfg. It fails if cfg does
// not pass Validate.
func New(store Store, cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{store: store, cfg: cfg, log: log}, nil
}

// Config returns the Manager's policy with every default filled in.
func (m *Manager) Config() Config { return m.cfg }

// Login describes a user who has just proved who they are.
type Login struct {
	// UserID identifies the user; it must not be empty.
	UserID string
	// Roles are the user's roles, kept with the session.
	Roles []string
	// AMR lists how the user proved who they are (RFC 8176 values, see
	// MergeAMR); it is kept with the session and sets its AAL.
	AMR []string
	// Remember opts in to a long-lived "remember me" session.
	Remember bool
	// Client describes where the login came from.
	Client Client
	// Confirm, if not nil, is called once the session is stored and before
	// it is handed out. If it fails, the session is deleted and Create
	// returns its error. Use it to check, after the session exists, that
	// the account did not change while the login was checking it (a
	// disable, a role or password change): a change made before Confirm
	// reads the account is seen by it, and one made after it ends the
	// user's sessions, this one included, so no session outlives it.
	Confirm func(ctx context.Context, s *Session) error
}

// Client describes the client making a request, for the session's device
// metadata and the audit log.
type Client struct {
	IP        string
	UserAgent string
}

// Actor names who caused an event: a user ID, or this, for the Manager's
// own decisions.
const ActorSystem = "system"

// Create starts a session for l and returns it with its token. The token
// is always fresh from crypto/rand: a Manager never adopts a token a client
// chose. If the user is at Config.MaxSessionsPerUser, the oldest session
// ends to make room, or Create fails with ErrTooManySessions if
// Config.RejectAtLimit is set.
//
// The token is the only copy of the credential: hand it to the client (see
// Manager.SetCookie) and do not log or store it.
func (m *Manager) Create(ctx context.Context, l Login) (*Session, string, error) {
	if l.UserID == "" {
		return nil, "", errors.New("session: Create needs a UserID")
	}
	now := m.cfg.Now()
	idle, absolute := m.cfg.IdleTimeout, m.cfg.AbsoluteTimeout
	if l.Remember {
		idle, absolute = m.cfg.RememberMeIdleTimeout, m.cfg.RememberMeTimeout
	}
	token, hash := newToken()
	s := &Session{
		ID:               newID(),
		TokenHash:        hash,
		UserID:           l.UserID,
		Roles:            append([]string(nil), l.Roles...),
		AMR:              MergeAMR(nil, l.AMR...),
		CreatedAt:        now,
		AuthenticatedAt:  now,
		RotatedAt:        now,
		LastSeenAt:       now,
		IdleDeadline:     now.Add(idle),
		AbsoluteDeadline: now.Add(absolute),
		Remember:         l.Remember,
		CreatedIP:        l.Client.IP,
		CreatedUserAgent: l.Client.UserAgent,
		LastIP:           l.Client.IP,
		LastUserAgent:    l.Client.UserAgent,
		Version:          1,
	}
	lim := Limit{Max: max(m.cfg.MaxSessionsPerUser, 0), Reject: m.cfg.RejectAtLimit}
	evicted, err := m.store.Create(ctx, s, lim)
	if err != nil {
		if !errors.Is(err, ErrTooManySessions) {
			m.storeFailed(ctx, "create", err, "user_id", l.UserID)
		}
		return nil, "", err
	}
	for _, id := range evicted {
		m.emit(ctx, Event{Type: EventRevoked, SessionID: id, UserID: l.UserID, Actor: ActorSystem, Reason: ReasonLimit})
	}
	if l.Confirm != nil {
		if err := l.Confirm(ctx, s); err != nil {
			// The token never leaves Create, so a session whose
			// delete fails here is one nobody can present.
			if derr := m.store.Delete(ctx, s.ID); derr != nil && !errors.Is(derr, ErrNotFound) {
				m.storeFailed(ctx, "delete", derr, "session_id", s.ID)
				return nil, "", errors.Join(err, derr)
			}
			return nil, "", err
		}
	}
	m.emit(ctx, Event{Type: EventCreated, SessionID: s.ID, UserID: s.UserID, Actor: s.UserID, IP: l.Client.IP, UserAgent: l.Client.UserAgent})
	return s, token, nil
}

// Validate returns the live session that token names, and slides its idle
// deadline (writing to the store at most once per Config.TouchInterval).
// It returns ErrNotFound for a malformed, unknown, expired or revoked token,
// without a store lookup for a malformed one, and another error only when
// the store fails: callers must then deny access, not grant it.
//
// A token replaced by periodic rotation keeps working for
// Config.RotationGrace; presented after that, it is taken as stolen and the
// session is revoked.
func (m *Manager) Validate(ctx context.Context, token string, c Client) (*Session, error) {
	s, _, err := m.validate(ctx, token, c)
	return s, err
}

// validate is Validate that also reports whether token is the session's
// current one (not a replaced one within its grace window).
func (m *Manager) validate(ctx context.Context, token string, c Client) (*Session, bool, error) {
	h, err := ParseToken(token)
	if err != nil {
		return nil, false, ErrNotFound
	}
	return m.validateHash(ctx, h, func() Client { return c })
}

// validateHash is validate for a token already parsed into its hash.
// client is called only when the request's client is needed: to record
// it, or to report it.
func (m *Manager) validateHash(ctx context.Context, h Hash, client func() Client) (*Session, bool, error) {
	s, err := m.store.ByHash(ctx, h)
	switch {
	case errors.Is(err, ErrInvalidRecord):
		c := client()
		m.log.WarnContext(ctx, "unreadable session treated as invalid", "err", err)
		m.emit(ctx, Event{Type: EventInvalid, Actor: ActorSystem, Reason: err.Error(), IP: c.IP, UserAgent: c.UserAgent})
		return nil, false, ErrNotFound
	case err != nil:
		if !errors.Is(err, ErrNotFound) {
			m.storeFailed(ctx, "validate", err)
		}
		return nil, false, err
	}
	now := m.cfg.Now()
	switch {
	case s.Expired(now):
		m.end(ctx, s, EventExpired, ActorSystem, "")
		return nil, false, ErrNotFound
	case len(s.Data) > 0 && !json.Valid(s.Data):
		m.end(ctx, s, EventInvalid, ActorSystem, "stored data is not valid JSON")
		return nil, false, ErrNotFound
	case h != s.TokenHash && !now.Before(s.RotatedAt.Add(m.cfg.RotationGrace)):
		c := client()
		m.log.WarnContext(ctx, "replaced session token reused after its grace window: revoking the session", "session_id", s.ID, "user_id", s.UserID, "ip", c.IP)
		m.emit(ctx, Event{Type: EventTheftSuspected, SessionID: s.ID, UserID: s.UserID, Actor: ActorSystem, Reason: ReasonTheft, IP: c.IP, UserAgent: c.UserAgent})
		m.end(ctx, s, EventRevoked, ActorSystem, ReasonTheft)
		return nil, false, ErrNotFound
	}
	if now.Sub(s.LastSeenAt) >= m.cfg.TouchInterval {
		m.touch(ctx, s, now, client())
	}
	return s, h == s.TokenHash, nil
}

// touch slides s's idle deadline in the store and in s. A failed write is
// logged, not returned: the session was read and is valid; it only keeps
// its old deadline.
func (m *Manager) touch(ctx context.Context, s *Session, now time.Time, c Client) {
	idle := m.cfg.IdleTimeout
	if s.Remember {
		idle = m.cfg.RememberMeIdleTimeout
	}
	t := TouchInfo{At: now, IP: c.IP, UserAgent: c.UserAgent, IdleDeadline: now.Add(idle)}
	if t.IdleDeadline.After(s.AbsoluteDeadline) {
		t.IdleDeadline = s.AbsoluteDeadline
	}
	if err := m.store.Touch(ctx, s.ID, t); err != nil {
		m.log.WarnContext(ctx, "session touch failed", "session_id", s.ID, "err", err)
		return
	}
	s.LastSeenAt, s.LastIP, s.LastUserAgent, s.IdleDeadline = t.At, t.IP, t.UserAgent, t.IdleDeadline
	m.emit(ctx, Event{Type: EventExtended, SessionID: s.ID, UserID: s.UserID, Actor: s.UserID, IP: c.IP, UserAgent: c.UserAgent})
}

// end deletes s and reports why with an event of type typ.
func (m *Manager) end(ctx context.Context, s *Session, typ EventType, actor, reason string) {
	if err := m.store.Delete(ctx, s.ID); err != nil && !errors.Is(err, ErrNotFound) {
		m.storeFailed(ctx, "delete", err, "session_id", s.ID)
		return
	}
	m.emit(ctx, Event{Type: typ, SessionID: s.ID, UserID: s.UserID, Actor: actor, Reason: reason})
}

// Get returns the live session with public ID id, or ErrNotFound. The ID
// is not a credential: use Get to show or manage a session, never to
// authenticate a request.
func (m *Manager) Get(ctx context.Context, id string) (*Session, error) {
	s, err := m.store.ByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if s.Expired(m.cfg.Now()) {
		return nil, ErrNotFound
	}
	return s, nil
}

// List returns the user's live sessions, oldest first, with their device
// metadata (IP, user agent, created, last seen).
func (m *Manager) List(ctx context.Context, userID string) ([]*Session, error) {
	all, err := m.store.ListByUser(ctx, userID)
	if err != nil {
		return nil, err
	}
	now := m.cfg.Now()
	live := all[:0]
	for _, s := range all {
		if !s.Expired(now) {
			live = append(live, s)
		}
	}
	return live, nil
}

// Change is a privilege change applied by Rotate.
type Change struct {
	// Roles, if not nil, replace the session's roles.
	Roles []string
	// Reauthenticated records that the user just proved who they are
	// again (e.g. changed their password): AuthenticatedAt becomes now.
	Reauthenticated bool
	// AMR, if not empty, lists methods the user just proved (a second
	// factor): they are merged into the session's AMR with MergeAMR, and
	// AuthenticatedAt becomes now.
	AMR []string
}

// Rotate gives session id a new token, applies ch, and returns the token.
// The old token stops working at once: call Rotate on every privilege
// change (password change, role change, step-up), so that a token captured
// before the change is worthless after it (OWASP Session Management Cheat
// Sheet, "Renew the Session ID After Any Privilege Level Change"). A
// concurrent update is retried, never lost.
func (m *Manager) Rotate(ctx context.Context, id string, ch Change) (*Session, string, error) {
	token, hash := newToken()
	s, err := m.update(ctx, id, func(s *Session, now time.Time) {
		s.TokenHash, s.PrevTokenHash, s.RotatedAt = hash, Hash{}, now
		if ch.Roles != nil {
			s.Roles = append([]string(nil), ch.Roles...)
		}
		if ch.Reauthenticated || len(ch.AMR) > 0 {
			s.AuthenticatedAt = now
		}
		if len(ch.AMR) > 0 {
			s.AMR = MergeAMR(s.AMR, ch.AMR...)
		}
	})
	if err != nil {
		return nil, "", err
	}
	m.emit(ctx, Event{Type: EventRotated, SessionID: s.ID, UserID: s.UserID, Actor: s.UserID, Reason: "privilege change"})
	return s, token, nil
}

// rotateIfDue gives s a new token if periodic rotation is on and its token
// is older than Config.RotationInterval, keeping the old one valid for the
// grace window. It returns the new token, or "" if none was issued (not
// due, or a concurrent request rotated first).
func (m *Manager) rotateIfDue(ctx context.Context, s *Session) string {
	if m.cfg.RotationInterval <= 0 {
		return ""
	}
	now := m.cfg.Now()
	if now.Sub(s.RotatedAt) < m.cfg.RotationInterval {
		return ""
	}
	token, hash := newToken()
	next := s.Clone()
	next.PrevTokenHash, next.TokenHash, next.RotatedAt = s.TokenHash, hash, now
	if err := m.store.Update(ctx, next); err != nil {
		if !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound) {
			m.log.WarnContext(ctx, "periodic rotation failed", "session_id", s.ID, "err", err)
		}
		return ""
	}
	*s = *next
	m.emit(ctx, Event{Type: EventRotated, SessionID: s.ID, UserID: s.UserID, Actor: ActorSystem, Reason: "periodic"})
	return token
}

// update applies fn to the stored session id and writes it back with
// compare-and-swap, reloading and retrying when a concurrent update wins.
func (m *Manager) update(ctx context.Context, id string, fn func(s *Session, now time.Time)) (*Session, error) {
	for range 10 {
		s, err := m.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		fn(s, m.cfg.Now())
		switch err := m.store.Update(ctx, s); {
		case err == nil:
			return s, nil
		case !errors.Is(err, ErrConflict):
			return nil, err
		}
	}
	return nil, ErrConflict
}

// SetData stores v, encoded as JSON, as session id's application data,
// replacing what was there. It fails with ErrDataTooLarge above
// Config.MaxDataSize.
func (m *Manager) SetData(ctx context.Context, id string, v any) (*Session, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("session: encoding data: %w", err)
	}
	if len(b) > m.cfg.MaxDataSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrDataTooLarge, len(b), m.cfg.MaxDataSize)
	}
	return m.update(ctx, id, func(s *Session, _ time.Time) { s.Data = b })
}

// DataAs decodes s's application data into a T. Empty data gives T's zero
// value.
func DataAs[T any](s *Session) (T, error) {
	var v T
	if len(s.Data) == 0 {
		return v, nil
	}
	if err := json.Unmarshal(s.Data, &v); err != nil {
		return v, fmt.Errorf("session: decoding data: %w", err)
	}
	return v, nil
}

// Revoke ends session id at once, on every instance sharing the store.
// actor and reason go to the audit event. It returns ErrNotFound if there
// was no such session.
func (m *Manager) Revoke(ctx context.Context, id, actor, reason string) error {
	s, err := m.store.ByID(ctx, id)
	if err != nil {
		return err
	}
	if err := m.store.Delete(ctx, id); err != nil {
		return err
	}
	m.emit(ctx, Event{Type: EventRevoked, SessionID: id, UserID: s.UserID, Actor: actor, Reason: reason})
	return nil
}

// RevokeUser ends all of the user's sessions except the one with ID except
// (pass "" to end them all: "log out everywhere") and returns how many it
// ended.
func (m *Manager) RevokeUser(ctx context.Context, userID, except, actor, reason string) (int, error) {
	ids, err := m.store.DeleteByUser(ctx, userID, except)
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		m.emit(ctx, Event{Type: EventRevoked, SessionID: id, UserID: userID, Actor: actor, Reason: reason})
	}
	return len(ids), nil
}

// Sweep deletes up to limit expired sessions, if the store needs sweeping
// (implements Sweeper), and reports each as expired. Validation never
// depends on it: expired sessions are refused whether swept or not. It
// returns how many it deleted.
func (m *Manager) Sweep(ctx context.Context, limit int) (int, error) {
	sw, ok := m.store.(Sweeper)
	if !ok {
		return 0, nil
	}
	gone, err := sw.DeleteExpired(ctx, m.cfg.Now(), limit)
	for _, s := range gone {
		m.emit(ctx, Event{Type: EventExpired, SessionID: s.ID, UserID: s.UserID, Actor: ActorSystem})
	}
	return len(gone), err
}

// storeFailed logs a store error: at level error, unless the request's
// context has ended (the client went away, or its deadline passed), which
// says nothing about the store and is logged at level debug.
func (m *Manager) storeFailed(ctx context.Context, op string, err error, attrs ...any) {
	level := slog.LevelError
	if ctx.Err() != nil {
		level = slog.LevelDebug
	}
	m.log.Log(ctx, level, "session store failed", append([]any{"op", op, "err", err}, attrs...)...)
}

// emit stamps e and hands it to the event sink, if any.
func (m *Manager) emit(ctx context.Context, e Event) {
	if m.cfg.Events == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = m.cfg.Now()
	}
	m.cfg.Events.Record(ctx, e)
}
