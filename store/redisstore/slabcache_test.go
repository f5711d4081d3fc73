package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/testenv"
)

// replies returns real Redis replies to GET: nil for a key that does not
// exist, then a bulk string of each size in sizes: msgs[i] is the digit i
// repeated.
func replies(t testing.TB, sizes ...int) []rueidis.RedisMessage {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{testenv.Redis(t)}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	prefix := testPrefix()
	get := func(key string) rueidis.RedisMessage {
		t.Helper()
		m, err := c.Do(ctx, c.B().Get().Key(key).Build()).ToMessage()
		if err != nil && !rueidis.IsRedisNil(err) {
			t.Fatal(err)
		}
		return m
	}
	msgs := []rueidis.RedisMessage{get(prefix + "absent")}
	for i, n := range sizes {
		key := fmt.Sprint(prefix, i)
		v := strings.Repeat(fmt.Sprint((i+1)%10), n)
		if err := c.Do(ctx, c.B().Set().Key(key).Value(v).Ex(time.Minute).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, get(key))
		c.Do(ctx, c.B().Del().Key(key).Build())
	}
	return msgs
}

// value returns the bytes of a GET reply, or "<nil>".
func value(t testing.TB, m rueidis.RedisMessage) string {
	t.Helper()
	if m.IsNil() {
		return "<nil>"
	}
	s, err := m.ToString()
	if err != nil {
		t.Fatalf("cached reply: %v", err)
	}
	return s
}

// fill runs a read of key through c as rueidis does on a miss: Flight,
// then Update with the reply from Redis.
func fill(t testing.TB, c *slabCache, key string, ttl time.Duration, m rueidis.RedisMessage) {
	t.Helper()
	if v, e := c.Flight(key, "GET", ttl, time.Now()); v.IsCacheHit() || e != nil {
		t.Fatalf("Flight(%q) before fill: hit %v, waiting %v; want a miss to send", key, v.IsCacheHit(), e != nil)
	}
	c.Update(key, "GET", m)
}

// cached returns what c holds for key, and whether it holds anything.
func cached(t testing.TB, c *slabCache, key string) (string, bool) {
	t.Helper()
	v, e := c.Flight(key, "GET", time.Minute, time.Now())
	if e != nil {
		t.Fatalf("Flight(%q): a flight is in progress", key)
	}
	if !v.IsCacheHit() {
		c.Cancel(key, "GET", errors.New("test: not sent"))
		return "", false
	}
	return value(t, v), true
}

func TestSlabCache(t *testing.T) {
	msgs := replies(t, 3, 200)
	c := newSlabCache(1 << 20)

	fill(t, c, "k1", time.Minute, msgs[1])
	fill(t, c, "k2", time.Minute, msgs[2])
	fill(t, c, "gone", time.Minute, msgs[0])
	for key, want := range map[string]string{"k1": "111", "k2": strings.Repeat("2", 200), "gone": "<nil>"} {
		if got, ok := cached(t, c, key); !ok || got != want {
			t.Errorf("cached %q: %q, %v; want %q", key, got, ok, want)
		}
	}

	// An invalidation drops the key's entry and no other.
	c.Delete([]rueidis.RedisMessage{msgs[1]}) // a key named "111": not cached
	c.Delete(replyKeys(t, "k1"))
	if _, ok := cached(t, c, "k1"); ok {
		t.Error("k1 is still cached after its invalidation")
	}
	if got, ok := cached(t, c, "k2"); !ok || got != strings.Repeat("2", 200) {
		t.Errorf("k2 after k1's invalidation: %q, %v", got, ok)
	}

	// A client-side TTL ends an entry.
	fill(t, c, "short", time.Millisecond, msgs[1])
	time.Sleep(5 * time.Millisecond)
	if _, ok := cached(t, c, "short"); ok {
		t.Error("an entry past its TTL is served")
	}

	// Delete(nil) drops everything.
	c.Delete(nil)
	if n := c.entries(); n != 0 {
		t.Errorf("%d entries after Delete(nil)", n)
	}
}

// replyKeys returns keys as an invalidation message holds them.
func replyKeys(t testing.TB, keys ...string) []rueidis.RedisMessage {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{testenv.Redis(t)}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []rueidis.RedisMessage
	for _, k := range keys {
		m, err := c.Do(ctx, c.B().Echo().Message(k).Build()).ToMessage()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestSlabCacheWaitersSeeAHit checks that a read that waits for another's
// flight gets the reply marked as a cache hit: that reply answers a read
// sent before the waiter may have begun, so a lookup must fence it as it
// fences a cached record.
func TestSlabCacheWaitersSeeAHit(t *testing.T) {
	msgs := replies(t, 10)
	c := newSlabCache(1 << 20)
	if _, e := c.Flight("k", "GET", time.Minute, time.Now()); e != nil {
		t.Fatal("the first Flight waits; want it to send")
	}
	_, e := c.Flight("k", "GET", time.Minute, time.Now())
	if e == nil {
		t.Fatal("the second Flight sends its own read; want it to wait for the first")
	}
	c.Update("k", "GET", msgs[1])
	m, err := e.Wait(ctx)
	if err != nil || !m.IsCacheHit() || value(t, m) != strings.Repeat("1", 10) {
		t.Fatalf("waiter got %v, hit %v, %v", m, m.IsCacheHit(), err)
	}

	// A failed flight fails its waiters and leaves nothing cached.
	c.Flight("f", "GET", time.Minute, time.Now())
	_, e = c.Flight("f", "GET", time.Minute, time.Now())
	boom := errors.New("boom")
	c.Cancel("f", "GET", boom)
	if _, err := e.Wait(ctx); !errors.Is(err, boom) {
		t.Errorf("waiter of a canceled flight: %v, want %v", err, boom)
	}
	if _, ok := cached(t, c, "f"); ok {
		t.Error("a canceled flight left an entry")
	}

	// A waiter whose context ends stops waiting.
	c.Flight("w", "GET", time.Minute, time.Now())
	_, e = c.Flight("w", "GET", time.Minute, time.Now())
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.Wait(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter with a canceled context: %v", err)
	}

	// Close fails the flights in progress and empties the cache; the
	// cache then keeps nothing.
	_, e = c.Flight("w", "GET", time.Minute, time.Now())
	c.Close(boom)
	if _, err := e.Wait(ctx); !errors.Is(err, boom) {
		t.Errorf("waiter after Close: %v, want %v", err, boom)
	}
	if _, ok := cached(t, c, "k"); ok {
		t.Error("an entry survived Close")
	}
	if _, e := c.Flight("k", "GET", time.Minute, time.Now()); e != nil {
		t.Error("a closed cache makes reads wait")
	}
	c.Update("k", "GET", msgs[1])
	if n := c.entries(); n != 0 {
		t.Errorf("a closed cache keeps %d entries", n)
	}
}

// TestSlabCacheBounded fills a 256 KiB cache with 10 MB of entries: it
// keeps no more than its budget, the newest entries stay, and a reply
// handed out before its slab was dropped still reads the same.
func TestSlabCacheBounded(t *testing.T) {
	msgs := replies(t, 1000)
	const budget = 256 << 10
	c := newSlabCache(budget)
	fill(t, c, "first", time.Minute, msgs[1])
	early, _ := c.Flight("first", "GET", time.Minute, time.Now())
	for i := range 10_000 {
		fill(t, c, fmt.Sprint("key-", i), time.Minute, msgs[1])
	}
	var size int
	for _, s := range c.slabs {
		size += cap(s)
	}
	if size > budget {
		t.Errorf("the slabs take %d bytes; want at most %d", size, budget)
	}
	if n := c.entries(); n == 0 || n*1000 > budget {
		t.Errorf("%d entries of 1000 bytes in a %d-byte cache", n, budget)
	}
	if _, ok := cached(t, c, "key-9999"); !ok {
		t.Error("the newest entry was evicted")
	}
	if _, ok := cached(t, c, "first"); ok {
		t.Error("the oldest entry was kept")
	}
	if got := value(t, early); got != strings.Repeat("1", 1000) {
		t.Errorf("a reply handed out before its slab was dropped reads %q", got)
	}
}

// TestSlabCacheConcurrent reads, fills and invalidates from many
// goroutines at once (for the race detector).
func TestSlabCacheConcurrent(t *testing.T) {
	msgs := replies(t, 50, 300)
	c := newSlabCache(64 << 10)
	var keys []string
	for i := range 97 {
		keys = append(keys, fmt.Sprint("k", i))
	}
	invalidations := replyKeys(t, keys...)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := (i*7 + g) % len(keys)
				key := keys[k]
				v, e := c.Flight(key, "GET", time.Minute, time.Now())
				switch {
				case v.IsCacheHit():
					value(t, v)
				case e != nil:
					if m, err := e.Wait(ctx); err == nil {
						value(t, m)
					}
				default:
					c.Update(key, "GET", msgs[1+i%2])
				}
				if i%13 == 0 {
					c.Delete(invalidations[k : k+1])
				}
			}
		})
	}
	wg.Wait()
}

// FuzzSlabCache runs the operations its input spells out on a small
// cache, which evicts often, beside a map of what Redis holds, and checks
// that the cache never serves a value that is not the key's current one.
// Each operation is three bytes: what to do, a key among 16 (of lengths
// up to 300 bytes) and a reply among 5 (nil, and strings of up to 2 KB).
func FuzzSlabCache(f *testing.F) {
	f.Add([]byte{0, 1, 2, 1, 1, 0, 2, 1, 0, 0, 3, 1, 1, 0, 3})
	f.Add([]byte{0, 1, 0, 1, 1, 2, 0, 1, 0, 2, 1, 0, 0, 1, 0}) // read, write, read, delete, read
	f.Add(bytes.Repeat([]byte{0, 5, 4, 0, 6, 3, 2, 5, 0, 1, 5, 0}, 40))
	msgs := replies(f, 1, 100, 700, 2000)
	var keys []string
	for i := range 16 {
		keys = append(keys, strings.Repeat(fmt.Sprint(i%10), 1+i*20))
	}
	invalidations := make([][]rueidis.RedisMessage, len(keys))
	for i, k := range keys {
		invalidations[i] = replyKeys(f, k)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		c := newSlabCache(16 << 10)
		redis := map[string]int{} // key → index in msgs; absent: nil
		for len(ops) >= 3 {
			op, k, m := ops[0]%4, int(ops[1])%len(keys), int(ops[2])%len(msgs)
			ops = ops[3:]
			key := keys[k]
			switch op {
			case 0: // a read: from the cache, or from Redis into it
				want := "<nil>"
				if i, ok := redis[key]; ok {
					want = value(t, msgs[i])
				}
				v, e := c.Flight(key, "GET", time.Minute, time.Now())
				if e != nil {
					t.Fatalf("read of %q waits, with no flight in progress", key)
				}
				if v.IsCacheHit() {
					if got := value(t, v); got != want {
						t.Fatalf("cache served %.20q for %q; Redis holds %.20q", got, key, want)
					}
					continue
				}
				reply := msgs[0]
				if i, ok := redis[key]; ok {
					reply = msgs[i]
				}
				c.Update(key, "GET", reply)
			case 1: // a write, and its invalidation
				redis[key] = m
				c.Delete(invalidations[k])
			case 2: // a deletion, and its invalidation
				delete(redis, key)
				c.Delete(invalidations[k])
			case 3: // an invalidation of everything
				if m == 0 {
					c.Delete(nil)
				}
			}
		}
	})
}
