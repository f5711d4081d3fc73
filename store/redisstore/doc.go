// Package redisstore keeps sessions in Redis: a single server, a server
// watched by Sentinel, or a Redis Cluster. It needs Redis 7.0 or later (or
// a server compatible with it, such as Valkey) with Lua scripting, and
// uses github.com/redis/rueidis, whose client-side cache, kept coherent by
// Redis (RESP3 client tracking), serves most lookups of a token from the
// memory of the process.
//
// Redis removes expired sessions by itself, so Store implements
// session.Store but not session.Sweeper.
//
// # URLs
//
// Open takes one of these URLs:
//
//	redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]
//	rediss://[[USER]:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]
//	redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]…][/DB]?master=NAME[&OPTIONS]
//	rediss+sentinel://…
//	redis+cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]…][?OPTIONS]
//	rediss+cluster://…
//
// redis:// is one server (port 6379 by default; DB is the database number,
// 0 by default). rediss:// is the same over TLS 1.2 or later, verifying the
// server's certificate against the system's roots, or those in ca_file, and
// its name against HOST, or server_name. redis+sentinel:// lists Sentinels
// (port 26379 by default); they name the master of the set NAME, which the
// Store follows through failovers. USER and PASSWORD are the master's; the
// Sentinels' own are the options sentinel_username and sentinel_password.
// redis+cluster:// lists some nodes of a Redis Cluster, which tell the
// Store the rest; it has database 0 only. Percent-escape '@', ':' and '%' in
// USER and PASSWORD; IPv6 addresses go in brackets. Examples:
//
//	redis://127.0.0.1:6379/0
//	rediss://:s3cret@redis.internal:6380/?ca_file=/etc/sessiond/redis-ca.pem
//	redis+sentinel://10.0.0.1,10.0.0.2,10.0.0.3/?master=sessions
//	redis+cluster://10.0.1.1:7000,10.0.1.2:7000/?prefix=app1:
//
// OPTIONS are query parameters:
//
//	prefix=P           start every key with P (default "sessiond:"), so that
//	                   several applications can share one Redis; P must not
//	                   contain '{' or '}'
//	cache=MODE         fenced (default), off or unsafe-unfenced: see
//	                   "Client-side cache"
//	cache_ttl=D        how long a cached record may be kept at most
//	                   (default 1m); Redis's invalidations, not this, keep
//	                   the cache correct
//	timeout=D          how long one operation may take, reconnecting and
//	                   retrying included, before it fails (default 2s);
//	                   also the dial timeout
//	master=NAME        the Sentinel master set (redis+sentinel:// only)
//	sentinel_username, sentinel_password
//	ca_file=PATH       PEM CA certificates for rediss schemes
//	server_name=NAME   the name the server's certificate must have
//	client_name=NAME   the connections' CLIENT SETNAME (default "sessiond")
//
// # Keys
//
// With the default prefix, a session with public ID ID of user UID has:
//
//	sessiond:{u:UID}:s:ID   its record: a string, a MessagePack array of its
//	                        fields, UID and ID excepted (they are in the
//	                        key); about 130 bytes plus its user agent and
//	                        app data
//	sessiond:{u:UID}:z      the user's index: a sorted set of the user's
//	                        session IDs scored by creation time (µs)
//	sessiond:h:H            token pointer: "ID}UID", where H is the first
//	                        128 bits of the token hash, base64url; one for
//	                        the current token, one for the previous one
//	                        during a rotation's grace window
//	sessiond:i:ID           ID pointer: UID
//
// The hash tag {u:UID} puts the record and index keys of a user in one
// Redis Cluster slot, so that every change to a user's sessions is one Lua
// script, atomic on Cluster as on one server: Create counts the user's
// live sessions, evicts the oldest or refuses, and inserts, in one step;
// Update compares the stored Version and swaps (CAS); Touch moves the last
// use and idle deadline forward only, keeping the Version; Delete,
// DeleteByUser and ListByUser work from the index, dropping entries whose
// records Redis has expired. Every key expires (PEXPIREAT) at the session's
// earlier deadline; Touch and Update push the expiry of all of them
// forward, never back; the index expires with its longest-lived session.
// The store never runs KEYS, SCAN or CONFIG. An ACL user for it needs the
// keys ~PREFIX* (~sessiond:* by default) and the commands GET, SET, DEL,
// PTTL, PEXPIREAT, EVAL, EVALSHA, INFO, PING, MULTI, EXEC, HELLO, SELECT
// and CLIENT (rueidis turns tracking on and names its connections), and in
// the scripts EXISTS, PEXPIRETIME and the sorted-set commands ZADD, ZRANGE,
// ZRANDMEMBER and ZREM; on Cluster also CLUSTER SHARDS or CLUSTER SLOTS.
//
// Looking a session up by token hash or by public ID cannot know the user,
// so it goes through a pointer, which lives in another slot than the
// record and so cannot be written in the same atomic step. The record is
// the truth: a session exists if and only if its record does, and every
// lookup checks the record it reaches (its full token hash, its
// deadlines). A pointer is a hint; one left pointing at nothing, or at a
// session that has since rotated its token, finds nothing. Writes are
// ordered so that a live record never lacks its pointers: Create and Update
// write new pointers before the record, and deletions remove the record
// before its pointers; pointers never expire before their record. A crash
// between the steps leaves at worst a pointer to nothing, which expires
// when the session would have.
//
// Session IDs must not contain '}' (Create refuses them: the session
// package never makes such IDs), and Update cannot move a session to
// another user.
//
// # Client-side cache
//
// rueidis can keep the replies of reads in the process (one cache per
// connection), and Redis tells it, on the same connection, when a key it
// read changes (client tracking), whereupon rueidis drops the copy. ByHash
// reads the token pointer and the record this way. The invalidation is
// asynchronous, though: Redis sends it before it acknowledges the write,
// but the other process applies it only when it reads it, so for a moment
// after a revocation has been acknowledged another instance can still
// serve the revoked session from its cache. TestCacheUnfencedStaleness
// measures that moment: with two Stores in one process, on a lightly loaded
// machine, 5 to 25% of the lookups made right after another instance
// deleted, rotated or changed a session returned the old one. Within one
// Store it does not happen: each write that ends or changes a session
// (Delete, DeleteByUser, Update, an eviction by Create) ends with a round
// trip on the connection that caches the record, which the invalidation
// precedes.
//
// The default mode, fenced, closes that window. Before using a cached
// record, ByHash makes one round trip (PTTL of the record key) on the
// connection that caches it; the Store keeps one connection per server for
// that. Redis executes it after every write acknowledged before the lookup
// began, and replies after the invalidations that write caused, which
// rueidis applies in order, so the cached copy read next is at least as
// new as that moment. A lookup therefore costs one round trip instead of
// two (pointer, then record), and never serves a session whose revocation
// was acknowledged before it started. If the connection is lost, the round
// trip fails and the lookup with it: a lookup fails closed.
// TestCacheNeverServesRevoked checks this 200 times in a row for each of
// deletion, rotation and a change of roles, and the Cluster test on three
// masters.
//
// cache=off reads everything from Redis; cache=unsafe-unfenced skips the
// fence (no round trip at all on a cache hit) and so gives up the
// guarantee above: use it only where serving a revoked session for a
// moment is acceptable. Caching costs Redis memory for the tracking table
// (tracking-table-max-keys: when full, Redis invalidates old entries, which
// stays correct) and the process up to 128 MiB per connection.
//
// # Expiry and clocks
//
// Redis removes a session's keys when its clock passes the session's
// earlier deadline (rounded up to the millisecond). Every read also checks
// the deadlines against the local clock, and the scripts against the
// clock of the process that calls them, so an expired session is never
// returned even if Redis has not removed it yet. Keep the clocks of Redis
// and of the sessiond hosts in sync (NTP): a Redis clock ahead of the
// hosts' ends sessions early by the difference. Times are kept to the
// microsecond between the years 1685 and 2255 (Lua numbers hold integers up
// to 2^53); times outside that range are clamped to it, which keeps their
// order relative to the present, and the zero time.Time is kept as such.
//
// # Failures
//
// An operation that cannot reach Redis, or does not get an answer within
// the timeout, returns an error, never session.ErrNotFound, so callers
// fail closed. The Store reconnects by itself when Redis is back. A record
// the Store cannot decode is reported as an error wrapping
// session.ErrInvalidRecord. Removing the pointers of a deleted session is
// best-effort: a failure there leaves pointers to nothing, which expire
// with the session.
//
// # Memory
//
// Each session costs four keys' worth of Redis bookkeeping, which is more
// than its data. TestMemoryPerSession stores 100,000 sessions shaped as
// sessiond makes them (a 202-byte record: 111-byte user agent, IPv4, one
// role, no app data) in Redis 7.0 and finds, per session, 720 bytes by
// MEMORY USAGE (record 328, token pointer 136, ID pointer 120, index 136)
// and 966 bytes of used_memory for users with one session each; 646 and
// 830 to 860 bytes with four sessions per user, who share an index. That is above
// the 512 bytes of DESIGN.md: Redis spends 60 to 100 bytes on every key
// (its dictionary entry, key string, object header and expiry entry) and
// this layout needs two pointers per session, each a key of its own so that
// Redis can expire it. Per-field expiry (HEXPIRE, Redis 7.4, Valkey 9)
// would let the pointers, and the records, be fields of a few hashes
// instead, at about half the cost.
package redisstore
