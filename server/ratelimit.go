package server

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a set of token buckets, one per key (a client network). It holds at most maxKeys buckets; when full it forgets the
// ones that have refilled, which are the same as new ones. Limits are per
// instance: behind a load balancer each instance counts its own share.
type limiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	buckets map[string]*rate.Limiter
	maxKeys int
}

// newLimiter allows burst events at once per key, refilled at one per
// interval.
func newLimiter(interval time.Duration, burst int) *limiter {
	return &limiter{every: rate.Every(interval), burst: burst, buckets: map[string]*rate.Limiter{}, maxKeys: 100_000}
}

// allowN takes n tokens for key. If fewer are left it takes none and
// returns false and how long until there are.
func (l *limiter) allowN(key string, n int, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			l.forgetFullLocked(now)
		}
		b = rate.NewLimiter(l.every, l.burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, min(n, l.burst))
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// forgetFullLocked drops buckets that have refilled; if that frees
// nothing, it drops them all rather than grow without bound.
func (l *limiter) forgetFullLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= l.maxKeys {
		clear(l.buckets)
	}
}
