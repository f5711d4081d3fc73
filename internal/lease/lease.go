// Package lease lets a store answer lookups from its cache without a
// round trip each, while a change that ends or narrows a session still
// holds on every instance as soon as it has returned.
//
// A store whose cache is kept right by messages from its database (Redis's
// invalidations, PostgreSQL's notifications) must not answer a lookup from
// the cache until a fence has returned: a round trip on the connection that
// carries the messages, sent after the lookup began, whose reply comes after
// every message the database sent before it ran. A Lease stretches one fence
// over every lookup that begins within Read of the moment the fence was
// sent, and the writers pay for it: a change that ends or narrows a session
// returns only Write after the database made it (Settle). So a lookup that
// begins after such a change has returned began more than Write after the
// change was made, and a fence sent less than Read before the lookup began
// was sent after the change: the change's message came before the fence's
// reply and is applied.
//
// Only intervals, each measured by one process's monotonic clock, enter
// the argument, so the hosts' clocks need not agree. Write exceeds Read by
// a margin for the clocks' rates, which differ by far less.
//
// Every process that changes sessions in a database must Settle, whatever
// its own cache does: another instance may be reading under a lease.
package lease

import (
	"sync/atomic"
	"time"
)

const (
	// Read is how long after a fence was sent a lookup that begins may
	// use it.
	Read = 20 * time.Millisecond
	// Write is how long after the database made a change that ends or
	// narrows a session the change returns.
	Write = 25 * time.Millisecond
)

// base is the origin of Now.
var base = time.Now()

// Now returns the time on the process's monotonic clock, in nanoseconds
// since an arbitrary origin; never 0.
func Now() int64 { return int64(time.Since(base)) + 1 }

// Lease records the latest answered fence of one connection, or of a set
// of connections fenced together. The zero value covers nothing. It is
// safe for concurrent use.
type Lease struct {
	// sent is the Now at which the latest answered fence was sent, or
	// 0 if none was.
	sent atomic.Int64
}

// Extend records that a fence sent at sent (a Now taken before it was
// sent) has been answered, and its reply's predecessors applied.
func (l *Lease) Extend(sent int64) {
	for {
		old := l.sent.Load()
		if sent <= old || l.sent.CompareAndSwap(old, sent) {
			return
		}
	}
}

// Covers reports whether a lookup that began at start (a Now taken at or
// after its beginning) may answer from the cache without a fence of its
// own, and whether the lease is due for a new fence: less than half of
// it is left.
func (l *Lease) Covers(start int64) (covered, due bool) {
	sent := l.sent.Load()
	if sent == 0 {
		return false, true
	}
	age := start - sent
	return age < int64(Read), age >= int64(Read/2)
}

// End drops the lease, so that lookups wait for fences again until one is
// answered.
func (l *Lease) End() { l.sent.Store(0) }

// Settle returns once Write has passed since changed, a Now taken after
// the database made a change that ends or narrows a session.
func Settle(changed int64) {
	if d := time.Duration(changed + int64(Write) - Now()); d > 0 {
		time.Sleep(d)
	}
}
