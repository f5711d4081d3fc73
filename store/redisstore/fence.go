package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// fences coalesces the fences of concurrent lookups (see "Shared fences"
// in docs/stores/redis.md), as a database coalesces commits: a lookup
// needs a round trip, on the connection that caches its record, whose
// command was sent after the lookup began, not one of its own.
//
// Fences are grouped by route: the connection they travel on. On one
// server (or the master Sentinel names) every command goes on the one
// connection, and there is one route. On Cluster the route is the node
// that holds the record, whose client (nodeMap) sends both the fence and
// the cached read that follows it on that node's one connection; or, for
// a slot the Store's map does not know, the hash slot of the record key,
// which rueidis sends to the node that holds the slot, both the fence and
// the cached read. A route has at most one fence in flight (it is in
// routes while it has) and one pending group, which the lookups that
// arrive meanwhile join. When the fence in flight returns, the pending
// group's fence is sent: every lookup in the group began before it was
// sent. No lookup ever joins a fence already sent, which may have run
// before the lookup began.
type fences struct {
	mu     sync.Mutex
	routes map[uint32]*fenceRoute
	// sent counts the fences sent, for tests and benchmarks.
	sent atomic.Int64
}

// fenceRoute is a route with a fence in flight.
type fenceRoute struct {
	// pending collects the lookups that arrived after the fence in
	// flight was sent; nil if none did.
	pending *fenceGroup
}

// fenceGroup is one fence and the lookups waiting on it.
type fenceGroup struct {
	c   rueidis.Client    // the client the fence goes through
	cmd rueidis.Completed // the fence: PTTL of a record key of the route, or PING
	// deadline is the earliest of the waiters' deadlines, the fence's
	// own: a waiter waits for the fence alone, not for its context too,
	// which would cost it a timer (most contexts on the resolve path
	// start one only when asked for Done) and a select.
	deadline time.Time
	done     chan struct{} // closed when the fence has returned
	err      error         // its error, set before done is closed
}

// fence returns once a command sent on the connection that caches rk,
// after fence was called, has been answered, so that every invalidation
// Redis sent on that connection before it ran has been applied to the
// client-side cache. It returns an error if that round trip failed or
// ctx's deadline passed first. A lookup that waits on a fence shared
// with others notices its context canceled only at its deadline: a
// shared fence has the earliest of its waiters' deadlines, and a waiter
// with a later one whose fence ran out of time sends its own.
func (st *Store) fence(ctx context.Context, rk string) error {
	mk := func() rueidis.Completed { return st.c.B().Pttl().Key(rk).Build() }
	cmd := mk()
	var route uint32
	if st.cluster {
		route = uint32(cmd.Slot())
	}
	return st.fenceOn(ctx, route, st.c, cmd, mk)
}

// fenceNode is fence for the Cluster node whose client is c and whose
// index in the Store's nodeMap is idx: a round trip through c, shared with
// the lookups of any record on that node.
func (st *Store) fenceNode(ctx context.Context, c rueidis.Client, idx uint16) error {
	mk := func() rueidis.Completed { return c.B().Ping().Build() }
	return st.fenceOn(ctx, clusterSlots+uint32(idx), c, mk(), mk)
}

// fenceOn shares fences on route: cmd, sent through c, is this lookup's
// fence if it sends one; mk makes another.
func (st *Store) fenceOn(ctx context.Context, route uint32, c rueidis.Client, cmd rueidis.Completed, mk func() rueidis.Completed) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(st.timeout)
	}
	f := &st.fences
	f.mu.Lock()
	if f.routes == nil {
		f.routes = make(map[uint32]*fenceRoute)
	}
	r, busy := f.routes[route]
	if !busy {
		// Nothing in flight: send this lookup's fence at once, alone.
		f.routes[route] = &fenceRoute{}
		f.mu.Unlock()
		err := st.sendFence(ctx, c, cmd)
		st.nextFence(route, false)
		return err
	}
	g := r.pending
	if g == nil {
		g = &fenceGroup{c: c, cmd: cmd, deadline: deadline, done: make(chan struct{})}
		r.pending = g
	} else if deadline.Before(g.deadline) {
		g.deadline = deadline
	}
	f.mu.Unlock()
	<-g.done
	if g.err != nil && g.deadline.Before(deadline) && errors.Is(g.err, context.DeadlineExceeded) && time.Now().Before(deadline) {
		// The fence ran out of another waiter's shorter time, not of
		// this lookup's: send one of its own.
		return st.sendFence(ctx, c, mk())
	}
	return g.err
}

// nextFence is called when route's fence in flight has returned. It sends
// the pending group's fence, if there is one, and the next, until none is
// pending; then the route is free. Pending groups are sent from a
// goroutine of their own (drain is true there), so that the lookup whose
// fence returned need not wait for the others'.
func (st *Store) nextFence(route uint32, drain bool) {
	f := &st.fences
	for {
		f.mu.Lock()
		r := f.routes[route]
		g := r.pending
		if g == nil {
			delete(f.routes, route)
			f.mu.Unlock()
			return
		}
		if !drain {
			f.mu.Unlock()
			go st.nextFence(route, true)
			return
		}
		r.pending = nil
		f.mu.Unlock()
		ctx, cancel := context.WithDeadline(context.Background(), g.deadline)
		g.err = st.sendFence(ctx, g.c, g.cmd)
		cancel()
		close(g.done)
	}
}

// sendFence makes the round trip of a fence.
func (st *Store) sendFence(ctx context.Context, c rueidis.Client, cmd rueidis.Completed) error {
	st.fences.sent.Add(1)
	return c.Do(ctx, cmd).Error()
}
