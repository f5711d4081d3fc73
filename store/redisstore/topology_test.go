package redisstore

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// startCluster starts a Redis Cluster of three masters and no replicas,
// from redis-server processes of its own, and returns its URL. It assigns
// the slots and joins the nodes with CLUSTER ADDSLOTSRANGE and CLUSTER
// MEET, as redis-cli --cluster create does, and waits until every node
// reports cluster_state:ok.
func startCluster(t *testing.T) string {
	t.Helper()
	var nodes []*testenv.RedisServer
	for range 3 {
		dir := t.TempDir()
		nodes = append(nodes, testenv.StartRedis(t,
			"--cluster-enabled", "yes",
			"--cluster-config-file", dir+"/nodes.conf",
			"--cluster-node-timeout", "5000"))
	}
	const slots = 16384
	for i, n := range nodes {
		first, last := i*slots/len(nodes), (i+1)*slots/len(nodes)-1
		if err := testenv.RedisCommand(n.Addr(), "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(first), strconv.Itoa(last)); err != nil {
			t.Fatalf("CLUSTER ADDSLOTSRANGE on %s: %v", n.Addr(), err)
		}
		if i > 0 {
			if err := testenv.RedisCommand(n.Addr(), "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(nodes[0].Port)); err != nil {
				t.Fatalf("CLUSTER MEET: %v", err)
			}
		}
	}
	var addrs []string
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		addrs = append(addrs, n.Addr())
		for {
			info, err := testenv.RedisReply(n.Addr(), "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the cluster is not ready: %v\n%s", err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// TestCluster runs the conformance suite and the cache-invalidation test
// against a three-master Redis Cluster. A user's keys share one slot, but
// the pointers are spread over all three masters.
func TestCluster(t *testing.T) {
	url := startCluster(t)
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
		// master; each master holds all of a user's keys or none.
		for range 30 {
			mustCreate(t, st, newSession("u_"+randID()))
		}
		perNode := map[string]int{}
		users := map[string]string{}
		scanKeys(t, st, func(addr string, _ rueidis.Client, key string) {
			perNode[addr]++
			if tag, _, ok := strings.Cut(strings.TrimPrefix(key, st.prefix+"{u:"), "}"); ok && strings.HasPrefix(key, st.prefix+"{") {
				if other, seen := users[tag]; seen && other != addr {
					t.Errorf("user %s has keys on %s and %s", tag, other, addr)
				}
				users[tag] = addr
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
}

// TestSentinel runs the conformance suite through a Sentinel that watches
// one master.
func TestSentinel(t *testing.T) {
	master := testenv.StartRedis(t)
	sentinel := testenv.StartRedisSentinel(t, "mymaster", master.Addr())
	deadline := time.Now().Add(10 * time.Second)
	for {
		addr, err := testenv.RedisReply(sentinel.Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
		if err == nil && addr == "127.0.0.1\n"+strconv.Itoa(master.Port) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sentinel does not know the master: %q, %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	url := fmt.Sprintf("redis+sentinel://%s/?master=mymaster", sentinel.Addr())
	storetest.Run(t, harness(func(t *testing.T) *Store { return openTest(t, withOptions(url, "prefix", testPrefix())) }))

	// The store talks to the master the sentinel named.
	st := openTest(t, withOptions(url, "prefix", testPrefix()))
	s := newSession("u_" + randID())
	mustCreate(t, st, s)
	if n, _ := testenv.RedisReply(master.Addr(), "EXISTS", st.recordKey(s.UserID, s.ID)); n != "1" {
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
	master := testenv.StartRedis(t)
	replica := testenv.StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	sentinel := testenv.StartRedisSentinel(t, "mymaster", master.Addr())
	// The Sentinel learns of the replica from the master's INFO, which it
	// asks for every 10 seconds.
	waitFor(t, 30*time.Second, "the sentinel to see the replica", func() bool {
		r, err := testenv.RedisReply(sentinel.Addr(), "SENTINEL", "REPLICAS", "mymaster")
		return err == nil && strings.Contains(r, strconv.Itoa(replica.Port))
	})
	st := openTest(t, withOptions(fmt.Sprintf("redis+sentinel://%s/?master=mymaster", sentinel.Addr()), "prefix", testPrefix(), "timeout", "500ms"))
	s := newSession("u_" + randID())
	mustCreate(t, st, s)
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
