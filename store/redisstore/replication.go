package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/lease"
)

// ErrNotReplicated is wrapped by the error of a change that ends or
// narrows a session (Delete, DeleteByUser, Update, an eviction by Create)
// when the master made it but fewer replicas than wait_replicas
// acknowledged it within wait_timeout: a failover could still lose it.
// See "Replication" in docs/stores/redis.md.
var ErrNotReplicated = errors.New("redisstore: the change did not reach enough replicas to survive a failover")

// autoReplicas returns the number of replicas wait_replicas=auto waits
// for: 1 if a master the Store sees has a replica connected, 0 otherwise.
func (st *Store) autoReplicas(ctx context.Context) (int, error) {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	for addr, n := range st.c.Nodes() {
		info, err := n.Do(ctx, n.B().Info().Section("replication").Build()).ToString()
		if err != nil {
			return 0, fmt.Errorf("redisstore: INFO replication on %s: %w", addr, err)
		}
		if infoField(info, "role") != "master" {
			continue
		}
		if k, _ := strconv.Atoi(infoField(info, "connected_slaves")); k > 0 {
			return 1, nil
		}
	}
	return 0, nil
}

// WaitReplicas returns how many replicas a change that ends or narrows a
// session must reach before the Store reports it done: the wait_replicas
// URL option, or what "auto" decided when the Store connected. 0 means
// the Store does not wait.
func (st *Store) WaitReplicas() int { return st.waitReplicas }

// waitCmd builds WAIT for the Store's replicas and timeout.
func (st *Store) waitCmd(b rueidis.Builder) rueidis.Completed {
	ms := max((st.waitTimeout+time.Millisecond-1)/time.Millisecond, 1)
	return b.Wait().Numreplicas(int64(st.waitReplicas)).Timeout(int64(ms)).Build()
}

// checkWait turns the reply of WAIT into an error if it did not come, or
// counts fewer replicas than the Store waits for.
func (st *Store) checkWait(res rueidis.RedisResult) error {
	n, err := res.AsInt64()
	if err != nil {
		return fmt.Errorf("WAIT: %w", err)
	}
	if n < int64(st.waitReplicas) {
		return fmt.Errorf("%d of %d replicas acknowledged it within %v: %w", n, st.waitReplicas, st.waitTimeout, ErrNotReplicated)
	}
	return nil
}

// noWait is the replicated func of a change that ends no session.
func noWait() error { return nil }

// settled returns the replicated func of a change that Redis made before
// changed (a lease.Now): it returns once lookups under another instance's
// lease see the change (lease.Settle), with check's verdict on the
// replicas.
func settled(changed int64, check func() error) func() error {
	return func() error {
		lease.Settle(changed)
		return check()
	}
}

// runDurable runs script s, a change that may end or narrow a session.
// If the Store waits for replicas, it runs it on a connection of its own
// with WAIT behind it, in one round trip (WAIT waits for the writes made
// on its own connection, and blocks that connection while it waits, so it
// cannot go on the shared one, where lookups are pipelined; on Cluster
// the connection is to the node that holds the script's keys, bound by
// the script's first key). Otherwise s runs on the shared connections.
// Call replicated only if the script changed something: it returns once
// the change holds for every lookup that begins afterwards, on any
// instance (see "Fence leases" in docs/stores/redis.md), and reports
// whether the change reached the replicas.
func (st *Store) runDurable(ctx context.Context, s *script, keys, args []string) (res rueidis.RedisResult, replicated func() error) {
	if st.waitReplicas == 0 {
		res = s.Exec(ctx, st.c, keys, args)
		return res, settled(lease.Now(), noWait)
	}
	var wait rueidis.RedisResult
	st.c.Dedicated(func(dc rueidis.DedicatedClient) error {
		res, wait = s.execThen(ctx, dc, keys, args, st.waitCmd)
		if res.NonRedisError() != nil || wait.NonRedisError() != nil {
			// The connection may still be blocked in WAIT: do not give
			// it to the next caller.
			dc.Close()
		}
		return nil
	})
	return res, settled(lease.Now(), func() error { return st.checkWait(wait) })
}

// runThenWait runs script s on a connection of its own if the Store waits
// for replicas, and then, if evicted says the script ended a session,
// WAIT on the same connection. Create uses it: a session it makes need
// not wait (losing one in a failover only signs its user out), a session
// it evicts does. replicated is runDurable's if the script ended a
// session, and noWait if not.
func (st *Store) runThenWait(ctx context.Context, s *script, keys, args []string, evicted func(rueidis.RedisResult) bool) (res rueidis.RedisResult, replicated func() error) {
	if st.waitReplicas == 0 {
		res = s.Exec(ctx, st.c, keys, args)
		if evicted(res) {
			return res, settled(lease.Now(), noWait)
		}
		return res, noWait
	}
	replicated = noWait
	st.c.Dedicated(func(dc rueidis.DedicatedClient) error {
		res, _ = s.execThen(ctx, dc, keys, args, nil)
		if res.NonRedisError() != nil {
			dc.Close()
			return nil
		}
		if evicted(res) {
			changed := lease.Now()
			wait := dc.Do(ctx, st.waitCmd(dc.B()))
			if wait.NonRedisError() != nil {
				dc.Close()
			}
			replicated = settled(changed, func() error { return st.checkWait(wait) })
		}
		return nil
	})
	return res, replicated
}
