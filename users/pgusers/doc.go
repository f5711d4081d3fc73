// Package pgusers keeps sessiond's accounts (a users.Directory) and its
// audit log (an audit.Log) in PostgreSQL (12 or later), through
// github.com/jackc/pgx/v5 and its connection pool.
//
// # One database with the sessions
//
// The database may be the one store/pgstore keeps sessions in: the two
// packages' tables (sessiond_users and sessiond_audit_events here,
// sessiond_sessions there) live side by side, each package reaching them
// through its own pool. Each records its migrations in the shared table
// sessiond_schema_migrations, under its own component ("users" here), and
// both take the same advisory lock (0x73657373696f6e64) for the
// transaction that migrates, so any mix of instances of either may start
// at once against a new database. Open refuses a schema newer than the
// program. The tables live in the first schema of the connection's
// search_path (set search_path in the URL to give sessiond a schema of its
// own).
//
// # Durability and several instances
//
// Every write is committed before Create, Update or Append returns; with
// synchronous_commit on (which Open makes sure of for its connections,
// unless the URL sets it otherwise: see store/pgstore) it is on stable
// storage by then. Any number of DBs, on any number of hosts, may share
// the database, and each sees the others' commits at once. Point them all
// at the primary.
//
// # Clock
//
// Accounts and events are stored with the times their callers give them
// (users.Accounts and the server stamp them from their host's clock).
// Only challenges (users.Factors) read a clock: their expiry is checked
// against the host's, so keep the instances' clocks in sync (NTP).
//
// # What is stored
//
// The table sessiond_users holds, for each account, its ID, username
// (unique, compared and ordered byte by byte: COLLATE "C"), roles as
// text[], disabled flag, argon2id password hash, times and version. A
// password is never stored, only its hash; but hashes can be attacked
// offline, so restrict access to the database (and to its backups)
// accordingly.
//
// Update and Delete run in a transaction that locks the user's row, so
// that of two changes from one version only one is made. A change that
// takes an enabled admin away also takes the advisory lock (0x61646d6e,
// 0) before it looks for another enabled admin, so that changes from
// several instances that each remove one of the last two admins take
// turns, and the second fails with users.ErrLastAdmin.
//
// The table sessiond_audit_events holds the audit log, one row per event,
// indexed for the queries audit.Filter allows. Its IDs come from an
// identity column, so an ID is never reused, even after the newest events
// are deleted, and Append serialises inserts with an advisory lock
// (0x61756469, 0) so that events commit in the order of their IDs: a
// reader paging back with Filter.Before never has an older event appear
// behind its cursor. It holds what callers append: callers must not put
// tokens or passwords in an event (audit.Event has no field for either).
// DeleteBefore (audit.Pruner) deletes the events older than a given time,
// oldest first, a batch per call, found in an index on time; sessiond's
// periodic sweep calls it to keep --audit-retention's worth of events (90
// days by default). Sweeps of several instances at once skip each other's
// rows (FOR UPDATE SKIP LOCKED) rather than wait for them.
//
// Second factors (users.Factors) are in sessiond_user_totp (the TOTP
// secret, as it is: it must be readable to check codes, so restrict access
// to the database), sessiond_user_recovery_codes (SHA-256 hashes of the
// codes, never the codes), sessiond_user_passkeys (public keys only) and
// sessiond_challenges (short-lived sign-in state, keyed by the SHA-256
// hash of the challenge ID; each put sweeps a bounded batch of expired
// ones, skipping rows another instance's sweep holds). A user's factors go
// with the user (ON DELETE CASCADE). The races are settled by single
// statements (a TOTP step used once, a recovery code or a challenge taken
// once) or by locking the user's row (at most users.MaxPasskeys passkeys;
// ResetFactors from one version, as Update).
//
// Times are stored as timestamptz, to the microsecond (finer parts of a
// time.Time are truncated), and read back in UTC; the zero time is stored
// as NULL.
package pgusers
