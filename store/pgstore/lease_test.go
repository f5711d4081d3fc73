package pgstore

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/lease"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// leaseFixture is a Store with one session cached, and a way to hold up
// its listener.
type leaseFixture struct {
	t     *testing.T
	st    *Store
	s     *session.Session // cached
	other *session.Session // touched to hold the listener up
	hold  atomic.Int64     // how long the next notification holds the listener up, in ns
}

func newLeaseFixture(t *testing.T) *leaseFixture {
	f := &leaseFixture{t: t, st: openTemp(t)}
	f.s, f.other = storetest.NewSession(storetest.NewID()), storetest.NewSession(storetest.NewID())
	storetest.MustCreate(t, f.st, f.s)
	storetest.MustCreate(t, f.st, f.other)
	hook := func() { time.Sleep(time.Duration(f.hold.Swap(0))) }
	f.st.listener.onNotify.Store(&hook)
	if _, err := f.st.ByHash(ctx, f.s.TokenHash); err != nil { // caches s
		t.Fatal(err)
	}
	return f
}

// lookup looks s up and checks it was answered from the cache; it returns
// how long it took and how many fences were sent meanwhile.
func (f *leaseFixture) lookup() (took time.Duration, fences int64) {
	f.t.Helper()
	hits, sent := f.st.cache.hits.Load(), f.st.listener.sent.Load()
	start := time.Now()
	got, err := f.st.ByHash(ctx, f.s.TokenHash)
	took = time.Since(start)
	if err != nil || got.ID != f.s.ID {
		f.t.Fatalf("ByHash = %v, %v; want session %s", sessionID(got), err, f.s.ID)
	}
	if f.st.cache.hits.Load() != hits+1 {
		f.t.Fatal("the lookup was not answered from the cache")
	}
	return took, f.st.listener.sent.Load() - sent
}

// holdUp makes the listener's next notification, which it makes at once,
// keep the listener from reading for d: a fence sent meanwhile is
// answered d late.
func (f *leaseFixture) holdUp(d time.Duration) {
	f.t.Helper()
	f.hold.Store(int64(d))
	if err := f.st.Touch(ctx, f.other.ID, session.TouchInfo{At: time.Now(), IdleDeadline: f.other.IdleDeadline}); err != nil {
		f.t.Fatal(err)
	}
}

// fenced waits until the lease has run out and makes a lookup that sends
// a fence, and returns the Now at which the fence was sent.
func (f *leaseFixture) fenced() int64 {
	f.t.Helper()
	time.Sleep(lease.Read + time.Millisecond)
	if _, n := f.lookup(); n != 1 {
		f.t.Fatalf("a lookup after the lease ran out sent %d fences, want 1", n)
	}
	l := f.st.listener
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sentAt
}

// retry runs try until it reports that the machine kept to the timing it
// needs, at most 20 times.
func retry(t *testing.T, try func() bool) {
	t.Helper()
	for range 20 {
		if try() {
			return
		}
	}
	t.Skip("the machine is too slow for this test's timing 20 times running")
}

// TestCacheLease checks how lookups use the lease of the latest answered
// fence: those that begin within lease.Read/2 of its sending send no fence
// and do not wait; one that begins in the rest of the lease sends one and
// does not wait for it; one that begins after the lease has run out waits
// for a fence of its own.
func TestCacheLease(t *testing.T) {
	hold := 100 * time.Millisecond
	if raceEnabled {
		hold = 200 * time.Millisecond
	}

	// A lookup's Now in fence is taken a little after the one the test
	// takes before the lookup: slack is the most it allows between them.
	const slack = 5 * time.Millisecond

	t.Run("Within", func(t *testing.T) {
		f := newLeaseFixture(t)
		retry(t, func() bool {
			sent := f.fenced()
			// Lookups that ended within the first half of the lease
			// began in it: no fence.
			within := 0
			for range 20 {
				_, n := f.lookup()
				if lease.Now()-sent >= int64(lease.Read/2) {
					break
				}
				within++
				if n != 0 {
					t.Fatalf("a lookup within the first half of the lease sent %d fences, want 0", n)
				}
			}
			// A lookup that begins within the lease does not wait
			// for a fence.
			f.holdUp(hold)
			if start := lease.Now(); start-sent >= int64(lease.Read/2) || within == 0 {
				return false
			}
			if took, _ := f.lookup(); took >= hold/2 {
				t.Errorf("a lookup within the lease took %v while the listener was held up for %v: it waited", took, hold)
			}
			return true
		})
	})

	t.Run("Due", func(t *testing.T) {
		f := newLeaseFixture(t)
		retry(t, func() bool {
			sent := f.fenced()
			f.holdUp(hold)
			time.Sleep(time.Duration(sent + int64(lease.Read/2) - lease.Now()))
			if start := lease.Now(); start-sent >= int64(lease.Read-slack) {
				return false
			}
			took, n := f.lookup()
			if n != 1 {
				t.Errorf("a lookup in the second half of the lease sent %d fences, want 1", n)
			}
			if took >= hold/2 {
				t.Errorf("a lookup in the second half of the lease took %v while the listener was held up for %v: it waited", took, hold)
			}
			if start := lease.Now(); start-sent < int64(lease.Read-slack) {
				if _, n := f.lookup(); n != 0 {
					t.Errorf("a lookup in the second half of the lease, with a fence in flight, sent %d fences, want 0", n)
				}
			}
			// Once its reply has been read, the lease rests on the
			// renewing fence and covers lookups past the first one's.
			l := f.st.listener
			deadline := time.Now().Add(10 * time.Second)
			for {
				l.mu.Lock()
				done := l.inflight == nil
				l.mu.Unlock()
				if done {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the renewing fence was not answered within 10 s")
				}
				time.Sleep(time.Millisecond)
			}
			if covered, _ := l.lease.Covers(sent + int64(lease.Read)); !covered {
				t.Error("the answered renewing fence did not extend the lease")
			}
			return true
		})
	})

	t.Run("After", func(t *testing.T) {
		f := newLeaseFixture(t)
		f.fenced()
		time.Sleep(lease.Read + time.Millisecond)
		f.holdUp(hold)
		took, n := f.lookup()
		if n != 1 {
			t.Errorf("a lookup after the lease ran out sent %d fences, want 1", n)
		}
		if took < hold/2 {
			t.Errorf("a lookup after the lease ran out took %v while the listener was held up for %v: it did not wait for its fence", took, hold)
		}
	})

	t.Run("NoLease", func(t *testing.T) {
		f := newLeaseFixture(t)
		f.st.listener.noLease = true
		var fences int64
		for range 10 {
			_, n := f.lookup()
			fences += n
		}
		if fences != 10 {
			t.Errorf("10 lookups one after another with noLease sent %d fences, want 10", fences)
		}
	})
}

// TestRevocationSettles checks that the changes that end or narrow a
// session return lease.Write after the database made them, with the cache
// on and off, and that the others do not wait.
func TestRevocationSettles(t *testing.T) {
	testenv.Postgres(t)
	for _, cache := range []string{"on", "off"} {
		t.Run("cache="+cache, func(t *testing.T) {
			st := openAt(t, withParam(t, testenv.PostgresSchema(t), "cache", cache))
			timed := func(op func() error) time.Duration {
				t.Helper()
				start := time.Now()
				if err := op(); err != nil && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, session.ErrConflict) {
					t.Fatal(err)
				}
				return time.Since(start)
			}
			newSession := func() *session.Session {
				s := storetest.NewSession(storetest.NewID())
				storetest.MustCreate(t, st, s)
				return s
			}
			settling := map[string]func() error{
				"Delete": func() error { return st.Delete(ctx, newSession().ID) },
				"DeleteByUser": func() error {
					_, err := st.DeleteByUser(ctx, newSession().UserID, "")
					return err
				},
				"Update": func() error {
					s := newSession()
					s.Roles = []string{"demoted"}
					return st.Update(ctx, s)
				},
				"Create evicting": func() error {
					s := newSession()
					evicted, err := st.Create(ctx, storetest.NewSession(s.UserID), session.Limit{Max: 1})
					if err == nil && len(evicted) != 1 {
						t.Fatalf("Create at the limit evicted %v, want one session", evicted)
					}
					return err
				},
			}
			for name, op := range settling {
				if took := timed(op); took < lease.Write {
					t.Errorf("%s took %v, want at least lease.Write (%v)", name, took, lease.Write)
				}
			}
			s := newSession()
			others := map[string]func() error{
				"Touch": func() error {
					return st.Touch(ctx, s.ID, session.TouchInfo{At: time.Now(), IdleDeadline: s.IdleDeadline})
				},
				"Create": func() error {
					_, err := st.Create(ctx, storetest.NewSession(storetest.NewID()), session.Limit{})
					return err
				},
				"Create under the limit": func() error {
					_, err := st.Create(ctx, storetest.NewSession(storetest.NewID()), session.Limit{Max: 2})
					return err
				},
				"Delete of nothing":       func() error { return st.Delete(ctx, storetest.NewID()) },
				"DeleteByUser of nothing": func() error { _, err := st.DeleteByUser(ctx, storetest.NewID(), ""); return err },
				"Update in conflict":      func() error { stale := s.Clone(); stale.Version--; return st.Update(ctx, stale) },
				"DeleteExpired":           func() error { _, err := st.DeleteExpired(ctx, time.Now(), 10); return err },
			}
			for name, op := range others {
				// The fastest of five, so that a busy machine does not
				// make it look as if it waited.
				fastest := time.Hour
				for range 5 {
					fastest = min(fastest, timed(op))
				}
				if fastest >= lease.Write {
					t.Errorf("%s took at least %v five times running, as if it waited lease.Write (%v)", name, fastest, lease.Write)
				}
			}
		})
	}
}

// TestCacheExpiryUnderLease checks that a cached session stops being
// served at its deadline while lookups, one after another, keep the lease
// renewed, so that most answer by the estimate of the database's clock
// instead of a fence's. The database runs on this host, on this clock.
func TestCacheExpiryUnderLease(t *testing.T) {
	st := openTemp(t)
	s := storetest.NewSession(storetest.NewID())
	s.IdleDeadline = time.Now().Add(300 * time.Millisecond).Truncate(time.Microsecond)
	storetest.MustCreate(t, st, s)
	// The database's clock is read to the microsecond, and a lookup's
	// start a little before the Store's: allow for both.
	const slack = time.Millisecond
	var lookups, late int
	sent := st.listener.sent.Load()
	for time.Now().Before(s.IdleDeadline.Add(100 * time.Millisecond)) {
		start := time.Now()
		got, err := st.ByHash(ctx, s.TokenHash)
		if err != nil && !errors.Is(err, session.ErrNotFound) {
			t.Fatal(err)
		}
		lookups++
		if got != nil && start.After(s.IdleDeadline.Add(slack)) {
			late++
		}
		time.Sleep(100 * time.Microsecond)
	}
	if late > 0 {
		t.Errorf("of %d lookups, %d that began after the session's deadline returned it", lookups, late)
	}
	if fences := st.listener.sent.Load() - sent; fences*4 > int64(lookups) {
		t.Errorf("%d lookups sent %d fences: the lease was hardly used, and the test tested little", lookups, fences)
	}
}
