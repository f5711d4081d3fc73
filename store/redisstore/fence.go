package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/lease"
)

// fences coalesces the fences of concurrent lookups (see "Shared fences"
// in docs/stores/redis.md), as a database coalesces commits: a lookup
// needs a round trip, on the connection that caches its record, whose
// command was sent after the lookup began, not one of its own. A fence
// also serves, under its route's lease, the lookups that begin within
// lease.Read of the moment it was sent: every change that ends or narrows
// a session returns lease.Write after Redis made it (see "Fence leases"
// in docs/stores/redis.md).
//
// Fences are grouped by route: the connection they travel on. On one
// server (or the master Sentinel names) every command goes on the one
// connection, and there is one route. On Cluster the route is the node
// that holds the record, whose client (nodeMap) sends both the fence and
// the cached read that follows it on that node's one connection; or, for
// a slot the Store's map does not know, the hash slot of the record key,
// which rueidis sends to the node that holds the slot, both the fence and
// the cached read. A route has at most one fence in flight and one
// pending group, which the lookups that arrive meanwhile join. When the
// fence in flight returns, the pending group's fence is sent: every
// lookup in the group began before it was sent. No lookup ever joins a
// fence already sent, which may have run before the lookup began.
type fences struct {
	mu     sync.Mutex
	routes map[uint32]*fenceRoute
	// leased is true unless a test counts one fence per group of
	// lookups.
	leased bool
	// sent counts the fences sent, for tests and benchmarks.
	sent atomic.Int64
}

// fenceRoute is a route that has had a fence.
type fenceRoute struct {
	// busy is true while a fence is in flight.
	busy bool
	// pending collects the lookups that arrived after the fence in
	// flight was sent; nil if none did.
	pending *fenceGroup
	// lease is extended by every fence answered on the route.
	lease lease.Lease
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
	var route uint32
	if st.cluster {
		route = uint32(keySlot(rk))
	}
	return st.fenceOn(ctx, route, st.c, st.pttl(rk))
}

// pttl returns a maker of a fence on the connection that caches rk.
func (st *Store) pttl(rk string) func() rueidis.Completed {
	return func() rueidis.Completed { return st.c.B().Pttl().Key(rk).Build() }
}

// fenceNode is fence for the Cluster node whose client is c and whose
// index in the Store's nodeMap is idx: a round trip through c, shared with
// the lookups of any record on that node.
func (st *Store) fenceNode(ctx context.Context, c rueidis.Client, idx uint16) error {
	return st.fenceOn(ctx, clusterSlots+uint32(idx), c, func() rueidis.Completed { return c.B().Ping().Build() })
}

// underLease reports whether a lookup that calls it now is under route's
// lease: a fence answered on route covers it, so that the cache of the
// route's connection serves it as it is from now on. If the lease is due
// for a fence and none is in flight, it sends one (made by mk, through
// c) in the background.
func (st *Store) underLease(route uint32, c rueidis.Client, mk func() rueidis.Completed) bool {
	start := lease.Now()
	f := &st.fences
	if !f.leased {
		return false
	}
	f.mu.Lock()
	r := f.route(route)
	covered, due := r.lease.Covers(start)
	renew := covered && due && !r.busy
	r.busy = r.busy || renew
	f.mu.Unlock()
	if renew {
		cmd := mk()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), st.timeout)
			st.sendFence(ctx, r, c, cmd)
			cancel()
			st.nextFence(r, true)
		}()
	}
	return covered
}

// route returns route's state, made if need be. f.mu is held.
func (f *fences) route(route uint32) *fenceRoute {
	if f.routes == nil {
		f.routes = make(map[uint32]*fenceRoute)
	}
	r := f.routes[route]
	if r == nil {
		r = &fenceRoute{}
		f.routes[route] = r
	}
	return r
}

// fenceOn shares fences on route: mk makes the fence, to be sent through
// c, if this lookup sends one. A lookup under the route's lease returns
// at once (see underLease).
func (st *Store) fenceOn(ctx context.Context, route uint32, c rueidis.Client, mk func() rueidis.Completed) error {
	if st.underLease(route, c, mk) {
		return nil
	}
	f := &st.fences
	f.mu.Lock()
	r := f.route(route)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(st.timeout)
	}
	if !r.busy {
		// Nothing in flight: send this lookup's fence at once, alone.
		r.busy = true
		f.mu.Unlock()
		err := st.sendFence(ctx, r, c, mk())
		st.nextFence(r, false)
		return err
	}
	g := r.pending
	if g == nil {
		g = &fenceGroup{c: c, cmd: mk(), deadline: deadline, done: make(chan struct{})}
		r.pending = g
	} else if deadline.Before(g.deadline) {
		g.deadline = deadline
	}
	f.mu.Unlock()
	<-g.done
	if g.err != nil && g.deadline.Before(deadline) && errors.Is(g.err, context.DeadlineExceeded) && time.Now().Before(deadline) {
		// The fence ran out of another waiter's shorter time, not of
		// this lookup's: send one of its own.
		return st.sendFence(ctx, r, c, mk())
	}
	return g.err
}

// nextFence is called when r's fence in flight has returned. It sends
// the pending group's fence, if there is one, and the next, until none is
// pending; then the route is free. Pending groups are sent from a
// goroutine of their own (drain is true there), so that the lookup whose
// fence returned need not wait for the others'.
func (st *Store) nextFence(r *fenceRoute, drain bool) {
	f := &st.fences
	for {
		f.mu.Lock()
		g := r.pending
		if g == nil {
			r.busy = false
			f.mu.Unlock()
			return
		}
		if !drain {
			f.mu.Unlock()
			go st.nextFence(r, true)
			return
		}
		r.pending = nil
		f.mu.Unlock()
		ctx, cancel := context.WithDeadline(context.Background(), g.deadline)
		g.err = st.sendFence(ctx, r, g.c, g.cmd)
		cancel()
		close(g.done)
	}
}

// sendFence makes the round trip of a fence on route r, and extends r's
// lease if it was answered.
func (st *Store) sendFence(ctx context.Context, r *fenceRoute, c rueidis.Client, cmd rueidis.Completed) error {
	st.fences.sent.Add(1)
	sent := lease.Now()
	err := c.Do(ctx, cmd).Error()
	if err == nil {
		r.lease.Extend(sent)
	}
	return err
}
