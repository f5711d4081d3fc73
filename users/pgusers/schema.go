package pgusers

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

	// Version 2: an index on the time of events, for the retention sweep
	// (DeleteBefore), which deletes the oldest events first. On a large
	// log, building it blocks Appends (not Queries) for as long as that
	// takes, once, when the first instance of the new version starts.
	// (CREATE INDEX CONCURRENTLY would not, but cannot run in the
	// migration's transaction.)
	`CREATE INDEX sessiond_audit_events_time ON sessiond_audit_events (time);`,

	// Version 3: a version per user (users.User.Version), which Update
	// and Delete compare and Update raises by one. Users stored before
	// start at 1, as Create starts them. (A constant default fills the
	// existing rows without rewriting the table.)
	`ALTER TABLE sessiond_users ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version > 0);`,

	// Version 4: second factors (users.Factors) and sign-in challenges.
	// A user's factors go with the user (ON DELETE CASCADE). Challenges
	// are keyed by the SHA-256 hash of their ID and expire by themselves.
	// Passkeys are listed in the order seq gives them, oldest first.
	`CREATE TABLE sessiond_user_totp (
		user_id    text        NOT NULL PRIMARY KEY REFERENCES sessiond_users (id) ON DELETE CASCADE,
		secret     bytea       NOT NULL CHECK (octet_length(secret) > 0),
		confirmed  boolean     NOT NULL,
		last_step  bigint      NOT NULL CHECK (last_step >= 0),
		created_at timestamptz
	);
	CREATE TABLE sessiond_user_recovery_codes (
		user_id text  NOT NULL REFERENCES sessiond_users (id) ON DELETE CASCADE,
		hash    bytea NOT NULL,
		PRIMARY KEY (user_id, hash)
	);
	CREATE TABLE sessiond_user_passkeys (
		credential_id    bytea       NOT NULL PRIMARY KEY CHECK (octet_length(credential_id) BETWEEN 1 AND 1023),
		seq              bigint      GENERATED ALWAYS AS IDENTITY,
		user_id          text        NOT NULL REFERENCES sessiond_users (id) ON DELETE CASCADE,
		name             text        NOT NULL,
		public_key       bytea       NOT NULL,
		attestation_type text        NOT NULL,
		aaguid           bytea       NOT NULL,
		sign_count       bigint      NOT NULL CHECK (sign_count BETWEEN 0 AND 4294967295),
		transports       text[]      NOT NULL,
		user_verified    boolean     NOT NULL,
		backup_eligible  boolean     NOT NULL,
		backup_state     boolean     NOT NULL,
		created_at       timestamptz,
		last_used_at     timestamptz
	);
	CREATE INDEX sessiond_user_passkeys_user_id ON sessiond_user_passkeys (user_id, seq);
	CREATE TABLE sessiond_challenges (
		id_hash    bytea       NOT NULL PRIMARY KEY,
		kind       text        NOT NULL,
		user_id    text        NOT NULL,
		data       bytea       NOT NULL,
		expires_at timestamptz NOT NULL
	);
	CREATE INDEX sessiond_challenges_expires_at ON sessiond_challenges (expires_at);`,
}

// Advisory lock key. PostgreSQL keeps the one-key (bigint) and the
// two-key (int4, int4) forms apart, so the key below never collides
// with pgmigrate.Lock, the one-key lock every sessiond component takes to
// migrate.
const (
	// appendLockClass, with the second key 0, serialises Appends: "audi".
	appendLockClass int32 = 0x61756469
	// adminLockClass, with the second key 0, serialises the changes that
	// take an enabled admin away (see change): "admn".
	adminLockClass int32 = 0x61646d6e
)
