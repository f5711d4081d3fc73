package redisstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
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
	st := &Store{c: c, prefix: o.prefix, cache: o.cache, cacheTTL: o.cacheTTL, timeout: o.timeout}
	if o.cluster && c.Mode() != rueidis.ClientModeCluster {
		c.Close()
		return nil, errors.New("redisstore: a redis+cluster:// URL names a server that is not in cluster mode: use redis://")
	}
	if err := st.Ping(ctx); err != nil {
		c.Close()
		return nil, err
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

// Keys. The user ID, in a hash tag, puts every key of a user in one
// Cluster slot; session IDs never contain '}' (Create refuses them), so
// the user ID and session ID can be read back from a record key.

func (st *Store) userTag(uid string) string { return st.prefix + "{u:" + uid + "}" }

// recordKey names the record of session id of user uid.
func (st *Store) recordKey(uid, id string) string { return st.userTag(uid) + ":s:" + id }

// recordPrefix is recordKey without the session ID, for the scripts.
func (st *Store) recordPrefix(uid string) string { return st.userTag(uid) + ":s:" }

// indexKey names the sorted set of the user's session IDs.
func (st *Store) indexKey(uid string) string { return st.userTag(uid) + ":z" }

// hashKey names the pointer from a token hash to its session. It holds the
// first 128 bits of the hash, which tell the sessions apart as well as the
// whole hash would; the record holds the whole hash, which every lookup
// checks.
func (st *Store) hashKey(h session.Hash) string {
	var b [22]byte
	base64.RawURLEncoding.Encode(b[:], h[:16])
	return st.prefix + "h:" + string(b[:])
}

// idKey names the pointer from a session ID to its user.
func (st *Store) idKey(id string) string { return st.prefix + "i:" + id }

// hashPointer is the value of a hash key: the session ID, then '}', then
// the user ID.
func hashPointer(uid, id string) string { return id + "}" + uid }

func parseHashPointer(v string) (uid, id string, ok bool) {
	id, uid, ok = strings.Cut(v, "}")
	return uid, id, ok && id != ""
}

func micros(t time.Time) string { return strconv.FormatInt(encodeTime(t), 10) }

// Create implements session.Store. It returns an error if s.ID is empty,
// contains '}' or is already taken.
func (st *Store) Create(ctx context.Context, s *session.Session, lim session.Limit) ([]string, error) {
	if s.ID == "" || strings.Contains(s.ID, "}") {
		return nil, fmt.Errorf("redisstore: create: session ID %q is empty or contains '}'", s.ID)
	}
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	exp := expiresAtMillis(s)
	pxat := strconv.FormatInt(exp, 10)
	rk, ik := st.recordKey(s.UserID, s.ID), st.indexKey(s.UserID)

	// Pointers first: the record they point to is what makes a session
	// exist, so pointers alone are harmless, and a record is never left
	// without them.
	b := st.c.B()
	ptrs := rueidis.Commands{
		b.Set().Key(st.idKey(s.ID)).Value(s.UserID).Nx().PxatMillisecondsTimestamp(exp).Build(),
		b.Set().Key(st.hashKey(s.TokenHash)).Value(hashPointer(s.UserID, s.ID)).PxatMillisecondsTimestamp(exp).Build(),
	}
	hashKeys := []string{st.hashKey(s.TokenHash)}
	if !s.PrevTokenHash.IsZero() {
		ptrs = append(ptrs, b.Set().Key(st.hashKey(s.PrevTokenHash)).Value(hashPointer(s.UserID, s.ID)).PxatMillisecondsTimestamp(exp).Build())
		hashKeys = append(hashKeys, st.hashKey(s.PrevTokenHash))
	}
	for i, r := range st.c.DoMulti(ctx, ptrs...) {
		err := r.Error()
		if i == 0 && rueidis.IsRedisNil(err) {
			st.del(ctx, hashKeys...)
			return nil, fmt.Errorf("redisstore: create: session ID %q is taken", s.ID)
		}
		if err != nil {
			return nil, fmt.Errorf("redisstore: create: %w", err)
		}
	}

	reject := "0"
	if lim.Reject {
		reject = "1"
	}
	res := createScript.Exec(ctx, st.c, []string{rk, ik}, []string{
		string(encodeRecord(s)), pxat, micros(s.CreatedAt), s.ID,
		strconv.Itoa(max(lim.Max, 0)), reject, st.recordPrefix(s.UserID),
		strconv.FormatInt(time.Now().UnixMilli(), 10),
	})
	if code, err := res.AsInt64(); err == nil {
		// The session was not stored: its pointers go.
		st.del(ctx, append(hashKeys, st.idKey(s.ID))...)
		if code == -1 {
			return nil, session.ErrTooManySessions
		}
		return nil, fmt.Errorf("redisstore: create: session ID %q is taken", s.ID)
	}
	gone, err := records(res)
	if err != nil {
		return nil, fmt.Errorf("redisstore: create: %w", err)
	}
	var evicted []string
	var stale []string
	for _, r := range gone {
		evicted = append(evicted, r.id)
		stale = append(stale, st.pointerKeys(r.id, r.v)...)
	}
	st.dropPointers(ctx, rk, stale)
	return evicted, nil
}

// idRecord is a session ID and its record, as the scripts return them.
type idRecord struct {
	id string
	v  []byte
}

// records reads a script's {id, record, id, record…} reply.
func records(res rueidis.RedisResult) ([]idRecord, error) {
	arr, err := res.ToArray()
	if err != nil {
		return nil, err
	}
	if len(arr)%2 != 0 {
		return nil, errors.New("script returned an odd number of values")
	}
	out := make([]idRecord, 0, len(arr)/2)
	for i := 0; i < len(arr); i += 2 {
		id, err := arr[i].ToString()
		if err != nil {
			return nil, err
		}
		v, err := arr[i+1].AsBytes()
		if err != nil {
			return nil, err
		}
		out = append(out, idRecord{id, v})
	}
	return out, nil
}

// pointerKeys returns the pointer keys of session id whose record is v.
func (st *Store) pointerKeys(id string, v []byte) []string {
	keys := []string{st.idKey(id)}
	if tok, prev, ok := recordHashes(v); ok {
		keys = append(keys, st.hashKey(tok))
		if !prev.IsZero() {
			keys = append(keys, st.hashKey(prev))
		}
	}
	return keys
}

// dropPointers deletes the pointers of sessions whose records are gone, on
// a best-effort basis: a pointer left behind points to nothing, which every
// lookup sees, and expires when the session would have. In the unfenced
// cache mode the same round trip reads rk, a key of the slot just written,
// so that the Store's own cache has applied the write's invalidation
// before the write returns (see "Client-side cache" in the package doc).
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
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	p, err := st.get(ctx, st.hashKey(h), st.cache != CacheOff)
	if err != nil {
		return nil, fmt.Errorf("redisstore: by hash: %w", err)
	}
	if p == nil {
		return nil, session.ErrNotFound
	}
	uid, id, ok := parseHashPointer(string(p))
	if !ok {
		return nil, session.ErrNotFound
	}
	rk := st.recordKey(uid, id)
	if st.cache == CacheFenced {
		// The fence: a round trip on the connection that holds the
		// cached record (one connection per server, see Open). Redis
		// sends every invalidation of the record for this connection
		// before this reply, and rueidis applies them in order, so the
		// cached copy read next is no older than the moment this
		// command ran. It answers whether the record exists, too.
		ttl, err := st.c.Do(ctx, st.c.B().Pttl().Key(rk).Build()).AsInt64()
		if err != nil {
			return nil, fmt.Errorf("redisstore: by hash: %w", err)
		}
		if ttl == -2 {
			return nil, session.ErrNotFound
		}
	}
	v, err := st.get(ctx, rk, st.cache != CacheOff)
	if err != nil {
		return nil, fmt.Errorf("redisstore: by hash: %w", err)
	}
	if v == nil {
		return nil, session.ErrNotFound
	}
	s, err := decodeRecord(uid, id, v)
	if err != nil {
		return nil, err
	}
	if s.TokenHash != h && (s.PrevTokenHash != h || h.IsZero()) || s.Expired(time.Now()) {
		return nil, session.ErrNotFound
	}
	return s, nil
}

// get returns the value of key, nil if there is none, through the
// client-side cache if cached.
func (st *Store) get(ctx context.Context, key string, cached bool) ([]byte, error) {
	var res rueidis.RedisResult
	if cached {
		res = st.c.DoCache(ctx, st.c.B().Get().Key(key).Cache(), st.cacheTTL)
	} else {
		res = st.c.Do(ctx, st.c.B().Get().Key(key).Build())
	}
	v, err := res.AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	return v, err
}

// userOf returns the user of session id from its pointer, "" if there is
// none. The pointer never changes while it exists, so a cached copy is
// as good as a fresh one: what it points to is checked anyway.
func (st *Store) userOf(ctx context.Context, id string, cached bool) (string, error) {
	v, err := st.get(ctx, st.idKey(id), cached && st.cache != CacheOff)
	return string(v), err
}

// ByID implements session.Store. It reads Redis every time, bypassing the
// client-side cache, so that it also tells whether Redis answers (the
// service's readiness check calls it).
func (st *Store) ByID(ctx context.Context, id string) (*session.Session, error) {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	uid, err := st.userOf(ctx, id, false)
	if err != nil {
		return nil, fmt.Errorf("redisstore: by id: %w", err)
	}
	if uid == "" {
		return nil, session.ErrNotFound
	}
	return st.byKey(ctx, uid, id)
}

// byKey reads the record of session id of user uid, uncached.
func (st *Store) byKey(ctx context.Context, uid, id string) (*session.Session, error) {
	v, err := st.get(ctx, st.recordKey(uid, id), false)
	if err != nil {
		return nil, fmt.Errorf("redisstore: by id: %w", err)
	}
	if v == nil {
		return nil, session.ErrNotFound
	}
	s, err := decodeRecord(uid, id, v)
	if err != nil {
		return nil, err
	}
	if s.Expired(time.Now()) {
		return nil, session.ErrNotFound
	}
	return s, nil
}

// Update implements session.Store. It returns an error if s.UserID is not
// the stored session's: a session cannot move to another user.
func (st *Store) Update(ctx context.Context, s *session.Session) error {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	rk, ik := st.recordKey(s.UserID, s.ID), st.indexKey(s.UserID)
	exp := expiresAtMillis(s)

	// Pointers for the new token hashes first (NX: existing ones keep
	// their expiry, which is never earlier than the record's).
	b := st.c.B()
	var ptrs rueidis.Commands
	var newKeys []string
	for _, h := range []session.Hash{s.TokenHash, s.PrevTokenHash} {
		if !h.IsZero() {
			ptrs = append(ptrs, b.Set().Key(st.hashKey(h)).Value(hashPointer(s.UserID, s.ID)).Nx().PxatMillisecondsTimestamp(exp).Build())
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
	arr, err := updateScript.Exec(ctx, st.c, []string{rk, ik}, []string{
		strconv.FormatInt(s.Version, 10), string(encodeRecord(&next)),
		micros(time.Now()), s.ID,
	}).ToArray()
	if err != nil {
		return fmt.Errorf("redisstore: update: %w", err)
	}
	code, err := arr[0].AsInt64()
	if err != nil {
		return fmt.Errorf("redisstore: update: %w", err)
	}
	switch code {
	case 0:
		st.del(ctx, created...)
		return st.notFoundOrMoved(ctx, s)
	case 1:
		st.del(ctx, created...)
		return session.ErrConflict
	}
	if len(arr) != 4 {
		return errors.New("redisstore: update: unexpected script reply")
	}
	newExp, err := arr[3].AsInt64()
	if err != nil {
		return fmt.Errorf("redisstore: update: %w", err)
	}
	s.Version = next.Version

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
		if err := r.Error(); err != nil {
			return fmt.Errorf("redisstore: update: the session was updated, but not its pointers: %w", err)
		}
	}
	return nil
}

// notFoundOrMoved returns ErrNotFound for an Update of a session that is
// not stored under s.UserID, unless the session exists under another user.
func (st *Store) notFoundOrMoved(ctx context.Context, s *session.Session) error {
	uid, err := st.userOf(ctx, s.ID, false)
	if err != nil || uid == "" || uid == s.UserID {
		return session.ErrNotFound
	}
	if _, err := st.byKey(ctx, uid, s.ID); err == nil {
		return fmt.Errorf("redisstore: update: session %q belongs to another user: a session cannot change its UserID", s.ID)
	}
	return session.ErrNotFound
}

// Touch implements session.Store.
func (st *Store) Touch(ctx context.Context, id string, t session.TouchInfo) error {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	uid, err := st.userOf(ctx, id, true)
	if err != nil {
		return fmt.Errorf("redisstore: touch: %w", err)
	}
	if uid == "" {
		return session.ErrNotFound
	}
	res := touchScript.Exec(ctx, st.c, []string{st.recordKey(uid, id), st.indexKey(uid)}, []string{
		micros(t.At), t.IP, t.UserAgent, micros(t.IdleDeadline), micros(time.Now()),
	})
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
	uid, err := st.userOf(ctx, id, true)
	if err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	if uid == "" {
		return session.ErrNotFound
	}
	rk := st.recordKey(uid, id)
	v, err := deleteScript.Exec(ctx, st.c, []string{rk, st.indexKey(uid)}, []string{id}).AsBytes()
	if rueidis.IsRedisNil(err) {
		return session.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	st.dropPointers(ctx, rk, st.pointerKeys(id, v))
	return nil
}

// ListByUser implements session.Store. If any of the user's live sessions
// cannot be decoded it returns an error wrapping session.ErrInvalidRecord
// and no sessions.
func (st *Store) ListByUser(ctx context.Context, userID string) ([]*session.Session, error) {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	recs, err := records(listScript.Exec(ctx, st.c, []string{st.indexKey(userID)}, []string{st.recordPrefix(userID)}))
	if err != nil {
		return nil, fmt.Errorf("redisstore: list by user: %w", err)
	}
	now := time.Now()
	var list []*session.Session
	for _, r := range recs {
		s, err := decodeRecord(userID, r.id, r.v)
		if err != nil {
			return nil, err
		}
		if !s.Expired(now) {
			list = append(list, s)
		}
	}
	return list, nil
}

// DeleteByUser implements session.Store.
func (st *Store) DeleteByUser(ctx context.Context, userID, except string) ([]string, error) {
	ctx, cancel := st.opContext(ctx)
	defer cancel()
	ik := st.indexKey(userID)
	recs, err := records(deleteUserScript.Exec(ctx, st.c, []string{ik}, []string{st.recordPrefix(userID), except}))
	if err != nil {
		return nil, fmt.Errorf("redisstore: delete by user: %w", err)
	}
	var ids, stale []string
	for _, r := range recs {
		ids = append(ids, r.id)
		stale = append(stale, st.pointerKeys(r.id, r.v)...)
	}
	st.dropPointers(ctx, ik, stale)
	return ids, nil
}
