package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/lease"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// lookup is one ByHash that a concurrentStaleReads reader made.
type lookup struct {
	start time.Time
	s     *session.Session // nil if not found
}

// concurrentStaleReads runs rounds of "readers on instance a resolve a
// token without pause while instance b revokes or changes its session",
// for each of deletion, rotation and a change of roles, and returns how
// many lookups that started after b's change was acknowledged returned
// what b had revoked or replaced. The readers keep fences in flight on a's
// connection all the time, so that lookups share them, and pause up to
// jitter before each lookup, so that lookups start at any moment of a
// fence's flight rather than all as one returns. after is how many
// lookups started after the acknowledgements in all, which the caller
// checks, so that the test cannot pass by looking at nothing.
func concurrentStaleReads(t *testing.T, a, b *Store, readers, rounds int, jitter time.Duration) (deleted, rotated, changed, after int) {
	t.Helper()
	// race runs readers on token h of a until enough lookups have
	// started after revoke returned, and returns those lookups.
	race := func(h session.Hash, revoke func()) []lookup {
		t.Helper()
		var (
			mu      sync.Mutex
			started int // lookups that have returned
			ack     time.Time
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
					// A pause of up to jitter, so that lookups start at any
					// moment of a fence's flight, not all as one returns.
					time.Sleep(rand.N(jitter))
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
					started++
					mu.Unlock()
				}
			})
		}
		wait := func(n int) {
			deadline := time.Now().Add(10 * time.Second)
			for {
				mu.Lock()
				done, err := started >= n, failure
				mu.Unlock()
				if done || err != nil || time.Now().After(deadline) {
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		wait(2 * readers) // a has the record in its cache, and fences in flight
		revoke()
		ack = time.Now()
		mu.Lock()
		n := started
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
	for range rounds {
		// Revocation: b deletes the session.
		s := newSession("user-" + randID())
		storetest.MustCreate(t, b, s)
		for _, l := range race(s.TokenHash, func() {
			if err := b.Delete(ctx, s.ID); err != nil {
				t.Fatal(err)
			}
		}) {
			after++
			if l.s != nil {
				deleted++
			}
		}

		// Rotation: b gives the session a new token; the old one dies.
		s = newSession("user-" + randID())
		storetest.MustCreate(t, b, s)
		old := s.TokenHash
		for _, l := range race(old, func() {
			s.TokenHash, s.PrevTokenHash = storetest.NewHash(), session.Hash{}
			if err := b.Update(ctx, s); err != nil {
				t.Fatal(err)
			}
		}) {
			after++
			if l.s != nil {
				rotated++
			}
		}

		// A change of roles: lookups that start after it see the new ones.
		for _, l := range race(s.TokenHash, func() {
			s.Roles = []string{"demoted-" + randID()}
			if err := b.Update(ctx, s); err != nil {
				t.Fatal(err)
			}
		}) {
			after++
			if l.s == nil || !slices.Equal(l.s.Roles, s.Roles) {
				changed++
			}
		}
		if err := b.Delete(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	return deleted, rotated, changed, after
}

// TestCacheNeverServesRevokedConcurrently is TestCacheNeverServesRevoked
// with many lookups at once, which share fences: while 16 goroutines
// resolve a token on instance a without pause, instance b deletes,
// rotates or changes the session, and no lookup that started after b's
// change was acknowledged may return what it revoked. In SlowLink, a
// reaches Redis through a proxy that delays what Redis sends it by 5ms,
// as a distant instance would see it: a's fences are long in flight, so
// that b's change often runs after a fence was sent and is acknowledged
// before that fence's reply, and the invalidation, reach a. A lookup
// that started then and shared that fence would serve the old record.
func TestCacheNeverServesRevokedConcurrently(t *testing.T) {
	for _, link := range []string{"Direct", "SlowLink"} {
		t.Run(link, func(t *testing.T) {
			t.Parallel()
			rounds := 20
			if raceEnabled {
				rounds = 10
			}
			addr := testenv.Redis(t)
			prefix := testPrefix()
			b := openTest(t, withOptions("redis://"+addr, "prefix", prefix))
			jitter := 200 * time.Microsecond
			if link == "SlowLink" {
				const delay = 5 * time.Millisecond
				addr = delayProxy(t, addr, delay)
				jitter = 2 * delay
			}
			a := openTest(t, withOptions("redis://"+addr, "prefix", prefix))
			sent := a.fences.sent.Load()
			deleted, rotated, changed, after := concurrentStaleReads(t, a, b, 16, rounds, jitter)
			if deleted+rotated+changed > 0 {
				t.Errorf("of %d lookups that started after instance b's change was acknowledged, instance a served a deleted session %d times, a rotated-out token %d times, and old roles %d times; want 0", after, deleted, rotated, changed)
			}
			if min := 3 * rounds * 16; after < min {
				t.Errorf("%d lookups started after the changes, want at least %d", after, min)
			}
			t.Logf("%d lookups after the changes; %d fences in all", after, a.fences.sent.Load()-sent)
		})
	}
}

// delayProxy forwards TCP connections to addr until the test ends,
// delivering what addr sends back delay after it arrived, in order, and
// what the client sends at once. It returns the proxy's address.
func delayProxy(t testing.TB, addr string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Go(func() { // client to server, at once
				io.Copy(s, c)
				s.Close()
				c.Close()
			})
			type chunk struct {
				b   []byte
				due time.Time
			}
			chunks := make(chan chunk, 1<<14)
			wg.Go(func() { // server to proxy
				defer close(chunks)
				for {
					buf := make([]byte, 64<<10)
					n, err := s.Read(buf)
					if n > 0 {
						chunks <- chunk{buf[:n], time.Now().Add(delay)}
					}
					if err != nil {
						return
					}
				}
			})
			wg.Go(func() { // proxy to client, delay later
				for ch := range chunks {
					time.Sleep(time.Until(ch.due))
					if _, err := c.Write(ch.b); err != nil {
						break
					}
				}
				c.Close()
				s.Close()
				for range chunks {
				}
			})
		}
	})
	return ln.Addr().String()
}

// busyRoutes returns how many of st's routes have a fence in flight.
func busyRoutes(st *Store) int {
	st.fences.mu.Lock()
	defer st.fences.mu.Unlock()
	n := 0
	for _, r := range st.fences.routes {
		if r.busy {
			n++
		}
	}
	return n
}

// TestFenceShared checks, with no leases, that concurrent lookups share
// fences, that a lone lookup sends its own at once, and that a lookup
// whose context is canceled does not fail the others.
func TestFenceShared(t *testing.T) {
	st := localStore(t)
	st.fences.leased = false
	s := newSession("user-" + randID())
	storetest.MustCreate(t, st, s)
	rk := st.recordKey(s.UserID, s.ID)

	sent := st.fences.sent.Load()
	if err := st.fence(ctx, rk); err != nil {
		t.Fatal(err)
	}
	if n := st.fences.sent.Load() - sent; n != 1 {
		t.Errorf("a lone fence sent %d fences, want 1", n)
	}
	if n := busyRoutes(st); n != 0 {
		t.Errorf("%d routes left busy after the fence", n)
	}

	const lookups = 2000
	sent = st.fences.sent.Load()
	var wg sync.WaitGroup
	errs := make(chan error, lookups)
	for range lookups {
		wg.Go(func() {
			if _, err := st.ByHash(ctx, s.TokenHash); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := st.fences.sent.Load() - sent
	t.Logf("%d concurrent lookups sent %d fences", lookups, n)
	if n >= lookups {
		t.Errorf("%d concurrent lookups sent %d fences: none was shared", lookups, n)
	}

	// A canceled waiter may be served or fail; the others go on.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for i := range 200 {
		c := ctx
		if i%2 == 0 {
			c = canceled
		}
		wg.Go(func() {
			_, err := st.ByHash(c, s.TokenHash)
			switch {
			case c == canceled && err == nil:
				// Served before noticing the context: allowed.
			case c == canceled && !errors.Is(err, context.Canceled):
				t.Errorf("ByHash with a canceled context: %v, want context.Canceled", err)
			case c != canceled && err != nil:
				t.Errorf("ByHash beside canceled lookups: %v", err)
			}
		})
	}
	wg.Wait()
	if n := busyRoutes(st); n != 0 {
		t.Errorf("%d routes left busy after the lookups", n)
	}
}

// TestFenceLease checks that a fence serves the lookups that begin within
// lease.Read of the moment it was sent without a fence of their own, that
// a lookup with half the lease left sends a fence in the background and
// is served at once, and that a lookup after the lease waits for a fence.
func TestFenceLease(t *testing.T) {
	st := localStore(t)
	s := newSession("user-" + randID())
	storetest.MustCreate(t, st, s)
	lookup := func() time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := st.ByHash(ctx, s.TokenHash); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	warm(t, st, s.TokenHash)
	time.Sleep(lease.Read + time.Millisecond)

	sent := st.fences.sent.Load()
	lookup() // the lease has run out: a fence
	if n := st.fences.sent.Load() - sent; n != 1 {
		t.Fatalf("a lookup after the lease ran out sent %d fences, want 1", n)
	}
	sent = st.fences.sent.Load()
	for range 100 {
		lookup()
	}
	// Unless the machine stalled the lookups past half the lease, none
	// sent a fence.
	if n := st.fences.sent.Load() - sent; n > 1 {
		t.Errorf("100 lookups under the lease sent %d fences, want at most 1", n)
	}

	// With half the lease left, a lookup is served and renews it in the
	// background.
	time.Sleep(lease.Read/2 + time.Millisecond)
	sent = st.fences.sent.Load()
	lookup()
	deadline := time.Now().Add(time.Second)
	for st.fences.sent.Load() == sent || busyRoutes(st) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no fence renewed the lease: %d sent, %d routes busy", st.fences.sent.Load()-sent, busyRoutes(st))
		}
		time.Sleep(time.Millisecond)
	}
	if n := st.fences.sent.Load() - sent; n != 1 {
		t.Errorf("a lookup with half the lease left sent %d fences, want 1", n)
	}
	// The renewed lease serves the next lookups.
	sent = st.fences.sent.Load()
	lookup()
	if n := st.fences.sent.Load() - sent; n != 0 {
		t.Errorf("a lookup under the renewed lease sent %d fences, want 0", n)
	}
}

// warm looks h up until its pointer and record are in st's cache.
func warm(t *testing.T, st *Store, h session.Hash) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := st.ByHash(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		ptr, rec := inCache(st, st.hashKey(h)), inCache(st, st.recordKey(s.UserID, s.ID))
		if ptr && rec {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pointer cached: %v, record cached: %v after 5s of lookups", ptr, rec)
		}
		time.Sleep(time.Millisecond)
	}
}

// inCache reports whether key is in st's client-side cache (and caches it
// if not).
func inCache(st *Store, key string) bool {
	return st.c.DoCache(ctx, st.c.B().Get().Key(key).Cache(), time.Minute).IsCacheHit()
}

// TestChangesSettle checks that every change that ends or narrows a
// session returns no sooner than lease.Write after Redis made it, and
// that a change that ends none does not wait.
func TestChangesSettle(t *testing.T) {
	st := localStore(t)
	timed := func(what string, wait bool, f func() error) {
		t.Helper()
		start := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		took := time.Since(start)
		if wait && took < lease.Write {
			t.Errorf("%s returned after %v, want at least %v", what, took, lease.Write)
		}
		if !wait && took >= lease.Write {
			t.Logf("%s, which ends no session, took %v (a slow machine?)", what, took)
		}
	}
	user := "user-" + randID()
	s := newSession(user)
	timed("Create", false, func() error { _, err := st.Create(ctx, s, session.Limit{}); return err })
	timed("Touch", false, func() error {
		return st.Touch(ctx, s.ID, session.TouchInfo{At: time.Now(), IdleDeadline: s.IdleDeadline})
	})
	s.Roles = nil
	timed("Update", true, func() error { return st.Update(ctx, s) })
	timed("Delete", true, func() error { return st.Delete(ctx, s.ID) })
	for range 2 {
		storetest.MustCreate(t, st, newSession(user))
	}
	timed("DeleteByUser", true, func() error { _, err := st.DeleteByUser(ctx, user, ""); return err })
	timed("DeleteByUser of nobody's sessions", false, func() error { _, err := st.DeleteByUser(ctx, user, ""); return err })
	storetest.MustCreate(t, st, newSession(user))
	timed("Create evicting at the limit", true, func() error {
		evicted, err := st.Create(ctx, newSession(user), session.Limit{Max: 1})
		if err == nil && len(evicted) != 1 {
			err = fmt.Errorf("evicted %v, want one session", evicted)
		}
		return err
	})
}

// TestFenceDeadlines checks that a lookup waiting on a shared fence
// returns at its deadline, and that a shared fence that ran out of one
// waiter's time does not fail the waiters that had more.
func TestFenceDeadlines(t *testing.T) {
	const delay = 200 * time.Millisecond
	addr, prefix := testenv.Redis(t), testPrefix()
	s := newSession("user-" + randID())
	storetest.MustCreate(t, openTest(t, withOptions("redis://"+addr, "prefix", prefix)), s)
	st := openTest(t, withOptions("redis://"+delayProxy(t, addr, delay), "prefix", prefix))
	rk := st.recordKey(s.UserID, s.ID)

	// A lone fence takes the route for delay; the lookups below, their
	// reads cached by a first one, wait for it and share the next fence,
	// which has the short lookup's deadline.
	if _, err := st.ByHash(ctx, s.TokenHash); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := st.fence(ctx, rk); err != nil {
			t.Error(err)
		}
	})
	for busyRoutes(st) == 0 {
		time.Sleep(time.Millisecond)
	}
	short, cancel := context.WithTimeout(ctx, delay/2)
	defer cancel()
	start := time.Now()
	wg.Go(func() {
		_, err := st.ByHash(short, s.TokenHash)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a lookup whose deadline passes while it waits on the fence: %v, want context.DeadlineExceeded", err)
		}
		if took := time.Since(start); took > delay+delay/2 {
			t.Errorf("a lookup with %v to go returned after %v", delay/2, took)
		}
	})
	for range 10 {
		wg.Go(func() {
			long, cancel := context.WithTimeout(ctx, 10*delay)
			defer cancel()
			if _, err := st.ByHash(long, s.TokenHash); err != nil {
				t.Errorf("a lookup with time to spare beside one without: %v", err)
			}
		})
	}
	wg.Wait()
}

// TestOneRoundTripPerMiss checks, through a link that delays what Redis
// sends by 40ms, that a lookup with nothing cached takes one round trip
// (followScript), as does one whose pointer is cached and record is not.
func TestOneRoundTripPerMiss(t *testing.T) {
	const delay = 40 * time.Millisecond
	addr, prefix := testenv.Redis(t), testPrefix()
	s := newSession("user-" + randID())
	storetest.MustCreate(t, openTest(t, withOptions("redis://"+addr, "prefix", prefix)), s)
	st := openTest(t, withOptions("redis://"+delayProxy(t, addr, delay), "prefix", prefix))
	timed := func(what string) {
		t.Helper()
		start := time.Now()
		got, err := st.ByHash(ctx, s.TokenHash)
		if err != nil || got.ID != s.ID {
			t.Fatalf("%s: %v, %v", what, got, err)
		}
		if took := time.Since(start); took >= delay*3/2 {
			t.Errorf("%s took %v: more than one round trip of %v", what, took, delay)
		}
	}
	timed("a lookup with nothing cached")
	deadline := time.Now().Add(5 * time.Second)
	for _, ok := st.caches.peek(st.hashKey(s.TokenHash)); !ok; _, ok = st.caches.peek(st.hashKey(s.TokenHash)) {
		if time.Now().After(deadline) {
			t.Fatal("the pointer was not cached in the background")
		}
		time.Sleep(time.Millisecond)
	}
	timed("a lookup whose pointer is cached")
	if _, ok := st.caches.peek(st.recordKey(s.UserID, s.ID)); !ok {
		t.Error("the record was not cached by the lookup that read it")
	}
}

// TestFollowScript checks that followScript names the record key nsKey
// names for every form of pointer value, and returns no key for values
// that name no record.
func TestFollowScript(t *testing.T) {
	st := localStore(t)
	for _, c := range []struct {
		ns   uint64
		slot int64
	}{{0, 0}, {1, 1}, {0xabcdef, 35}, {1<<48 - 1, 1<<slotBits - 1}, {7, 1 << slotBits}, {1<<48 - 1, 1 << 40}} {
		hk := st.hashKey(newSession("u").TokenHash)
		v := pointerValue(c.ns, c.slot)
		st.c.Do(ctx, st.c.B().Set().Key(hk).Value(v).Ex(time.Minute).Build())
		arr, err := followScript.Exec(ctx, st.c, []string{hk}, []string{st.prefix}).ToArray()
		if err != nil || len(arr) != 3 {
			t.Fatalf("pointer %s: %v, %v", v, arr, err)
		}
		if k, _ := arr[1].ToString(); k != st.slotKey(c.ns, c.slot) {
			t.Errorf("pointer %s (ns %d, slot %d): record key %q, want %q", v, c.ns, c.slot, k, st.slotKey(c.ns, c.slot))
		}
	}
	for _, v := range []string{"-5", "x", "1:2:3", "99999999999999999999999", ""} {
		hk := st.hashKey(newSession("u").TokenHash)
		st.c.Do(ctx, st.c.B().Set().Key(hk).Value(v).Ex(time.Minute).Build())
		arr, err := followScript.Exec(ctx, st.c, []string{hk}, []string{st.prefix}).ToArray()
		if err != nil || len(arr) != 1 {
			t.Errorf("pointer %q: %v, %v; want the pointer alone", v, arr, err)
		}
	}
	if err := followScript.Exec(ctx, st.c, []string{st.hashKey(newSession("u").TokenHash)}, []string{st.prefix}).Error(); !rueidis.IsRedisNil(err) {
		t.Errorf("no pointer: %v, want nil", err)
	}
}
