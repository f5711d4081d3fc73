package redisstore

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/lease"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// TestOutage kills Redis (SIGKILL) under a stream of lookups, keeps it down
// for a second, and starts it again on the same port, empty (it keeps no
// data). It checks that no lookup started while Redis was down returns a
// session, but under the lease of a fence answered before (lease.Read at
// most after the last), that lookups then fail with an error other than ErrNotFound,
// that the same Store works again within 5 seconds of the restart, and
// that it serves none of the sessions it had cached before the outage.
func TestOutage(t *testing.T) {
	for _, mode := range []CacheMode{CacheFenced, CacheOff} {
		t.Run("cache="+string(mode), func(t *testing.T) {
			srv := testenv.StartRedis(t)
			st, err := Open(ctx, withOptions("redis://"+srv.Addr(), "cache", string(mode), "timeout", "300ms"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(st.Close)
			var hashes []session.Hash
			for range 20 {
				s := newSession("u_" + randID())
				storetest.MustCreate(t, st, s)
				hashes = append(hashes, s.TokenHash)
				for range 2 { // the second read is from the cache
					if _, err := st.ByHash(ctx, s.TokenHash); err != nil {
						t.Fatal(err)
					}
				}
			}

			var (
				down      atomic.Bool  // true from when the Redis process has exited until it is started again
				killed    atomic.Int64 // the lease.Now at which it was killed
				leased    atomic.Int64
				served    atomic.Int64
				notFound  atomic.Int64
				failed    atomic.Int64
				stop      = make(chan struct{})
				wg        sync.WaitGroup
				firstErrs sync.Map
			)
			for g := range 4 {
				wg.Go(func() {
					for i := g; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						wasDown, start := down.Load(), lease.Now()
						s, err := st.ByHash(ctx, hashes[i%len(hashes)])
						if !wasDown {
							continue
						}
						switch {
						case err == nil && start-killed.Load() < int64(lease.Read):
							leased.Add(1) // under the lease of a fence sent before
						case err == nil:
							served.Add(1)
							t.Errorf("during the outage ByHash returned session %s", s.ID)
						case errors.Is(err, session.ErrNotFound):
							notFound.Add(1)
						default:
							failed.Add(1)
							firstErrs.LoadOrStore(g, err)
						}
					}
				})
			}
			time.Sleep(100 * time.Millisecond)
			killed.Store(lease.Now())
			srv.Kill()
			down.Store(true)
			time.Sleep(time.Second)
			if _, err := st.ByID(ctx, "readiness-probe"); err == nil || errors.Is(err, session.ErrNotFound) {
				t.Errorf("ByID (the readiness probe) during the outage: got %v, want a connection error", err)
			}
			if err := st.Ping(ctx); err == nil {
				t.Errorf("Ping during the outage: no error")
			}

			down.Store(false)
			srv.Start()
			restarted := time.Now()
			var recovered time.Duration
			for {
				s := newSession("u_" + randID())
				_, err := st.Create(ctx, s, session.Limit{})
				if err == nil {
					_, err = st.ByHash(ctx, s.TokenHash)
				}
				if err == nil {
					recovered = time.Since(restarted)
					break
				}
				if time.Since(restarted) > 5*time.Second {
					t.Fatalf("the Store has not recovered 5s after Redis came back: %v", err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			close(stop)
			wg.Wait()
			var sample error
			firstErrs.Range(func(_, v any) bool { sample = v.(error); return false })
			t.Logf("lookups started during the outage: %d failed (e.g. %v), %d not found (answered after the restart), %d served under a lease, %d served after it; recovered %v after the restart",
				failed.Load(), sample, notFound.Load(), leased.Load(), served.Load(), recovered.Round(time.Millisecond))
			if failed.Load() == 0 {
				t.Errorf("no lookup failed during the outage: the test did not see it")
			}
			// Redis came back empty: nothing cached before may be served.
			for _, h := range hashes {
				if s, err := st.ByHash(ctx, h); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("after the restart ByHash of a session Redis no longer has: %v, %v (want ErrNotFound)", s, err)
				}
			}
		})
	}
}
