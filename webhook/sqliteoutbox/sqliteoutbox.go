// Package sqliteoutbox is the webhook outbox (webhook.Outbox) in the
// SQLite database file of users/sqliteusers, beside the audit log.
//
// The outbox is filled by the database: a trigger on the audit log's
// table inserts one delivery per enabled hook in the INSERT of each
// event, so the deliveries are committed, or not, with the event itself,
// whichever program appends it (sessiond serve, or a sessiond users
// command). Claims are compare-and-set updates of a lease (claimed_by,
// lease_until) in one write statement, which SQLite serialises across
// every process that shares the file.
package sqliteoutbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/sqlitefile"
	"github.com/sessiond/sessiond/webhook"
)

var _ webhook.Outbox = (*Outbox)(nil)

// Outbox is a webhook.Outbox in a SQLite file. It is safe for concurrent
// use, and any number of Outboxes, in one process or several, may share
// the file.
type Outbox struct {
	db *sqlitefile.DB
}

// component names this package's row in schema_versions.
const component = "webhooks"

// migrations are the schema changes in order (see users/sqliteusers).
// Times are nanoseconds since the Unix epoch.
var migrations = []string{
	// Version 1: hooks, deliveries, and the trigger that queues a
	// delivery per enabled hook with each audit event. A delivery is due
	// when it is not dead and both next_at and lease_until have passed.
	`CREATE TABLE webhook_hooks (
		id            TEXT    NOT NULL PRIMARY KEY,
		enabled       INTEGER NOT NULL CHECK (enabled IN (0, 1)),
		failing_since INTEGER,
		last_error    TEXT    NOT NULL DEFAULT ''
	) STRICT;
	CREATE TABLE webhook_outbox (
		hook_id     TEXT    NOT NULL,
		event_id    INTEGER NOT NULL,
		since       INTEGER NOT NULL,
		attempts    INTEGER NOT NULL DEFAULT 0,
		next_at     INTEGER NOT NULL DEFAULT 0,
		lease_until INTEGER NOT NULL DEFAULT 0,
		claimed_by  TEXT    NOT NULL DEFAULT '',
		dead        INTEGER NOT NULL DEFAULT 0 CHECK (dead IN (0, 1)),
		last_error  TEXT    NOT NULL DEFAULT '',
		PRIMARY KEY (hook_id, event_id)
	) STRICT;
	CREATE INDEX webhook_outbox_due ON webhook_outbox (dead, next_at);
	CREATE TRIGGER webhook_enqueue AFTER INSERT ON audit_events BEGIN
		INSERT INTO webhook_outbox (hook_id, event_id, since)
		SELECT id, NEW.id, coalesce(NEW.time, 0) FROM webhook_hooks WHERE enabled = 1;
	END;`,
}

// Open opens the outbox in the SQLite file at path, which must hold
// users/sqliteusers' tables (open that first), and creates or upgrades
// this package's tables. Close it when done.
func Open(path string) (*Outbox, error) {
	db, err := sqlitefile.Open(path, sqlitefile.Options{Migrate: migrate, Readers: 2})
	if err != nil {
		return nil, fmt.Errorf("sqliteoutbox: %w", err)
	}
	return &Outbox{db: db}, nil
}

// Close closes the outbox's connections.
func (o *Outbox) Close() error { return o.db.Close() }

// migrate brings the outbox's schema up to date under its own row of
// schema_versions (sqlitefile.MigrateComponent).
func migrate(ctx context.Context, db *sql.DB) error {
	return sqlitefile.MigrateComponent(ctx, db, component, migrations)
}

// SetHooks implements webhook.Outbox.
func (o *Outbox) SetHooks(ctx context.Context, ids []string) error {
	list, _ := json.Marshal(nonNil(ids))
	tx, err := o.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqliteoutbox: set hooks: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE webhook_hooks SET enabled = 0 WHERE id NOT IN (SELECT value FROM json_each(?1))`, string(list)); err != nil {
		return fmt.Errorf("sqliteoutbox: set hooks: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_hooks (id, enabled) SELECT value, 1 FROM json_each(?1) WHERE true
		ON CONFLICT (id) DO UPDATE SET enabled = 1`, string(list)); err != nil {
		return fmt.Errorf("sqliteoutbox: set hooks: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqliteoutbox: set hooks: %w", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// sqlClaim leases up to ?5 due deliveries of the hooks in ?4 (a JSON
// array) to ?1 until ?2, ?3 being the present. The one statement is the
// compare-and-set: it runs under the file's write lock, so no two
// claimers take the same delivery.
const sqlClaim = `UPDATE webhook_outbox SET claimed_by = ?1, lease_until = ?2, attempts = attempts + 1
	WHERE rowid IN (SELECT rowid FROM webhook_outbox
		WHERE dead = 0 AND next_at <= ?3 AND lease_until <= ?3 AND hook_id IN (SELECT value FROM json_each(?4))
		ORDER BY next_at LIMIT ?5)
	RETURNING hook_id, event_id, attempts, since`

// Claim implements webhook.Outbox.
func (o *Outbox) Claim(ctx context.Context, owner string, ids []string, now time.Time, lease time.Duration, limit int) ([]webhook.Delivery, error) {
	if len(ids) == 0 || limit <= 0 {
		return nil, nil
	}
	list, _ := json.Marshal(ids)
	rows, err := o.db.W.QueryContext(ctx, sqlClaim, owner, now.Add(lease).UnixNano(), now.UnixNano(), string(list), limit)
	if err != nil {
		return nil, fmt.Errorf("sqliteoutbox: claim: %w", err)
	}
	var out []webhook.Delivery
	for rows.Next() {
		var d webhook.Delivery
		var since int64
		if err := rows.Scan(&d.HookID, &d.Event.ID, &d.Attempts, &since); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqliteoutbox: claim: %w", err)
		}
		d.Since = time.Unix(0, since).UTC()
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqliteoutbox: claim: %w", err)
	}
	if err := o.events(ctx, out); err != nil {
		return nil, fmt.Errorf("sqliteoutbox: claim: %w", err)
	}
	return out, nil
}

// events fills in the events of ds from the audit log, marking those it
// no longer holds Missing.
func (o *Outbox) events(ctx context.Context, ds []webhook.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	idList := make([]int64, len(ds))
	for i, d := range ds {
		idList[i] = d.Event.ID
	}
	list, _ := json.Marshal(idList)
	rows, err := o.db.R.QueryContext(ctx, `SELECT id, time, type, user_id, username, session_id, actor, reason, ip, user_agent
		FROM audit_events WHERE id IN (SELECT value FROM json_each(?1))`, string(list))
	if err != nil {
		return err
	}
	defer rows.Close()
	found := map[int64]audit.Event{}
	for rows.Next() {
		var e audit.Event
		var t sql.NullInt64
		if err := rows.Scan(&e.ID, &t, &e.Type, &e.UserID, &e.Username, &e.SessionID, &e.Actor, &e.Reason, &e.IP, &e.UserAgent); err != nil {
			return err
		}
		if t.Valid {
			e.Time = time.Unix(0, t.Int64).UTC()
		}
		found[e.ID] = e
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i := range ds {
		if e, ok := found[ds[i].Event.ID]; ok {
			ds[i].Event = e
		} else {
			ds[i].Missing = true
		}
	}
	return nil
}

// Delivered implements webhook.Outbox.
func (o *Outbox) Delivered(ctx context.Context, owner string, d webhook.Delivery) error {
	tx, err := o.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqliteoutbox: delivered: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_outbox WHERE hook_id = ?1 AND event_id = ?2 AND claimed_by = ?3`, d.HookID, d.Event.ID, owner); err != nil {
		return fmt.Errorf("sqliteoutbox: delivered: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE webhook_hooks SET failing_since = NULL, last_error = '' WHERE id = ?1 AND failing_since IS NOT NULL`, d.HookID); err != nil {
		return fmt.Errorf("sqliteoutbox: delivered: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqliteoutbox: delivered: %w", err)
	}
	return nil
}

// Failed implements webhook.Outbox.
func (o *Outbox) Failed(ctx context.Context, owner string, d webhook.Delivery, now, next time.Time, dead bool, msg string) error {
	tx, err := o.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqliteoutbox: failed: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE webhook_outbox SET next_at = ?4, lease_until = 0, claimed_by = '', dead = ?5, last_error = ?6
		WHERE hook_id = ?1 AND event_id = ?2 AND claimed_by = ?3`, d.HookID, d.Event.ID, owner, next.UnixNano(), dead, msg); err != nil {
		return fmt.Errorf("sqliteoutbox: failed: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE webhook_hooks SET failing_since = coalesce(failing_since, ?2), last_error = ?3 WHERE id = ?1`,
		d.HookID, now.UnixNano(), msg); err != nil {
		return fmt.Errorf("sqliteoutbox: failed: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqliteoutbox: failed: %w", err)
	}
	return nil
}

// Stats implements webhook.Outbox. It counts the whole outbox: the
// backlog is what it reads.
func (o *Outbox) Stats(ctx context.Context) (map[string]webhook.Stats, error) {
	out := map[string]webhook.Stats{}
	rows, err := o.db.R.QueryContext(ctx, `SELECT hook_id, sum(dead = 0), sum(dead = 1) FROM webhook_outbox GROUP BY hook_id`)
	if err != nil {
		return nil, fmt.Errorf("sqliteoutbox: stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var s webhook.Stats
		if err := rows.Scan(&id, &s.Pending, &s.Dead); err != nil {
			return nil, fmt.Errorf("sqliteoutbox: stats: %w", err)
		}
		out[id] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqliteoutbox: stats: %w", err)
	}
	hooks, err := o.db.R.QueryContext(ctx, `SELECT id, failing_since, last_error FROM webhook_hooks WHERE failing_since IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("sqliteoutbox: stats: %w", err)
	}
	defer hooks.Close()
	for hooks.Next() {
		var id, msg string
		var since int64
		if err := hooks.Scan(&id, &since, &msg); err != nil {
			return nil, fmt.Errorf("sqliteoutbox: stats: %w", err)
		}
		s := out[id]
		s.FailingSince, s.LastError = time.Unix(0, since).UTC(), msg
		out[id] = s
	}
	if err := hooks.Err(); err != nil {
		return nil, fmt.Errorf("sqliteoutbox: stats: %w", err)
	}
	return out, nil
}

// Retry implements webhook.Outbox.
func (o *Outbox) Retry(ctx context.Context, id string, now time.Time) (int, error) {
	res, err := o.db.W.ExecContext(ctx, `UPDATE webhook_outbox SET dead = 0, attempts = 0, since = ?2, next_at = ?2, lease_until = 0, claimed_by = ''
		WHERE hook_id = ?1 AND dead = 1`, id, now.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("sqliteoutbox: retry: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqliteoutbox: retry: %w", err)
	}
	return int(n), nil
}
