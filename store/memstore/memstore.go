// Package memstore keeps sessions in the memory of one process: for tests,
// examples and single-process apps that accept losing every session on
// restart.
//
//	m, err := session.New(memstore.New(), session.Config{})
//
// Each Store is separate: nothing is shared between processes, or between
// Stores in one process. Reads refuse expired sessions by the wall clock;
// DeleteExpired (session.Sweeper), which the Manager's Sweep calls, frees
// their memory. A Store returns copies, so a caller never shares a
// Session with it.
package memstore

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/sessiond/sessiond/session"
)

var (
	_ session.Store   = (*Store)(nil)
	_ session.Sweeper = (*Store)(nil)
)

// Store is an in-memory session.Store. The zero value is not usable; call
// New.
type Store struct {
	mu     sync.RWMutex
	byID   map[string]*session.Session
	byHash map[session.Hash]*session.Session // by current and previous token hash
	byUser map[string]map[string]struct{}
	now    func() time.Time
}

// New returns an empty Store.
func New() *Store {
	return &Store{
		byID:   map[string]*session.Session{},
		byHash: map[session.Hash]*session.Session{},
		byUser: map[string]map[string]struct{}{},
		now:    time.Now,
	}
}

// Create implements session.Store.
func (st *Store) Create(_ context.Context, s *session.Session, lim session.Limit) ([]string, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var evicted []string
	if lim.Max > 0 {
		live := st.listLocked(s.UserID)
		if n := len(live) - lim.Max + 1; n > 0 {
			if lim.Reject {
				return nil, session.ErrTooManySessions
			}
			for _, old := range live[:n] {
				st.deleteLocked(old.ID)
				evicted = append(evicted, old.ID)
			}
		}
	}
	st.putLocked(s.Clone())
	return evicted, nil
}

// ByHash implements session.Store.
func (st *Store) ByHash(_ context.Context, h session.Hash) (*session.Session, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	s, ok := st.byHash[h]
	if !ok || s.Expired(st.now()) {
		return nil, session.ErrNotFound
	}
	return s.Clone(), nil
}

// ByID implements session.Store.
func (st *Store) ByID(_ context.Context, id string) (*session.Session, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.liveLocked(id)
}

// Update implements session.Store.
func (st *Store) Update(_ context.Context, s *session.Session) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	cur, ok := st.byID[s.ID]
	if !ok || cur.Expired(st.now()) {
		return session.ErrNotFound
	}
	if cur.Version != s.Version {
		return session.ErrConflict
	}
	next := s.Clone()
	next.Version++
	if cur.LastSeenAt.After(next.LastSeenAt) {
		next.LastSeenAt, next.LastIP, next.LastUserAgent = cur.LastSeenAt, cur.LastIP, cur.LastUserAgent
	}
	if cur.IdleDeadline.After(next.IdleDeadline) {
		next.IdleDeadline = cur.IdleDeadline
	}
	st.deleteLocked(s.ID)
	st.putLocked(next)
	s.Version = next.Version
	return nil
}

// Touch implements session.Store.
func (st *Store) Touch(_ context.Context, id string, t session.TouchInfo) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	cur, ok := st.byID[id]
	if !ok || cur.Expired(st.now()) {
		return session.ErrNotFound
	}
	if t.At.After(cur.LastSeenAt) {
		cur.LastSeenAt, cur.LastIP, cur.LastUserAgent = t.At, t.IP, t.UserAgent
	}
	if t.IdleDeadline.After(cur.IdleDeadline) {
		cur.IdleDeadline = t.IdleDeadline
	}
	return nil
}

// Delete implements session.Store.
func (st *Store) Delete(_ context.Context, id string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.byID[id]; !ok {
		return session.ErrNotFound
	}
	st.deleteLocked(id)
	return nil
}

// ListByUser implements session.Store.
func (st *Store) ListByUser(_ context.Context, userID string) ([]*session.Session, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	live := st.listLocked(userID)
	for i, s := range live {
		live[i] = s.Clone()
	}
	return live, nil
}

// DeleteByUser implements session.Store.
func (st *Store) DeleteByUser(_ context.Context, userID, except string) ([]string, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var ids []string
	for id := range st.byUser[userID] {
		if id != except {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		st.deleteLocked(id)
	}
	return ids, nil
}

// DeleteExpired implements session.Sweeper.
func (st *Store) DeleteExpired(_ context.Context, now time.Time, limit int) ([]*session.Session, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var gone []*session.Session
	for id, s := range st.byID {
		if len(gone) == limit {
			break
		}
		if s.Expired(now) {
			gone = append(gone, s)
			st.deleteLocked(id)
		}
	}
	return gone, nil
}

// liveLocked returns a copy of session id if it exists and has not expired.
func (st *Store) liveLocked(id string) (*session.Session, error) {
	s, ok := st.byID[id]
	if !ok || s.Expired(st.now()) {
		return nil, session.ErrNotFound
	}
	return s.Clone(), nil
}

// listLocked returns the user's live sessions, oldest first (not copies).
func (st *Store) listLocked(userID string) []*session.Session {
	now := st.now()
	var live []*session.Session
	for id := range st.byUser[userID] {
		if s := st.byID[id]; !s.Expired(now) {
			live = append(live, s)
		}
	}
	slices.SortFunc(live, func(a, b *session.Session) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return live
}

func (st *Store) putLocked(s *session.Session) {
	st.byID[s.ID] = s
	st.byHash[s.TokenHash] = s
	if !s.PrevTokenHash.IsZero() {
		st.byHash[s.PrevTokenHash] = s
	}
	if st.byUser[s.UserID] == nil {
		st.byUser[s.UserID] = map[string]struct{}{}
	}
	st.byUser[s.UserID][s.ID] = struct{}{}
}

func (st *Store) deleteLocked(id string) {
	s, ok := st.byID[id]
	if !ok {
		return
	}
	delete(st.byID, id)
	delete(st.byHash, s.TokenHash)
	delete(st.byHash, s.PrevTokenHash)
	delete(st.byUser[s.UserID], id)
	if len(st.byUser[s.UserID]) == 0 {
		delete(st.byUser, s.UserID)
	}
}
