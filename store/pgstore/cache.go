package pgstore

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiond/sessiond/session"
)

// cache holds copies of sessions read by ByHash, keyed by the token hash
// they were looked up by, for a Store whose listener keeps it coherent
// (see listener.go, and docs/stores/postgres.md for the argument). It
// holds at most maxEntries sessions and maxBytes bytes of encoded
// sessions, evicting by the CLOCK algorithm: each hit marks its entry,
// and the hand that looks for a victim spares, once, each marked entry
// it passes.
//
// Everything the garbage collector would have to scan per entry is one
// slice: the encoded session in data. The maps and the per-entry
// metadata hold no pointers, so the collector skips them.
type cache struct {
	maxEntries, maxBytes int
	seed                 maphash.Seed

	mu sync.Mutex
	// up is true while the listener is connected: only then are
	// entries added or served.
	up bool
	// seq counts the invalidations applied. recent[q%ringSize] is the
	// ID key that invalidation q named, for put to tell whether the
	// session it is adding was invalidated while it was being read. A
	// reset moves seq on by more than ringSize, which refuses every put
	// that began before it.
	seq    uint64
	recent [ringSize]uint64
	byHash map[session.Hash]int32
	byID   map[uint64]int32
	meta   []slotMeta
	data   [][]byte // data[i] is the encoded session of meta[i]; nil if free
	free   []int32
	hand   int
	bytes  int

	// hits counts lookups answered from the cache.
	hits atomic.Int64
}

// ringSize is how many invalidations a put may see happen during its
// read from the database and still tell whether one named its session;
// a put that saw more is dropped.
const ringSize = 512

// slotMeta is an entry's metadata.
type slotMeta struct {
	hash    session.Hash // the token hash it was looked up by
	id      uint64       // key of its session ID
	expires int64        // the session's earlier deadline, µs since the Unix epoch
	used    bool
	ref     bool // marked by a hit since the hand last passed
}

func newCache(maxEntries, maxBytes int) *cache {
	return &cache{
		maxEntries: maxEntries,
		maxBytes:   maxBytes,
		seed:       maphash.MakeSeed(),
		byHash:     make(map[session.Hash]int32),
		byID:       make(map[uint64]int32),
	}
}

// key returns the key of a session ID. Two IDs with one key only
// invalidate each other's entry.
func (c *cache) key(id string) uint64 { return maphash.String(c.seed, id) }

// contains reports whether a lookup of h may be answered from the cache,
// once fenced.
func (c *cache) contains(h session.Hash) bool {
	c.mu.Lock()
	_, ok := c.byHash[h]
	ok = ok && c.up
	c.mu.Unlock()
	return ok
}

// get returns a copy of the session cached under h, or nil if there is
// none, or if it has expired at now (µs since the Unix epoch, by the
// database's clock).
func (c *cache) get(h session.Hash, now int64) *session.Session {
	c.mu.Lock()
	i, ok := c.byHash[h]
	if !ok || !c.up || c.meta[i].expires <= now {
		c.mu.Unlock()
		return nil
	}
	c.meta[i].ref = true
	b := c.data[i] // never written once stored
	c.mu.Unlock()
	s, err := decode(b)
	if err != nil {
		return nil
	}
	c.hits.Add(1)
	return s
}

// begin returns what put needs to know of the moment a read from the
// database began, and whether its result may be cached at all.
func (c *cache) begin() (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq, c.up
}

// put caches s, read from the database by token hash h in a read that
// began at seq (from begin), unless a change to it may have been
// committed since that read: an invalidation of its ID applied since
// begin, more invalidations since then than recent remembers, or a reset.
// A change committed after the read whose notification comes later drops
// the entry when it comes.
func (c *cache) put(h session.Hash, s *session.Session, seq uint64) {
	b := encode(s)
	if len(b) > c.maxBytes {
		return
	}
	k := c.key(s.ID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.up || c.seq-seq >= ringSize {
		return
	}
	for q := seq + 1; q <= c.seq; q++ {
		if c.recent[q%ringSize] == k {
			return
		}
	}
	if i, ok := c.byID[k]; ok {
		c.drop(i)
	}
	if i, ok := c.byHash[h]; ok {
		c.drop(i)
	}
	for len(c.byID) >= c.maxEntries || c.bytes+len(b) > c.maxBytes {
		c.evict()
	}
	var i int32
	if n := len(c.free); n > 0 {
		i, c.free = c.free[n-1], c.free[:n-1]
	} else {
		i = int32(len(c.meta))
		c.meta = append(c.meta, slotMeta{})
		c.data = append(c.data, nil)
	}
	c.meta[i] = slotMeta{hash: h, id: k, expires: s.ExpiresAt().UnixMicro(), used: true}
	c.data[i] = b
	c.byHash[h] = i
	c.byID[k] = i
	c.bytes += len(b)
}

// evict drops one entry: the first unmarked one from the hand on,
// unmarking the marked ones it passes.
func (c *cache) evict() {
	for {
		if c.hand >= len(c.meta) {
			c.hand = 0
		}
		m := &c.meta[c.hand]
		c.hand++
		switch {
		case !m.used:
		case m.ref:
			m.ref = false
		default:
			c.drop(int32(c.hand - 1))
			return
		}
	}
}

// drop removes entry i.
func (c *cache) drop(i int32) {
	m := &c.meta[i]
	delete(c.byHash, m.hash)
	delete(c.byID, m.id)
	c.bytes -= len(c.data[i])
	c.data[i] = nil
	*m = slotMeta{}
	c.free = append(c.free, i)
}

// invalidate drops the entry of session id, if any, and records that it
// was dropped, for puts in flight.
func (c *cache) invalidate(id string) {
	k := c.key(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.recent[c.seq%ringSize] = k
	if i, ok := c.byID[k]; ok {
		c.drop(i)
	}
}

// invalidateAll drops every entry and refuses every put that began
// before it.
func (c *cache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLocked()
}

// reset is invalidateAll that also sets whether the listener is
// connected.
func (c *cache) reset(up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up = up
	c.clearLocked()
}

func (c *cache) clearLocked() {
	c.seq += ringSize + 1
	clear(c.byHash)
	clear(c.byID)
	c.meta, c.data, c.free = nil, nil, nil
	c.hand, c.bytes = 0, 0
}

// len returns the number of entries and the bytes they hold.
func (c *cache) len() (entries, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byID), c.bytes
}

// A cached session is encoded in one slice, so that it costs the garbage
// collector one object: the token hashes, the six times (µs since the
// Unix epoch), the version and the flags at fixed offsets; then
// the numbers of roles and AMR values, and the lengths of the strings,
// the roles, the AMR values and the data, as uvarints; then their bytes.
const fixedLen = 2*len(session.Hash{}) + 6*8 + 8 + 1

var errCorrupt = errors.New("pgstore: corrupt cache entry")

// Flags of an encoded session. A last client equal to the first, as it
// is until the session is used from elsewhere, is stored once.
const (
	flagRemember = 1 << iota
	flagSameIP
	flagSameUA
)

// encode returns s encoded.
func encode(s *session.Session) []byte {
	var flags byte
	if s.Remember {
		flags |= flagRemember
	}
	lastIP, lastUA := s.LastIP, s.LastUserAgent
	if lastIP == s.CreatedIP {
		flags, lastIP = flags|flagSameIP, ""
	}
	if lastUA == s.CreatedUserAgent {
		flags, lastUA = flags|flagSameUA, ""
	}
	texts := [...]string{s.ID, s.UserID, s.CreatedIP, s.CreatedUserAgent, lastIP, lastUA}
	n := fixedLen + binary.MaxVarintLen64*(len(texts)+len(s.Roles)+len(s.AMR)+3) + len(s.Data)
	for _, t := range texts {
		n += len(t)
	}
	for _, r := range s.Roles {
		n += len(r)
	}
	for _, a := range s.AMR {
		n += len(a)
	}
	b := make([]byte, 0, n)
	b = append(b, s.TokenHash[:]...)
	b = append(b, s.PrevTokenHash[:]...)
	for _, t := range [...]time.Time{s.CreatedAt, s.AuthenticatedAt, s.RotatedAt, s.LastSeenAt, s.IdleDeadline, s.AbsoluteDeadline} {
		b = binary.BigEndian.AppendUint64(b, uint64(t.UnixMicro()))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(s.Version))
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(s.Roles)))
	b = binary.AppendUvarint(b, uint64(len(s.AMR)))
	for _, t := range texts {
		b = binary.AppendUvarint(b, uint64(len(t)))
	}
	for _, r := range s.Roles {
		b = binary.AppendUvarint(b, uint64(len(r)))
	}
	for _, a := range s.AMR {
		b = binary.AppendUvarint(b, uint64(len(a)))
	}
	b = binary.AppendUvarint(b, uint64(len(s.Data)))
	for _, t := range texts {
		b = append(b, t...)
	}
	for _, r := range s.Roles {
		b = append(b, r...)
	}
	for _, a := range s.AMR {
		b = append(b, a...)
	}
	b = append(b, s.Data...)
	return b[:len(b):len(b)]
}

// decode returns the session encode encoded in b, in new memory: one
// string holds every text field, one slice the roles and AMR values.
func decode(b []byte) (*session.Session, error) {
	if len(b) < fixedLen {
		return nil, errCorrupt
	}
	s := new(session.Session)
	copy(s.TokenHash[:], b)
	copy(s.PrevTokenHash[:], b[32:])
	p := 64
	for _, t := range [...]*time.Time{&s.CreatedAt, &s.AuthenticatedAt, &s.RotatedAt, &s.LastSeenAt, &s.IdleDeadline, &s.AbsoluteDeadline} {
		*t = time.UnixMicro(int64(binary.BigEndian.Uint64(b[p:])))
		p += 8
	}
	s.Version = int64(binary.BigEndian.Uint64(b[p:]))
	flags := b[p+8]
	s.Remember = flags&flagRemember != 0
	p += 9
	uvarint := func() int {
		v, n := binary.Uvarint(b[p:])
		if n <= 0 || v > uint64(len(b)) {
			return -1
		}
		p += n
		return int(v)
	}
	roles, amr := uvarint(), uvarint()
	if roles < 0 || amr < 0 || roles+amr > len(b) {
		return nil, errCorrupt
	}
	var buf [16]int // room for the lengths of a session with up to 9 roles and AMR values
	lens := buf[:0]
	if n := 6 + roles + amr + 1; n <= len(buf) {
		lens = buf[:n]
	} else {
		lens = make([]int, n)
	}
	text := 0
	for i := range lens {
		if lens[i] = uvarint(); lens[i] < 0 {
			return nil, errCorrupt
		}
		if i < len(lens)-1 {
			text += lens[i]
		}
	}
	if text+lens[len(lens)-1] != len(b)-p {
		return nil, errCorrupt
	}
	all := string(b[p : p+text])
	field := func(i int) string {
		t := all[:lens[i]]
		all = all[lens[i]:]
		return t
	}
	s.ID, s.UserID = field(0), field(1)
	s.CreatedIP, s.CreatedUserAgent = field(2), field(3)
	s.LastIP, s.LastUserAgent = field(4), field(5)
	if flags&flagSameIP != 0 {
		s.LastIP = s.CreatedIP
	}
	if flags&flagSameUA != 0 {
		s.LastUserAgent = s.CreatedUserAgent
	}
	if roles+amr > 0 {
		lists := make([]string, roles+amr)
		for i := range lists {
			lists[i] = field(6 + i)
		}
		if roles > 0 {
			s.Roles = lists[:roles:roles]
		}
		if amr > 0 {
			s.AMR = lists[roles:]
		}
	}
	if d := b[p+text:]; len(d) > 0 {
		s.Data = append([]byte(nil), d...)
	}
	return s, nil
}
