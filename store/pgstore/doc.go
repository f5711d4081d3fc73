// Package pgstore keeps sessions in PostgreSQL (12 or later), through
// github.com/jackc/pgx/v5 and its connection pool. It is the store for
// running several sessiond instances, or several applications using the
// session library, on one shared database.
//
//	st, err := pgstore.Open(ctx, "postgres://sessiond@db.internal/app?sslmode=verify-full&search_path=sessiond")
//	if err != nil {
//		return err
//	}
//	defer st.Close()
//	m, err := session.New(st, session.Config{})
//
// Open takes a postgres:// URL or key=value pairs as libpq and pgx read
// them; pool_max_conns sizes the pool. Store implements session.Sweeper
// too (see Sweeper below).
//
// # Durability
//
// Every write is one statement or one transaction that PostgreSQL has
// committed before Create, Update, Touch or Delete returns. With the
// server's default synchronous_commit=on, a commit is in the write-ahead
// log on stable storage before it is acknowledged, so an acknowledged
// session survives sessiond being killed (kill -9) and PostgreSQL crashing.
// A server configured with synchronous_commit=off acknowledges commits it
// can still lose in a crash; Open turns the setting on for its own
// connections in that case, unless the connection URL sets
// synchronous_commit itself (set it there to choose, for instance,
// remote_apply, so that a session survives a failover to a synchronous
// standby). Backups are PostgreSQL's (pg_dump, base backups with WAL
// archiving).
//
// # Several instances
//
// Any number of Stores, in one process or on many hosts, may share one
// database: all state is in it, and every read goes to it, so a revocation
// by one instance holds for every instance at once. Point every instance at
// the primary: a read from an asynchronous replica could still find a
// session the primary has revoked.
//
// Concurrent writes are safe without any lock in sessiond: Update is a
// compare-and-swap on the version column, and Touch and Update only move
// LastSeenAt and IdleDeadline forward, in one UPDATE each. A Create with a
// Limit counts, evicts and inserts in one transaction that first takes the
// transaction-scoped advisory lock (0x73657373, FNV-1a of the user ID), so
// concurrent logins of one user, through any number of instances, never
// exceed the limit; logins of different users do not wait for each other
// (unless their IDs' 32-bit hashes collide, which only makes them take
// turns).
//
// Open creates or upgrades the schema in one transaction holding the
// advisory lock 0x73657373696f6e64 ("sessiond"), so several instances may
// start at once against a new database: one applies the migrations, the
// others wait and find them done. Applied migrations are recorded in the
// table sessiond_schema_migrations, one row per component ("sessions"
// here, "users" for users/pgusers) and version; Open refuses a schema newer
// than the program. A migration must only add (tables, columns with
// defaults, indexes), so that instances still running the previous
// version keep working while the next one migrates; every statement names
// its columns, so an added column changes no result they read.
//
// The tables are named sessiond_*, and live in the first schema of the
// connection's search_path (public by default), so sessiond can share a
// database with an application; to keep them apart entirely, give sessiond
// a schema of its own with search_path in the URL
// (postgres://host/db?search_path=sessiond).
//
// # Expiry and clocks
//
// Expiry is enforced on read by the database's clock: every lookup, list,
// count, Touch and Update ignores sessions whose idle or absolute deadline
// is not after now() (the start of the statement's transaction on the
// PostgreSQL server), whether or not they have been swept. One clock,
// shared by every instance, decides: two instances never disagree about
// whether a session is live, however far their own clocks drift apart.
// The deadlines themselves are computed by the session.Manager from its
// host's clock (now plus the idle or absolute timeout), and the Manager
// also refuses a session that its own clock says has expired, so a host
// whose clock runs slow by d cannot stretch a session beyond its deadline,
// while one that runs fast by d ends sessions up to d early and writes
// deadlines d late. Keep the hosts' clocks synchronised (NTP) all the same.
//
// # Sweeper
//
// Expired rows stay until DeleteExpired (session.Sweeper) removes them;
// the Manager calls it periodically (Manager.Sweep). It deletes at most
// limit sessions per call, those that expired first, using the index on
// expires_at, and counts a session as expired by the earlier of the
// caller's clock and the database's, so a sweeper on a host whose clock
// runs fast cannot delete a session that reads still accept. Sweepers on
// several instances may run at once: each locks the rows it picks with FOR
// UPDATE SKIP LOCKED, so they take disjoint batches, report each deleted
// session exactly once, and never wait for each other or for a request
// that is updating a session.
//
// # What is stored
//
// Each session is one row of sessiond_sessions, with a column per field:
// bytea hashes (token_hash UNIQUE, prev_token_hash indexed while set),
// roles as text[], times as timestamptz, app data as bytea (kept byte for
// byte), and expires_at generated from the two deadlines. Times keep
// microseconds, the resolution the session.Store contract asks for;
// finer parts of a time.Time are truncated. Tokens are never stored, only
// their SHA-256 hashes, so a dump of the table holds no usable credential;
// it does hold user IDs, IP addresses, user agents and application data:
// restrict access to the database accordingly (and use sslmode=verify-full
// for a server that is not on the same host). A row that cannot be decoded
// (written behind the Store's back) is reported as an error wrapping
// session.ErrInvalidRecord, which the Manager treats as an invalid session.
//
// Statements are prepared once per connection and cached (pgx's default),
// so validating a token (ByHash) costs one round trip to the server and one
// descent of the token_hash index. Behind a connection pooler in
// transaction mode (PgBouncer before 1.21), prepared statements do not
// work: add default_query_exec_mode=exec or simple_protocol to the URL.
package pgstore
