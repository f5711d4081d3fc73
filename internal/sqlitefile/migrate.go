package sqlitefile

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// CreateSchemaVersions creates the table of schema versions, one row per
// component sharing the file. It is no component's migration: any of them
// may have created it first.
const CreateSchemaVersions = `CREATE TABLE IF NOT EXISTS schema_versions (
	component TEXT    NOT NULL PRIMARY KEY,
	version   INTEGER NOT NULL
) STRICT`

// MigrateComponent brings the tables of one component of a shared file
// (the accounts, the assertion keys, the webhook outbox) up to date:
// migrations[i] takes the component from version i to i+1, its row in
// the schema_versions table. It runs in one IMMEDIATE transaction of db
// (the writer pool), so when several processes open a new file at once,
// one migrates and the others, waiting for the write lock, then find it
// done. It refuses a schema newer than migrations, which only a newer
// program can use.
func MigrateComponent(ctx context.Context, db *sql.DB, component string, migrations []string) error {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the writer pool's
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, CreateSchemaVersions); err != nil {
		return fmt.Errorf("create schema_versions: %w", err)
	}
	var version int
	err = tx.QueryRowContext(ctx, "SELECT version FROM schema_versions WHERE component = ?", component).Scan(&version)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case version == len(migrations):
		return nil
	case version > len(migrations):
		return fmt.Errorf("database schema version %d of %s is newer than this program supports (%d): upgrade the program", version, component, len(migrations))
	case version < 0:
		return fmt.Errorf("database schema version %d of %s is invalid", version, component)
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate schema of %s to version %d: %w", component, v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO schema_versions (component, version) VALUES (?1, ?2)
		ON CONFLICT (component) DO UPDATE SET version = excluded.version`,
		component, len(migrations)); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
