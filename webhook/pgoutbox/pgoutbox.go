// Package pgoutbox is the webhook outbox (webhook.Outbox) in the
// PostgreSQL database of users/pgusers, beside the audit log.
//
// The outbox is filled by the database: a trigger on the audit log's
// table inserts one delivery per enabled hook in the transaction of each
// event's INSERT, so the deliveries are committed, or not, with the event
// itself, whichever program appends it. Claims pick due rows with FOR
// UPDATE SKIP LOCKED, so that instances claiming at once take disjoint
// rows without waiting for each other, and lease them (claimed_by,
// lease_until) in the same statement: no transaction stays open while a
// delivery is sent, and the lease of an instance that dies ends by
// itself.
package pgoutbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/pgpool"
	"github.com/sessiond/sessiond/webhook"
)

var _ webhook.Outbox = (*Outbox)(nil)

// Outbox is a webhook.Outbox in PostgreSQL. It is safe for concurrent
// use, and any number of Outboxes, on any number of hosts, may share the
// database.
type Outbox struct {
	pool *pgxpool.Pool
}

// component names this package's rows in sessiond_schema_migrations.
const component = "webhooks"

// migrations are the schema changes in order (see internal/pgmigrate).
var migrations = []string{
	// Version 1: hooks, deliveries, and the trigger that queues a
	// delivery per enabled hook with each audit event. A delivery is due
	// when it is not dead and both next_at and lease_until have passed.
	`CREATE TABLE sessiond_webhook_hooks (
		id            text        PRIMARY KEY,
		enabled       boolean     NOT NULL,
		failing_since timestamptz,
		last_error    text        NOT NULL DEFAULT ''
	);
	CREATE TABLE sessiond_webhook_outbox (
		hook_id     text        NOT NULL,
		event_id    bigint      NOT NULL,
		since       timestamptz NOT NULL,
		attempts    integer     NOT NULL DEFAULT 0,
		next_at     timestamptz NOT NULL DEFAULT '-infinity',
		lease_until timestamptz NOT NULL DEFAULT '-infinity',
		claimed_by  text        NOT NULL DEFAULT '',
		dead        boolean     NOT NULL DEFAULT false,
		last_error  text        NOT NULL DEFAULT '',
		PRIMARY KEY (hook_id, event_id)
	);
	CREATE INDEX sessiond_webhook_outbox_due ON sessiond_webhook_outbox (next_at) WHERE NOT dead;
	CREATE FUNCTION sessiond_webhook_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO sessiond_webhook_outbox (hook_id, event_id, since)
		SELECT id, NEW.id, coalesce(NEW.time, now()) FROM sessiond_webhook_hooks WHERE enabled;
		RETURN NULL;
	END $$;
	CREATE TRIGGER sessiond_webhook_enqueue AFTER INSERT ON sessiond_audit_events
		FOR EACH ROW EXECUTE FUNCTION sessiond_webhook_enqueue();`,
}

// Open connects to the database at url, which must hold users/pgusers'
// tables (open that first), and creates or upgrades this package's
// tables. Close it when done.
func Open(ctx context.Context, url string) (*Outbox, error) {
	pool, err := pgpool.Open(ctx, url, component, migrations)
	if err != nil {
		return nil, fmt.Errorf("pgoutbox: %w", err)
	}
	return &Outbox{pool: pool}, nil
}

// Close closes the connections.
func (o *Outbox) Close() { o.pool.Close() }

// SetHooks implements webhook.Outbox.
func (o *Outbox) SetHooks(ctx context.Context, ids []string) error {
	if ids == nil {
		ids = []string{}
	}
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE sessiond_webhook_hooks SET enabled = false WHERE enabled AND NOT id = ANY ($1)`, ids); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO sessiond_webhook_hooks (id, enabled) SELECT unnest($1::text[]), true
			ON CONFLICT (id) DO UPDATE SET enabled = true`, ids)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgoutbox: set hooks: %w", err)
	}
	return nil
}

// sqlClaim leases up to $5 due deliveries of the hooks $4 to $1 until $2,
// $3 being the present. Rows another claim has locked are skipped; a row
// another claim leased and committed meanwhile is re-checked against the
// WHERE on its new version, and left.
const sqlClaim = `UPDATE sessiond_webhook_outbox o SET claimed_by = $1, lease_until = $2, attempts = o.attempts + 1
	FROM (SELECT hook_id, event_id FROM sessiond_webhook_outbox
		WHERE NOT dead AND next_at <= $3 AND lease_until <= $3 AND hook_id = ANY ($4)
		ORDER BY next_at LIMIT $5 FOR UPDATE SKIP LOCKED) c
	WHERE o.hook_id = c.hook_id AND o.event_id = c.event_id
	RETURNING o.hook_id, o.event_id, o.attempts, o.since`

// Claim implements webhook.Outbox.
func (o *Outbox) Claim(ctx context.Context, owner string, ids []string, now time.Time, lease time.Duration, limit int) ([]webhook.Delivery, error) {
	if len(ids) == 0 || limit <= 0 {
		return nil, nil
	}
	rows, err := o.pool.Query(ctx, sqlClaim, owner, now.Add(lease), now, ids, limit)
	if err != nil {
		return nil, fmt.Errorf("pgoutbox: claim: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (webhook.Delivery, error) {
		var d webhook.Delivery
		err := r.Scan(&d.HookID, &d.Event.ID, &d.Attempts, &d.Since)
		d.Since = d.Since.UTC()
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgoutbox: claim: %w", err)
	}
	if err := o.events(ctx, out); err != nil {
		return nil, fmt.Errorf("pgoutbox: claim: %w", err)
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
	rows, err := o.pool.Query(ctx, `SELECT id, time, type, user_id, username, session_id, actor, reason, ip, user_agent
		FROM sessiond_audit_events WHERE id = ANY ($1)`, idList)
	if err != nil {
		return err
	}
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (audit.Event, error) {
		var e audit.Event
		var t pgtype.Timestamptz
		err := r.Scan(&e.ID, &t, &e.Type, &e.UserID, &e.Username, &e.SessionID, &e.Actor, &e.Reason, &e.IP, &e.UserAgent)
		if t.Valid && t.InfinityModifier == pgtype.Finite {
			e.Time = t.Time.UTC()
		}
		return e, err
	})
	if err != nil {
		return err
	}
	found := make(map[int64]audit.Event, len(events))
	for _, e := range events {
		found[e.ID] = e
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
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM sessiond_webhook_outbox WHERE hook_id = $1 AND event_id = $2 AND claimed_by = $3`, d.HookID, d.Event.ID, owner)
	b.Queue(`UPDATE sessiond_webhook_hooks SET failing_since = NULL, last_error = '' WHERE id = $1 AND failing_since IS NOT NULL`, d.HookID)
	if err := o.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pgoutbox: delivered: %w", err)
	}
	return nil
}

// Failed implements webhook.Outbox.
func (o *Outbox) Failed(ctx context.Context, owner string, d webhook.Delivery, now, next time.Time, dead bool, msg string) error {
	b := &pgx.Batch{}
	b.Queue(`UPDATE sessiond_webhook_outbox SET next_at = $4, lease_until = '-infinity', claimed_by = '', dead = $5, last_error = $6
		WHERE hook_id = $1 AND event_id = $2 AND claimed_by = $3`, d.HookID, d.Event.ID, owner, next, dead, msg)
	b.Queue(`UPDATE sessiond_webhook_hooks SET failing_since = coalesce(failing_since, $2), last_error = $3 WHERE id = $1`, d.HookID, now, msg)
	if err := o.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pgoutbox: failed: %w", err)
	}
	return nil
}

// Stats implements webhook.Outbox. It counts the whole outbox: the
// backlog is what it reads.
func (o *Outbox) Stats(ctx context.Context) (map[string]webhook.Stats, error) {
	out := map[string]webhook.Stats{}
	rows, err := o.pool.Query(ctx, `SELECT hook_id, count(*) FILTER (WHERE NOT dead), count(*) FILTER (WHERE dead)
		FROM sessiond_webhook_outbox GROUP BY hook_id`)
	if err != nil {
		return nil, fmt.Errorf("pgoutbox: stats: %w", err)
	}
	var id string
	var pending, dead int
	if _, err := pgx.ForEachRow(rows, []any{&id, &pending, &dead}, func() error {
		out[id] = webhook.Stats{Pending: pending, Dead: dead}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("pgoutbox: stats: %w", err)
	}
	rows, err = o.pool.Query(ctx, `SELECT id, failing_since, last_error FROM sessiond_webhook_hooks WHERE failing_since IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("pgoutbox: stats: %w", err)
	}
	var since time.Time
	var msg string
	if _, err := pgx.ForEachRow(rows, []any{&id, &since, &msg}, func() error {
		s := out[id]
		s.FailingSince, s.LastError = since.UTC(), msg
		out[id] = s
		return nil
	}); err != nil {
		return nil, fmt.Errorf("pgoutbox: stats: %w", err)
	}
	return out, nil
}

// Retry implements webhook.Outbox.
func (o *Outbox) Retry(ctx context.Context, id string, now time.Time) (int, error) {
	tag, err := o.pool.Exec(ctx, `UPDATE sessiond_webhook_outbox SET dead = false, attempts = 0, since = $2, next_at = $2,
		lease_until = '-infinity', claimed_by = '' WHERE hook_id = $1 AND dead`, id, now)
	if err != nil {
		return 0, fmt.Errorf("pgoutbox: retry: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
