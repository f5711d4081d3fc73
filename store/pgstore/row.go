package pgstore

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessiond/sessiond/session"
)

// columns lists the stored fields of a session in the order row.scan reads
// them.
const columns = `id, token_hash, prev_token_hash, user_id, roles,
	created_at, authenticated_at, rotated_at, last_seen_at, idle_deadline, absolute_deadline,
	remember, created_ip, created_ua, last_ip, last_ua, data, version, amr`

// userKey returns the second key of the advisory lock that serialises
// limited Creates for userID: its 32-bit FNV-1a hash. Two users whose keys
// collide only wait for each other.
func userKey(userID string) int32 {
	h := fnv.New32a()
	h.Write([]byte(userID))
	return int32(h.Sum32())
}

// encodeHash returns h as bytea, or NULL (nil) for the zero hash.
func encodeHash(h session.Hash) []byte {
	if h.IsZero() {
		return nil
	}
	return h[:]
}

// encodeList returns a list of strings (roles, AMR) as a text[], empty
// rather than NULL for none (pgx sends a nil slice as NULL).
func encodeList(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

// encodeData returns data as bytea, or NULL (nil) for none.
func encodeData(data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	return data
}

// row holds one stored session as scanned, before it is checked. Every
// column but the primary key is scanned into a type that accepts NULL and
// any value of the column's SQL type, so that a damaged row reaches
// row.session, which says what is wrong with it, instead of failing the
// scan (which in pgx also ends the reading of a multi-row result).
type row struct {
	id                                        string
	token, prevToken, data                    []byte
	userID                                    pgtype.Text
	roles, amr                                pgtype.Array[pgtype.Text]
	created, authed, rotated, seen, idle, abs pgtype.Timestamptz
	remember                                  pgtype.Bool
	createdIP, createdUA, lastIP, lastUA      pgtype.Text
	version                                   pgtype.Int8
}

// scan reads the columns (in the order of the constant columns) from sc.
func (r *row) scan(sc pgx.Row) error {
	return sc.Scan(&r.id, &r.token, &r.prevToken, &r.userID, &r.roles,
		&r.created, &r.authed, &r.rotated, &r.seen, &r.idle, &r.abs,
		&r.remember, &r.createdIP, &r.createdUA, &r.lastIP, &r.lastUA, &r.data, &r.version, &r.amr)
}

// session checks r and returns it as a Session, or an error wrapping
// session.ErrInvalidRecord if it holds a value no Store could have written.
func (r *row) session() (*session.Session, error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	text := func(name string, v pgtype.Text) string {
		if !v.Valid {
			bad("%s is NULL", name)
		}
		return v.String
	}
	tm := func(name string, v pgtype.Timestamptz) time.Time {
		switch {
		case !v.Valid:
			bad("%s is NULL", name)
		case v.InfinityModifier != pgtype.Finite:
			bad("%s is %s", name, v.InfinityModifier)
		}
		return v.Time
	}
	s := &session.Session{
		ID:               r.id,
		UserID:           text("user_id", r.userID),
		CreatedAt:        tm("created_at", r.created),
		AuthenticatedAt:  tm("authenticated_at", r.authed),
		RotatedAt:        tm("rotated_at", r.rotated),
		LastSeenAt:       tm("last_seen_at", r.seen),
		IdleDeadline:     tm("idle_deadline", r.idle),
		AbsoluteDeadline: tm("absolute_deadline", r.abs),
		CreatedIP:        text("created_ip", r.createdIP),
		CreatedUserAgent: text("created_ua", r.createdUA),
		LastIP:           text("last_ip", r.lastIP),
		LastUserAgent:    text("last_ua", r.lastUA),
		Remember:         r.remember.Bool,
		Version:          r.version.Int64,
	}
	if len(r.token) != len(s.TokenHash) {
		bad("token hash is %d bytes, want %d", len(r.token), len(s.TokenHash))
	}
	copy(s.TokenHash[:], r.token)
	switch len(r.prevToken) {
	case 0: // NULL: no previous token
	case len(s.PrevTokenHash):
		copy(s.PrevTokenHash[:], r.prevToken)
	default:
		bad("previous token hash is %d bytes, want %d", len(r.prevToken), len(s.PrevTokenHash))
	}
	list := func(name string, v pgtype.Array[pgtype.Text]) []string {
		switch {
		case !v.Valid:
			bad("%s is NULL", name)
		case len(v.Dims) > 1:
			bad("%s is a %d-dimensional array", name, len(v.Dims))
		}
		var out []string
		for _, e := range v.Elements {
			if !e.Valid {
				bad("%s holds a NULL", name)
				break
			}
			out = append(out, e.String)
		}
		return out
	}
	s.Roles = list("roles", r.roles)
	s.AMR = list("amr", r.amr)
	if !r.remember.Valid {
		bad("remember is NULL")
	}
	if !r.version.Valid {
		bad("version is NULL")
	}
	if len(r.data) > 0 {
		s.Data = r.data
	}
	if len(problems) > 0 {
		return nil, invalid(r.id, problems)
	}
	return s, nil
}

// invalid returns an error wrapping session.ErrInvalidRecord that names
// the session (its ID is public) and what is wrong with it.
func invalid(id string, problems []string) error {
	return fmt.Errorf("pgstore: session %q: %w: %s", id, session.ErrInvalidRecord, strings.Join(problems, "; "))
}

// scanSession scans one row from sc and decodes it. A value that cannot be
// scanned at all (a column whose type was changed behind the Store's back)
// is an invalid record too.
func scanSession(sc pgx.Row) (*session.Session, error) {
	var r row
	if err := r.scan(sc); err != nil {
		var e pgx.ScanArgError
		if errors.As(err, &e) {
			return nil, fmt.Errorf("pgstore: %w: %w", session.ErrInvalidRecord, err)
		}
		return nil, err
	}
	return r.session()
}
