// Package sqliteusers keeps sessiond's accounts (a users.Directory) and its
// audit log (an audit.Log) in a SQLite database file, using
// modernc.org/sqlite, a pure-Go SQLite, so it needs no cgo.
//
// # One file with the sessions
//
// By default sessiond keeps sessions, accounts and the audit log in one
// file: Open may be given the path store/sqlitestore uses, and the two
// packages' tables live side by side, each package reaching them through
// its own connections. PRAGMA user_version belongs to sqlitestore; this
// package keeps its own schema version in the row ("users", version) of the
// table schema_versions, which other components may share, one row each.
// Open creates or upgrades the schema in one IMMEDIATE transaction, so
// several processes may open a new file at once.
//
// # Durability and sharing
//
// The settings are the session store's, because both packages open the
// file through internal/sqlitefile: WAL mode, synchronous=FULL (a commit
// is synced to stable storage before Create, Update or Append returns), a
// five-second busy_timeout, and write transactions that begin IMMEDIATE. Several DBs, in one process or in several, may share a file;
// each sees the others' commits at its next read. The file must be on a
// local filesystem (see store/sqlitestore for why).
//
// # What is stored
//
// The table users holds, for each account, its ID, username (unique,
// compared exactly, case and all), roles as a JSON array, disabled flag,
// argon2id password hash, times and version. Update and Delete check the
// version, and that an enabled admin remains, in the write transaction
// that makes the change, which holds the file's write lock: changes from
// several processes take turns. A password is never stored, only its
// hash; but hashes can be attacked offline, so a file that Open creates
// gets mode 0600 before anything is written to it, and a directory it
// creates gets mode 0700.
//
// The table audit_events holds the audit log, one row per event, with IDs
// that only grow (AUTOINCREMENT: an ID is never reused, even after the
// newest events are deleted), indexed for the queries audit.Filter
// allows and by time. It holds what callers append: callers must not put
// tokens or passwords in an event (audit.Event has no field for either).
// DeleteBefore (audit.Pruner) deletes the events older than a given time,
// oldest first, a batch per call; sessiond's periodic sweep calls it to
// keep --audit-retention's worth of events (90 days by default).
//
// Second factors (users.Factors) are in user_totp (the TOTP secret, as
// it is: it must be readable to check codes, so the file's protection is
// its protection), user_recovery_codes (SHA-256 hashes of the codes,
// never the codes), user_passkeys (public keys only) and challenges
// (short-lived sign-in state, keyed by the SHA-256 hash of the challenge
// ID, with a bounded sweep of expired ones on each put and expiry checked
// on every read against the host's clock). A trigger deletes a user's
// factors with the user. The checks that settle races (a TOTP step used
// once, a recovery code or a challenge taken once, at most
// users.MaxPasskeys passkeys, ResetFactors from one version) are single
// statements or write transactions, which hold the file's write lock.
//
// Times are stored as INTEGER nanoseconds since the Unix epoch and read
// back in UTC; the zero time is stored as NULL. A time that int64
// nanoseconds cannot hold (before 1678 or after 2262) is refused.
package sqliteusers
