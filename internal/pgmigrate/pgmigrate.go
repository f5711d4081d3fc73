// Package pgmigrate applies the schema migrations of sessiond's PostgreSQL
// components (store/pgstore, users/pgusers, assertion), which may share one database.
//
// Each component has an ordered list of migrations and records the ones it
// has applied in the table sessiond_schema_migrations, one row per
// component and version. Apply runs in one transaction holding the
// advisory lock Lock, which every component takes, so that when several
// instances of any mix of components start at once against a new
// database, one applies its migrations and the others, waiting for the
// lock, then find them applied.
package pgmigrate

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Lock is the key of the transaction-scoped advisory lock that serialises
// schema changes of every sessiond component in the database: "sessiond"
// in ASCII. It is the one-key (bigint) form, which PostgreSQL keeps apart
// from the two-key (int4, int4) locks the components take for their own
// work.
const Lock int64 = 0x73657373696f6e64

// createTable creates the table of applied migrations, shared by every
// sessiond component in the schema, one row per component and version. It
// is not one of any component's migrations: another component may have
// created it first.
const createTable = `CREATE TABLE IF NOT EXISTS sessiond_schema_migrations (
	component  text        NOT NULL,
	version    integer     NOT NULL CHECK (version > 0),
	applied_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (component, version)
)`

// Beginner starts a transaction: a *pgxpool.Pool or a *pgx.Conn.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Apply brings component's schema up to date: migrations[i] takes it from
// version i to version i+1. It applies the migrations not yet recorded for
// component, in order, recording each, in one transaction that first takes
// the advisory lock Lock; if any fails, none is applied. It refuses a
// schema newer than migrations, which a newer program wrote.
//
// Apply's errors do not name the component's package: the caller wraps
// them with its own prefix ("pgstore: %w").
func Apply(ctx context.Context, db Beginner, component string, migrations []string) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", Lock); err != nil {
		return fmt.Errorf("migrate: take the migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, createTable); err != nil {
		return fmt.Errorf("create sessiond_schema_migrations: %w", err)
	}
	var version int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM sessiond_schema_migrations WHERE component = $1", component).Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case version == len(migrations):
		return nil
	case version > len(migrations):
		return fmt.Errorf("database schema version %d is newer than this program supports (%d): upgrade the program", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO sessiond_schema_migrations (component, version) VALUES ($1, $2)", component, v+1); err != nil {
			return fmt.Errorf("record schema version %d: %w", v+1, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
