package redisstore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/session"
)

var _ session.Store = (*Store)(nil)

// Store is a session.Store backed by Redis: a single server, a server
// watched by Sentinel, or a Redis Cluster. It is safe for concurrent use, and
// any number of Stores, in one process or on many hosts, may share one
// Redis. The zero value is not usable; call Open.
type Store struct {
	c        rueidis.Client
	prefix   string
	cache    CacheMode
	cacheTTL time.Duration
	timeout  time.Duration
	// waitReplicas and waitTimeout are the WAIT that follows each change
	// that ends or narrows a session (see "Replication" in
	// docs/stores/redis.md); no WAIT if waitReplicas is 0.
	waitReplicas int
	waitTimeout  time.Duration
	// nsOf, if set, replaces the namespace of each user, so that tests
	// can put several users in one.
	nsOf func(uid string) uint64
	// cluster is true on Redis Cluster, where fences are grouped by the
	// hash slot of the record key.
	cluster bool
	fences  fences
	// caches are the client-side caches of the connections, for tests.
	caches *cacheSet
	// nodes maps Cluster slots to nodes, for fences shared by node.
	nodes nodeMap
}

// Open connects to the Redis that url names (see the package doc for the
// URL forms and options) and checks that it answers. Close the Store when
// done.
func Open(ctx context.Context, url string) (*Store, error) {
	o, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	opt := o.client
	// One connection per server, which rueidis pipelines concurrent
	// commands on: the client-side cache of a connection is invalidated by
	// messages on that same connection, so a command's reply on it comes
	// after every invalidation Redis sent before executing the command.
	// The fence (see CacheFenced) and read-your-writes rest on that.
	opt.PipelineMultiplex = -1
	opt.DisableCache = o.cache == CacheOff
	// Each connection's cache is a slabCache, which the garbage collector
	// need not scan entry by entry.
	caches := &cacheSet{}
	opt.NewCacheStoreFn = func(o rueidis.CacheStoreOption) rueidis.CacheStore {
		return caches.add(newSlabCache(o.CacheSizeEachConn))
	}
	if opt.ClientName == "" {
		opt.ClientName = "sessiond"
	}
	opt.Dialer.Timeout = o.timeout
	opt.Sentinel.Dialer.Timeout = o.timeout
	// A connection that stops answering is closed (and its cache dropped)
	// after this long without a reply, instead of the default 10s.
	opt.ConnWriteTimeout = max(o.timeout, time.Second)
	if !o.cluster {
		// rueidis finds out whether a single address is a Cluster node;
		// a redis:// URL asks for a plain server, which also keeps a
		// lone Cluster node from being taken for the whole Cluster.
		opt.ForceSingleClient = opt.Sentinel.MasterSet == ""
	}
	// Without this a Sentinel client that misses one +switch-master event
	// keeps talking to the old master (see rueidis.SentinelOption).
	opt.Sentinel.TopologyRefreshInterval = 5 * time.Second
	c, err := rueidis.NewClient(opt)
	if errors.Is(err, rueidis.ErrNoCache) {
		return nil, fmt.Errorf("redisstore: connect: the server does not support client-side caching (RESP3, Redis 6 or later); redisstore needs Redis 7.0 or later: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: connect: %w", err)
	}
	st := &Store{c: c, prefix: o.prefix, cache: o.cache, cacheTTL: o.cacheTTL, timeout: o.timeout,
		waitReplicas: o.waitReplicas, waitTimeout: o.waitTimeout, caches: caches}
	st.fences.leased = true
	st.cluster = c.Mode() == rueidis.ClientModeCluster
	if o.cluster && !st.cluster {
		c.Close()
		return nil, errors.New("redisstore: a redis+cluster:// URL names a server that is not in cluster mode: use redis://")
	}
	if err := st.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if st.cluster {
		st.nodes.slots, st.nodes.nodes = st.readNodes(ctx)
		st.nodes.next.Store(time.Now().Add(nodeRefreshInterval).UnixNano())
	}
	if st.waitReplicas == WaitReplicasAuto {
		if st.waitReplicas, err = st.autoReplicas(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	return st, nil
}

// Close closes the connections. Sessions stay in Redis.
func (st *Store) Close() { st.c.Close() }

// Ping checks that Redis answers, on every master of a Cluster, and that
// it is Redis 7.0 or later, which the scripts need (PEXPIRETIME,
// PEXPIREAT … GT).
func (st *Store) Ping(ctx context.Context) error {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	for addr, n := range st.c.Nodes() {
		info, err := n.Do(ctx, n.B().Info().Section("server").Build()).ToString()
		if err != nil {
			return fmt.Errorf("redisstore: ping %s: %w", addr, err)
		}
		if v := infoField(info, "redis_version"); !atLeast7(v) {
			return fmt.Errorf("redisstore: %s runs Redis %s: redisstore needs Redis 7.0 or later", addr, v)
		}
	}
	return nil
}

// infoField returns the value of field in the text of an INFO reply.
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// atLeast7 reports whether version (such as "7.0.15") is 7 or later.
func atLeast7(version string) bool {
	major, _, _ := strings.Cut(version, ".")
	n, err := strconv.Atoi(major)
	return err == nil && n >= 7
}

// opContext bounds ctx by the Store's timeout. rueidis retries reads on
// connection errors until the context ends, so without a bound a lookup
// during an outage would wait for Redis to come back.
func (st *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= st.timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, st.timeout)
}

// Keys (see "Keys" in docs/stores/redis.md). A user's keys are those of
// the user's namespace, which its hash tag puts in one Cluster slot.

// namespace returns the namespace of user uid: the first 48 bits of
// SHA-256(uid).
func (st *Store) namespace(uid string) uint64 {
	if st.nsOf != nil {
		return st.nsOf(uid)
	}
	h := sha256.Sum256([]byte(uid))
	return binary.BigEndian.Uint64(h[:8]) >> 16
}

// indexKey names the index of namespace ns; every record key of ns starts
// with it.
func (st *Store) indexKey(ns uint64) string { return st.nsKey(ns, -1) }

// slotKey names record slot slot of namespace ns.
func (st *Store) slotKey(ns uint64, slot int64) string { return st.nsKey(ns, slot) }

// nsKey returns PREFIX{NS}, NS in 12 hex digits, followed by slot in base
// 36 unless it is negative.
func (st *Store) nsKey(ns uint64, slot int64) string {
	var k strings.Builder
	k.Grow(len(st.prefix) + 14 + 4)
	k.WriteString(st.prefix)
	k.WriteByte('{')
	for i := 44; i >= 0; i -= 4 {
		k.WriteByte("0123456789abcdef"[ns>>i&15])
	}
	k.WriteByte('}')
	if slot >= 0 {
		var d [16]byte
		k.Write(strconv.AppendInt(d[:0], slot, 36))
	}
	return k.String()
}

// pointerBytes is how much of a hash names a pointer key: 96 bits tell
// the sessions apart as well as more would (a collision makes one session
// unreachable, nothing worse: every lookup checks the whole token hash or
// the session ID in the record it reaches), and keep the key, with the
// default prefix, in the smallest allocation class (see "Memory" in
// docs/stores/redis.md).
const pointerBytes = 12

// hashKey names the pointer from a token hash to its session.
func (st *Store) hashKey(h session.Hash) string { return st.pointerKey('h', h[:pointerBytes]) }

// idKey names the pointer from a session ID to its session.
func (st *Store) idKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return st.pointerKey('i', h[:pointerBytes])
}

func (st *Store) pointerKey(kind byte, p []byte) string {
	var enc [16]byte
	base64.RawURLEncoding.Encode(enc[:], p)
	var k strings.Builder
	k.Grow(len(st.prefix) + 1 + len(enc))
	k.WriteString(st.prefix)
	k.WriteByte(kind)
	k.Write(enc[:])
	return k.String()
}

// A pointer's value is ns<<slotBits | slot in decimal, which Redis keeps
// as an integer in the key's object header, with no allocation of its own;
// slots beyond that have the form "SLOT:NS". An ID pointer written before
// its record's slot is known holds -(ns+1).
const slotBits = 14

func pointerValue(ns uint64, slot int64) string {
	if slot < 1<<slotBits {
		return strconv.FormatUint(ns<<slotBits|uint64(slot), 10)
	}
	return strconv.FormatInt(slot, 10) + ":" + strconv.FormatUint(ns, 10)
}

func reservation(ns uint64) string { return strconv.FormatInt(-int64(ns)-1, 10) }

// parsePointer parses a pointer's value; slot is -1 for a reservation.
func parsePointer(v string) (ns uint64, slot int64, ok bool) {
	if a, b, cut := strings.Cut(v, ":"); cut {
		slot, err1 := strconv.ParseInt(a, 10, 64)
		ns, err2 := strconv.ParseUint(b, 10, 48)
		return ns, slot, err1 == nil && err2 == nil && slot >= 1<<slotBits
	}
	n, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil || n < -(1<<48) || n >= 1<<(48+slotBits):
		return 0, 0, false
	case n < 0:
		return uint64(-n - 1), -1, true
	}
	return uint64(n) >> slotBits, n & (1<<slotBits - 1), true
}

func encID(id string) string { return string(appendID(nil, id)) }

// nowArg returns the current time as the scripts take it.
func nowArg() string { return luaTime(time.Now()) }

// Create implements session.Store. It returns an error if s.ID is empty or
// already taken.
//
// The session's ID pointer comes first (SET NX, which also makes sure the
// ID is not taken), holding only the namespace; then the script stores the
// record in a free slot; then the pointers get the slot. Until they do,
// lookups by ID search the namespace (findScript), and the token, which
// the caller has not handed out yet, resolves to nothing.
func (st *Store) Create(ctx context.Context, s *session.Session, lim session.Limit) ([]string, error) {
	if s.ID == "" {
		return nil, errors.New("redisstore: create: empty session ID")
	}
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	exp := expiresAtMillis(s)
	ns := st.namespace(s.UserID)
	idk := st.idKey(s.ID)
	err := st.c.Do(ctx, st.c.B().Set().Key(idk).Value(reservation(ns)).Nx().PxatMillisecondsTimestamp(exp).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return nil, fmt.Errorf("redisstore: create: session ID %q is taken", s.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: create: %w", err)
	}

	reject := "0"
	if lim.Reject {
		reject = "1"
	}
	keys, args := []string{st.indexKey(ns)}, []string{
		st.indexKey(ns), string(encodeRecord(s)), s.UserID,
		strconv.Itoa(max(lim.Max, 0)), reject, nowArg(),
		strconv.FormatInt(time.Now().UnixMilli(), 10), strconv.FormatInt(exp, 10),
		strconv.FormatUint(rand.Uint64()>>12, 10),
	}
	var res rueidis.RedisResult
	replicated := noWait
	if lim.Max > 0 { // the limit may evict sessions: wait for those
		res, replicated = st.runThenWait(ctx, createScript, keys, args, func(r rueidis.RedisResult) bool {
			arr, err := r.ToArray()
			return err == nil && len(arr) > 1
		})
	} else {
		res = createScript.Exec(ctx, st.c, keys, args)
	}
	arr, err := res.ToArray()
	if err == nil && len(arr) == 0 {
		err = errors.New("empty script reply")
	}
	if err != nil {
		// The record may or may not be stored: the reservation stays, so
		// that ByID, Delete and DeleteByUser find it if it is.
		return nil, fmt.Errorf("redisstore: create: %w", err)
	}
	slot, err := arr[0].AsInt64()
	if err != nil {
		return nil, fmt.Errorf("redisstore: create: %w", err)
	}
	switch slot {
	case -1:
		st.del(ctx, idk)
		return nil, session.ErrTooManySessions
	case -2: // expired already: nothing stored, and the reservation expired
		return nil, nil
	}
	evicted, stale, err := st.endedRecords(arr[1:])
	if err != nil {
		return nil, fmt.Errorf("redisstore: create: %w", err)
	}
	if err := replicated(); err != nil {
		// The evictions may not survive a failover: the session is not
		// made either. The evicted sessions' pointers lead to nothing.
		st.deleteRecord(ctx, ns, slot, s.ID)
		st.del(ctx, append(stale, idk)...)
		return nil, fmt.Errorf("redisstore: create: evicting sessions at the limit: %w", err)
	}

	b := st.c.B()
	p := pointerValue(ns, slot)
	cmds := rueidis.Commands{
		b.Set().Key(idk).Value(p).PxatMillisecondsTimestamp(exp).Build(),
		b.Set().Key(st.hashKey(s.TokenHash)).Value(p).PxatMillisecondsTimestamp(exp).Build(),
	}
	if !s.PrevTokenHash.IsZero() {
		cmds = append(cmds, b.Set().Key(st.hashKey(s.PrevTokenHash)).Value(p).PxatMillisecondsTimestamp(exp).Build())
	}
	for _, r := range st.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return nil, fmt.Errorf("redisstore: create: the session was stored, but not its pointers: %w", err)
		}
	}
	st.dropPointers(ctx, st.slotKey(ns, slot), stale)
	return evicted, nil
}

// deleteRecord removes the record of session id in slot slot of namespace
// ns, on a best-effort basis, without waiting for replicas.
func (st *Store) deleteRecord(ctx context.Context, ns uint64, slot int64, id string) {
	deleteScript.Exec(ctx, st.c, []string{st.slotKey(ns, slot), st.indexKey(ns)}, []string{encID(id), slotArg(slot)})
}

// pointerKeys returns the pointer keys of s.
func (st *Store) pointerKeys(s *session.Session) []string {
	keys := []string{st.idKey(s.ID), st.hashKey(s.TokenHash)}
	if !s.PrevTokenHash.IsZero() {
		keys = append(keys, st.hashKey(s.PrevTokenHash))
	}
	return keys
}

// dropPointers deletes the pointers of sessions whose records are gone, on
// a best-effort basis: a pointer left behind leads to nothing, or to
// another session's record, which every lookup sees, and expires when its
// session would have. In the unfenced cache mode the same round trip reads
// rk, a key of the slot just written, so that the Store's own cache has
// applied the write's invalidation before the write returns (see
// "Client-side cache" in docs/stores/redis.md).
func (st *Store) dropPointers(ctx context.Context, rk string, keys []string) {
	if len(keys) == 0 {
		return
	}
	var cmds rueidis.Commands
	for _, k := range keys {
		cmds = append(cmds, st.c.B().Del().Key(k).Build())
	}
	if st.cache == CacheUnsafeUnfenced && rk != "" {
		cmds = append(cmds, st.c.B().Pttl().Key(rk).Build())
	}
	st.c.DoMulti(ctx, cmds...)
}

// del deletes keys on a best-effort basis.
func (st *Store) del(ctx context.Context, keys ...string) { st.dropPointers(ctx, "", keys) }

// ByHash implements session.Store.
func (st *Store) ByHash(ctx context.Context, h session.Hash) (*session.Session, error) {
	hk := st.hashKey(h)
	var p []byte
	if st.cache != CacheOff && !st.cluster {
		v, ok := st.caches.peek(hk)
		if !ok {
			return st.follow(ctx, h, hk)
		}
		p = v
	} else {
		v, _, err := st.read(ctx, hk, pointerCacheTTL)
		if err != nil {
			return nil, fmt.Errorf("redisstore: by hash: %w", err)
		}
		p = v
	}
	if p == nil {
		return nil, session.ErrNotFound
	}
	ns, slot, ok := parsePointer(string(p))
	if !ok || slot < 0 {
		return nil, session.ErrNotFound
	}
	rk := st.slotKey(ns, slot)
	// Under the lease of a fence answered before the read (see fences),
	// any answer serves. Otherwise a reply that Redis sent for this
	// read ran after the lookup began, and is as fresh as a fence; a
	// cached absence serves nothing; and a cached record needs the
	// fence: a round trip on the connection that holds the copy (one
	// connection per server, see Open), sent after this lookup began
	// and shared with the lookups that began meanwhile. Redis sends
	// every invalidation of the record for this connection before its
	// reply, and rueidis applies them in order, so the copy read again
	// next is no older than the moment the fence ran. A record deleted
	// before that has had its invalidation applied, so the read below
	// goes to Redis and finds nothing.
	leased := st.cache == CacheFenced && !st.cluster && st.underLease(0, st.c, st.pttl(rk))
	v, hit, err := st.read(ctx, rk, st.cacheTTL)
	if err == nil && hit && v != nil && st.cache == CacheFenced && !leased {
		ctx, cancel := st.opContext(ctx)
		v, err = st.fencedGet(ctx, rk)
		cancel()
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: by hash: %w", err)
	}
	return answer(v, h)
}

// follow is ByHash on one server for a token whose pointer is not cached:
// one round trip (followScript) reads the pointer and the record it leads
// to, which ran after the lookup began and so needs no fence. Meanwhile a
// cached read of the pointer, in the background, brings it into the
// cache, so that the token's next lookup reads the record alone, through
// the cache.
func (st *Store) follow(ctx context.Context, h session.Hash, hk string) (*session.Session, error) {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	go func() {
		ctx, cancel := st.opContext(context.WithoutCancel(ctx))
		st.getTTL(ctx, hk, true, pointerCacheTTL)
		cancel()
	}()
	arr, err := followScript.Exec(ctx, st.c, []string{hk}, []string{st.prefix}).ToArray()
	if rueidis.IsRedisNil(err) {
		return nil, session.ErrNotFound
	}
	if err != nil || len(arr) == 0 {
		return nil, fmt.Errorf("redisstore: by hash: %w", cmp.Or(err, errors.New("empty script reply")))
	}
	p, err := arr[0].AsBytes()
	if err != nil {
		return nil, fmt.Errorf("redisstore: by hash: %w", err)
	}
	ns, slot, ok := parsePointer(string(p))
	if !ok || slot < 0 {
		return nil, session.ErrNotFound
	}
	rk := st.slotKey(ns, slot)
	var k string
	if len(arr) == 3 {
		k, _ = arr[1].ToString()
	}
	var v []byte
	if k == rk {
		v, err = arr[2].AsBytes()
		if rueidis.IsRedisNil(err) {
			v, err = nil, nil
		}
	} else {
		// The script named another key than the pointer does (it
		// cannot read this form): read the record itself.
		v, _, err = st.getTTL(ctx, rk, false, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: by hash: %w", err)
	}
	return answer(v, h)
}

// answer returns the session in record v (nil if there is none) if it
// answers to token hash h and has not expired.
func answer(v []byte, h session.Hash) (*session.Session, error) {
	if v == nil {
		return nil, session.ErrNotFound
	}
	s, err := decodeRecord(v)
	if err != nil {
		return nil, err
	}
	if s.TokenHash != h && (s.PrevTokenHash != h || h.IsZero()) || s.Expired(time.Now()) {
		return nil, session.ErrNotFound
	}
	return s, nil
}

// read returns the value of key, nil if there is none, through the
// client-side cache unless it is off, where a value read from Redis is
// kept for up to ttl. hit is true if the value came from the cache rather
// than from a read that this call sent to Redis. On one server a cached
// value is read from the cache itself, which costs no command. ctx is
// bounded by the Store's timeout here.
func (st *Store) read(ctx context.Context, key string, ttl time.Duration) (v []byte, hit bool, err error) {
	if st.cache != CacheOff && !st.cluster {
		if v, ok := st.caches.peek(key); ok {
			return v, true, nil
		}
	}
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	return st.getTTL(ctx, key, st.cache != CacheOff, ttl)
}

// fencedGet reads rk from the client-side cache after a fence on the
// connection that caches it.
func (st *Store) fencedGet(ctx context.Context, rk string) ([]byte, error) {
	if st.cluster {
		// Fences shared by every record of the node that holds rk's
		// slot: the fence and the read go through that node's client,
		// on its one connection.
		if n, idx, ok := st.node(keySlot(rk)); ok {
			if err := st.fenceNode(ctx, n, idx); err != nil {
				return nil, err
			}
			v, _, err := getFrom(ctx, n, rk, true, st.cacheTTL)
			if _, redisErr := rueidis.IsRedisErr(err); redisErr {
				// The node no longer holds the slot (MOVED), or is
				// busy with it (ASK, TRYAGAIN): read Redis itself.
				st.refreshNodes()
				v, _, err = st.get(ctx, rk, false)
			}
			return v, err
		}
	}
	if err := st.fence(ctx, rk); err != nil {
		return nil, err
	}
	v, _, err := st.get(ctx, rk, true)
	return v, err
}

// get returns the value of key, nil if there is none, through the
// client-side cache if cached, where it is kept for up to the Store's
// cache TTL. hit is true if the value came from the cache rather than
// from a read that this call sent to Redis.
func (st *Store) get(ctx context.Context, key string, cached bool) (v []byte, hit bool, err error) {
	return st.getTTL(ctx, key, cached, st.cacheTTL)
}

// getTTL is get with the client-side TTL ttl.
func (st *Store) getTTL(ctx context.Context, key string, cached bool, ttl time.Duration) (v []byte, hit bool, err error) {
	return getFrom(ctx, st.c, key, cached, ttl)
}

// getFrom is getTTL through the client c.
func getFrom(ctx context.Context, c rueidis.Client, key string, cached bool, ttl time.Duration) (v []byte, hit bool, err error) {
	var res rueidis.RedisResult
	if cached {
		// ToStaticTTL: the read is CLIENT CACHING and GET, without the
		// MULTI, PTTL and EXEC that would bound the cached copy by the
		// key's TTL: Redis's invalidations drop copies of keys that
		// change or expire, and every lookup checks the deadlines.
		res = c.DoCache(ctx, c.B().Get().Key(key).Cache().ToStaticTTL(), ttl)
	} else {
		res = c.Do(ctx, c.B().Get().Key(key).Build())
	}
	v, err = res.AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, res.IsCacheHit(), nil
	}
	return v, res.IsCacheHit(), err
}

// pointerCacheTTL is how long a token pointer may stay in the client-side
// cache: longer than a record, since a pointer is only a hint (the record
// it leads to decides) and changes only when its session ends, and a
// lookup whose pointer is cached costs one round trip at most. Redis's
// invalidations drop it sooner when it changes, and the key's own expiry
// bounds it.
const pointerCacheTTL = time.Hour

// locate returns the namespace and slot of session id from its ID
// pointer; ok is false if there is none. A pointer only ever goes from a
// reservation to a slot, and then away, so a cached copy is as good as a
// fresh one: the record it leads to is checked anyway.
func (st *Store) locate(ctx context.Context, id string, cached bool) (ns uint64, slot int64, ok bool, err error) {
	v, _, err := st.get(ctx, st.idKey(id), cached && st.cache != CacheOff)
	if err != nil || v == nil {
		return 0, 0, false, err
	}
	ns, slot, ok = parsePointer(string(v))
	if !ok || slot >= 0 {
		return ns, slot, ok, nil
	}
	slot, err = findScript.Exec(ctx, st.c, []string{st.indexKey(ns)}, []string{st.indexKey(ns), encID(id)}).AsInt64()
	return ns, slot, err == nil && slot >= 0, err
}

// ByID implements session.Store. It reads Redis every time, bypassing the
// client-side cache, so that it also tells whether Redis answers (the
// service's readiness check calls it).
func (st *Store) ByID(ctx context.Context, id string) (*session.Session, error) {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	ns, slot, ok, err := st.locate(ctx, id, false)
	if err != nil {
		return nil, fmt.Errorf("redisstore: by id: %w", err)
	}
	if !ok {
		return nil, session.ErrNotFound
	}
	return st.bySlot(ctx, ns, slot, id)
}

// bySlot reads session id from slot slot of namespace ns, uncached.
func (st *Store) bySlot(ctx context.Context, ns uint64, slot int64, id string) (*session.Session, error) {
	v, _, err := st.get(ctx, st.slotKey(ns, slot), false)
	if err != nil {
		return nil, fmt.Errorf("redisstore: by id: %w", err)
	}
	if v == nil {
		return nil, session.ErrNotFound
	}
	s, err := decodeRecord(v)
	if err != nil {
		return nil, err
	}
	if s.ID != id || s.Expired(time.Now()) {
		return nil, session.ErrNotFound
	}
	return s, nil
}

// slotArg returns slot as the scripts take it.
func slotArg(slot int64) string { return strconv.FormatInt(slot, 10) }

// Update implements session.Store. It returns an error if s.UserID is not
// the stored session's: a session cannot move to another user.
func (st *Store) Update(ctx context.Context, s *session.Session) error {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	at, slot, ok, err := st.locate(ctx, s.ID, true)
	if err != nil {
		return fmt.Errorf("redisstore: update: %w", err)
	}
	if !ok {
		return session.ErrNotFound
	}
	ns := st.namespace(s.UserID)
	if at != ns {
		return st.notFoundOrMoved(ctx, at, slot, s.ID)
	}
	rk := st.slotKey(ns, slot)
	exp := expiresAtMillis(s)

	// Pointers for the new token hashes first (NX: existing ones keep
	// their expiry, which is never earlier than the record's).
	b := st.c.B()
	p := pointerValue(ns, slot)
	var ptrs rueidis.Commands
	var newKeys []string
	for _, h := range []session.Hash{s.TokenHash, s.PrevTokenHash} {
		if !h.IsZero() {
			ptrs = append(ptrs, b.Set().Key(st.hashKey(h)).Value(p).Nx().PxatMillisecondsTimestamp(exp).Build())
			newKeys = append(newKeys, st.hashKey(h))
		}
	}
	var created []string // pointers this Update made, to remove if it fails
	for i, r := range st.c.DoMulti(ctx, ptrs...) {
		switch err := r.Error(); {
		case err == nil:
			created = append(created, newKeys[i])
		case !rueidis.IsRedisNil(err):
			st.del(ctx, created...)
			return fmt.Errorf("redisstore: update: %w", err)
		}
	}

	next := *s
	next.Version++
	res, replicated := st.runDurable(ctx, updateScript, []string{rk, st.indexKey(ns)}, []string{
		string(appendVersion(nil, s.Version)), string(encodeRecord(&next)),
		nowArg(), encID(s.ID), s.UserID, slotArg(slot),
	})
	arr, err := res.ToArray()
	if err != nil {
		return fmt.Errorf("redisstore: update: %w", err)
	}
	code, err := arr[0].AsInt64()
	if err != nil {
		return fmt.Errorf("redisstore: update: %w", err)
	}
	if code != 2 {
		st.del(ctx, created...)
	}
	switch code {
	case 0:
		return session.ErrNotFound
	case 1:
		return session.ErrConflict
	case 3:
		return errMoved(s.ID)
	case 4:
		return fmt.Errorf("redisstore: update: session %q: %w", s.ID, session.ErrInvalidRecord)
	}
	if len(arr) != 4 {
		return errors.New("redisstore: update: unexpected script reply")
	}
	newExp, err := arr[3].AsInt64()
	if err != nil {
		return fmt.Errorf("redisstore: update: %w", err)
	}
	// The session was replaced; its pointers are brought in line below
	// either way.
	notReplicated := replicated()
	if notReplicated == nil {
		s.Version = next.Version
	}

	// Hashes the session no longer answers to lose their pointers; the
	// others, and the ID pointer, live at least as long as the record.
	var cmds rueidis.Commands
	for _, m := range arr[1:3] {
		old, _ := m.AsBytes()
		var h session.Hash
		if len(old) != len(h) {
			continue
		}
		copy(h[:], old)
		if h != s.TokenHash && h != s.PrevTokenHash {
			cmds = append(cmds, b.Del().Key(st.hashKey(h)).Build())
		}
	}
	for _, k := range append(newKeys, st.idKey(s.ID)) {
		cmds = append(cmds, b.Pexpireat().Key(k).MillisecondsTimestamp(newExp).Gt().Build())
	}
	if st.cache == CacheUnsafeUnfenced {
		cmds = append(cmds, b.Pttl().Key(rk).Build())
	}
	for _, r := range st.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil && notReplicated == nil {
			return fmt.Errorf("redisstore: update: the session was updated, but not its pointers: %w", err)
		}
	}
	if notReplicated != nil {
		return fmt.Errorf("redisstore: update: %w", notReplicated)
	}
	return nil
}

func errMoved(id string) error {
	return fmt.Errorf("redisstore: update: session %q belongs to another user: a session cannot change its UserID", id)
}

// notFoundOrMoved returns ErrNotFound for an Update of a session whose ID
// pointer leads to another namespace than its user's, unless the session
// exists there.
func (st *Store) notFoundOrMoved(ctx context.Context, ns uint64, slot int64, id string) error {
	if _, err := st.bySlot(ctx, ns, slot, id); err == nil {
		return errMoved(id)
	}
	return session.ErrNotFound
}

// Touch implements session.Store.
func (st *Store) Touch(ctx context.Context, id string, t session.TouchInfo) error {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	ns, slot, ok, err := st.locate(ctx, id, true)
	if err != nil {
		return fmt.Errorf("redisstore: touch: %w", err)
	}
	if !ok {
		return session.ErrNotFound
	}
	res := touchScript.Exec(ctx, st.c, []string{st.slotKey(ns, slot), st.indexKey(ns)}, []string{
		encID(id), luaTime(t.At), string(appendAddr(nil, t.IP)), t.UserAgent,
		luaTime(t.IdleDeadline), nowArg(), slotArg(slot),
	})
	if code, err := res.AsInt64(); err == nil && code == -1 {
		return fmt.Errorf("redisstore: touch: session %q: %w", id, session.ErrInvalidRecord)
	}
	arr, err := res.ToArray()
	if rueidis.IsRedisNil(err) {
		return session.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("redisstore: touch: %w", err)
	}
	if len(arr) != 3 {
		return errors.New("redisstore: touch: unexpected script reply")
	}
	exp, err := arr[2].AsInt64()
	if err != nil {
		return fmt.Errorf("redisstore: touch: %w", err)
	}
	// The pointers live at least as long as the record.
	b := st.c.B()
	cmds := rueidis.Commands{b.Pexpireat().Key(st.idKey(id)).MillisecondsTimestamp(exp).Gt().Build()}
	for _, m := range arr[:2] {
		if v, _ := m.AsBytes(); len(v) == len(session.Hash{}) {
			cmds = append(cmds, b.Pexpireat().Key(st.hashKey(session.Hash(v))).MillisecondsTimestamp(exp).Gt().Build())
		}
	}
	for _, r := range st.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("redisstore: touch: the session was touched, but its pointers were not extended: %w", err)
		}
	}
	return nil
}

// Delete implements session.Store.
func (st *Store) Delete(ctx context.Context, id string) error {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	ns, slot, ok, err := st.locate(ctx, id, true)
	if err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	if !ok {
		return session.ErrNotFound
	}
	rk := st.slotKey(ns, slot)
	res, replicated := st.runDurable(ctx, deleteScript, []string{rk, st.indexKey(ns)}, []string{encID(id), slotArg(slot)})
	v, err := res.AsBytes()
	if rueidis.IsRedisNil(err) {
		return session.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	keys := []string{st.idKey(id)}
	if s, err := decodeRecord(v); err == nil {
		keys = st.pointerKeys(s)
	}
	st.dropPointers(ctx, rk, keys)
	if err := replicated(); err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	return nil
}

// ListByUser implements session.Store. If any of the user's live sessions
// cannot be decoded it returns an error wrapping session.ErrInvalidRecord
// and no sessions.
func (st *Store) ListByUser(ctx context.Context, userID string) ([]*session.Session, error) {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	ns := st.namespace(userID)
	arr, err := listScript.Exec(ctx, st.c, []string{st.indexKey(ns)}, []string{st.indexKey(ns), userID, nowArg()}).ToArray()
	if err != nil {
		return nil, fmt.Errorf("redisstore: list by user: %w", err)
	}
	now := time.Now()
	var list []*session.Session
	for _, m := range arr {
		v, err := m.AsBytes()
		if err != nil {
			return nil, fmt.Errorf("redisstore: list by user: %w", err)
		}
		s, err := decodeRecord(v)
		if err != nil {
			return nil, err
		}
		if s.UserID == userID && !s.Expired(now) {
			list = append(list, s)
		}
	}
	slices.SortFunc(list, func(a, b *session.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return list, nil
}

// endedRecords reads the records a script returned for the sessions it
// ended: their IDs, and their token pointer keys, left for the caller to
// remove. A record that does not decode has no pointers to find.
func (st *Store) endedRecords(msgs []rueidis.RedisMessage) (ids, stale []string, err error) {
	for _, m := range msgs {
		v, err := m.AsBytes()
		if err != nil {
			return nil, nil, err
		}
		if s, err := decodeRecord(v); err == nil {
			ids = append(ids, s.ID)
			stale = append(stale, st.pointerKeys(s)...)
		}
	}
	return ids, stale, nil
}

// DeleteByUser implements session.Store.
func (st *Store) DeleteByUser(ctx context.Context, userID, except string) ([]string, error) {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	ns := st.namespace(userID)
	keep := ""
	if except != "" {
		keep = encID(except)
	}
	ik := st.indexKey(ns)
	res, replicated := st.runDurable(ctx, deleteUserScript, []string{ik}, []string{ik, userID, keep, nowArg()})
	arr, err := res.ToArray()
	if err != nil {
		return nil, fmt.Errorf("redisstore: delete by user: %w", err)
	}
	ids, stale, err := st.endedRecords(arr)
	if err != nil {
		return nil, fmt.Errorf("redisstore: delete by user: %w", err)
	}
	st.dropPointers(ctx, ik, stale)
	if len(arr) > 0 {
		if err := replicated(); err != nil {
			return nil, fmt.Errorf("redisstore: delete by user: %w", err)
		}
	}
	return ids, nil
}
