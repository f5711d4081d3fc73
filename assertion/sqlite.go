package assertion

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sessiond/sessiond/internal/sqlitefile"
)

// sqliteComponent names this package's row in schema_versions.
const sqliteComponent = "assertion"

// sqliteMigrations take this package's tables in a SQLite file from
// version i to i+1. Append to the list; never edit an entry that has
// shipped.
var sqliteMigrations = []string{
	// Version 1: signing keys. Times are nanoseconds since the Unix epoch.
	`CREATE TABLE assertion_keys (
		kid         TEXT    NOT NULL PRIMARY KEY CHECK (kid != ''),
		private_key BLOB    NOT NULL CHECK (length(private_key) > 0),
		created_at  INTEGER NOT NULL,
		sign_from   INTEGER NOT NULL
	) STRICT;`,
}

// SQLiteKeys is a KeyStore in a SQLite database file, which it may share
// with sessiond's other components (the users' file, by default).
type SQLiteKeys struct {
	db *sqlitefile.DB
}

var _ KeyStore = (*SQLiteKeys)(nil)

// OpenSQLite opens the key store in the SQLite file at path, creating the
// file (mode 0600) and this package's table if need be.
func OpenSQLite(path string) (*SQLiteKeys, error) {
	db, err := sqlitefile.Open(path, sqlitefile.Options{Migrate: migrateSQLite, Readers: 1})
	if err != nil {
		return nil, fmt.Errorf("assertion: %w", err)
	}
	return &SQLiteKeys{db: db}, nil
}

// Close closes the file's connections.
func (k *SQLiteKeys) Close() error { return k.db.Close() }

// Keys implements KeyStore.
func (k *SQLiteKeys) Keys(ctx context.Context) ([]StoredKey, error) {
	keys, err := sqliteKeys(ctx, k.db.R)
	if err != nil {
		return nil, fmt.Errorf("assertion: read keys: %w", err)
	}
	return keys, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func sqliteKeys(ctx context.Context, q querier) ([]StoredKey, error) {
	rows, err := q.QueryContext(ctx, `SELECT kid, private_key, created_at, sign_from FROM assertion_keys`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []StoredKey
	for rows.Next() {
		var k StoredKey
		var created, from int64
		if err := rows.Scan(&k.ID, &k.PrivateKey, &created, &from); err != nil {
			return nil, err
		}
		k.CreatedAt, k.SignFrom = time.Unix(0, created).UTC(), time.Unix(0, from).UTC()
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// Update implements KeyStore: its transaction begins IMMEDIATE on the
// file's writer (see sqlitefile), which holds the file's write lock
// against every other process.
func (k *SQLiteKeys) Update(ctx context.Context, f func([]StoredKey) ([]StoredKey, []string, error)) error {
	err := sqlitefile.RetryBusy(func() error {
		tx, err := k.db.W.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		keys, err := sqliteKeys(ctx, tx)
		if err != nil {
			return err
		}
		add, del, err := f(keys)
		if err != nil {
			return errStop{err}
		}
		for _, id := range del {
			if _, err := tx.ExecContext(ctx, `DELETE FROM assertion_keys WHERE kid = ?1`, id); err != nil {
				return err
			}
		}
		for _, a := range add {
			if _, err := tx.ExecContext(ctx, `INSERT INTO assertion_keys (kid, private_key, created_at, sign_from) VALUES (?1, ?2, ?3, ?4)`,
				a.ID, a.PrivateKey, a.CreatedAt.UnixNano(), a.SignFrom.UnixNano()); err != nil {
				return err
			}
		}
		return tx.Commit()
	})
	var stop errStop
	if errors.As(err, &stop) {
		return stop.err
	}
	if err != nil {
		return fmt.Errorf("assertion: update keys: %w", err)
	}
	return nil
}

// errStop carries f's error out of a retried transaction unwrapped.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

// migrateSQLite brings this package's schema up to date under its own row
// of schema_versions (sqlitefile.MigrateComponent).
func migrateSQLite(ctx context.Context, db *sql.DB) error {
	return sqlitefile.MigrateComponent(ctx, db, sqliteComponent, sqliteMigrations)
}
