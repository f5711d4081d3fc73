package sqlitestore

import (
	"crypto/rand"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// cacheSession returns a live session for the cache tests.
func cacheSession(t *testing.T, st *Store, user string) *session.Session {
	t.Helper()
	m, err := session.New(st, session.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := m.Create(ctx, session.Login{UserID: user})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCacheSeesEveryKindOfEnd: two Stores on one file (as two processes
// would be), one caching, the other ending or changing sessions, 200 times.
func TestCacheSeesEveryKindOfEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	a, b := openAt(t, path), openAt(t, path)
	for name, end := range map[string]func(s *session.Session) error{
		"delete":         func(s *session.Session) error { return b.Delete(ctx, s.ID) },
		"delete by user": func(s *session.Session) error { _, err := b.DeleteByUser(ctx, s.UserID, ""); return err },
		"rotation": func(s *session.Session) error {
			s.TokenHash = randomHash()
			return b.Update(ctx, s)
		},
		"eviction": func(s *session.Session) error {
			n := s.Clone()
			n.ID, n.TokenHash, n.CreatedAt = "new-"+s.ID, randomHash(), s.CreatedAt.Add(time.Second)
			_, err := b.Create(ctx, n, session.Limit{Max: 1})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			for i := range 50 {
				s := cacheSession(t, b, name)
				h := s.TokenHash
				a.ByHash(ctx, h)
				if _, err := a.ByHash(ctx, h); err != nil {
					t.Fatal(err)
				}
				if err := end(s); err != nil {
					t.Fatalf("round %d: %v", i, err)
				}
				if got, err := a.ByHash(ctx, h); !errors.Is(err, session.ErrNotFound) {
					t.Fatalf("round %d: after %s on another handle, ByHash = %v, %v: served from a stale cache", i, name, got, err)
				}
			}
		})
	}
}

func TestCacheKeepsOwnTouches(t *testing.T) {
	st := openTemp(t)
	s := cacheSession(t, st, "u")
	st.ByHash(ctx, s.TokenHash)
	later := time.Now().Add(time.Minute)
	if err := st.Touch(ctx, s.ID, session.TouchInfo{At: later, IdleDeadline: later.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got, err := st.ByHash(ctx, s.TokenHash)
	if err != nil || !got.LastSeenAt.Equal(later) {
		t.Fatalf("after Touch the cached session says last seen %v, want %v (%v)", got.LastSeenAt, later, err)
	}
}

func TestCacheStopsAfterAWriterDied(t *testing.T) {
	st := openTemp(t)
	st.cache.begun.Add(1) // a process died between begin and end
	s := cacheSession(t, st, "u")
	st.ByHash(ctx, s.TokenHash)
	if _, ok := st.cache.get(s.TokenHash); ok {
		t.Fatal("cached while a write was unaccounted for")
	}
}

func randomHash() session.Hash {
	var h session.Hash
	rand.Read(h[:])
	return h
}

// TestRecord: a session encoded for the cache decodes to what a read
// from the database returns, and shares nothing mutable with the copies
// made of it.
func TestRecord(t *testing.T) {
	full := storetest.NewSession("u1")
	full.PrevTokenHash, full.Remember = storetest.NewHash(), true
	for _, s := range []*session.Session{full, {ID: "bare", AbsoluteDeadline: time.Now()}} {
		want := *s
		for _, t := range []*time.Time{&want.CreatedAt, &want.AuthenticatedAt, &want.RotatedAt, &want.LastSeenAt, &want.IdleDeadline, &want.AbsoluteDeadline} {
			*t = decodeTime(encodeTime(*t))
		}
		rec := encodeRecord(s)
		got := decodeRecord(rec)
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("decodeRecord(encodeRecord(%+v)) = %+v", want, got)
		}
		if id := recordID(rec); id != s.ID {
			t.Errorf("recordID = %q, want %q", id, s.ID)
		}
		if len(got.Roles) > 0 {
			got.Roles[0] = "changed"
			got.Data[0] = 'X'
			if again := decodeRecord(rec); again.Roles[0] == "changed" || again.Data[0] == 'X' {
				t.Fatal("a decoded session shares roles or data with the record")
			}
		}
	}
}
