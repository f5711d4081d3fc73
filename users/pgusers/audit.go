package pgusers

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessiond/sessiond/audit"
)

// eventColumns lists the stored fields of an event but its ID, in the
// order of sqlAppend's parameters and of the Scan in scanEvents.
const eventColumns = `time, type, user_id, username, session_id, actor, reason, ip, user_agent`

const (
	// sqlAppendLock is the first statement of an Append (see Append).
	sqlAppendLock = `SELECT pg_advisory_xact_lock($1, 0)`
	sqlAppend     = `INSERT INTO sessiond_audit_events (` + eventColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`
)

// Append implements audit.Log: it stores e and sets e.ID. e.Time is stored
// as it is (the caller stamps it), to the microsecond, and read back in
// UTC.
//
// Event IDs come from a sequence, which hands them out when an INSERT
// runs, not when it commits: two Appends running at once could commit
// their events in the opposite order of their IDs, and a reader paging
// back with Filter.Before from the newer event would then never see the
// older one. So Append takes a transaction-scoped advisory lock before it
// inserts, in the same implicit transaction (one round trip: pgx sends a
// batch with one Sync), and events commit in the order of their IDs. The
// price is that Appends, from every instance, take turns, each holding the
// lock through its commit; audit events come at the rate of logins and
// revocations, far below what that allows.
func (db *DB) Append(ctx context.Context, e *audit.Event) error {
	b := &pgx.Batch{}
	b.Queue(sqlAppendLock, appendLockClass)
	b.Queue(sqlAppend, encodeTime(e.Time), e.Type, e.UserID, e.Username, e.SessionID, e.Actor, e.Reason, e.IP, e.UserAgent)
	res := db.pool.SendBatch(ctx, b)
	if _, err := res.Exec(); err != nil {
		res.Close()
		return fmt.Errorf("pgusers: append: lock: %w", err)
	}
	var id int64
	if err := res.QueryRow().Scan(&id); err != nil {
		res.Close()
		return fmt.Errorf("pgusers: append: %w", err)
	}
	// Close reads the Sync's answer: the implicit transaction's commit.
	if err := res.Close(); err != nil {
		return fmt.Errorf("pgusers: append: %w", err)
	}
	e.ID = id
	return nil
}

// sqlDeleteBefore deletes up to $2 of the events from before $1, oldest
// first. It locks the rows it picks, skipping rows another transaction
// holds (another instance's sweep), so sweeps running at once take
// disjoint batches and never wait for each other. The picked IDs are
// collected into an array, which the DELETE looks up in the primary key
// whatever it guesses of the batch's size (as pgstore's sweep does).
const sqlDeleteBefore = `DELETE FROM sessiond_audit_events WHERE id = ANY (ARRAY(
		SELECT id FROM sessiond_audit_events WHERE time < $1
		ORDER BY time LIMIT $2 FOR UPDATE SKIP LOCKED))`

// DeleteBefore implements audit.Pruner. Any number of instances may run it
// at once: each deletes rows the others have not locked, so one may return
// fewer than limit while another is deleting the rest.
func (db *DB) DeleteBefore(ctx context.Context, t time.Time, limit int) (int, error) {
	if limit <= 0 || t.IsZero() {
		return 0, nil
	}
	tag, err := db.pool.Exec(ctx, sqlDeleteBefore, t, limit)
	if err != nil {
		return 0, fmt.Errorf("pgusers: delete events: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Query implements audit.Log. A Type ending in "." selects the types that
// begin with it; any other non-empty Type selects itself exactly. A
// non-zero Before selects IDs below it. A Limit of 0 or less means 100,
// and one above 1000 means 1000.
func (db *DB) Query(ctx context.Context, f audit.Filter) ([]audit.Event, error) {
	if !strings.HasSuffix(f.Type, ".") || f.UserID != "" {
		q, args := querySQL(f, nil)
		events, err := scanEvents(db.pool.Query(ctx, q, args...))
		if err != nil {
			return nil, fmt.Errorf("pgusers: query: %w", err)
		}
		return events, nil
	}
	// A family without a user: find its types, then read each type's
	// newest events, in one snapshot so that the two agree.
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("pgusers: query: %w", err)
	}
	defer tx.Rollback(ctx)
	types, err := familyTypes(ctx, tx, f.Type)
	if err != nil {
		return nil, fmt.Errorf("pgusers: query: %w", err)
	}
	if len(types) == 0 {
		return []audit.Event{}, nil
	}
	if len(types) > maxFamilyTypes {
		types = nil // too many to read one by one: read the range
	}
	q, args := querySQL(f, types)
	events, err := scanEvents(tx.Query(ctx, q, args...))
	if err != nil {
		return nil, fmt.Errorf("pgusers: query: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("pgusers: query: %w", err)
	}
	return events, nil
}

// maxFamilyTypes is the most distinct types a family query reads one by
// one (see querySQL); past it, it reads the family's range of the index
// instead.
const maxFamilyTypes = 64

// sqlFamilyTypes returns the distinct types from $1 (inclusive) to $2
// (exclusive), in order, at most $3 of them. It emulates a skip scan of
// the index on (type, id): each step is one descent of the index to the
// next type, however many events have the type before it.
const sqlFamilyTypes = `WITH RECURSIVE t(type) AS (
		(SELECT type FROM sessiond_audit_events WHERE type >= $1 AND type < $2 ORDER BY type LIMIT 1)
		UNION ALL
		SELECT (SELECT e.type FROM sessiond_audit_events e WHERE e.type > t.type AND e.type < $2 ORDER BY e.type LIMIT 1)
		FROM t WHERE t.type IS NOT NULL
	)
	SELECT type FROM t WHERE type IS NOT NULL LIMIT $3`

// familyTypes returns the distinct types that begin with prefix (which
// ends in "."), in order; more than maxFamilyTypes of them means "many".
func familyTypes(ctx context.Context, tx pgx.Tx, prefix string) ([]string, error) {
	rows, err := tx.Query(ctx, sqlFamilyTypes, prefix, familyEnd(prefix), maxFamilyTypes+1)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// familyEnd returns the least string above every type that begins with
// prefix, which ends in ".": the types that begin with "family." are
// those from "family." (inclusive) to "family/" (exclusive), '/' being the
// byte after '.'. That is a range the index on (type, id) serves, unlike
// LIKE, whose wildcards the type might contain. (The columns are COLLATE
// "C", so the database compares bytes, as this assumes.)
func familyEnd(prefix string) string { return prefix[:len(prefix)-1] + "/" }

// querySQL returns the SELECT for f and its parameters. It names only the
// conditions f sets, so that PostgreSQL can choose an index for them.
//
// A family of types (f.Type ending in ".") without a user is a range of
// the index on (type, id), which is not in ID order: reading it newest
// first would mean sorting every event of the family. Given the family's
// types, querySQL instead reads the newest Limit events of each type, in
// ID order from the index, and sorts only those.
func querySQL(f audit.Filter, types []string) (string, []any) {
	limit := f.EffectiveLimit()
	before := f.Before
	if before == 0 {
		before = math.MaxInt64
	}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	const cols = "id, " + eventColumns

	if len(types) > 0 {
		typs, id, lim := arg(types), arg(before), arg(limit)
		return `SELECT e.* FROM unnest(` + typs + `::text[]) AS t(type) CROSS JOIN LATERAL (
			SELECT ` + cols + ` FROM sessiond_audit_events a
			WHERE a.type = t.type AND a.id < ` + id + ` ORDER BY a.id DESC LIMIT ` + lim + `) e
			ORDER BY e.id DESC LIMIT ` + lim, args
	}

	var where []string
	if f.UserID != "" {
		where = append(where, "user_id = "+arg(f.UserID))
	}
	if strings.HasSuffix(f.Type, ".") {
		where = append(where, "type >= "+arg(f.Type)+" AND type < "+arg(familyEnd(f.Type)))
	} else if f.Type != "" {
		where = append(where, "type = "+arg(f.Type))
	}
	where = append(where, "id < "+arg(before))
	return "SELECT " + cols + " FROM sessiond_audit_events WHERE " + strings.Join(where, " AND ") +
		" ORDER BY id DESC LIMIT " + arg(limit), args
}

// scanEvents reads the events of a query's result.
func scanEvents(rows pgx.Rows, err error) ([]audit.Event, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	events := []audit.Event{}
	for rows.Next() {
		var (
			e audit.Event
			t pgtype.Timestamptz
		)
		if err := rows.Scan(&e.ID, &t, &e.Type, &e.UserID, &e.Username, &e.SessionID, &e.Actor, &e.Reason, &e.IP, &e.UserAgent); err != nil {
			return nil, err
		}
		if e.Time, err = decodeTime(t); err != nil {
			return nil, fmt.Errorf("event %d: %w", e.ID, err)
		}
		events = append(events, e)
	}
	return events, rows.Err()
}
