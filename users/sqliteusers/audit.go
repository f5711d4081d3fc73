package sqliteusers

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/sessiond/sessiond/audit"
)

// eventColumns lists the stored fields of an event but its ID, in the
// order of sqlAppend's parameters and of the Scan in Query.
const eventColumns = `time, type, user_id, username, session_id, actor, reason, ip, user_agent`

// Append implements audit.Log: it stores e and sets e.ID. e.Time is stored
// as it is (the caller stamps it), to the nanosecond, and read back in UTC.
func (db *DB) Append(ctx context.Context, e *audit.Event) error {
	t, err := encodeTime(e.Time)
	if err != nil {
		return fmt.Errorf("sqliteusers: append: %w", err)
	}
	res, err := db.appendEvent.ExecContext(ctx, t, e.Type, e.UserID, e.Username, e.SessionID, e.Actor, e.Reason, e.IP, e.UserAgent)
	if err != nil {
		return fmt.Errorf("sqliteusers: append: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("sqliteusers: append: %w", err)
	}
	e.ID = id
	return nil
}

// sqlDeleteBefore deletes up to ?2 of the events with a time at or before
// ?1 (nanoseconds), oldest first, found in the index on time. (SQLite
// takes no LIMIT on a DELETE unless built to, hence the subquery.)
const sqlDeleteBefore = `DELETE FROM audit_events WHERE id IN (
	SELECT id FROM audit_events WHERE time <= ?1 ORDER BY time LIMIT ?2)`

// DeleteBefore implements audit.Pruner. Each call is one transaction,
// which holds the write lock of the file (shared with the session store)
// while it runs: keep limit to a few thousand. Calls through several
// handles, in one process or several, take turns.
func (db *DB) DeleteBefore(ctx context.Context, t time.Time, limit int) (int, error) {
	// The events before t are those at or before its last nanosecond
	// that int64 nanoseconds can hold.
	var last int64
	switch {
	case limit <= 0 || !t.After(minTime):
		return 0, nil
	case t.After(maxTime):
		last = math.MaxInt64
	default:
		last = t.UnixNano() - 1
	}
	res, err := db.deleteEvents.ExecContext(ctx, last, limit)
	if err != nil {
		return 0, fmt.Errorf("sqliteusers: delete events: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqliteusers: delete events: %w", err)
	}
	return int(n), nil
}

// Query implements audit.Log. A Type ending in "." selects the types that
// begin with it; any other non-empty Type selects itself exactly. A
// non-zero Before selects IDs below it. A Limit of 0 or less means 100,
// and one above 1000 means 1000.
func (db *DB) Query(ctx context.Context, f audit.Filter) ([]audit.Event, error) {
	// One read transaction, so that the types a family query finds and
	// the events it reads come from the same snapshot.
	tx, err := db.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqliteusers: query: %w", err)
	}
	defer tx.Rollback()
	var types []string
	if strings.HasSuffix(f.Type, ".") && f.UserID == "" {
		var many bool
		if types, many, err = familyTypes(ctx, tx, f.Type); err != nil {
			return nil, fmt.Errorf("sqliteusers: query: %w", err)
		}
		if len(types) == 0 && !many {
			return []audit.Event{}, nil
		}
	}
	q, args := querySQL(f, types)
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqliteusers: query: %w", err)
	}
	defer rows.Close()
	events := []audit.Event{}
	for rows.Next() {
		var (
			e audit.Event
			t sql.NullInt64
		)
		if err := rows.Scan(&e.ID, &t, &e.Type, &e.UserID, &e.Username, &e.SessionID, &e.Actor, &e.Reason, &e.IP, &e.UserAgent); err != nil {
			return nil, fmt.Errorf("sqliteusers: query: %w", err)
		}
		e.Time = decodeTime(t)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqliteusers: query: %w", err)
	}
	return events, nil
}

// maxFamilyTypes is the most distinct types a family query reads one by
// one (see querySQL); past it, it sorts the whole family instead.
const maxFamilyTypes = 64

// familyTypes returns the distinct types that begin with prefix (which
// ends in "."), in order, or many (and no types) if there are more than
// maxFamilyTypes. Each type costs one seek in the index on (type, id),
// however many events have it.
func familyTypes(ctx context.Context, tx *sql.Tx, prefix string) (types []string, many bool, err error) {
	end := prefix[:len(prefix)-1] + "/"
	q := "SELECT type FROM audit_events WHERE type >= ?1 AND type < ?2 ORDER BY type LIMIT 1"
	for last := prefix; len(types) <= maxFamilyTypes; {
		err := tx.QueryRowContext(ctx, q, last, end).Scan(&last)
		if errors.Is(err, sql.ErrNoRows) {
			return types, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		types = append(types, last)
		q = "SELECT type FROM audit_events WHERE type > ?1 AND type < ?2 ORDER BY type LIMIT 1"
	}
	return nil, true, nil
}

// querySQL returns the SELECT for f and its parameters. It names only the
// conditions f sets, so that SQLite can choose an index for them.
//
// A family of types (f.Type ending in ".") without a user is a range of
// the index on (type, id), which is not in ID order: reading it newest
// first would mean sorting every event of the family. Given the family's
// types, querySQL instead reads the newest Limit events of each type, in
// ID order from the index, and merges them.
func querySQL(f audit.Filter, types []string) (string, []any) {
	limit := f.EffectiveLimit()
	const cols = "id, " + eventColumns
	var args []any

	if len(types) > 0 {
		before := ""
		if f.Before != 0 {
			before = " AND id < ?"
		}
		arms := make([]string, len(types))
		for i, typ := range types {
			arms[i] = "SELECT * FROM (SELECT " + cols + " FROM audit_events WHERE type = ?" + before + " ORDER BY id DESC LIMIT ?)"
			args = append(args, typ)
			if f.Before != 0 {
				args = append(args, f.Before)
			}
			args = append(args, limit)
		}
		return strings.Join(arms, " UNION ALL ") + " ORDER BY id DESC LIMIT ?", append(args, limit)
	}

	var where []string
	if f.UserID != "" {
		where = append(where, "user_id = ?")
		args = append(args, f.UserID)
	}
	if family, ok := strings.CutSuffix(f.Type, "."); ok {
		// The types that begin with "family." are those from "family."
		// (inclusive) to "family/" (exclusive), '/' being the byte after
		// '.': a range the index on (type, id) serves, unlike LIKE or
		// GLOB, whose wildcards the type might contain.
		where = append(where, "type >= ? AND type < ?")
		args = append(args, f.Type, family+"/")
	} else if f.Type != "" {
		where = append(where, "type = ?")
		args = append(args, f.Type)
	}
	if f.Before != 0 {
		where = append(where, "id < ?")
		args = append(args, f.Before)
	}
	q := "SELECT " + cols + " FROM audit_events"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return q + " ORDER BY id DESC LIMIT ?", append(args, limit)
}
