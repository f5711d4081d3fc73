package sqlitestore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sessiond/sessiond/session"
)

// columns lists the stored fields of a session in the order scanRow reads
// them.
const columns = `id, token_hash, prev_token_hash, user_id, roles,
	created_at, authenticated_at, rotated_at, last_seen_at, idle_deadline, absolute_deadline,
	remember, created_ip, created_ua, last_ip, last_ua, data, version, amr`

// hashKey returns the table key (the column hash_key) of a session whose
// token hash is h: its first 63 bits, big-endian, as a non-negative
// integer. SHA-256 of a random token spreads these evenly, so two stored
// sessions share a key with probability about n/2^63 per insert among n.
// The key only finds a row; ByHash still compares the whole hash.
func hashKey(h session.Hash) int64 {
	return int64(binary.BigEndian.Uint64(h[:8]) >> 1)
}

// zeroTime is the stored form of the zero time.Time, which has no
// nanosecond count of its own (it is in the year 1).
const zeroTime = math.MinInt64

var (
	minTime = time.Unix(0, zeroTime+1)
	maxTime = time.Unix(0, math.MaxInt64)
)

// encodeTime returns t as nanoseconds since the Unix epoch, the zero time
// as zeroTime, and times before 1678 or after 2262, which int64 nanoseconds
// cannot hold, as the nearest time that it can. Clamping keeps the order
// of t and any present time, so a deadline stays passed or not passed.
func encodeTime(t time.Time) int64 {
	switch {
	case t.IsZero():
		return zeroTime
	case t.Before(minTime):
		return zeroTime + 1
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// decodeTime is the inverse of encodeTime.
func decodeTime(n int64) time.Time {
	if n == zeroTime {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// encodeHash returns h as a BLOB, or NULL (nil) for the zero hash.
func encodeHash(h session.Hash) any {
	if h.IsZero() {
		return nil
	}
	return h[:]
}

// encodeList returns a list of strings (roles, AMR) as a JSON array, "[]"
// for none.
func encodeList(list []string) (string, error) {
	if len(list) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(list)
	return string(b), err
}

// decodeList is the inverse of encodeList, with nil for "[]".
func decodeList(s string) ([]string, error) {
	if len(s) == 0 || s[0] != '[' {
		return nil, errors.New("not a JSON array")
	}
	var list []string
	if err := json.Unmarshal([]byte(s), &list); err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}

// encodeData returns data as a BLOB, or NULL (nil) for none.
func encodeData(data []byte) any {
	if len(data) == 0 {
		return nil
	}
	return data
}

func encodeBool(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// row holds one stored session as scanned, before it is checked.
type row struct {
	id, userID                                string
	token, prevToken                          []byte
	roles, amr                                string
	created, authed, rotated, seen, idle, abs int64
	remember                                  int64
	createdIP, createdUA, lastIP, lastUA      string
	data                                      []byte
	version                                   int64
}

// scan reads the columns (in the order of the constant columns) from sc.
// An error here is the driver's (the schema is STRICT, so every stored
// value has the type scan asks for), not a bad record.
func (r *row) scan(sc scanner) error {
	return sc.Scan(&r.id, &r.token, &r.prevToken, &r.userID, &r.roles,
		&r.created, &r.authed, &r.rotated, &r.seen, &r.idle, &r.abs,
		&r.remember, &r.createdIP, &r.createdUA, &r.lastIP, &r.lastUA, &r.data, &r.version, &r.amr)
}

// session checks r and returns it as a Session, or an error wrapping
// session.ErrInvalidRecord if it holds a value no Store could have written.
func (r *row) session() (*session.Session, error) {
	s := &session.Session{
		ID:               r.id,
		UserID:           r.userID,
		CreatedAt:        decodeTime(r.created),
		AuthenticatedAt:  decodeTime(r.authed),
		RotatedAt:        decodeTime(r.rotated),
		LastSeenAt:       decodeTime(r.seen),
		IdleDeadline:     decodeTime(r.idle),
		AbsoluteDeadline: decodeTime(r.abs),
		CreatedIP:        r.createdIP,
		CreatedUserAgent: r.createdUA,
		LastIP:           r.lastIP,
		LastUserAgent:    r.lastUA,
		Version:          r.version,
	}
	if len(r.token) != len(s.TokenHash) {
		return nil, invalid(r.id, "token hash is %d bytes, want %d", len(r.token), len(s.TokenHash))
	}
	copy(s.TokenHash[:], r.token)
	switch len(r.prevToken) {
	case 0: // NULL: no previous token
	case len(s.PrevTokenHash):
		copy(s.PrevTokenHash[:], r.prevToken)
	default:
		return nil, invalid(r.id, "previous token hash is %d bytes, want %d", len(r.prevToken), len(s.PrevTokenHash))
	}
	var err error
	if s.Roles, err = decodeList(r.roles); err != nil {
		return nil, invalid(r.id, "roles: %v", err)
	}
	if s.AMR, err = decodeList(r.amr); err != nil {
		return nil, invalid(r.id, "amr: %v", err)
	}
	switch r.remember {
	case 0:
	case 1:
		s.Remember = true
	default:
		return nil, invalid(r.id, "remember is %d, want 0 or 1", r.remember)
	}
	if len(r.data) > 0 {
		s.Data = r.data
	}
	return s, nil
}

// invalid returns an error wrapping session.ErrInvalidRecord that names
// the session (its ID is public) and what is wrong with it.
func invalid(id, format string, args ...any) error {
	return fmt.Errorf("sqlitestore: session %q: %w: %s", id, session.ErrInvalidRecord, fmt.Sprintf(format, args...))
}

// scanSession scans one row from sc and decodes it.
func scanSession(sc scanner) (*session.Session, error) {
	var r row
	if err := r.scan(sc); err != nil {
		return nil, err
	}
	return r.session()
}
