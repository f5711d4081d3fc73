package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are the schema changes in order: migrations[i] takes the
// database from version i to version i+1 (PRAGMA user_version). Append to
// the list; never edit an entry that has shipped.
var migrations = []string{
	// Version 1: the sessions table.
	//
	// STRICT makes SQLite reject a value of the wrong type, whoever writes
	// it; the CHECKs catch the malformed values a type cannot. Times are
	// nanoseconds since the Unix epoch (see encodeTime). expires_at is
	// derived, so it can never disagree with the deadlines it summarises.
	//
	// The table is keyed by hash_key, the first 63 bits of token_hash (see
	// hashKey), not by id: hash_key is an INTEGER PRIMARY KEY, the alias of
	// the rowid, so validating a token (ByHash) is one descent of the
	// table's B-tree on an integer, instead of one of an index of 32-byte
	// hashes followed by one of the table: among a million sessions,
	// BenchmarkByHash (cache=off) measures 16.5 µs keyed by hash_key
	// against 21.3 µs keyed by id. Being the primary key, hash_key is
	// unique, which makes token_hash unique too without an index of its
	// own; two tokens whose hashes share their first 63 bits cannot both
	// be stored (ErrHashCollision). An explicit INTEGER PRIMARY KEY,
	// unlike a bare rowid, survives VACUUM unchanged. (A WITHOUT ROWID
	// table keyed by token_hash measures 17.9 µs: its interior pages hold
	// 32-byte keys instead of integers, which makes it a level deeper, and
	// each secondary index would carry the 32-byte key too.)
	`CREATE TABLE sessions (
		hash_key          INTEGER PRIMARY KEY,
		id                TEXT    NOT NULL UNIQUE,
		token_hash        BLOB    NOT NULL CHECK (length(token_hash) = 32),
		prev_token_hash   BLOB             CHECK (prev_token_hash IS NULL OR length(prev_token_hash) = 32),
		user_id           TEXT    NOT NULL,
		roles             TEXT    NOT NULL CHECK (json_valid(roles)),
		created_at        INTEGER NOT NULL,
		authenticated_at  INTEGER NOT NULL,
		rotated_at        INTEGER NOT NULL,
		last_seen_at      INTEGER NOT NULL,
		idle_deadline     INTEGER NOT NULL,
		absolute_deadline INTEGER NOT NULL,
		expires_at        INTEGER NOT NULL GENERATED ALWAYS AS (min(idle_deadline, absolute_deadline)) STORED,
		remember          INTEGER NOT NULL CHECK (remember IN (0, 1)),
		created_ip        TEXT    NOT NULL,
		created_ua        TEXT    NOT NULL,
		last_ip           TEXT    NOT NULL,
		last_ua           TEXT    NOT NULL,
		data              BLOB,
		version           INTEGER NOT NULL
	) STRICT;
	CREATE INDEX sessions_prev_token_hash ON sessions (prev_token_hash) WHERE prev_token_hash IS NOT NULL;
	CREATE INDEX sessions_user_id ON sessions (user_id, created_at, id);
	CREATE INDEX sessions_expires_at ON sessions (expires_at);`,

	// Version 2: how the user proved who they are (session.Session.AMR),
	// a JSON array as roles is. Sessions stored before have none.
	`ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(amr) AND json_type(amr) = 'array');`,
}

// migrate brings the schema of db up to date. It runs in one IMMEDIATE
// transaction, so when several processes open a new file at once, one
// creates the schema and the others, waiting for the write lock, then find
// it done. It refuses a database whose schema is newer than this code.
// Open runs it (through sqlitefile) and prefixes its errors.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the writer pool's (see sqlitefile)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case version == len(migrations):
		return nil
	case version > len(migrations):
		return fmt.Errorf("database schema version %d is newer than this program supports (%d): upgrade the program", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	// PRAGMA takes no parameters; len(migrations) is a constant integer.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
