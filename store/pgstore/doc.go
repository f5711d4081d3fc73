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
// them; pool_max_conns sizes the pool, and cache, cache_entries and
// cache_bytes set the Store's cache (see Cache below). Store implements
// session.Sweeper too (see Sweeper below).
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
// database: all state is in it, and a revocation by one instance holds for
// every instance at once, cache or no cache (see Cache below). Point every
// instance at the primary: a read from an asynchronous replica could still
// find a session the primary has revoked.
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
// # Cache
//
// By default each Store keeps the sessions its lookups by token hash
// (ByHash, the lookup of every request) have read, and answers later
// lookups of the same tokens from memory. The guarantee of a database
// read holds for every change that ends or narrows a session through a
// Store (Delete, DeleteByUser, Update, an eviction by Create): once it has
// returned, no lookup through any Store that begins afterwards returns
// what it ended or replaced. Other changes (Touch, a sweep, any UPDATE or
// DELETE of the row from elsewhere, even from psql) reach every Store's
// lookups within 20 ms of being acknowledged. A cached session expires at
// its deadline by the database's clock, as a stored one does.
//
// How: a trigger on the table sends a notification (NOTIFY) in the
// transaction of every change; each Store LISTENs on a connection of its
// own and drops the copy a notification names. A fence is a round trip on
// that connection: a change acknowledged before the fence was sent has
// signalled the listening backend, which sends pending notifications
// before it answers the fence, on the same connection, which the Store
// reads in order; so once the reply has been read, the cache has dropped
// every copy such a change replaced. A lookup that begins within 20 ms of
// the sending of the latest answered fence (the lease) answers from the
// cache at once, and sends a fence without waiting for it when less than
// half the lease is left; a lookup that begins later waits for a fence
// sent after it began, which concurrent lookups share. The writers pay for
// the lease: Delete, DeleteByUser, Update, and a Create that evicts,
// return 25 ms after the database reported the change committed, so a
// lookup that begins after one has returned rests on a fence sent after
// the change, on whichever instance. Every Store waits so, cache or no
// cache. Only intervals, each measured on one host's monotonic clock, enter
// the argument: the hosts' clocks need not agree. docs/stores/postgres.md,
// in the source tree, has it in full.
//
// The cache fails closed. While the listening connection is down, or a
// fence goes unanswered for a second, lookups read the database and the
// cache is neither used nor filled; the lease ends with the connection.
// The Store reconnects by itself, and empties the cache when it does,
// since notifications sent meanwhile are lost. A failing database fails
// lookups, as without the cache.
//
// The URL's parameters for it:
//
//	cache=off          no cache: every lookup reads the database (default on)
//	cache_entries=N    at most N sessions cached (default 100000)
//	cache_bytes=SIZE   at most SIZE of cached sessions, in bytes or with
//	                   KiB, MiB or GiB (default 64MiB)
//
// Past either bound the cache evicts sessions not used lately (CLOCK). A
// cached session takes about its encoded size (300 bytes for a session as
// sessiond makes it) and 150 bytes of index; each is one object for the
// garbage collector. The cache costs each instance one more connection,
// idle but for fences: under load, one every 10 ms or so. The listening connection must be a server session
// of its own from LISTEN on: behind a pooler in transaction or statement
// mode, set cache=off. (A fence answered by another backend than the one
// that ran LISTEN fails, which keeps the cache unused in most such setups,
// but a pooler that hands the same backend back after dropping its
// notifications would go unnoticed.)
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
// so validating a token that is not in the cache (ByHash) costs one round
// trip to the server and one descent of the token_hash index. Behind a
// connection pooler in transaction mode (PgBouncer before 1.21), prepared
// statements do not work: add default_query_exec_mode=exec or
// simple_protocol to the URL, and cache=off.
package pgstore
