package assertion

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessiond/sessiond/internal/pgpool"
)

// pgComponent names this package's rows in sessiond_schema_migrations.
const pgComponent = "assertion"

// pgMigrations take this package's tables in PostgreSQL from version i to
// i+1. Append to the list; never edit an entry that has shipped.
var pgMigrations = []string{
	// Version 1: signing keys.
	`CREATE TABLE sessiond_assertion_keys (
		kid         text        NOT NULL PRIMARY KEY CHECK (kid <> ''),
		private_key bytea       NOT NULL CHECK (octet_length(private_key) > 0),
		created_at  timestamptz NOT NULL,
		sign_from   timestamptz NOT NULL
	);`,
}

// pgKeysLock, with the second key 0, is the two-key advisory lock that
// serialises Updates: "asrt". PostgreSQL keeps it apart from the one-key
// lock of migrations (pgmigrate.Lock).
const pgKeysLock int32 = 0x61737274

// PostgresKeys is a KeyStore in a PostgreSQL database, which it may share
// with sessiond's other components.
type PostgresKeys struct {
	pool *pgxpool.Pool
}

var _ KeyStore = (*PostgresKeys)(nil)

// OpenPostgres connects to the database at url (as pgpool.Open takes it)
// and creates or upgrades this package's table there.
func OpenPostgres(ctx context.Context, url string) (*PostgresKeys, error) {
	pool, err := pgpool.Open(ctx, url, pgComponent, pgMigrations)
	if err != nil {
		return nil, fmt.Errorf("assertion: %w", err)
	}
	return &PostgresKeys{pool: pool}, nil
}

// Close closes the connections.
func (k *PostgresKeys) Close() error { k.pool.Close(); return nil }

type pgQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func pgKeys(ctx context.Context, q pgQuerier) ([]StoredKey, error) {
	rows, err := q.Query(ctx, `SELECT kid, private_key, created_at, sign_from FROM sessiond_assertion_keys`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []StoredKey
	for rows.Next() {
		var k StoredKey
		if err := rows.Scan(&k.ID, &k.PrivateKey, &k.CreatedAt, &k.SignFrom); err != nil {
			return nil, err
		}
		k.CreatedAt, k.SignFrom = k.CreatedAt.UTC(), k.SignFrom.UTC()
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// Keys implements KeyStore.
func (k *PostgresKeys) Keys(ctx context.Context) ([]StoredKey, error) {
	keys, err := pgKeys(ctx, k.pool)
	if err != nil {
		return nil, fmt.Errorf("assertion: read keys: %w", err)
	}
	return keys, nil
}

// Update implements KeyStore, holding the transaction-scoped advisory
// lock pgKeysLock.
func (k *PostgresKeys) Update(ctx context.Context, f func([]StoredKey) ([]StoredKey, []string, error)) error {
	tx, err := k.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("assertion: update keys: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, 0)", pgKeysLock); err != nil {
		return fmt.Errorf("assertion: update keys: %w", err)
	}
	keys, err := pgKeys(ctx, tx)
	if err != nil {
		return fmt.Errorf("assertion: update keys: %w", err)
	}
	add, del, err := f(keys)
	if err != nil {
		return err
	}
	for _, id := range del {
		if _, err := tx.Exec(ctx, `DELETE FROM sessiond_assertion_keys WHERE kid = $1`, id); err != nil {
			return fmt.Errorf("assertion: update keys: %w", err)
		}
	}
	for _, a := range add {
		if _, err := tx.Exec(ctx, `INSERT INTO sessiond_assertion_keys (kid, private_key, created_at, sign_from) VALUES ($1, $2, $3, $4)`,
			a.ID, a.PrivateKey, a.CreatedAt, a.SignFrom); err != nil {
			return fmt.Errorf("assertion: update keys: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("assertion: update keys: %w", err)
	}
	return nil
}
