package pgstore

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/lease"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// withParam returns url with the parameter key set to value.
func withParam(t testing.TB, url, key, value string) string {
	t.Helper()
	u, err := testenv.WithParam(url, key, value)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// lookup is one ByHash that a reader of staleReads made.
type lookup struct {
	start time.Time
	s     *session.Session // nil if not found
}

// race runs readers goroutines that look h up on a without pause (each
// pausing up to jitter first, so that lookups begin at any moment of a
// fence's flight), calls change once they have made a few lookups, and
// returns the lookups that began after change returned, at least
// 4*readers of them.
func race(t *testing.T, a *Store, h session.Hash, readers int, jitter time.Duration, change func()) []lookup {
	t.Helper()
	var (
		mu      sync.Mutex
		done    int
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		logs    = make([][]lookup, readers)
		failure error
	)
	for i := range readers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if jitter > 0 {
					time.Sleep(rand.N(jitter))
				}
				start := time.Now()
				got, err := a.ByHash(ctx, h)
				if err != nil && !errors.Is(err, session.ErrNotFound) {
					mu.Lock()
					failure = err
					mu.Unlock()
					return
				}
				logs[i] = append(logs[i], lookup{start, got})
				mu.Lock()
				done++
				mu.Unlock()
			}
		})
	}
	wait := func(n int) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			ok, err := done >= n, failure
			mu.Unlock()
			if ok || err != nil || time.Now().After(deadline) {
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	wait(2 * readers) // a has the session cached, and fences in flight
	change()
	ack := time.Now()
	mu.Lock()
	n := done
	mu.Unlock()
	wait(n + 4*readers)
	close(stop)
	wg.Wait()
	if failure != nil {
		t.Fatalf("a.ByHash: %v", failure)
	}
	var out []lookup
	for _, l := range logs {
		for _, x := range l {
			if x.start.After(ack) {
				out = append(out, x)
			}
		}
	}
	return out
}

// staleCounts counts, by kind of change, the lookups that began after
// instance b's change had committed and still returned what it ended or
// replaced.
type staleCounts struct {
	deleted, deletedByUser, rotated, roles, touched int
	after                                           int // lookups that began after the changes, in all
}

func (c staleCounts) add(d staleCounts) staleCounts {
	return staleCounts{c.deleted + d.deleted, c.deletedByUser + d.deletedByUser, c.rotated + d.rotated,
		c.roles + d.roles, c.touched + d.touched, c.after + d.after}
}

func (c staleCounts) stale() int {
	return c.deleted + c.deletedByUser + c.rotated + c.roles + c.touched
}

// staleReads runs rounds of "readers on instance a resolve a token
// without pause while instance b deletes the session, deletes the user's
// sessions, rotates its token, changes its roles or touches it", and
// counts the stale answers: lookups that began after the change returned,
// or, for a touch, which does not settle, lease.Read after it returned.
//
// With churn, each change comes just after a Touch of the session, which
// empties a's cache of it, so that readers read the session from the
// database, and put it into the cache, around the time of the change.
func staleReads(t *testing.T, a, b *Store, readers, rounds int, jitter time.Duration, churn bool) staleCounts {
	t.Helper()
	var c staleCounts
	race := func(t *testing.T, a *Store, h session.Hash, readers int, jitter time.Duration, change func()) []lookup {
		t.Helper()
		return race(t, a, h, readers, jitter, func() {
			if churn {
				s, err := b.ByHash(ctx, h)
				if err != nil {
					t.Fatal(err)
				}
				if err := b.Touch(ctx, s.ID, session.TouchInfo{At: time.Now(), IdleDeadline: s.IdleDeadline}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(rand.N(time.Millisecond))
			}
			change()
		})
	}
	for range rounds {
		s := storetest.NewSession(storetest.NewID())
		storetest.MustCreate(t, b, s)
		for _, l := range race(t, a, s.TokenHash, readers, jitter, func() {
			if err := b.Delete(ctx, s.ID); err != nil {
				t.Fatal(err)
			}
		}) {
			c.after++
			if l.s != nil {
				c.deleted++
			}
		}

		s = storetest.NewSession(storetest.NewID())
		storetest.MustCreate(t, b, s)
		storetest.MustCreate(t, b, storetest.NewSession(s.UserID))
		for _, l := range race(t, a, s.TokenHash, readers, jitter, func() {
			if _, err := b.DeleteByUser(ctx, s.UserID, ""); err != nil {
				t.Fatal(err)
			}
		}) {
			c.after++
			if l.s != nil {
				c.deletedByUser++
			}
		}

		s = storetest.NewSession(storetest.NewID())
		storetest.MustCreate(t, b, s)
		old := s.TokenHash
		for _, l := range race(t, a, old, readers, jitter, func() {
			s.TokenHash = storetest.NewHash()
			if err := b.Update(ctx, s); err != nil {
				t.Fatal(err)
			}
		}) {
			c.after++
			if l.s != nil {
				c.rotated++
			}
		}

		for _, l := range race(t, a, s.TokenHash, readers, jitter, func() {
			s.Roles = []string{"demoted-" + storetest.NewID()}
			if err := b.Update(ctx, s); err != nil {
				t.Fatal(err)
			}
		}) {
			c.after++
			if l.s == nil || !slices.Equal(l.s.Roles, s.Roles) {
				c.roles++
			}
		}

		var at time.Time
		for _, l := range race(t, a, s.TokenHash, readers, jitter, func() {
			at = time.Now().Truncate(time.Microsecond)
			if err := b.Touch(ctx, s.ID, session.TouchInfo{At: at, IP: "198.51.100.7", IdleDeadline: at.Add(40 * time.Minute)}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(lease.Read)
		}) {
			c.after++
			if l.s == nil || !l.s.LastSeenAt.Equal(at) || l.s.LastIP != "198.51.100.7" {
				c.touched++
			}
		}
		if err := b.Delete(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// sessionID returns the ID of s, or "no session" if s is nil.
func sessionID(s *session.Session) string {
	if s == nil {
		return "no session"
	}
	return "session " + s.ID
}

// randomDelay returns a hook that sleeps up to max.
func randomDelay(max time.Duration) *func() {
	f := func() { time.Sleep(rand.N(max)) }
	return &f
}

// TestCacheNeverServesRevoked: while 16 goroutines resolve a token
// through instance a without pause, instance b (another Store: its own
// pool and listener) deletes the session, deletes the user's sessions,
// rotates its token, changes its roles or touches it; no lookup that
// began after b's change returned (lease.Read after, for a touch) may
// return what the change ended or replaced. a's readers keep its lease
// renewed, so that most lookups send no fence. Each mode runs again with
// a's lease off and b's changes returning as soon as the database has
// acknowledged them (…NoLease), every lookup waiting for a fence of its
// own, to put the fences alone to the test. Delays are injected where a
// stale answer could slip in:
//
//   - SlowNotify: a applies each notification up to 3 ms late (a hook on
//     its listener, which delays what follows on the connection, the
//     fences' replies too).
//   - LateNotify: a applies each notification up to lease.Write late, so
//     that a change whose writer returned less than lease.Read after it
//     would be served stale under a's lease.
//   - SlowLink: a reaches the database through a proxy that passes on
//     what the database sends 5 ms late, so that b's change often commits
//     while one of a's fences is in flight, and a lookup that began after
//     it and joined that fence would be answered from a stale cache.
//   - SlowPut: just before each change, b touches the session, which
//     empties a's cache of it, and a puts each session it read from the
//     database into its cache up to 3 ms late, so that reads from before
//     the change reach the cache after its notification.
func TestCacheNeverServesRevoked(t *testing.T) {
	for _, mode := range []string{"Direct", "SlowNotify", "LateNotify", "SlowLink", "SlowPut"} {
		for _, noLease := range []bool{false, true} {
			name := mode
			if noLease {
				name += "NoLease"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				url := testenv.PostgresSchema(t)
				b := openAt(t, url)
				a := b
				rounds, readers, jitter, churn := 8, 16, 300*time.Microsecond, false
				if raceEnabled {
					rounds = 4
				}
				switch mode {
				case "SlowNotify":
					a = openAt(t, url)
					a.listener.onNotify.Store(randomDelay(3 * time.Millisecond))
					jitter = 3 * time.Millisecond
				case "LateNotify":
					a = openAt(t, url)
					a.listener.onNotify.Store(randomDelay(lease.Write))
					jitter = 3 * time.Millisecond
				case "SlowLink":
					const delay = 5 * time.Millisecond
					a = openAt(t, startDelayProxy(t, url, delay).url(url))
					jitter = 2 * delay
				case "SlowPut":
					a = openAt(t, url)
					a.beforePut.Store(randomDelay(3 * time.Millisecond))
					churn = true
				default:
					a = openAt(t, url)
				}
				// Without the lease, a lookup that begins once the
				// change is acknowledged, before b would return, must
				// see it.
				a.listener.noLease, b.noSettle = noLease, noLease
				hits, sent := a.cache.hits.Load(), a.listener.sent.Load()
				c := staleReads(t, a, b, readers, rounds, jitter, churn)
				if c.stale() > 0 {
					t.Errorf("of %d lookups that began after instance b's change committed, instance a served a deleted session %d times, a session of a user whose sessions were deleted %d times, a rotated-out token %d times, old roles %d times and an old last use %d times; want 0",
						c.after, c.deleted, c.deletedByUser, c.rotated, c.roles, c.touched)
				}
				if min := 5 * rounds * 4 * readers; c.after < min {
					t.Errorf("%d lookups began after the changes, want at least %d", c.after, min)
				}
				hits, sent = a.cache.hits.Load()-hits, a.listener.sent.Load()-sent
				if hits == 0 {
					t.Error("no lookup was answered from the cache: the test tested nothing")
				}
				t.Logf("%d lookups after the changes; %d answered from the cache in all, %d fences", c.after, hits, sent)
			})
		}
	}
}

// TestCacheListenerKilled ends instance a's listening connection
// (pg_terminate_backend) again and again while its readers resolve tokens
// that instance b revokes: no lookup may return a revoked session, none
// may fail (a reads the database while its listener is down), and the
// cache must come back each time.
func TestCacheListenerKilled(t *testing.T) {
	url := testenv.PostgresSchema(t)
	a, b := openAt(t, url), openAt(t, url)
	db := rawPool(t, url)
	a.listener.onNotify.Store(randomDelay(time.Millisecond))
	var kills atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(20+rand.IntN(60)) * time.Millisecond):
			}
			if pid := a.listener.backendPID(); pid != 0 {
				if _, err := db.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(pid)); err != nil {
					t.Error(err)
					return
				}
				kills.Add(1)
			}
		}
	})
	rounds := 6
	if raceEnabled {
		rounds = 3
	}
	// Rounds go on until the listener has been killed a few times.
	var c staleCounts
	for r := 0; (r < rounds || kills.Load() < 3) && r < 100; r++ {
		c = c.add(staleReads(t, a, b, 8, 1, time.Millisecond, false))
	}
	close(stop)
	wg.Wait()
	if c.stale() > 0 {
		t.Errorf("with its listener killed %d times, of %d lookups that began after instance b's change committed, instance a served a deleted session %d times, a session of a user whose sessions were deleted %d times, a rotated-out token %d times, old roles %d times and an old last use %d times; want 0",
			kills.Load(), c.after, c.deleted, c.deletedByUser, c.rotated, c.roles, c.touched)
	}
	if kills.Load() < 3 {
		t.Errorf("the listener was killed %d times, want at least 3", kills.Load())
	}

	// It heals: the cache serves again.
	s := storetest.NewSession(storetest.NewID())
	storetest.MustCreate(t, b, s)
	deadline := time.Now().Add(10 * time.Second)
	hits := a.cache.hits.Load()
	for a.cache.hits.Load() == hits {
		if time.Now().After(deadline) {
			t.Fatalf("the cache served nothing within 10 s of the last kill (%d connections made)", a.listener.conns.Load())
		}
		if _, err := a.ByHash(ctx, s.TokenHash); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("listener killed %d times, %d connections made; %d lookups after the changes", kills.Load(), a.listener.conns.Load(), c.after)
}

// TestCacheEmptiedOnReconnect checks that a cache whose listener lost its
// connection serves nothing it held, even a session changed while it was
// down and never notified to it.
func TestCacheEmptiedOnReconnect(t *testing.T) {
	url := testenv.PostgresSchema(t)
	p := startProxy(t, url)
	a := openAt(t, p.url(url))
	b := openAt(t, url)
	s := storetest.NewSession(storetest.NewID())
	storetest.MustCreate(t, b, s)
	for range 2 {
		if _, err := a.ByHash(ctx, s.TokenHash); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := a.cache.len(); n != 1 {
		t.Fatalf("%d sessions cached, want 1", n)
	}
	conns := a.listener.conns.Load()
	p.stop()
	// Once the lease has run out, the listener notices at its next
	// fence, and b's change is made while a's listener cannot hear of it.
	time.Sleep(lease.Read)
	if _, err := a.ByHash(ctx, s.TokenHash); err == nil {
		t.Fatal("ByHash with the database unreachable succeeded")
	}
	if err := b.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	p.restart()
	deadline := time.Now().Add(10 * time.Second)
	for a.listener.conns.Load() == conns {
		if time.Now().After(deadline) {
			t.Fatal("the listener did not reconnect within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := a.ByHash(ctx, s.TokenHash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("after the listener reconnected: ByHash of a session deleted while it was down = %v, %v; want ErrNotFound", sessionID(got), err)
	}
}

// TestCacheExpiry checks that a cached session stops being served when it
// expires, without any notification.
func TestCacheExpiry(t *testing.T) {
	st := openTemp(t)
	s := storetest.NewSession(storetest.NewID())
	s.IdleDeadline = time.Now().Add(500 * time.Millisecond).Truncate(time.Microsecond)
	storetest.MustCreate(t, st, s)
	for range 2 {
		if _, err := st.ByHash(ctx, s.TokenHash); err != nil {
			t.Fatal(err)
		}
	}
	if st.cache.hits.Load() == 0 {
		t.Fatal("the second lookup was not answered from the cache")
	}
	time.Sleep(time.Until(s.IdleDeadline) + 50*time.Millisecond)
	if got, err := st.ByHash(ctx, s.TokenHash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ByHash of an expired cached session = %v, %v; want ErrNotFound", sessionID(got), err)
	}
}

// TestCacheBounds checks that the cache keeps to its number of entries
// and bytes, and that CLOCK keeps a session in use over ones used once.
func TestCacheBounds(t *testing.T) {
	url := testenv.PostgresSchema(t)
	for _, tt := range []struct {
		param, value string
		entries      int
		bytes        int
	}{
		{"cache_entries", "10", 10, defaultCacheBytes},
		{"cache_bytes", "4KiB", defaultCacheEntries, 4 << 10},
	} {
		t.Run(tt.param, func(t *testing.T) {
			st := openAt(t, withParam(t, url, tt.param, tt.value))
			hot := storetest.NewSession(storetest.NewID())
			storetest.MustCreate(t, st, hot)
			for range 100 {
				s := storetest.NewSession(storetest.NewID())
				storetest.MustCreate(t, st, s)
				for _, h := range []session.Hash{s.TokenHash, hot.TokenHash} {
					if _, err := st.ByHash(ctx, h); err != nil {
						t.Fatal(err)
					}
				}
				if n, b := st.cache.len(); n > tt.entries || b > tt.bytes {
					t.Fatalf("%d entries of %d bytes cached, want at most %d and %d", n, b, tt.entries, tt.bytes)
				}
			}
			if n, _ := st.cache.len(); n < 2 {
				t.Errorf("%d entries cached, want several", n)
			}
			hits := st.cache.hits.Load()
			if _, err := st.ByHash(ctx, hot.TokenHash); err != nil {
				t.Fatal(err)
			}
			if st.cache.hits.Load() == hits {
				t.Error("the session looked up after every other one was evicted")
			}
		})
	}
}

// TestCacheOptions checks the URL's cache parameters: that they reach
// the Store and not the server, and that bad values are refused.
func TestCacheOptions(t *testing.T) {
	url := testenv.PostgresSchema(t)
	if st := openAt(t, withParam(t, url, "cache", "off")); st.cache != nil {
		t.Error("cache=off: the Store has a cache")
	}
	st := openAt(t, withParam(t, withParam(t, url, "cache_entries", "1234"), "cache_bytes", "3MiB"))
	if st.cache == nil || st.cache.maxEntries != 1234 || st.cache.maxBytes != 3<<20 {
		t.Errorf("cache_entries=1234&cache_bytes=3MiB: got cache %+v", st.cache)
	}
	if st := openAt(t, url); st.cache == nil || st.cache.maxEntries != defaultCacheEntries || st.cache.maxBytes != defaultCacheBytes {
		t.Errorf("no cache parameters: got cache %+v, want the defaults", st.cache)
	}
	for _, bad := range [][2]string{
		{"cache", "yes"}, {"cache", ""}, {"cache_entries", "0"}, {"cache_entries", "-1"}, {"cache_entries", "1e9"},
		{"cache_bytes", "1"}, {"cache_bytes", "1TiB"}, {"cache_bytes", "MiB"}, {"cache_bytes", "9999999999999999999"},
	} {
		st, err := Open(ctx, withParam(t, url, bad[0], bad[1]))
		if err == nil {
			st.Close()
			t.Errorf("%s=%q: Open succeeded, want an error", bad[0], bad[1])
		} else if !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%s=%q: error %q does not name the parameter", bad[0], bad[1], err)
		}
	}
}

// TestCacheCodec checks that a session comes out of the cache's encoding
// as it went in.
func TestCacheCodec(t *testing.T) {
	for _, s := range []*session.Session{
		storetest.NewSession(storetest.NewID()),
		{ID: "x", TokenHash: storetest.NewHash()},
		func() *session.Session {
			s := storetest.NewSession("u")
			s.PrevTokenHash = storetest.NewHash()
			s.Roles = strings.Split("a,b,c,d,e,f,g,h,i,j,k,l", ",")
			s.AMR = []string{"pwd", "otp", "mfa"}
			s.Remember = true
			s.AuthenticatedAt = time.Time{}
			s.AbsoluteDeadline = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
			return s
		}(),
	} {
		checkCodec(t, s)
	}
}

func checkCodec(t *testing.T, s *session.Session) {
	t.Helper()
	got, err := decode(encode(s))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := s.Clone()
	if len(want.Roles) == 0 {
		want.Roles = nil
	}
	if len(want.AMR) == 0 {
		want.AMR = nil
	}
	if len(want.Data) == 0 {
		want.Data = nil
	}
	for _, p := range []*time.Time{&want.CreatedAt, &want.AuthenticatedAt, &want.RotatedAt, &want.LastSeenAt, &want.IdleDeadline, &want.AbsoluteDeadline} {
		*p = time.UnixMicro(p.UnixMicro())
	}
	if !equalSessions(got, want) {
		t.Errorf("decode(encode(s)):\ngot  %+v\nwant %+v", got, want)
	}
}

func equalSessions(a, b *session.Session) bool {
	return a.ID == b.ID && a.TokenHash == b.TokenHash && a.PrevTokenHash == b.PrevTokenHash && a.UserID == b.UserID &&
		slices.Equal(a.Roles, b.Roles) && (a.Roles == nil) == (b.Roles == nil) &&
		slices.Equal(a.AMR, b.AMR) && (a.AMR == nil) == (b.AMR == nil) &&
		a.CreatedAt.Equal(b.CreatedAt) && a.AuthenticatedAt.Equal(b.AuthenticatedAt) && a.RotatedAt.Equal(b.RotatedAt) &&
		a.LastSeenAt.Equal(b.LastSeenAt) && a.IdleDeadline.Equal(b.IdleDeadline) && a.AbsoluteDeadline.Equal(b.AbsoluteDeadline) &&
		a.Remember == b.Remember && a.CreatedIP == b.CreatedIP && a.CreatedUserAgent == b.CreatedUserAgent &&
		a.LastIP == b.LastIP && a.LastUserAgent == b.LastUserAgent &&
		string(a.Data) == string(b.Data) && (a.Data == nil) == (b.Data == nil) && a.Version == b.Version
}

// FuzzCacheCodec checks the cache's encoding round trip on arbitrary
// sessions, and that decoding arbitrary bytes never panics.
func FuzzCacheCodec(f *testing.F) {
	f.Add("id", "user", "role1,role2", "pwd,otp", "192.0.2.1", "Mozilla/5.0", []byte(`{"a":1}`), int64(1), int64(1e15), true)
	f.Add("", "", "", "", "", "", []byte(nil), int64(0), int64(-6e16), false)
	f.Fuzz(func(t *testing.T, id, user, roles, amr, ip, ua string, data []byte, version, at int64, remember bool) {
		tm := time.UnixMicro(at)
		s := &session.Session{
			ID: id, UserID: user, TokenHash: storetest.NewHash(), CreatedIP: ip, CreatedUserAgent: ua,
			LastIP: ua, LastUserAgent: ip, Data: data, Version: version, Remember: remember,
			CreatedAt: tm, AuthenticatedAt: tm, RotatedAt: tm, LastSeenAt: tm, IdleDeadline: tm, AbsoluteDeadline: tm,
		}
		if roles != "" {
			s.Roles = strings.Split(roles, ",")
		}
		if amr != "" {
			s.AMR = strings.Split(amr, ",")
		}
		checkCodec(t, s)
		decode([]byte(id + user + roles + string(data))) // must not panic
		b := encode(s)
		for i := range b {
			decode(b[:i])
		}
	})
}

// TestCacheTruncate checks that a TRUNCATE of the table, behind the
// Store's back, empties the cache.
func TestCacheTruncate(t *testing.T) {
	url := testenv.PostgresSchema(t)
	st := openAt(t, url)
	s := storetest.NewSession(storetest.NewID())
	storetest.MustCreate(t, st, s)
	for range 2 {
		if _, err := st.ByHash(ctx, s.TokenHash); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rawPool(t, url).Exec(ctx, "TRUNCATE sessiond_sessions"); err != nil {
		t.Fatal(err)
	}
	if got, err := st.ByHash(ctx, s.TokenHash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ByHash after TRUNCATE = %v, %v; want ErrNotFound", sessionID(got), err)
	}
}

// TestCacheAnswersAsTheDatabase checks that a session answered from the
// cache equals the one read from the database, field by field, and that
// changing what a lookup returned changes nothing cached.
func TestCacheAnswersAsTheDatabase(t *testing.T) {
	st := openTemp(t)
	s := storetest.NewSession(storetest.NewID())
	s.AMR = []string{session.AMRPassword, session.AMROTP, session.AMRMultiFactor}
	s.PrevTokenHash = storetest.NewHash()
	s.Remember = true
	storetest.MustCreate(t, st, s)
	for _, h := range []session.Hash{s.TokenHash, s.PrevTokenHash} {
		fromDB, err := st.ByHash(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		hits := st.cache.hits.Load()
		fromCache, err := st.ByHash(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if st.cache.hits.Load() != hits+1 {
			t.Fatal("the second lookup was not answered from the cache")
		}
		if !equalSessions(fromCache, fromDB) {
			t.Errorf("from the cache:\n%+v\nfrom the database:\n%+v", fromCache, fromDB)
		}
		fromCache.Roles[0], fromCache.AMR[0], fromCache.Data[0] = "changed", "changed", 'X'
		again, err := st.ByHash(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if !equalSessions(again, fromDB) {
			t.Errorf("after the caller changed what it got, the cache answers:\n%+v\nwant:\n%+v", again, fromDB)
		}
	}
}

// TestCacheLaggingListener holds up instance a's listener in the middle
// of a notification for longer than a fence may take: a lookup must not
// wait for it, but read the database after the fence's timeout, and the
// listener must be replaced.
func TestCacheLaggingListener(t *testing.T) {
	url := testenv.PostgresSchema(t)
	a, b := openAt(t, url), openAt(t, url)
	s, x := storetest.NewSession(storetest.NewID()), storetest.NewSession(storetest.NewID())
	storetest.MustCreate(t, b, s)
	storetest.MustCreate(t, b, x)
	for _, h := range []session.Hash{s.TokenHash, x.TokenHash, s.TokenHash} {
		if _, err := a.ByHash(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	var once sync.Once
	lag := func() { once.Do(func() { time.Sleep(fenceTimeout + fenceTimeout/2) }) }
	a.listener.onNotify.Store(&lag)
	conns := a.listener.conns.Load()
	if err := b.Delete(ctx, x.ID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := a.ByHash(ctx, s.TokenHash)
	if err != nil || got.ID != s.ID {
		t.Fatalf("ByHash while the listener lags = %v, %v; want session %s", sessionID(got), err, s.ID)
	}
	if took := time.Since(start); took > fenceTimeout+fenceTimeout/4 {
		t.Errorf("ByHash while the listener lags took %v, want at most the fence timeout (%v) and a little", took, fenceTimeout)
	}
	if got, err := a.ByHash(ctx, x.TokenHash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ByHash of the deleted session = %v, %v; want ErrNotFound", sessionID(got), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.listener.conns.Load() == conns {
		if time.Now().After(deadline) {
			t.Fatal("the lagging listener was not replaced within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
