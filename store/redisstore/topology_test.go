package redisstore

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// TestCluster runs the conformance suite and the cache-invalidation test
// against a three-master Redis Cluster. A user's records and index share
// one slot, but the pointers are spread over all three masters.
func TestCluster(t *testing.T) {
	url := testenv.StartRedisCluster(t, 3).URL()
	open := func(t testing.TB, prefix string) *Store {
		return openTest(t, withOptions(url, "prefix", prefix))
	}
	st := open(t, testPrefix())
	if st.c.Mode() != rueidis.ClientModeCluster {
		t.Fatalf("client mode %s, want cluster", st.c.Mode())
	}
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, harness(func(t *testing.T) *Store { return open(t, testPrefix()) }))
	})
	t.Run("KeysOnSeveralMasters", func(t *testing.T) {
		// The sessions of many users, and their pointers, land on every
		// master; each master holds all of a namespace's keys (records
		// and index) or none.
		for range 30 {
			storetest.MustCreate(t, st, newSession("u_"+randID()))
		}
		perNode := map[string]int{}
		namespaces := map[string]string{}
		scanKeys(t, st, func(addr string, _ rueidis.Client, key string) {
			perNode[addr]++
			if tag, _, ok := strings.Cut(strings.TrimPrefix(key, st.prefix+"{"), "}"); ok && strings.HasPrefix(key, st.prefix+"{") {
				if other, seen := namespaces[tag]; seen && other != addr {
					t.Errorf("namespace %s has keys on %s and %s", tag, other, addr)
				}
				namespaces[tag] = addr
			}
		})
		if len(perNode) != 3 {
			t.Errorf("keys on %d masters, want 3: %v", len(perNode), perNode)
		}
	})
	t.Run("CacheNeverServesRevoked", func(t *testing.T) {
		prefix := testPrefix()
		a, b := open(t, prefix), open(t, prefix)
		const rounds = 100
		deleted, rotated, changed := staleReads(t, a, b, rounds)
		if deleted+rotated+changed > 0 {
			t.Errorf("in %d rounds on the cluster, a served stale sessions %d/%d/%d times (deleted/rotated/changed); want 0", rounds, deleted, rotated, changed)
		}
	})
	t.Run("FencesSharedByNode", func(t *testing.T) {
		// Lookups of records in different slots of one master share
		// fences: 60 users' sessions, in 60 slots on 3 masters, looked
		// up at once, send far fewer fences than 60.
		const users, rounds = 60, 5
		var hashes []session.Hash
		nodes := map[uint16]bool{}
		for range users {
			s := newSession("u_" + randID())
			storetest.MustCreate(t, st, s)
			hashes = append(hashes, s.TokenHash)
			_, idx, ok := st.node(keySlot(st.recordKey(s.UserID, s.ID)))
			if !ok {
				t.Fatalf("the Store does not know the node of a record's slot")
			}
			nodes[idx] = true
			if _, err := st.ByHash(ctx, s.TokenHash); err != nil { // caches it
				t.Fatal(err)
			}
		}
		if len(nodes) != 3 {
			t.Errorf("records on %d nodes, want 3", len(nodes))
		}
		sent := st.fences.sent.Load()
		for range rounds {
			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, h := range hashes {
				wg.Go(func() {
					<-start
					if _, err := st.ByHash(ctx, h); err != nil {
						t.Error(err)
					}
				})
			}
			close(start)
			wg.Wait()
		}
		n := st.fences.sent.Load() - sent
		t.Logf("%d rounds of %d concurrent lookups on 3 masters sent %d fences", rounds, users, n)
		if n > rounds*users/2 {
			t.Errorf("%d lookups in %d slots sent %d fences: want them shared by node", rounds*users, users, n)
		}
	})
	t.Run("CacheNeverServesRevokedConcurrently", func(t *testing.T) {
		// Fences are shared per node.
		prefix := testPrefix()
		a, b := open(t, prefix), open(t, prefix)
		const rounds = 10
		deleted, rotated, changed, after := concurrentStaleReads(t, a, b, 16, rounds, 200*time.Microsecond)
		if deleted+rotated+changed > 0 {
			t.Errorf("of %d lookups that started after b's change on the cluster, a served stale sessions %d/%d/%d times (deleted/rotated/changed); want 0", after, deleted, rotated, changed)
		}
	})
}

// TestSentinel runs the conformance suite through a Sentinel that watches
// one master.
func TestSentinel(t *testing.T) {
	set := testenv.StartRedisSentinel(t, 0)
	url := set.URL()
	storetest.Run(t, harness(func(t *testing.T) *Store { return openTest(t, withOptions(url, "prefix", testPrefix())) }))

	// The store talks to the master the sentinel named.
	st := openTest(t, withOptions(url, "prefix", testPrefix()))
	s := newSession("u_" + randID())
	storetest.MustCreate(t, st, s)
	if n, _ := testenv.RedisReply(set.Master.Addr(), "EXISTS", st.recordKey(s.UserID, s.ID)); n != "1" {
		t.Errorf("the session is not on the master the sentinel monitors")
	}
	if _, err := st.ByHash(ctx, s.TokenHash); err != nil {
		t.Errorf("ByHash through the sentinel: %v", err)
	}
}

// TestSentinelFailover kills the master a Sentinel watches and checks that
// the Store follows the Sentinel to the replica it promotes, sessions
// included.
func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover takes about 15 seconds")
	}
	set := testenv.StartRedisSentinel(t, 1)
	master, replica := set.Master, set.Replicas[0]
	st := openTest(t, withOptions(set.URL(), "prefix", testPrefix(), "timeout", "500ms"))
	s := newSession("u_" + randID())
	storetest.MustCreate(t, st, s)
	waitFor(t, 10*time.Second, "the session to reach the replica", func() bool {
		n, _ := testenv.RedisReply(replica.Addr(), "EXISTS", st.recordKey(s.UserID, s.ID))
		return n == "1"
	})

	master.Kill()
	start := time.Now()
	waitFor(t, 30*time.Second, "the store to resolve the session on the new master", func() bool {
		got, err := st.ByHash(ctx, s.TokenHash)
		if err == nil && got.ID != s.ID {
			t.Fatalf("ByHash returned session %s, want %s", got.ID, s.ID)
		}
		return err == nil
	})
	s2 := newSession(s.UserID)
	waitFor(t, 10*time.Second, "the store to write to the new master", func() bool {
		_, err := st.Create(ctx, s2, session.Limit{})
		return err == nil
	})
	if n, _ := testenv.RedisReply(replica.Addr(), "EXISTS", st.recordKey(s2.UserID, s2.ID)); n != "1" {
		t.Errorf("the new session is not on the promoted replica")
	}
	t.Logf("the store resolved and wrote sessions %v after the master died", time.Since(start).Round(100*time.Millisecond))
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
