package redisstore

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/sessiond/sessiond/session"
)

// A session record is the value of its record key, in a compact binary form
// that both this package and the Lua scripts (scripts.go) read and write.
// It is built for size: Redis keeps 100,000s of them, and a record of 189
// to 220 bytes fits the 224-byte allocation class that most sessions use
// (see "Memory" in docs/stores/redis.md). Varints are unsigned LEB128
// (encoding/binary's Uvarint); the version is a zigzag varint (Varint).
// In order:
//
//	flags      1 byte, the flag* bits below
//	user ID    uvarint length, bytes
//	ID         uvarint 2n+1 then the n bytes the ID is the unpadded
//	           base64url form of (as session IDs are), or 2n then the n
//	           bytes of the ID as it is
//	version    zigzag varint
//	created    time, from the epoch below
//	authed     time from created, unless flagAuthedIsCreated
//	rotated    time from created, unless flagRotatedIsCreated
//	last seen  time from created, unless flagSeenIsCreated
//	idle       time from last seen
//	absolute   time from created
//	token      32 bytes
//	previous   32 bytes, if flagPrev
//	roles      uvarint count, then each as uvarint length and bytes
//	created IP address (below)
//	last IP    address, unless flagLastIPSame
//	last UA    uvarint length, bytes, unless flagLastUASame
//	created UA uvarint length, bytes
//	data       uvarint length, bytes, if flagData
//	AMR        uvarint count, then each as uvarint length and bytes, if
//	           the session has any (a record that ends before it has none)
//
// An address is uvarint 1 and 4 bytes for an IPv4 address in its
// canonical text form, uvarint 3 and 16 bytes for an IPv6 one, or uvarint
// 2n and the n bytes of any other string.
//
// A time is one byte 0x00 for the zero time.Time; otherwise its first
// byte has bit 0 set, bit 1 if the value counts seconds rather than
// microseconds (a whole number of seconds, as timeouts are, takes 2 bytes
// instead of 5), bit 2 if it is negative, bits 3-6 the low 4 bits of its
// magnitude and bit 7 if a uvarint of the rest of the magnitude follows. A
// time "from" another is the difference between them (from 0 if the other
// is the zero time), so that a deadline 30 minutes after the last use, or
// a session whose times are all its creation time, costs a byte or two.
//
// Times are microseconds from recordEpoch, within ±maxRel; times outside
// are clamped to that range, which keeps their order relative to the
// present. The bound keeps every value and every difference the scripts
// compute below 2^53, so that Lua's float64 numbers hold them exactly.
const (
	flagRemember = 1 << iota
	flagPrev
	flagAuthedIsCreated
	flagRotatedIsCreated
	flagSeenIsCreated
	flagLastIPSame
	flagLastUASame
	flagData
)

const (
	// recordEpoch is 2026-01-01T00:00:00Z in microseconds since the Unix
	// epoch: a creation time within two years of it takes 7 bytes.
	recordEpoch = 1767225600_000000
	// maxRel bounds the stored times: about 142 years either side of
	// recordEpoch (1883 to 2168).
	maxRel = 1<<52 - 1
	// zeroRel stands for the zero time.Time in Go; the scripts get
	// luaZero instead, which Lua numbers hold.
	zeroRel = math.MinInt64
	luaZero = -(1 << 53)
)

// relTime returns t as stored: microseconds from recordEpoch, clamped, or
// zeroRel.
func relTime(t time.Time) int64 {
	if t.IsZero() {
		return zeroRel
	}
	return min(max(t.UnixMicro()-recordEpoch, -maxRel), maxRel)
}

func absTime(rel int64) time.Time {
	if rel == zeroRel {
		return time.Time{}
	}
	return time.UnixMicro(recordEpoch + rel)
}

// luaTime returns t as the scripts take it: relTime, or luaZero.
func luaTime(t time.Time) string {
	rel := relTime(t)
	if rel == zeroRel {
		rel = luaZero
	}
	return strconv.FormatInt(rel, 10)
}

// expiresAtMillis returns when the keys of s should expire for Redis: the
// session's earlier deadline rounded up to the millisecond, and at least 1,
// the earliest time PEXPIREAT and SET PXAT take. The scripts compute the
// same (expms in scripts.go).
func expiresAtMillis(s *session.Session) int64 {
	e := min(relTime(s.IdleDeadline), relTime(s.AbsoluteDeadline))
	if e == zeroRel {
		return 1
	}
	us := recordEpoch + e
	if us <= 0 {
		return 1
	}
	return (us + 999) / 1000
}

// appendTime appends the time t (as relTime) from base.
func appendTime(b []byte, t, base int64) []byte {
	if t == zeroRel {
		return append(b, 0)
	}
	if base == zeroRel {
		base = 0
	}
	d := t - base
	c := byte(1)
	m := uint64(d)
	if d < 0 {
		c |= 4
		m = uint64(-d)
	}
	if m%1e6 == 0 {
		c |= 2
		m /= 1e6
	}
	c |= byte(m&15) << 3
	if m >>= 4; m == 0 {
		return append(b, c)
	}
	return binary.AppendUvarint(append(b, c|0x80), m)
}

// appendID appends a session ID as stored.
func appendID(b []byte, id string) []byte {
	if raw, err := base64.RawURLEncoding.DecodeString(id); err == nil && len(raw) > 0 && base64.RawURLEncoding.EncodeToString(raw) == id {
		b = binary.AppendUvarint(b, uint64(len(raw))<<1|1)
		return append(b, raw...)
	}
	b = binary.AppendUvarint(b, uint64(len(id))<<1)
	return append(b, id...)
}

// appendAddr appends an IP address (or any string) as stored.
func appendAddr(b []byte, s string) []byte {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" && a.String() == s {
		if a.Is4() {
			a4 := a.As4()
			return append(append(b, 1), a4[:]...)
		}
		a16 := a.As16()
		return append(append(b, 3), a16[:]...)
	}
	return appendStr(b, 2, s)
}

// appendStr appends s with its length, multiplied by mul, as a uvarint.
func appendStr(b []byte, mul uint64, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))*mul), s...)
}

func appendVersion(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

// encodeRecord returns the stored form of s.
func encodeRecord(s *session.Session) []byte {
	created := relTime(s.CreatedAt)
	authed, rotated, seen := relTime(s.AuthenticatedAt), relTime(s.RotatedAt), relTime(s.LastSeenAt)
	b := make([]byte, 1, 96+len(s.UserID)+len(s.ID)+len(s.CreatedUserAgent)+len(s.LastUserAgent)+len(s.Data))
	var f byte
	if s.Remember {
		f |= flagRemember
	}
	b = appendStr(b, 1, s.UserID)
	b = appendID(b, s.ID)
	b = appendVersion(b, s.Version)
	b = appendTime(b, created, 0)
	if authed == created {
		f |= flagAuthedIsCreated
	} else {
		b = appendTime(b, authed, created)
	}
	if rotated == created {
		f |= flagRotatedIsCreated
	} else {
		b = appendTime(b, rotated, created)
	}
	if seen == created {
		f |= flagSeenIsCreated
	} else {
		b = appendTime(b, seen, created)
	}
	b = appendTime(b, relTime(s.IdleDeadline), seen)
	b = appendTime(b, relTime(s.AbsoluteDeadline), created)
	b = append(b, s.TokenHash[:]...)
	if !s.PrevTokenHash.IsZero() {
		f |= flagPrev
		b = append(b, s.PrevTokenHash[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Roles)))
	for _, r := range s.Roles {
		b = appendStr(b, 1, r)
	}
	b = appendAddr(b, s.CreatedIP)
	if s.LastIP == s.CreatedIP {
		f |= flagLastIPSame
	} else {
		b = appendAddr(b, s.LastIP)
	}
	if s.LastUserAgent == s.CreatedUserAgent {
		f |= flagLastUASame
	} else {
		b = appendStr(b, 1, s.LastUserAgent)
	}
	b = appendStr(b, 1, s.CreatedUserAgent)
	if len(s.Data) > 0 {
		f |= flagData
		b = appendStr(b, 1, string(s.Data))
	}
	if len(s.AMR) > 0 {
		b = binary.AppendUvarint(b, uint64(len(s.AMR)))
		for _, m := range s.AMR {
			b = appendStr(b, 1, m)
		}
	}
	b[0] = f
	return b
}

// errFormat is the cause of every decoding failure; decodeRecord wraps it
// in session.ErrInvalidRecord.
var errFormat = errors.New("malformed record")

// decoder reads a record.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errFormat, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) byte() byte {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint reads a zigzag varint, as binary.Varint does: the uvarint u
// holds v in its upper bits, and its low bit says whether v is ^(u>>1).
func (d *decoder) varint() int64 {
	u := d.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (d *decoder) str() string { return string(d.take(d.uvarint())) }

// time reads a time from base (see appendTime) and checks that it is one
// relTime could have returned.
func (d *decoder) time(base int64) int64 {
	c := d.byte()
	if d.err != nil {
		return 0
	}
	if c == 0 {
		return zeroRel
	}
	if c&1 == 0 {
		d.fail("bad time tag 0x%02x", c)
		return 0
	}
	m := uint64(c >> 3 & 15)
	if c&0x80 != 0 {
		hi := d.uvarint()
		if hi >= 1<<50 {
			d.fail("time out of range")
			return 0
		}
		m |= hi << 4
	}
	if c&2 != 0 {
		if m > 1<<54/1_000_000 {
			d.fail("time out of range")
			return 0
		}
		m *= 1e6
	}
	v := int64(m)
	if c&4 != 0 {
		v = -v
	}
	if base == zeroRel {
		base = 0
	}
	if t := base + v; t >= -maxRel && t <= maxRel {
		return t
	}
	d.fail("time out of range")
	return 0
}

func (d *decoder) id() string {
	n := d.uvarint()
	p := d.take(n >> 1)
	if n&1 == 1 {
		return base64.RawURLEncoding.EncodeToString(p)
	}
	return string(p)
}

func (d *decoder) addr() string {
	switch n := d.uvarint(); {
	case n == 1:
		if p := d.take(4); p != nil {
			return netip.AddrFrom4([4]byte(p)).String()
		}
	case n == 3:
		if p := d.take(16); p != nil {
			return netip.AddrFrom16([16]byte(p)).String()
		}
	case n&1 == 0:
		return string(d.take(n >> 1))
	default:
		d.fail("bad address tag %d", n)
	}
	return ""
}

// strs reads a list of strings: a uvarint count, then each string; nil
// for none.
func (d *decoder) strs() []string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("truncated")
		return nil
	}
	if n == 0 {
		return nil
	}
	list := make([]string, n)
	for i := range list {
		list[i] = d.str()
	}
	return list
}

func (d *decoder) hash() (h session.Hash) {
	copy(h[:], d.take(uint64(len(h))))
	return h
}

// decodeRecord decodes a record. An error wraps session.ErrInvalidRecord.
func decodeRecord(b []byte) (*session.Session, error) {
	d := &decoder{b: b}
	f := d.byte()
	s := &session.Session{UserID: d.str(), ID: d.id(), Version: d.varint()}
	created := d.time(0)
	authed, rotated, seen := created, created, created
	if f&flagAuthedIsCreated == 0 {
		authed = d.time(created)
	}
	if f&flagRotatedIsCreated == 0 {
		rotated = d.time(created)
	}
	if f&flagSeenIsCreated == 0 {
		seen = d.time(created)
	}
	idle := d.time(seen)
	abs := d.time(created)
	s.CreatedAt, s.AuthenticatedAt, s.RotatedAt, s.LastSeenAt = absTime(created), absTime(authed), absTime(rotated), absTime(seen)
	s.IdleDeadline, s.AbsoluteDeadline = absTime(idle), absTime(abs)
	s.Remember = f&flagRemember != 0
	s.TokenHash = d.hash()
	if f&flagPrev != 0 {
		s.PrevTokenHash = d.hash()
	}
	s.Roles = d.strs()
	s.CreatedIP = d.addr()
	s.LastIP = s.CreatedIP
	if f&flagLastIPSame == 0 {
		s.LastIP = d.addr()
	}
	if f&flagLastUASame == 0 {
		s.LastUserAgent = d.str()
	}
	s.CreatedUserAgent = d.str()
	if f&flagLastUASame != 0 {
		s.LastUserAgent = s.CreatedUserAgent
	}
	if f&flagData != 0 {
		if data := d.take(d.uvarint()); len(data) > 0 {
			s.Data = append([]byte(nil), data...)
		}
	}
	if d.err == nil && len(d.b) != 0 {
		s.AMR = d.strs()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the record", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("redisstore: session record: %w: %w", session.ErrInvalidRecord, d.err)
	}
	return s, nil
}
