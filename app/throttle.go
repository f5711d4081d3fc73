package app

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ThrottleConfig sets how password guessing is slowed down. Each limit
// lets Free failures through, then makes the next attempt wait Base, twice
// that after one more failure, and so on up to Max. A failure is forgotten
// every Decay. Zero fields take the defaults of DefaultThrottle. The
// limits are per instance: behind a load balancer each counts its own
// share.
type ThrottleConfig struct {
	// Pair limits one account from one client network (an IPv4 address
	// or an IPv6 /64): tight, since an owner rarely fails more than a few
	// times in a row.
	Pair Backoff
	// Account limits one account from every client network it has not
	// signed in from before: loose, for guessing spread over many
	// addresses. Networks that signed in to the account successfully are
	// exempt, so that strangers cannot lock its owner out.
	Account Backoff
	// Client limits one client network across every account (password
	// spraying).
	Client Backoff
	// MaxKeys bounds the keys each limit holds (and the networks
	// remembered as known), so that memory stays bounded whatever
	// clients send: at most about MaxKeys × 200 bytes per limit.
	MaxKeys int
}

// Backoff is one limit of a ThrottleConfig.
type Backoff struct {
	Free  int
	Base  time.Duration
	Max   time.Duration
	Decay time.Duration
}

// DefaultThrottle is the throttle New uses for zero fields: 5 failures per
// account and network, then 1 s doubling up to 15 min; 30 per account from
// unknown networks, then up to 5 min; 30 per network across accounts, then
// up to 5 min. NIST SP 800-63B §5.2.2 asks for at most 100 consecutive
// failures on an account; OWASP's Authentication Cheat Sheet for
// throttling that an attacker cannot turn against the owner.
var DefaultThrottle = ThrottleConfig{
	Pair:    Backoff{Free: 5, Base: time.Second, Max: 15 * time.Minute, Decay: 10 * time.Minute},
	Account: Backoff{Free: 30, Base: time.Second, Max: 5 * time.Minute, Decay: time.Minute},
	Client:  Backoff{Free: 30, Base: time.Second, Max: 5 * time.Minute, Decay: time.Minute},
	MaxKeys: 100_000,
}

func (c ThrottleConfig) withDefaults() ThrottleConfig {
	fill := func(b *Backoff, d Backoff) {
		if b.Free == 0 {
			b.Free = d.Free
		}
		if b.Base == 0 {
			b.Base = d.Base
		}
		if b.Max == 0 {
			b.Max = d.Max
		}
		if b.Decay == 0 {
			b.Decay = d.Decay
		}
	}
	fill(&c.Pair, DefaultThrottle.Pair)
	fill(&c.Account, DefaultThrottle.Account)
	fill(&c.Client, DefaultThrottle.Client)
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultThrottle.MaxKeys
	}
	return c
}

// throttle slows down password guessing: it counts failed password checks
// per account and client network, per account, and per client network,
// and makes a key wait once it has failed too often. An attempt counts as
// a failure from the moment it starts (so that concurrent attempts cannot
// all pass a key with one failure left) and is refunded if it succeeds.
type throttle struct {
	pair, account, client *failures
	known                 *knownSet
}

func newThrottle(c ThrottleConfig) *throttle {
	c = c.withDefaults()
	return &throttle{
		pair:    newFailures(c.Pair, c.MaxKeys),
		account: newFailures(c.Account, c.MaxKeys),
		client:  newFailures(c.Client, c.MaxKeys),
		known:   newKnownSet(c.MaxKeys),
	}
}

// attempt is a password check under way, started by throttle.begin.
type attempt struct {
	t                   *throttle
	pair, account, cl   string
	countAccount, valid bool
}

// begin starts a password check for account (a username as typed; "" or
// one that cannot be a username counts against the client alone) from
// client (an IP address). It returns how long to wait if a limit is
// reached, and counts nothing then; otherwise the attempt counts as a
// failure until succeeded is called.
func (t *throttle) begin(account, client string, now time.Time) (*attempt, time.Duration) {
	a := &attempt{t: t, cl: ClientNetwork(client)}
	if account != "" {
		a.valid = true
		a.account = strings.ToLower(account)
		a.pair = a.account + "\x00" + a.cl
		a.countAccount = !t.known.has(a.pair)
	}
	wait := t.client.wait(a.cl, now)
	if a.valid {
		wait = max(wait, t.pair.wait(a.pair, now))
		if a.countAccount {
			wait = max(wait, t.account.wait(a.account, now))
		}
	}
	if wait > 0 {
		return nil, wait
	}
	t.client.fail(a.cl, now)
	if a.valid {
		t.pair.fail(a.pair, now)
		if a.countAccount {
			t.account.fail(a.account, now)
		}
	}
	return a, 0
}

// succeeded refunds the attempt: the password was right. The account's
// failures from this client network are forgotten, and the network is
// known to the account from now on.
func (a *attempt) succeeded() {
	a.t.client.refund(a.cl)
	if !a.valid {
		return
	}
	a.t.pair.forget(a.pair)
	if a.countAccount {
		a.t.account.refund(a.account)
	}
	a.t.known.add(a.pair)
}

// ClientNetwork is the network a client address counts in for rate
// limits: the address for IPv4, its /64 for IPv6 (one subscriber
// typically holds a whole /64, so its addresses are one client).
func ClientNetwork(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		if len(ip) > 64 {
			ip = ip[:64]
		}
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// failures counts failures per key, forgetting one every Decay, and says
// how long a key must wait before its next attempt.
type failures struct {
	b       Backoff
	maxKeys int
	mu      sync.Mutex
	keys    map[string]*failureCount
}

type failureCount struct {
	n    int
	last time.Time
}

func newFailures(b Backoff, maxKeys int) *failures {
	return &failures{b: b, maxKeys: maxKeys, keys: map[string]*failureCount{}}
}

// decayed returns c's count at now.
func (f *failures) decayed(c *failureCount, now time.Time) int {
	n := c.n - int(now.Sub(c.last)/f.b.Decay)
	return max(n, 0)
}

// wait returns how long key must wait at now before its next attempt.
func (f *failures) wait(key string, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.keys[key]
	if !ok {
		return 0
	}
	n := f.decayed(c, now)
	if n < f.b.Free {
		return 0
	}
	delay := f.b.Max
	if shift := n - f.b.Free; shift < 32 {
		delay = min(f.b.Base<<shift, f.b.Max)
	}
	return max(c.last.Add(delay).Sub(now), 0)
}

// fail counts one failure of key at now.
func (f *failures) fail(key string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.keys[key]
	if !ok {
		if len(f.keys) >= f.maxKeys {
			f.evictLocked(now)
		}
		c = &failureCount{}
		f.keys[key] = c
	}
	c.n, c.last = f.decayed(c, now)+1, now
}

// refund takes back one failure of key.
func (f *failures) refund(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.keys[key]; ok {
		if c.n--; c.n <= 0 {
			delete(f.keys, key)
		}
	}
}

// forget drops every failure of key.
func (f *failures) forget(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys, key)
}

// evictLocked makes room: it drops the keys whose failures have decayed
// away, and if that frees less than a tenth of the room, arbitrary others
// (the map's order) until it has.
func (f *failures) evictLocked(now time.Time) {
	for k, c := range f.keys {
		if f.decayed(c, now) == 0 {
			delete(f.keys, k)
		}
	}
	for k := range f.keys {
		if len(f.keys) < f.maxKeys-f.maxKeys/10 {
			break
		}
		delete(f.keys, k)
	}
}

// knownSet remembers (account, client network) pairs that signed in
// successfully, up to max of them; full, it starts afresh.
type knownSet struct {
	mu   sync.Mutex
	max  int
	keys map[string]struct{}
}

func newKnownSet(max int) *knownSet { return &knownSet{max: max, keys: map[string]struct{}{}} }

func (k *knownSet) has(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.keys[key]
	return ok
}

func (k *knownSet) add(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.keys) >= k.max {
		clear(k.keys)
	}
	k.keys[key] = struct{}{}
}
