package redisstore

import (
	"errors"
	"slices"
	"testing"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// staleReads runs rounds of "instance a caches a session, instance b
// changes it, a resolves it again" and returns how many times a served
// what b had already revoked or replaced. a and b are two Stores, two
// Redis clients, on one Redis and one key prefix, like two sessiond
// instances. Each round checks that a really had the record in its
// client-side cache before b's change, so that the test cannot pass by
// missing the cache.
func staleReads(t *testing.T, a, b *Store, rounds int) (deleted, rotated, changed int) {
	t.Helper()
	cache := func(s *session.Session) {
		t.Helper()
		got, err := a.ByHash(ctx, s.TokenHash)
		if err != nil || got.Version != s.Version {
			t.Fatalf("a.ByHash before the change: %+v, %v", got, err)
		}
		if a.cache == CacheOff {
			return
		}
		warm(t, a, s.TokenHash) // the pointer and the record in a's cache
		res := a.c.DoCache(ctx, a.c.B().Get().Key(a.recordKey(s.UserID, s.ID)).Cache(), a.cacheTTL)
		if !res.IsCacheHit() {
			t.Fatalf("a did not hold the record in its client-side cache")
		}
	}
	for range rounds {
		// Revocation: b deletes the session.
		s := newSession("user-" + randID())
		storetest.MustCreate(t, b, s)
		cache(s)
		if err := b.Delete(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if got, err := a.ByHash(ctx, s.TokenHash); !errors.Is(err, session.ErrNotFound) {
			if err != nil {
				t.Fatalf("a.ByHash after b.Delete: %v", err)
			}
			deleted++
			_ = got
		}

		// Rotation: b gives the session a new token; the old one dies.
		s = newSession("user-" + randID())
		storetest.MustCreate(t, b, s)
		cache(s)
		old := s.TokenHash
		s.TokenHash, s.PrevTokenHash = storetest.NewHash(), session.Hash{}
		if err := b.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		if got, err := a.ByHash(ctx, old); !errors.Is(err, session.ErrNotFound) {
			if err != nil {
				t.Fatalf("a.ByHash(old token) after b rotated it: %v", err)
			}
			rotated++
			_ = got
		}
		if got, err := a.ByHash(ctx, s.TokenHash); err != nil || got.Version != s.Version {
			t.Fatalf("a.ByHash(new token) after the rotation: %+v, %v", got, err)
		}

		// Privilege change without a new token: a sees the new roles.
		s.Roles = []string{"demoted"}
		if err := b.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		if got, err := a.ByHash(ctx, s.TokenHash); err != nil || !slices.Equal(got.Roles, s.Roles) {
			if err != nil {
				t.Fatalf("a.ByHash after b changed the roles: %v", err)
			}
			changed++
		}
		if err := b.Delete(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	return deleted, rotated, changed
}

// TestCacheNeverServesRevoked is the cache-invalidation test: with the
// client-side cache (fenced, the default) a revocation or change made
// through one instance holds on another at once, 200 times in a row.
func TestCacheNeverServesRevoked(t *testing.T) {
	const rounds = 200
	for _, mode := range []CacheMode{CacheFenced, CacheOff} {
		t.Run("cache="+string(mode), func(t *testing.T) {
			t.Parallel()
			url := withOptions("redis://"+testenv.Redis(t), "prefix", testPrefix(), "cache", string(mode))
			a, b := openTest(t, url), openTest(t, url)
			deleted, rotated, changed := staleReads(t, a, b, rounds)
			if deleted+rotated+changed > 0 {
				t.Errorf("in %d rounds, instance a served a session instance b had deleted %d times, a rotated-out token %d times, and old roles %d times; want 0", rounds, deleted, rotated, changed)
			}
		})
	}
}

// TestCacheUnfencedStaleness measures, without failing, how often the
// unfenced cache serves what another instance has just revoked: the
// window between Redis acknowledging the revocation and the other
// instance applying the invalidation message. Within one instance the
// unfenced cache still reads its own writes.
func TestCacheUnfencedStaleness(t *testing.T) {
	const rounds = 200
	url := withOptions("redis://"+testenv.Redis(t), "prefix", testPrefix(), "cache", string(CacheUnsafeUnfenced))
	a, b := openTest(t, url), openTest(t, url)
	deleted, rotated, changed := staleReads(t, a, b, rounds)
	t.Logf("unfenced cache, %d rounds: stale after delete %d, after rotation %d, after role change %d", rounds, deleted, rotated, changed)

	// One instance reads its own writes.
	deleted, rotated, changed = staleReads(t, a, a, rounds)
	if deleted+rotated+changed > 0 {
		t.Errorf("the unfenced cache did not read its own writes: stale %d/%d/%d times in %d rounds", deleted, rotated, changed, rounds)
	}
}
