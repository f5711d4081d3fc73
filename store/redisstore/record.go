package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sessiond/sessiond/session"
)

// A session record is the value of its record key: a MessagePack array that
// both this package and the Lua scripts (through Redis's cmsgpack library)
// read and write. The scripts change only the fields Touch and Update merge
// (last seen, last IP and user agent, idle deadline) and re-encode the rest
// as they found it.
//
// Lua numbers are float64, so every integer in a record stays within
// ±(2^53-1), which float64 holds exactly: times are microseconds since the
// Unix epoch, clamped to that range (the years 1685 to 2255), except the
// zero time, stored as math.MinInt64 (-2^63, also exact), which compares
// as earlier than any other time, in Go and in Lua alike.
//
// The user ID and session ID are not in the record: they are in its key.
const (
	fVersion   = iota // int
	fCreated          // µs
	fAuthed           // µs, or true: same as fCreated
	fRotated          // µs, or true: same as fCreated
	fLastSeen         // µs, or true: same as fCreated
	fIdle             // µs
	fAbsolute         // µs
	fFlags            // int: flagRemember
	fToken            // 32 bytes
	fPrevToken        // 32 bytes, or "" for none
	fRoles            // array of strings
	fCreatedIP        // string
	fCreatedUA        // string
	fLastIP           // string, or false: same as fCreatedIP
	fLastUA           // string, or false: same as fCreatedUA
	fData             // string, "" for none
	nFields
)

const flagRemember = 1

// zeroMicros is the stored form of the zero time.Time; maxMicros bounds
// every other stored time.
const (
	zeroMicros = math.MinInt64
	maxMicros  = 1<<53 - 1
)

// encodeTime returns t in microseconds since the Unix epoch, as stored.
func encodeTime(t time.Time) int64 {
	if t.IsZero() {
		return zeroMicros
	}
	return min(max(t.UnixMicro(), -maxMicros), maxMicros)
}

func decodeTime(us int64) time.Time {
	if us == zeroMicros {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// expiresAtMillis returns when the record key of s should expire for Redis:
// the session's earlier deadline rounded up to the millisecond, and at
// least 1, the earliest time PEXPIREAT and SET PXAT take.
func expiresAtMillis(s *session.Session) int64 {
	return ceilMillis(min(encodeTime(s.IdleDeadline), encodeTime(s.AbsoluteDeadline)))
}

func ceilMillis(us int64) int64 {
	if us <= 0 {
		return 1
	}
	return (us + 999) / 1000
}

// encodeRecord returns the stored form of s.
func encodeRecord(s *session.Session) []byte {
	created := encodeTime(s.CreatedAt)
	b := make([]byte, 0, 160+len(s.CreatedUserAgent)+len(s.LastUserAgent)+len(s.Data))
	b = append(b, 0xdc, 0, nFields) // array 16
	b = appendInt(b, s.Version)
	b = appendInt(b, created)
	for _, t := range []time.Time{s.AuthenticatedAt, s.RotatedAt, s.LastSeenAt} {
		if us := encodeTime(t); us == created {
			b = append(b, 0xc3) // true
		} else {
			b = appendInt(b, us)
		}
	}
	b = appendInt(b, encodeTime(s.IdleDeadline))
	b = appendInt(b, encodeTime(s.AbsoluteDeadline))
	var flags int64
	if s.Remember {
		flags |= flagRemember
	}
	b = appendInt(b, flags)
	b = appendStr(b, s.TokenHash[:])
	if s.PrevTokenHash.IsZero() {
		b = appendStr(b, nil)
	} else {
		b = appendStr(b, s.PrevTokenHash[:])
	}
	b = appendArrayHeader(b, len(s.Roles))
	for _, r := range s.Roles {
		b = appendStr(b, []byte(r))
	}
	b = appendStr(b, []byte(s.CreatedIP))
	b = appendStr(b, []byte(s.CreatedUserAgent))
	if s.LastIP == s.CreatedIP {
		b = append(b, 0xc2) // false
	} else {
		b = appendStr(b, []byte(s.LastIP))
	}
	if s.LastUserAgent == s.CreatedUserAgent {
		b = append(b, 0xc2)
	} else {
		b = appendStr(b, []byte(s.LastUserAgent))
	}
	return appendStr(b, s.Data)
}

func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0 && v <= 0x7f:
		return append(b, byte(v))
	case v >= -32 && v < 0:
		return append(b, byte(v))
	case v >= 0 && v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}

// appendStr appends p as a MessagePack str, the type cmsgpack gives every
// Lua string: MessagePack strings may hold any bytes.
func appendStr(b, p []byte) []byte {
	switch n := len(p); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, p...)
}

func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

// errMsgpack is the cause of every decoding failure; decodeRecord wraps it
// in session.ErrInvalidRecord.
var errMsgpack = errors.New("malformed MessagePack")

// decoder reads the subset of MessagePack that records use, in the forms
// this package and cmsgpack write: nil, booleans, integers (and floats
// that hold integers, which cmsgpack never writes but another encoder
// might), strings and binaries, arrays.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errMsgpack, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
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

func (d *decoder) uint(n int) uint64 {
	p := d.take(n)
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v
}

// kind of the next value, without consuming it.
type kind int

const (
	kInvalid kind = iota
	kNil
	kBool
	kInt
	kStr
	kArray
)

func (d *decoder) peek() kind {
	if d.err != nil || len(d.b) == 0 {
		return kInvalid
	}
	switch c := d.b[0]; {
	case c <= 0x7f || c >= 0xe0 || (c >= 0xcc && c <= 0xd3) || c == 0xca || c == 0xcb:
		return kInt
	case c >= 0xa0 && c <= 0xbf || c >= 0xd9 && c <= 0xdb || c >= 0xc4 && c <= 0xc6:
		return kStr
	case c >= 0x90 && c <= 0x9f || c == 0xdc || c == 0xdd:
		return kArray
	case c == 0xc0:
		return kNil
	case c == 0xc2 || c == 0xc3:
		return kBool
	}
	return kInvalid
}

func (d *decoder) bool() bool {
	switch c := d.byte(); c {
	case 0xc2:
		return false
	case 0xc3:
		return true
	default:
		d.fail("want a boolean, found 0x%02x", c)
	}
	return false
}

func (d *decoder) int() int64 {
	c := d.byte()
	switch {
	case c <= 0x7f:
		return int64(c)
	case c >= 0xe0:
		return int64(int8(c))
	case c == 0xcc:
		return int64(d.uint(1))
	case c == 0xcd:
		return int64(d.uint(2))
	case c == 0xce:
		return int64(d.uint(4))
	case c == 0xcf:
		v := d.uint(8)
		if v > math.MaxInt64 {
			d.fail("integer out of range")
		}
		return int64(v)
	case c == 0xd0:
		return int64(int8(d.uint(1)))
	case c == 0xd1:
		return int64(int16(d.uint(2)))
	case c == 0xd2:
		return int64(int32(d.uint(4)))
	case c == 0xd3:
		return int64(d.uint(8))
	case c == 0xca, c == 0xcb:
		var f float64
		if c == 0xca {
			f = float64(math.Float32frombits(uint32(d.uint(4))))
		} else {
			f = math.Float64frombits(d.uint(8))
		}
		if f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
			d.fail("want an integer, found %v", f)
		}
		return int64(f)
	}
	d.fail("want an integer, found 0x%02x", c)
	return 0
}

func (d *decoder) str() []byte {
	c := d.byte()
	var n uint64
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case c == 0xd9, c == 0xc4:
		n = d.uint(1)
	case c == 0xda, c == 0xc5:
		n = d.uint(2)
	case c == 0xdb, c == 0xc6:
		n = d.uint(4)
	default:
		d.fail("want a string, found 0x%02x", c)
		return nil
	}
	return d.take(int(n))
}

func (d *decoder) arrayLen() int {
	c := d.byte()
	switch {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f)
	case c == 0xdc:
		return int(d.uint(2))
	case c == 0xdd:
		return int(d.uint(4))
	}
	d.fail("want an array, found 0x%02x", c)
	return 0
}

// timeOr reads a time that may be stored as true, meaning "same as base".
func (d *decoder) timeOr(base int64) int64 {
	if d.peek() == kBool {
		if !d.bool() {
			d.fail("false where a time belongs")
		}
		return base
	}
	return d.int()
}

// time checks that us is a time encodeTime could have written.
func (d *decoder) time(us int64) int64 {
	if us != zeroMicros && (us < -maxMicros || us > maxMicros) {
		d.fail("time %d out of range", us)
	}
	return us
}

// strOr reads a string that may be stored as false, meaning "same as base".
func (d *decoder) strOr(base string) string {
	if d.peek() == kBool {
		if d.bool() {
			d.fail("true where a string belongs")
		}
		return base
	}
	return string(d.str())
}

// decodeRecord decodes the record of session id of user uid. An error wraps
// session.ErrInvalidRecord.
func decodeRecord(uid, id string, b []byte) (*session.Session, error) {
	d := &decoder{b: b}
	if n := d.arrayLen(); n != nFields && d.err == nil {
		d.fail("record has %d fields, want %d", n, nFields)
	}
	s := &session.Session{ID: id, UserID: uid}
	s.Version = d.int()
	created := d.time(d.int())
	s.CreatedAt = decodeTime(created)
	s.AuthenticatedAt = decodeTime(d.time(d.timeOr(created)))
	s.RotatedAt = decodeTime(d.time(d.timeOr(created)))
	s.LastSeenAt = decodeTime(d.time(d.timeOr(created)))
	s.IdleDeadline = decodeTime(d.time(d.int()))
	s.AbsoluteDeadline = decodeTime(d.time(d.int()))
	s.Remember = d.int()&flagRemember != 0
	if h := d.str(); len(h) == len(s.TokenHash) {
		copy(s.TokenHash[:], h)
	} else {
		d.fail("token hash is %d bytes", len(h))
	}
	switch h := d.str(); len(h) {
	case 0:
	case len(s.PrevTokenHash):
		copy(s.PrevTokenHash[:], h)
	default:
		d.fail("previous token hash is %d bytes", len(h))
	}
	if d.peek() == kArray {
		if n := d.arrayLen(); n > 0 && n <= len(d.b) {
			s.Roles = make([]string, n)
			for i := range s.Roles {
				s.Roles[i] = string(d.str())
			}
		} else if n > 0 {
			d.fail("truncated")
		}
	} else if d.peek() != kNil { // an empty Lua table may come back as nil; accept it
		d.fail("roles are not an array")
	} else {
		d.byte()
	}
	s.CreatedIP = string(d.str())
	s.CreatedUserAgent = string(d.str())
	s.LastIP = d.strOr(s.CreatedIP)
	s.LastUserAgent = d.strOr(s.CreatedUserAgent)
	if data := d.str(); len(data) > 0 {
		s.Data = append([]byte(nil), data...)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the record", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("redisstore: session %q: %w: %w", id, session.ErrInvalidRecord, d.err)
	}
	return s, nil
}

// recordHashes returns the token hashes of a stored record, for removing
// the pointers to it once the record is gone; ok is false if b cannot be
// decoded that far.
func recordHashes(b []byte) (token, prev session.Hash, ok bool) {
	d := &decoder{b: b}
	if d.arrayLen() != nFields {
		return token, prev, false
	}
	d.int()
	created := d.int()
	d.timeOr(created)
	d.timeOr(created)
	d.timeOr(created)
	d.int()
	d.int()
	d.int()
	h := d.str()
	p := d.str()
	if d.err != nil || len(h) != len(token) || (len(p) != 0 && len(p) != len(prev)) {
		return token, prev, false
	}
	copy(token[:], h)
	copy(prev[:], p)
	return token, prev, true
}
