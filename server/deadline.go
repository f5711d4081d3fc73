package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// storeContext is a request's context with the deadline of
// Config.StoreTimeout, for its calls to the stores. The timer behind the
// deadline is armed only when a store first asks for Done: a lookup
// answered from a store's memory never does, and so costs no timer and no
// registration with the request's context, which is most of what a
// deadline costs on the resolve path. Armed, it is
// context.WithDeadline(parent, deadline) in every respect.
type storeContext struct {
	parent   context.Context
	deadline time.Time
	once     sync.Once
	timed    atomic.Pointer[timedContext]
}

type timedContext struct {
	context.Context
	cancel context.CancelFunc
}

// withStoreDeadline returns parent bounded by d. Call its stop when the
// request's store calls are over, to release the timer if one was armed.
func withStoreDeadline(parent context.Context, d time.Time) *storeContext {
	return &storeContext{parent: parent, deadline: d}
}

func (c *storeContext) arm() *timedContext {
	c.once.Do(func() {
		ctx, cancel := context.WithDeadline(c.parent, c.deadline)
		c.timed.Store(&timedContext{ctx, cancel})
	})
	return c.timed.Load()
}

func (c *storeContext) stop() {
	if t := c.timed.Load(); t != nil {
		t.cancel()
	}
}

// Deadline is the earlier of the parent's deadline and the store's.
func (c *storeContext) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

// Done arms the deadline's timer, once, and returns its channel.
func (c *storeContext) Done() <-chan struct{} { return c.arm().Done() }

// Err is what the armed context's Err would be: the parent's error, or
// context.DeadlineExceeded once the deadline has passed.
func (c *storeContext) Err() error {
	if t := c.timed.Load(); t != nil {
		return t.Err()
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value is the parent's value for key; once armed, the armed context's,
// so that a context derived from this one finds the armed one's
// cancellation and needs no goroutine to follow it.
func (c *storeContext) Value(key any) any {
	if t := c.timed.Load(); t != nil {
		return t.Value(key)
	}
	return c.parent.Value(key)
}
