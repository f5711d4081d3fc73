package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisCluster is a Redis Cluster of masters, and possibly replicas of
// them, each a redis-server process that a test started.
type RedisCluster struct {
	// Nodes are the masters; node i serves the i-th of len(Nodes) equal
	// ranges of the 16384 slots.
	Nodes []*RedisServer
	// Replicas[i] are the replicas of Nodes[i] (none from
	// StartRedisCluster).
	Replicas [][]*RedisServer
}

// StartRedisCluster starts a Redis Cluster of the given number of masters
// (at least 1) and no replicas, from redis-server processes of its own on
// free ports, and stops them when the test ends. It assigns the slots and
// joins the nodes with CLUSTER ADDSLOTSRANGE and CLUSTER MEET, as
// redis-cli --cluster create does, and returns once every node reports
// cluster_state:ok and knows all the others.
func StartRedisCluster(t testing.TB, masters int) *RedisCluster {
	t.Helper()
	return StartRedisClusterReplicas(t, masters, 0)
}

// StartRedisClusterReplicas is StartRedisCluster with the given number
// of replicas for each master, joined with CLUSTER REPLICATE. It returns
// once every replica is in sync with its master and every node knows it
// as that master's replica, so that a CLUSTER FAILOVER can start at once.
func StartRedisClusterReplicas(t testing.TB, masters, replicas int) *RedisCluster {
	t.Helper()
	if masters < 1 || replicas < 0 {
		t.Fatalf("testenv: a cluster of %d masters with %d replicas each", masters, replicas)
	}
	c := &RedisCluster{Replicas: make([][]*RedisServer, masters)}
	startNode := func() *RedisServer {
		// A relative path is in the node's --dir, a directory of its own.
		return StartRedis(t,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000",
			syncNow, "0")
	}
	for i := range masters {
		c.Nodes = append(c.Nodes, startNode())
		for range replicas {
			c.Replicas[i] = append(c.Replicas[i], startNode())
		}
	}
	const slots = 16384
	for i, n := range c.Nodes {
		first, last := i*slots/masters, (i+1)*slots/masters-1
		if err := RedisCommand(n.Addr(), "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(first), strconv.Itoa(last)); err != nil {
			t.Fatalf("testenv: CLUSTER ADDSLOTSRANGE on %s: %v", n.Addr(), err)
		}
		if i > 0 {
			if err := RedisCommand(n.Addr(), "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(c.Nodes[0].Port)); err != nil {
				t.Fatalf("testenv: CLUSTER MEET: %v", err)
			}
		}
	}
	all := slices.Clone(c.Nodes)
	for _, rs := range c.Replicas {
		for _, r := range rs {
			if err := RedisCommand(r.Addr(), "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(c.Nodes[0].Port)); err != nil {
				t.Fatalf("testenv: CLUSTER MEET: %v", err)
			}
			all = append(all, r)
		}
	}
	known := "cluster_known_nodes:" + strconv.Itoa(len(all))
	if replicas > 0 {
		// A node can replicate a master only once it knows it.
		for _, n := range all {
			waitRedis(t, 20*time.Second, "every node to know the others", func() bool {
				info, err := RedisReply(n.Addr(), "CLUSTER", "INFO")
				return err == nil && strings.Contains(info, known)
			})
		}
		var wantSlaves []string // "ID MASTERID"
		for i, m := range c.Nodes {
			mid, err := RedisReply(m.Addr(), "CLUSTER", "MYID")
			if err != nil {
				t.Fatalf("testenv: CLUSTER MYID: %v", err)
			}
			for _, r := range c.Replicas[i] {
				if err := RedisCommand(r.Addr(), "CLUSTER", "REPLICATE", mid); err != nil {
					t.Fatalf("testenv: CLUSTER REPLICATE on %s: %v", r.Addr(), err)
				}
				rid, err := RedisReply(r.Addr(), "CLUSTER", "MYID")
				if err != nil {
					t.Fatalf("testenv: CLUSTER MYID: %v", err)
				}
				wantSlaves = append(wantSlaves, rid+" "+mid)
			}
		}
		for _, m := range c.Nodes {
			waitRedis(t, 20*time.Second, "the replicas to be in sync", func() bool {
				info, err := RedisReply(m.Addr(), "INFO", "replication")
				return err == nil && strings.Count(info, ",state=online,") == replicas
			})
		}
		for _, n := range all {
			waitRedis(t, 20*time.Second, "every node to know the replicas", func() bool {
				nodes, err := RedisReply(n.Addr(), "CLUSTER", "NODES")
				if err != nil {
					return false
				}
				seen := map[string]bool{}
				for line := range strings.Lines(nodes) {
					// ID ADDR FLAGS MASTER …
					if f := strings.Fields(line); len(f) > 3 && strings.Contains(f[2], "slave") {
						seen[f[0]+" "+f[3]] = true
					}
				}
				for _, w := range wantSlaves {
					if !seen[w] {
						return false
					}
				}
				return true
			})
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range all {
		for {
			info, err := RedisReply(n.Addr(), "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, known) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testenv: the cluster is not ready: %v\n%s", err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// Addrs returns the host:port of every node.
func (c *RedisCluster) Addrs() []string {
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr())
	}
	return addrs
}

// URL returns the redis+cluster:// URL that lists every node.
func (c *RedisCluster) URL() string {
	return "redis+cluster://" + strings.Join(c.Addrs(), ",")
}

// RedisSentinel is a Redis master, its replicas and one Sentinel watching
// them, all redis-server processes that a test started.
type RedisSentinel struct {
	// Name is the master set's name, which the Sentinel answers for.
	Name     string
	Master   *RedisServer
	Replicas []*RedisServer
	Sentinel *RedisServer
}

// StartRedisSentinel starts a master, the given number of replicas of it
// and a Sentinel that monitors them under the name "mymaster" with a
// quorum of 1 (it declares the master down after 2 s without an answer),
// and stops them when the test ends. It returns once every replica is in
// sync and the Sentinel names the master and knows every replica, so that
// a failover can start at once.
func StartRedisSentinel(t testing.TB, replicas int) *RedisSentinel {
	t.Helper()
	s := &RedisSentinel{Name: "mymaster", Master: StartRedis(t, syncNow, "0")}
	for range replicas {
		s.Replicas = append(s.Replicas, StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port)))
	}
	// A Sentinel learns of the replicas from the master's INFO, which it
	// asks for on connecting and then every 10 seconds: have them in sync
	// before it connects, so that it knows them at once.
	waitRedis(t, 20*time.Second, "the replicas to be in sync", func() bool {
		info, err := RedisReply(s.Master.Addr(), "INFO", "replication")
		return err == nil && strings.Count(info, ",state=online,") == replicas
	})
	s.Sentinel = startSentinel(t, s.Name, s.Master.Addr())
	want := "127.0.0.1\n" + strconv.Itoa(s.Master.Port)
	waitRedis(t, 30*time.Second, "the sentinel to know the master and its replicas", func() bool {
		addr, err := RedisReply(s.Sentinel.Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Name)
		if err != nil || addr != want {
			return false
		}
		r, err := RedisReply(s.Sentinel.Addr(), "SENTINEL", "REPLICAS", s.Name)
		if err != nil {
			return false
		}
		for _, rep := range s.Replicas {
			if !strings.Contains(r, "\n"+strconv.Itoa(rep.Port)+"\n") {
				return false
			}
		}
		return true
	})
	return s
}

// URL returns the redis+sentinel:// URL of the master set.
func (s *RedisSentinel) URL() string {
	return fmt.Sprintf("redis+sentinel://%s/?master=%s", s.Sentinel.Addr(), s.Name)
}

// startSentinel starts a Sentinel (redis-server --sentinel) on a free
// port that monitors the master at masterAddr under the name master, with
// a quorum of 1, waits until it answers, and stops it when the test ends.
func startSentinel(t testing.TB, master, masterAddr string) *RedisServer {
	t.Helper()
	r := &RedisServer{t: t, bin: RedisServerBinary(t), Port: FreePort(t), Dir: t.TempDir()}
	host, port, err := net.SplitHostPort(masterAddr)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(r.Dir, "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 2000\nsentinel failover-timeout %s 10000\n",
		r.Port, r.Dir, filepath.Join(r.Dir, "sentinel.log"), master, host, port, master, master)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	r.args = []string{conf, "--sentinel"}
	t.Cleanup(r.Kill)
	r.Start()
	return r
}

// syncNow, with "0", has a master send a new replica its data at once,
// instead of waiting 5 s (the default) for more replicas to share the
// transfer with.
const syncNow = "--repl-diskless-sync-delay"

// waitRedis polls cond every 50ms until it holds, failing the test after
// timeout.
func waitRedis(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("testenv: timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
