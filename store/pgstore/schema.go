package pgstore

// component names this package's rows in sessiond_schema_migrations.
const component = "sessions"

// migrations are the schema changes in order: migrations[i] takes this
// package's tables from version i to version i+1. Append to the list; never
// edit an entry that has shipped.
var migrations = []string{
	// Version 1: the sessions table.
	//
	// Times are timestamptz: microseconds, the resolution the Store
	// contract asks for, compared directly with the server's clock
	// (now()), readable in psql, and wide enough (4713 BC to 294276 AD)
	// for any deadline without clamping. expires_at is generated, so it
	// can never disagree with the deadlines it summarises. The CHECKs
	// catch the malformed values a type cannot; row.session checks again
	// on the way out, in case a row was written behind the Store's back.
	//
	// token_hash is UNIQUE (a B-tree index: ByHash is one descent of it);
	// the index of previous tokens holds only sessions within a rotation's
	// grace window. (user_id, created_at, id) serves ListByUser in order
	// and the limit's count; expires_at serves the sweeper.
	`CREATE TABLE sessiond_sessions (
		id                text        NOT NULL PRIMARY KEY,
		token_hash        bytea       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
		prev_token_hash   bytea                CHECK (octet_length(prev_token_hash) = 32),
		user_id           text        NOT NULL,
		roles             text[]      NOT NULL CHECK (cardinality(roles) = 0 OR (array_ndims(roles) = 1 AND array_position(roles, NULL) IS NULL)),
		created_at        timestamptz NOT NULL,
		authenticated_at  timestamptz NOT NULL,
		rotated_at        timestamptz NOT NULL,
		last_seen_at      timestamptz NOT NULL,
		idle_deadline     timestamptz NOT NULL,
		absolute_deadline timestamptz NOT NULL,
		expires_at        timestamptz NOT NULL GENERATED ALWAYS AS (LEAST(idle_deadline, absolute_deadline)) STORED,
		remember          boolean     NOT NULL,
		created_ip        text        NOT NULL,
		created_ua        text        NOT NULL,
		last_ip           text        NOT NULL,
		last_ua           text        NOT NULL,
		data              bytea,
		version           bigint      NOT NULL
	);
	CREATE INDEX sessiond_sessions_prev_token_hash ON sessiond_sessions (prev_token_hash) WHERE prev_token_hash IS NOT NULL;
	CREATE INDEX sessiond_sessions_user_id ON sessiond_sessions (user_id, created_at, id);
	CREATE INDEX sessiond_sessions_expires_at ON sessiond_sessions (expires_at);`,

	// Version 2: how the user proved who they are (session.Session.AMR),
	// a text[] as roles is. Sessions stored before have none.
	`ALTER TABLE sessiond_sessions ADD COLUMN amr text[] NOT NULL DEFAULT '{}'
		CHECK (cardinality(amr) = 0 OR (array_ndims(amr) = 1 AND array_position(amr, NULL) IS NULL));`,

	// Version 3: every change or removal of a session notifies the
	// channel sessiond_sessions_OID (OID: the table's, so that the tables
	// of several schemas of one database keep apart), in the transaction
	// that makes it, so that the notification is delivered exactly when
	// the change commits (see Cache in the package doc). The payload is
	// the session's ID; an empty one (TRUNCATE, or an ID too long for a
	// payload, which no Store makes) ends every cached session. Inserts
	// notify nothing: the cache holds only sessions it has read.
	`CREATE FUNCTION sessiond_sessions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF TG_LEVEL = 'ROW' THEN
			IF octet_length(OLD.id) <= 256 THEN
				PERFORM pg_notify('sessiond_sessions_' || TG_RELID::text, OLD.id);
				RETURN NULL;
			END IF;
		END IF;
		PERFORM pg_notify('sessiond_sessions_' || TG_RELID::text, '');
		RETURN NULL;
	END $$;
	CREATE TRIGGER sessiond_sessions_notify AFTER UPDATE OR DELETE ON sessiond_sessions
		FOR EACH ROW EXECUTE FUNCTION sessiond_sessions_notify();
	CREATE TRIGGER sessiond_sessions_notify_truncate AFTER TRUNCATE ON sessiond_sessions
		FOR EACH STATEMENT EXECUTE FUNCTION sessiond_sessions_notify();`,
}

// Advisory lock key. PostgreSQL keeps the one-key (bigint) and the
// two-key (int4, int4) forms apart, so the key below never collides
// with pgmigrate.Lock, the one-key lock every sessiond component takes to
// migrate; other applications' keys in the same database might, which
// would only make them wait for one another.
const (
	// userLockClass is the first key of the per-user lock a Create with a
	// Limit takes (the second is userKey of the user ID): "sess".
	userLockClass int32 = 0x73657373
)
