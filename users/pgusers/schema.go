package pgusers

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// component names this package's rows in sessiond_schema_migrations.
const component = "users"

// migrations are the schema changes in order: migrations[i] takes this
// package's tables from version i to version i+1. Append to the list; never
// edit an entry that has shipped.
var migrations = []string{
	// Version 1: users and audit events.
	//
	// Usernames and event types are COLLATE "C": compared, unique and
	// ordered byte by byte, as Go compares strings, whatever the
	// database's default collation, so that List's order and a type
	// family's range ("session." up to "session/") mean what they do in
	// Go. Times are timestamptz (microseconds), NULL for the zero time.
	// Event IDs come from an identity column, which never hands out a
	// number twice, even after the newest events are deleted; Append
	// makes them commit in order (see the package doc).
	`CREATE TABLE sessiond_users (
		id            text        NOT NULL PRIMARY KEY CHECK (id <> ''),
		username      text        COLLATE "C" NOT NULL CHECK (username <> ''),
		roles         text[]      NOT NULL CHECK (cardinality(roles) = 0 OR (array_ndims(roles) = 1 AND array_position(roles, NULL) IS NULL)),
		disabled      boolean     NOT NULL,
		password_hash text        NOT NULL,
		created_at    timestamptz,
		updated_at    timestamptz,
		CONSTRAINT sessiond_users_username_key UNIQUE (username)
	);
	CREATE TABLE sessiond_audit_events (
		id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		time       timestamptz,
		type       text        COLLATE "C" NOT NULL,
		user_id    text        NOT NULL,
		username   text        NOT NULL,
		session_id text        NOT NULL,
		actor      text        NOT NULL,
		reason     text        NOT NULL,
		ip         text        NOT NULL,
		user_agent text        NOT NULL
	);
	CREATE INDEX sessiond_audit_events_user_id ON sessiond_audit_events (user_id, id);
	CREATE INDEX sessiond_audit_events_type ON sessiond_audit_events (type, id);`,
}

// Advisory lock keys. PostgreSQL keeps the one-key (bigint) and the
// two-key (int4, int4) forms apart, so these never collide with each
// other.
const (
	// migrateLock serialises schema changes of every sessiond component
	// in the database (store/pgstore takes the same key): "sessiond" in
	// ASCII.
	migrateLock int64 = 0x73657373696f6e64
	// appendLockClass, with the second key 0, serialises Appends: "audi".
	appendLockClass int32 = 0x61756469
)

// createMigrations creates the table of applied migrations, shared by
// every sessiond component in the schema, one row per component and
// version. It is not one of this package's migrations: another component
// may have created it first.
const createMigrations = `CREATE TABLE IF NOT EXISTS sessiond_schema_migrations (
	component  text        NOT NULL,
	version    integer     NOT NULL CHECK (version > 0),
	applied_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (component, version)
)`

// migrate brings this package's schema up to date in one transaction,
// holding the advisory lock migrateLock, so that when several instances
// start at once one applies the migrations and the others, waiting for the
// lock, then find them applied. It refuses a schema newer than this code.
//
// (store/pgstore has the same function with its own list: keep the two in
// step.)
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgusers: migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLock); err != nil {
		return fmt.Errorf("pgusers: migrate: take the migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, createMigrations); err != nil {
		return fmt.Errorf("pgusers: create sessiond_schema_migrations: %w", err)
	}
	var version int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM sessiond_schema_migrations WHERE component = $1", component).Scan(&version); err != nil {
		return fmt.Errorf("pgusers: read schema version: %w", err)
	}
	switch {
	case version == len(migrations):
		return nil
	case version > len(migrations):
		return fmt.Errorf("pgusers: database schema version %d is newer than this program supports (%d): upgrade the program", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return fmt.Errorf("pgusers: migrate schema to version %d: %w", v+1, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO sessiond_schema_migrations (component, version) VALUES ($1, $2)", component, v+1); err != nil {
			return fmt.Errorf("pgusers: record schema version %d: %w", v+1, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgusers: migrate: %w", err)
	}
	return nil
}
