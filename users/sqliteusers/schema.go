package sqliteusers

import (
	"context"
	"database/sql"

	"github.com/sessiond/sessiond/internal/sqlitefile"
)

// component names this package's row in schema_versions.
const component = "users"

// migrations are the schema changes in order: migrations[i] takes this
// package's tables from version i to version i+1 (its row in
// schema_versions). Append to the list; never edit an entry that has
// shipped.
var migrations = []string{
	// Version 1: users and audit events.
	//
	// STRICT makes SQLite reject a value of the wrong type, whoever writes
	// it; the CHECKs catch the malformed values a type cannot. The default
	// BINARY collation makes the username unique and looked up exactly,
	// byte for byte. Times are nanoseconds since the Unix epoch, NULL for
	// the zero time. AUTOINCREMENT keeps event IDs from ever being reused,
	// so paging with Filter.Before never skips or repeats an event.
	`CREATE TABLE users (
		id            TEXT    NOT NULL PRIMARY KEY CHECK (id != ''),
		username      TEXT    NOT NULL UNIQUE CHECK (username != ''),
		roles         TEXT    NOT NULL CHECK (json_valid(roles) AND json_type(roles) = 'array'),
		disabled      INTEGER NOT NULL CHECK (disabled IN (0, 1)),
		password_hash TEXT    NOT NULL,
		created_at    INTEGER,
		updated_at    INTEGER
	) STRICT;
	CREATE TABLE audit_events (
		id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
		time       INTEGER,
		type       TEXT    NOT NULL,
		user_id    TEXT    NOT NULL,
		username   TEXT    NOT NULL,
		session_id TEXT    NOT NULL,
		actor      TEXT    NOT NULL,
		reason     TEXT    NOT NULL,
		ip         TEXT    NOT NULL,
		user_agent TEXT    NOT NULL
	) STRICT;
	CREATE INDEX audit_events_user_id ON audit_events (user_id, id);
	CREATE INDEX audit_events_type ON audit_events (type, id);`,

	// Version 2: an index on the time of events, for the retention sweep
	// (DeleteBefore), which deletes the oldest events first. Events with
	// no time (NULL) are in it too, but no sweep selects them. On a large
	// log, building it holds the write lock of the file for as long as
	// that takes, once, at the first Open of the new version.
	`CREATE INDEX audit_events_time ON audit_events (time);`,

	// Version 3: a version per user (users.User.Version), which Update
	// and Delete compare and Update raises by one. Users stored before
	// start at 1, as Create starts them.
	`ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 1 CHECK (version > 0);`,

	// Version 4: second factors (users.Factors) and sign-in challenges.
	//
	// The REFERENCES clauses say what the rows belong to, but SQLite
	// enforces them only on connections that turn foreign_keys on, which
	// sessiond's do not: the trigger deletes a user's factors with the
	// user, and the writes that add a factor check in the same statement
	// that the user exists. Challenges are keyed by the SHA-256 hash of
	// their ID and expire by themselves.
	`CREATE TABLE user_totp (
		user_id    TEXT    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
		secret     BLOB    NOT NULL CHECK (length(secret) > 0),
		confirmed  INTEGER NOT NULL CHECK (confirmed IN (0, 1)),
		last_step  INTEGER NOT NULL CHECK (last_step >= 0),
		created_at INTEGER
	) STRICT;
	CREATE TABLE user_recovery_codes (
		user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		hash    BLOB NOT NULL,
		PRIMARY KEY (user_id, hash)
	) STRICT, WITHOUT ROWID;
	CREATE TABLE user_passkeys (
		credential_id    BLOB    NOT NULL PRIMARY KEY CHECK (length(credential_id) BETWEEN 1 AND 1023),
		user_id          TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		name             TEXT    NOT NULL,
		public_key       BLOB    NOT NULL,
		attestation_type TEXT    NOT NULL,
		aaguid           BLOB    NOT NULL,
		sign_count       INTEGER NOT NULL CHECK (sign_count BETWEEN 0 AND 4294967295),
		transports       TEXT    NOT NULL CHECK (json_valid(transports) AND json_type(transports) = 'array'),
		user_verified    INTEGER NOT NULL CHECK (user_verified IN (0, 1)),
		backup_eligible  INTEGER NOT NULL CHECK (backup_eligible IN (0, 1)),
		backup_state     INTEGER NOT NULL CHECK (backup_state IN (0, 1)),
		created_at       INTEGER,
		last_used_at     INTEGER
	) STRICT;
	CREATE INDEX user_passkeys_user_id ON user_passkeys (user_id);
	CREATE TABLE challenges (
		id_hash    BLOB    NOT NULL PRIMARY KEY,
		kind       TEXT    NOT NULL,
		user_id    TEXT    NOT NULL,
		data       BLOB    NOT NULL,
		expires_at INTEGER NOT NULL
	) STRICT;
	CREATE INDEX challenges_expires_at ON challenges (expires_at);
	CREATE TRIGGER users_delete_factors AFTER DELETE ON users BEGIN
		DELETE FROM user_totp WHERE user_id = OLD.id;
		DELETE FROM user_recovery_codes WHERE user_id = OLD.id;
		DELETE FROM user_passkeys WHERE user_id = OLD.id;
	END;`,
}

// migrate brings this package's schema in db up to date
// (sqlitefile.MigrateComponent). Open runs it (through sqlitefile) and
// prefixes its errors.
func migrate(ctx context.Context, db *sql.DB) error {
	return sqlitefile.MigrateComponent(ctx, db, component, migrations)
}
