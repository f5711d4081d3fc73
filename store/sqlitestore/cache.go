package sqlitestore

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	byID    map[string]session.Hash // the hash each cached session was filled under
	max     int
	closed  atomic.Bool
}

type cached struct {
	s   *session.Session
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

// get returns a copy of the cached session for h, if still provably
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
	return e.s.Clone(), true
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
	c.mu.Lock()
	if len(c.entries) >= c.max {
		clear(c.entries) // cheaper than an LRU, and refilled in one read each
		clear(c.byID)
	}
	if old, ok := c.byID[s.ID]; ok && old != h {
		delete(c.entries, old)
	}
	e := cached{s: compact(s), tag: tag}
	c.entries[h] = e
	c.byID[e.s.ID] = h
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
	s := e.s.Clone()
	if t.At.After(s.LastSeenAt) {
		s.LastSeenAt, s.LastIP, s.LastUserAgent = t.At, t.IP, t.UserAgent
	}
	if t.IdleDeadline.After(s.IdleDeadline) {
		s.IdleDeadline = t.IdleDeadline
	}
	c.entries[h] = cached{s: compact(s), tag: e.tag}
}

// compact returns a deep copy of s whose strings share one allocation:
// a cached session is then three objects for the garbage collector to
// mark (itself, its strings, its roles), not a dozen, which with a
// hundred thousand of them cached is a visible share of the resolve
// path's CPU.
func compact(s *session.Session) *session.Session {
	c := *s
	fields := [...]*string{&c.ID, &c.UserID, &c.CreatedIP, &c.CreatedUserAgent, &c.LastIP, &c.LastUserAgent}
	var b strings.Builder
	for _, f := range fields {
		b.WriteString(*f)
	}
	for _, r := range s.Roles {
		b.WriteString(r)
	}
	all := b.String()
	take := func(n int) string {
		v := all[:n]
		all = all[n:]
		return v
	}
	for _, f := range fields {
		*f = take(len(*f))
	}
	c.Roles = slices.Clone(s.Roles)
	for i, r := range c.Roles {
		c.Roles[i] = take(len(r))
	}
	c.Data = slices.Clone(s.Data)
	return &c
}
