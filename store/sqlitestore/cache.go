package sqlitestore

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/sessiond/sessiond/session"
)

// A Store answers ByHash from memory when it can prove nothing that could
// make the answer wrong has happened since it was read, so that the
// resolve path costs a map lookup instead of a query.
//
// The proof is a write counter shared by every process that opens the
// database, in a small file beside it (PATH-epoch) mapped into memory:
//
//   - every write that can end or change a session (Update, Delete,
//     DeleteByUser, and Create when it evicts) adds 1 to "begun" before it
//     commits and 1 to "ended" after;
//   - a read is cached only if no write was in flight when it started
//     (begun == ended) and none began while it ran (begun unchanged), and
//     the entry is tagged with that value of begun;
//   - a cached entry is used only while begun still equals its tag.
//
// So once a revocation's Delete has begun, no process serves the session
// from memory again. Touch is not counted (it only extends a session); a
// Store updates its own cached entry instead, and an entry whose deadline
// has passed is re-read from the database, where another process may have
// extended it. A process that dies between begin and end leaves begun ahead
// of ended, and caching stops until a Store opens the file with no other
// process on it (flock) and brings ended level again: it fails safe.
type cache struct {
	file    *os.File
	begun   *atomic.Uint64
	ended   *atomic.Uint64
	mu      sync.RWMutex
	entries map[session.Hash]cached
	byID    map[string]session.Hash // the hash each cached session was filled under, by its ID (sharing the record's bytes)
	max     int
	closed  atomic.Bool
}

type cached struct {
	rec string // the session, encoded by encodeRecord
	tag uint64
}

// openCache maps the counter file at path, creating it (mode 0600) if
// needed.
func openCache(path string, max int) (*cache, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: cache counters: %w", err)
	}
	fail := func(err error) (*cache, error) {
		f.Close()
		return nil, fmt.Errorf("sqlitestore: cache counters: %w", err)
	}
	if err := f.Truncate(16); err != nil {
		return fail(err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, 16, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return fail(err)
	}
	c := &cache{
		file:    f,
		begun:   (*atomic.Uint64)(unsafe.Pointer(&mem[0])),
		ended:   (*atomic.Uint64)(unsafe.Pointer(&mem[8])),
		entries: map[session.Hash]cached{},
		byID:    map[string]session.Hash{},
		max:     max,
	}
	// Alone on the file, no write can be in flight: level the counters a
	// crashed process may have left apart. Then hold a shared lock, so that
	// later Stores know this one is here.
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
		c.ended.Store(c.begun.Load())
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		syscall.Munmap(mem)
		return fail(err)
	}
	// The counters stay mapped until c is unreachable, not just closed: a
	// Store used after Close, by mistake, then gets errors instead of a
	// fault on an unmapped page.
	runtime.AddCleanup(c, func(mem []byte) { syscall.Munmap(mem) }, mem)
	return c, nil
}

// close stops caching and releases the file (and its lock). The mapping
// goes when c is collected.
func (c *cache) close() error {
	if c == nil {
		return nil
	}
	c.closed.Store(true)
	return c.file.Close()
}

// begin and end bracket a write that can end or change sessions: begin
// before it, end after it has committed or failed.
func (c *cache) begin() {
	if c != nil {
		c.begun.Add(1)
	}
}

func (c *cache) end() {
	if c != nil {
		c.ended.Add(1)
	}
}

// get returns the cached session for h, decoded afresh, if still provably
// current.
func (c *cache) get(h session.Hash) (*session.Session, bool) {
	if c == nil || c.closed.Load() {
		return nil, false
	}
	c.mu.RLock()
	e, ok := c.entries[h]
	c.mu.RUnlock()
	if !ok || e.tag != c.begun.Load() {
		return nil, false
	}
	return decodeRecord(e.rec), true
}

// fill reads the session for h with read and caches it if no write could
// have raced the read.
func (c *cache) fill(h session.Hash, read func() (*session.Session, error)) (*session.Session, error) {
	if c == nil || c.closed.Load() {
		return read()
	}
	tag := c.begun.Load()
	quiet := tag == c.ended.Load()
	s, err := read()
	if err != nil || !quiet || c.begun.Load() != tag {
		return s, err
	}
	rec := encodeRecord(s)
	c.mu.Lock()
	if len(c.entries) >= c.max {
		clear(c.entries) // cheaper than an LRU, and refilled in one read each
		clear(c.byID)
	}
	if old, ok := c.byID[s.ID]; ok && old != h {
		delete(c.entries, old)
	}
	c.entries[h] = cached{rec: rec, tag: tag}
	c.byID[recordID(rec)] = h
	c.mu.Unlock()
	return s, nil
}

// touched records this Store's own Touch in the cached copy, if any.
func (c *cache) touched(id string, t session.TouchInfo) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.byID[id]
	if !ok {
		return
	}
	e := c.entries[h]
	s := decodeRecord(e.rec)
	if t.At.After(s.LastSeenAt) {
		s.LastSeenAt, s.LastIP, s.LastUserAgent = t.At, t.IP, t.UserAgent
	}
	if t.IdleDeadline.After(s.IdleDeadline) {
		s.IdleDeadline = t.IdleDeadline
	}
	rec := encodeRecord(s)
	c.entries[h] = cached{rec: rec, tag: e.tag}
	c.byID[recordID(rec)] = h // replaces the key too, so the old record can go
}

// A cached session is kept as a record: one string, which holds no
// pointers, so that the garbage collector marks it without reading it.
// As *session.Session values, a hundred thousand cached sessions would be
// 40 MB for it to scan (each with a dozen pointers: strings, roles, the
// times' locations) on every cycle, a tenth of the resolve path's CPU.
// Decoding shares the record's bytes for the strings, so it allocates no
// more than copying a Session would.
//
// The layout, integers little-endian:
//
//	0    token hash, previous token hash       2 × 32 bytes
//	64   created, authenticated, rotated, last seen, idle deadline,
//	     absolute deadline                     6 × int64 (encodeTime)
//	112  version                               int64
//	120  remember                              1 byte
//	121  number of AMR values m                1 byte, then 2 unused
//	124  number of roles n                     uint32
//	128  lengths of ID, user ID, created IP, created user agent, last IP,
//	     last user agent, data, the n roles and the m AMR values
//	                                           (7 + n + m) × uint32
//	     then those fields' bytes, in that order
const (
	recTimes   = 64
	recVersion = 112
	recFlags   = 120
	recAMR     = 121
	recRoles   = 124
	recLengths = 128
	recFields  = 7 // strings and data before the roles
)

// encodeRecord returns s as a record. AMR holds at most 255 values (a
// session holds a handful: session.MergeAMR keeps each method once).
func encodeRecord(s *session.Session) string {
	fields := [recFields]string{s.ID, s.UserID, s.CreatedIP, s.CreatedUserAgent, s.LastIP, s.LastUserAgent, string(s.Data)}
	lists := slices.Concat(s.Roles, s.AMR[:min(len(s.AMR), 255)])
	n := recLengths + 4*(recFields+len(lists))
	for _, f := range fields {
		n += len(f)
	}
	for _, r := range lists {
		n += len(r)
	}
	b := make([]byte, recLengths, n)
	copy(b, s.TokenHash[:])
	copy(b[32:], s.PrevTokenHash[:])
	for i, t := range [...]time.Time{s.CreatedAt, s.AuthenticatedAt, s.RotatedAt, s.LastSeenAt, s.IdleDeadline, s.AbsoluteDeadline} {
		binary.LittleEndian.PutUint64(b[recTimes+8*i:], uint64(encodeTime(t)))
	}
	binary.LittleEndian.PutUint64(b[recVersion:], uint64(s.Version))
	if s.Remember {
		b[recFlags] = 1
	}
	b[recAMR] = byte(len(lists) - len(s.Roles))
	binary.LittleEndian.PutUint32(b[recRoles:], uint32(len(s.Roles)))
	for _, f := range fields {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
	}
	for _, r := range lists {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r)))
	}
	for _, f := range fields {
		b = append(b, f...)
	}
	for _, r := range lists {
		b = append(b, r...)
	}
	return string(b)
}

// recordID returns the session ID in rec, sharing rec's bytes.
func recordID(rec string) string {
	start := recLengths + 4*(recFields+le32(rec, recRoles)+int(rec[recAMR]))
	return rec[start : start+le32(rec, recLengths)]
}

// decodeRecord returns the session that encodeRecord wrote into rec, as a
// read from the database returns it.
func decodeRecord(rec string) *session.Session {
	at := func(i int) time.Time { return decodeTime(int64(le64(rec, recTimes+8*i))) }
	s := &session.Session{
		CreatedAt:        at(0),
		AuthenticatedAt:  at(1),
		RotatedAt:        at(2),
		LastSeenAt:       at(3),
		IdleDeadline:     at(4),
		AbsoluteDeadline: at(5),
		Version:          int64(le64(rec, recVersion)),
		Remember:         rec[recFlags] == 1,
	}
	copy(s.TokenHash[:], rec[:32])
	copy(s.PrevTokenHash[:], rec[32:64])
	roles, amr := le32(rec, recRoles), int(rec[recAMR])
	pos := recLengths + 4*(recFields+roles+amr)
	next := func(i int) string {
		n := le32(rec, recLengths+4*i)
		f := rec[pos : pos+n]
		pos += n
		return f
	}
	for i, f := range [...]*string{&s.ID, &s.UserID, &s.CreatedIP, &s.CreatedUserAgent, &s.LastIP, &s.LastUserAgent} {
		*f = next(i)
	}
	if data := next(recFields - 1); data != "" {
		s.Data = []byte(data)
	}
	if roles > 0 {
		s.Roles = make([]string, roles)
		for i := range s.Roles {
			s.Roles[i] = next(recFields + i)
		}
	}
	if amr > 0 {
		s.AMR = make([]string, amr)
		for i := range s.AMR {
			s.AMR[i] = next(recFields + roles + i)
		}
	}
	return s
}

// le32 and le64 read the little-endian integer at off in s.
func le32(s string, off int) int {
	return int(uint32(s[off]) | uint32(s[off+1])<<8 | uint32(s[off+2])<<16 | uint32(s[off+3])<<24)
}

func le64(s string, off int) uint64 {
	return uint64(le32(s, off)) | uint64(le32(s, off+4))<<32
}
