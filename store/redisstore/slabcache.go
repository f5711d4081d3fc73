package redisstore

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// slabCache is the client-side cache of one connection (a
// rueidis.CacheStore), built so that the garbage collector has next to
// nothing to scan however many entries it holds: the entries are
// serialized into large byte slabs, and an index of integers finds them
// (a map whose keys and values hold no pointers, which the collector
// skips). See "Client-side cache" in docs/stores/redis.md.
//
// Slabs are filled in order and never written twice: a cached reply is a
// view into its slab (rueidis.RedisMessage.CacheUnmarshalView), valid for
// as long as its holder keeps it. When the slabs hold more than the
// cache's budget, the oldest slab is dropped with every entry in it
// (first in, first out). An invalidation or a newer reply only unlinks the
// old entry from the index; its bytes go with their slab.
//
// An entry is, in its slab:
//
//	expires   8 bytes, Unix milliseconds, little-endian
//	key       2-byte length, bytes
//	command   1-byte length, bytes
//	reply     4-byte length, then rueidis.RedisMessage.CacheMarshal's bytes
type slabCache struct {
	seed     maphash.Seed
	slabSize int
	maxSlabs int

	mu sync.Mutex
	// index maps the hash of a key to where its entry is: the slab's
	// sequence number << 32 | the entry's offset in it.
	index map[uint64]uint64
	// slabs are the live slabs, oldest first; slabs[i] has sequence
	// number first+i, and the last one is being filled.
	slabs   [][]byte
	first   uint32
	flights map[string]*cacheFlight
	closed  bool
}

const (
	// defaultSlabSize is the size of a slab: a few thousand sessions.
	defaultSlabSize = 1 << 20
	// entryHeader is what an entry takes besides its key, command and
	// reply.
	entryHeader = 8 + 2 + 1 + 4
)

// newSlabCache returns a cache that keeps up to about maxBytes of entries.
func newSlabCache(maxBytes int) *slabCache {
	size := defaultSlabSize
	if maxBytes/4 < size {
		size = max(maxBytes/4, 4096)
	}
	return &slabCache{
		seed:     maphash.MakeSeed(),
		slabSize: size,
		maxSlabs: max(maxBytes/size, 2),
		index:    make(map[uint64]uint64),
		flights:  make(map[string]*cacheFlight),
	}
}

var _ rueidis.CacheStore = (*slabCache)(nil)

// cacheFlight is a read of a key sent to Redis, which later readers of the
// key wait for instead of sending their own.
type cacheFlight struct {
	xat  int64 // the client-side expiry asked for, Unix milliseconds
	done chan struct{}
	val  rueidis.RedisMessage
	err  error
}

func (f *cacheFlight) Wait(ctx context.Context) (rueidis.RedisMessage, error) {
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		return rueidis.RedisMessage{}, ctx.Err()
	}
}

func (f *cacheFlight) set(val rueidis.RedisMessage, err error) {
	f.val, f.err = val, err
	close(f.done)
}

func flightKey(key, cmd string) string { return key + "\x00" + cmd }

// entry returns the entry at loc and its parts; ok is false if loc names
// a slab dropped since.
func (c *slabCache) entry(loc uint64) (e []byte, ok bool) {
	i := uint32(loc>>32) - c.first
	if int(i) >= len(c.slabs) {
		return nil, false
	}
	return c.slabs[i][uint32(loc):], true
}

// entryParts splits an entry into its expiry, key, command and reply.
func entryParts(e []byte) (xat int64, key, cmd, reply []byte, size int) {
	xat = int64(binary.LittleEndian.Uint64(e))
	kl := int(binary.LittleEndian.Uint16(e[8:]))
	key = e[10 : 10+kl]
	p := 10 + kl
	cl := int(e[p])
	cmd = e[p+1 : p+1+cl]
	p += 1 + cl
	rl := int(binary.LittleEndian.Uint32(e[p:]))
	reply = e[p+4 : p+4+rl]
	return xat, key, cmd, reply, p + 4 + rl
}

// lookup returns the cached reply of cmd on key, if there is one that has
// not expired at nowMs. c.mu is held.
func (c *slabCache) lookup(h uint64, key, cmd string, nowMs int64) (rueidis.RedisMessage, bool) {
	loc, ok := c.index[h]
	if !ok {
		return rueidis.RedisMessage{}, false
	}
	e, ok := c.entry(loc)
	if !ok {
		delete(c.index, h)
		return rueidis.RedisMessage{}, false
	}
	xat, k, cm, reply, _ := entryParts(e)
	if string(k) != key || string(cm) != cmd {
		return rueidis.RedisMessage{}, false
	}
	if xat <= nowMs {
		delete(c.index, h)
		return rueidis.RedisMessage{}, false
	}
	var m rueidis.RedisMessage
	if m.CacheUnmarshalView(reply) != nil {
		delete(c.index, h)
		return rueidis.RedisMessage{}, false
	}
	return m, true
}

// Flight implements rueidis.CacheStore.
func (c *slabCache) Flight(key, cmd string, ttl time.Duration, now time.Time) (rueidis.RedisMessage, rueidis.CacheEntry) {
	h := maphash.String(c.seed, key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.lookup(h, key, cmd, now.UnixMilli()); ok {
		return m, nil
	}
	if c.closed {
		return rueidis.RedisMessage{}, nil
	}
	fk := flightKey(key, cmd)
	if f := c.flights[fk]; f != nil {
		return rueidis.RedisMessage{}, f
	}
	c.flights[fk] = &cacheFlight{xat: now.Add(ttl).UnixMilli(), done: make(chan struct{})}
	return rueidis.RedisMessage{}, nil
}

// Update implements rueidis.CacheStore: it stores the reply to a flight
// and hands it to the flight's waiters.
func (c *slabCache) Update(key, cmd string, val rueidis.RedisMessage) (pxat int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fk := flightKey(key, cmd)
	f := c.flights[fk]
	if f == nil {
		return val.CachePXAT()
	}
	delete(c.flights, fk)
	pxat = val.CachePXAT()
	if pxat <= 0 || f.xat < pxat {
		pxat = f.xat
	}
	// The waiters get the reply as a cache hit, as later readers do:
	// it answers a read they did not send, which may have run before
	// they began.
	reply := c.store(key, cmd, pxat, &val)
	if reply == nil {
		reply = val.CacheMarshal(nil)
	}
	var m rueidis.RedisMessage
	if err := m.CacheUnmarshalView(reply); err != nil {
		f.set(rueidis.RedisMessage{}, err)
	} else {
		f.set(m, nil)
	}
	return pxat
}

// store adds an entry and returns its reply's bytes, or nil if the entry
// is too big to keep. c.mu is held.
func (c *slabCache) store(key, cmd string, xat int64, val *rueidis.RedisMessage) []byte {
	if len(key) > 1<<16-1 || len(cmd) > 255 {
		return nil
	}
	size := entryHeader + len(key) + len(cmd) + val.CacheSize()
	if size > c.slabSize/4 {
		return nil // too big to cache: it would crowd out the others
	}
	if len(c.slabs) == 0 || cap(c.slabs[len(c.slabs)-1])-len(c.slabs[len(c.slabs)-1]) < size {
		c.newSlab()
	}
	last := len(c.slabs) - 1
	s := c.slabs[last]
	off := len(s)
	s = binary.LittleEndian.AppendUint64(s, uint64(xat))
	s = binary.LittleEndian.AppendUint16(s, uint16(len(key)))
	s = append(s, key...)
	s = append(s, byte(len(cmd)))
	s = append(s, cmd...)
	lenAt := len(s)
	s = append(s, 0, 0, 0, 0)
	s = val.CacheMarshal(s)
	binary.LittleEndian.PutUint32(s[lenAt:], uint32(len(s)-lenAt-4))
	if cap(s) != cap(c.slabs[last]) {
		// CacheMarshal outgrew the slab (its CacheSize was short): a
		// slab is never reallocated, since cached replies are views
		// into it. Drop the entry.
		return nil
	}
	c.slabs[last] = s
	c.index[maphash.String(c.seed, key)] = uint64(c.first+uint32(last))<<32 | uint64(off)
	return s[lenAt+4:]
}

// newSlab starts a slab, dropping the oldest one first if the cache is
// full. c.mu is held.
func (c *slabCache) newSlab() {
	if len(c.slabs) >= c.maxSlabs {
		old := c.slabs[0]
		seq := uint64(c.first)
		for off := 0; off < len(old); {
			_, key, _, _, size := entryParts(old[off:])
			h := maphash.Bytes(c.seed, key)
			if loc, ok := c.index[h]; ok && loc == seq<<32|uint64(off) {
				delete(c.index, h)
			}
			off += size
		}
		c.slabs[0] = nil
		c.slabs = c.slabs[1:]
		c.first++
	}
	c.slabs = append(c.slabs, make([]byte, 0, c.slabSize))
}

// Cancel implements rueidis.CacheStore: the flight failed.
func (c *slabCache) Cancel(key, cmd string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fk := flightKey(key, cmd)
	if f := c.flights[fk]; f != nil {
		delete(c.flights, fk)
		f.set(rueidis.RedisMessage{}, err)
	}
}

// Delete implements rueidis.CacheStore: Redis invalidated keys, or all
// of them if keys is nil. Flights in progress are left alone: an
// invalidation that arrives before a flight's reply is for a change made
// before the read ran, which the reply reflects.
func (c *slabCache) Delete(keys []rueidis.RedisMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if keys == nil {
		c.flush()
		return
	}
	for i := range keys {
		k, err := keys[i].ToString()
		if err != nil {
			continue
		}
		h := maphash.String(c.seed, k)
		loc, ok := c.index[h]
		if !ok {
			continue
		}
		if e, ok := c.entry(loc); ok {
			if _, key, _, _, _ := entryParts(e); string(key) != k {
				continue
			}
		}
		delete(c.index, h)
	}
}

// flush drops every entry. c.mu is held.
func (c *slabCache) flush() {
	c.index = make(map[uint64]uint64)
	c.first += uint32(len(c.slabs))
	c.slabs = nil
}

// Close implements rueidis.CacheStore: the connection is gone.
func (c *slabCache) Close(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flush()
	c.closed = true
	for fk, f := range c.flights {
		delete(c.flights, fk)
		f.set(rueidis.RedisMessage{}, err)
	}
}

// entries returns how many entries the index holds, for tests.
func (c *slabCache) entries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.index)
}

// peek returns the cached reply to GET key, as Flight would, but starts
// no flight if there is none.
func (c *slabCache) peek(key string, nowMs int64) (rueidis.RedisMessage, bool) {
	h := maphash.String(c.seed, key)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookup(h, key, "GET", nowMs)
}

// cacheSet is the client-side caches of a Store's connections.
type cacheSet struct {
	mu     sync.Mutex
	caches []*slabCache
	// sole is the one open cache when the set was last added to, or nil
	// if there were more: the cache of the one connection that reads
	// with caching on one server (rueidis's dedicated connections, which
	// the scripts that wait for replicas use, have none).
	sole atomic.Pointer[slabCache]
}

// peek returns the value of key in the sole cache, nil if Redis had none,
// and whether it is cached there.
func (s *cacheSet) peek(key string) ([]byte, bool) {
	c := s.sole.Load()
	if c == nil {
		return nil, false
	}
	m, ok := c.peek(key, time.Now().UnixMilli())
	if !ok {
		return nil, false
	}
	v, err := m.AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, true
	}
	return v, err == nil
}

func (s *cacheSet) add(c *slabCache) *slabCache {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A cache whose connection has closed is dropped.
	s.caches = slices.DeleteFunc(s.caches, func(c *slabCache) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.closed
	})
	s.caches = append(s.caches, c)
	if len(s.caches) == 1 {
		s.sole.Store(c)
	} else {
		s.sole.Store(nil)
	}
	return c
}

// entries returns how many entries the open connections' caches hold.
func (s *cacheSet) entries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.caches {
		n += c.entries()
	}
	return n
}
