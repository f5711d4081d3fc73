package redisstore

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
)

// memorySessions is how many sessions TestMemoryPerSession stores: 100,000,
// or 20,000 with -short or -race; set SESSIOND_MEMORY_SESSIONS to change it.
func memorySessions(t *testing.T) int {
	if v := os.Getenv("SESSIOND_MEMORY_SESSIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			t.Fatalf("SESSIOND_MEMORY_SESSIONS=%q: want a number of at least 1000", v)
		}
		return n
	}
	if testing.Short() || raceEnabled {
		// The figures hardly change, and the race detector would make
		// 100,000 Creates take most of the package's time budget.
		return 20_000
	}
	return 100_000
}

// chromeUA is a common desktop browser's User-Agent (111 bytes).
const chromeUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"

// TestMemoryPerSession stores 100,000 sessions shaped as sessiond makes
// them (22-character session IDs; user IDs of users.Accounts, "u_" and 16
// characters; one role; an IPv4 address and a 111-byte browser user agent,
// the same at creation and last use; no app data) in a Redis of its own and
// reports the memory each takes, with its pointers and its share of its
// user's index: by INFO used_memory (everything, including the expiry table
// and the hash tables' buckets) and by MEMORY USAGE of all the keys of
// 1,000 of them, as created and after a Touch. It does so for users with
// one session each and (with 40,000 sessions) for users with four. It fails
// if a session takes more than 1 KiB, or more than DESIGN.md's 512 bytes by
// MEMORY USAGE.
func TestMemoryPerSession(t *testing.T) {
	for _, perUser := range []int{1, 4} {
		n := memorySessions(t)
		if perUser > 1 {
			n = min(n, 40_000) // enough to show what sharing an index saves
		}
		t.Run(fmt.Sprintf("%d-per-user", perUser), func(t *testing.T) {
			srv := testenv.StartRedis(t)
			st := openTest(t, withOptions("redis://"+srv.Addr(), "cache", "off"))
			before := usedMemory(t, st)

			var mu sync.Mutex
			var sample []*session.Session
			var wg sync.WaitGroup
			work := make(chan int)
			for range 64 {
				wg.Go(func() {
					for u := range work {
						user := fmt.Sprintf("u_%016d", u)
						for range perUser {
							s := newSession(user)
							s.CreatedUserAgent, s.LastUserAgent = chromeUA, chromeUA
							if _, err := st.Create(ctx, s, session.Limit{Max: 100}); err != nil {
								t.Error(err)
								return
							}
							if u < 1000/perUser {
								mu.Lock()
								sample = append(sample, s)
								mu.Unlock()
							}
						}
					}
				})
			}
			for u := range n / perUser {
				work <- u
			}
			close(work)
			wg.Wait()
			if t.Failed() {
				return
			}
			used := float64(usedMemory(t, st)-before) / float64(n)
			tables := tableOverhead(t, st) / float64(n)

			// MEMORY USAGE of each sampled session's record and pointers,
			// and of its user's index (if any), shared by perUser
			// sessions; then again after a Touch a minute (and some
			// microseconds) later from the same client, which gives each
			// record a last-seen time of its own.
			measure := func() (total [4]int64, rec int64) {
				seen := map[string]bool{}
				for _, s := range sample {
					rk := st.recordKey(s.UserID, s.ID)
					for i, k := range []string{rk, st.hashKey(s.TokenHash), st.idKey(s.ID), st.indexKey(st.namespace(s.UserID))} {
						if seen[k] {
							continue
						}
						seen[k] = true
						m, err := st.c.Do(ctx, st.c.B().MemoryUsage().Key(k).Build()).AsInt64()
						if err != nil && !rueidis.IsRedisNil(err) { // nil: no such key (a user with one session has no index)
							t.Fatalf("MEMORY USAGE %s: %v", k, err)
						}
						total[i] += m
					}
					n, _ := st.c.Do(ctx, st.c.B().Strlen().Key(rk).Build()).AsInt64()
					rec = max(rec, n)
				}
				return total, rec
			}
			per := func(total [4]int64, i int) float64 { return float64(total[i]) / float64(len(sample)) }
			sum := func(total [4]int64) float64 { return per(total, 0) + per(total, 1) + per(total, 2) + per(total, 3) }
			total, rec := measure()
			usage := sum(total)
			t.Logf("%d sessions, %d per user, records of %d bytes: %.0f bytes per session by INFO used_memory, of which %.0f for the expiry table's entries and the tables' buckets (MEMORY STATS); %.0f by MEMORY USAGE (record %.0f, token pointer %.0f, ID pointer %.0f, index share %.0f)",
				n, perUser, rec, used, tables, usage, per(total, 0), per(total, 1), per(total, 2), per(total, 3))
			for _, s := range sample {
				at := s.LastSeenAt.Add(time.Minute + 123*time.Microsecond)
				if err := st.Touch(ctx, s.ID, session.TouchInfo{At: at, IP: s.LastIP, UserAgent: s.LastUserAgent, IdleDeadline: at.Add(30 * time.Minute)}); err != nil {
					t.Fatal(err)
				}
			}
			touched, trec := measure()
			t.Logf("after a Touch: records of %d bytes, %.0f bytes per session by MEMORY USAGE (record %.0f)", trec, sum(touched), per(touched, 0))
			if used > 1024 || usage > 1024 {
				t.Errorf("a session takes %.0f bytes (used_memory) / %.0f (MEMORY USAGE), more than 1 KiB", used, usage)
			}
			if usage > 512 || sum(touched) > 512 {
				t.Errorf("a session takes %.0f bytes by MEMORY USAGE (%.0f after a Touch), more than the 512 of DESIGN.md", usage, sum(touched))
			}
		})
	}
}

// tableOverhead returns what the hash tables of database 0 take beyond
// what MEMORY USAGE counts: the buckets of the keyspace table and of the
// expiry table, and the expiry table's entries. MEMORY STATS counts in
// overhead.hashtable.main the keyspace entries and object headers too (24
// and 16 bytes a key), which MEMORY USAGE includes.
func tableOverhead(t *testing.T, st *Store) float64 {
	t.Helper()
	stats, err := st.c.Do(ctx, st.c.B().MemoryStats().Build()).AsMap()
	if err != nil {
		t.Fatalf("MEMORY STATS: %v", err)
	}
	m := stats["db.0"]
	db, err := m.AsMap()
	if err != nil {
		t.Fatalf("MEMORY STATS db.0: %v", err)
	}
	var sum int64
	for _, f := range []string{"overhead.hashtable.main", "overhead.hashtable.expires"} {
		v := db[f]
		n, err := v.AsInt64()
		if err != nil {
			t.Fatalf("MEMORY STATS db.0 %s: %v", f, err)
		}
		sum += n
	}
	m = stats["keys.count"]
	keys, err := m.AsInt64()
	if err != nil {
		t.Fatalf("MEMORY STATS keys.count: %v", err)
	}
	return float64(sum - 40*keys)
}

// usedMemory returns INFO memory's used_memory.
func usedMemory(t *testing.T, st *Store) int64 {
	t.Helper()
	info, err := st.c.Do(ctx, st.c.B().Info().Section("memory").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("INFO memory has no used_memory")
	return 0
}
