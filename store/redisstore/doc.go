// Package redisstore keeps sessions in Redis: one server, a server watched
// by Sentinel, or a Redis Cluster. It needs Redis 7.0 or later (or a
// server compatible with it, such as Valkey) and uses
// github.com/redis/rueidis, whose client-side cache, kept coherent by
// Redis (RESP3 client tracking), answers most token lookups from the
// memory of the process.
//
// Open takes a URL and returns a Store for a session.Manager:
//
//	st, err := redisstore.Open(ctx, "redis+sentinel://10.0.0.1,10.0.0.2/?master=sessions")
//	if err != nil {
//		return err
//	}
//	defer st.Close()
//	m, err := session.New(st, session.Config{})
//
// Any number of Stores, in one process or on many hosts, may share one
// Redis. Redis removes expired sessions itself: Store is no
// session.Sweeper. How the package works (keys, scripts, the fence,
// replication, memory) is in docs/stores/redis.md in the source tree.
//
// # URLs
//
//	redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]
//	rediss://[[USER]:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]
//	redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]…][/DB]?master=NAME[&OPTIONS]
//	redis+cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]…][?OPTIONS]
//
// redis:// is one server (port 6379 by default; DB is the database number,
// 0 by default). redis+sentinel:// lists Sentinels (port 26379 by
// default), which name the master of the set NAME; the Store follows them
// through failovers. USER and PASSWORD are the master's; the Sentinels'
// own are the options sentinel_username and sentinel_password.
// redis+cluster:// lists some nodes of a Redis Cluster, which tell the
// Store the rest; a Cluster has database 0 only. rediss://,
// rediss+sentinel:// and rediss+cluster:// are the same over TLS 1.2 or
// later, verifying each server's certificate against the system's roots,
// or those in ca_file, and its name against the host dialled, or
// server_name. Percent-escape '@', ':' and '%' in USER and PASSWORD; IPv6
// addresses go in brackets. Examples:
//
//	redis://127.0.0.1:6379/0
//	rediss://:s3cret@redis.internal:6380/?ca_file=/etc/sessiond/redis-ca.pem
//	redis+sentinel://10.0.0.1,10.0.0.2,10.0.0.3/?master=sessions&wait_replicas=1
//	redis+cluster://10.0.1.1:7000,10.0.1.2:7000/?prefix=app1:
//
// OPTIONS are query parameters:
//
//	prefix=P           start every key with P (default "sessiond:"), so that
//	                   several applications can share one Redis; no '{' or
//	                   '}', and 13 bytes at most to keep keys small
//	cache=MODE         fenced (the default), off or unsafe-unfenced: see
//	                   CacheMode
//	cache_ttl=D        the longest a cached record is kept (default 1m; a
//	                   token pointer, which only leads to a record, is kept
//	                   up to 1h); Redis's invalidations, not this, keep the
//	                   cache right
//	timeout=D          the longest one operation may take, reconnecting and
//	                   retrying included, before it fails (default 2s);
//	                   also the dial timeout
//	wait_replicas=N    how many replicas must have a change that ends or
//	                   narrows a session before it is reported done: auto
//	                   (the default), 0 (never wait) or a number
//	wait_timeout=D     how long to wait for them (default half of timeout);
//	                   shorter than timeout
//	master=NAME        the Sentinel master set (Sentinel URLs only)
//	sentinel_username, sentinel_password
//	ca_file=PATH       PEM CA certificates (rediss schemes only)
//	server_name=NAME   the name the certificates must have (rediss only)
//	client_name=NAME   the connections' CLIENT SETNAME (default "sessiond")
//
// # Guarantees
//
// A revocation holds on every instance at once: once Delete, DeleteByUser,
// Update or an eviction by Create has returned, no lookup that starts
// afterwards, through any Store on the same Redis, returns what it ended.
// With cache=fenced a lookup uses a cached record only after a round trip
// on the connection that caches it, sent less than 20ms before the lookup
// began, which brings in every invalidation Redis sent before; concurrent
// and successive lookups share these round trips. In return each of those
// changes returns 25ms after Redis made it, in every cache mode, since
// other Stores may be relying on such a round trip. A record a lookup
// reads from Redis needs none. cache=off reads every record from Redis;
// cache=unsafe-unfenced gives up the guarantee to save the round trips.
//
// A user's sessions share one Redis Cluster hash slot, so every change to
// them is one atomic Lua script, on Cluster as on one server: the per-user
// limit holds under concurrent logins, Update is a compare-and-swap on the
// Version, and Touch only moves the last use and idle deadline forward.
//
// The Store fails closed. An operation that cannot reach Redis, or gets no
// answer within timeout, returns an error, never session.ErrNotFound and
// never a session; the Store reconnects by itself. A record it cannot
// decode is an error wrapping session.ErrInvalidRecord. Every read checks
// the deadlines, whether or not Redis has removed the keys yet.
//
// Redis replicates asynchronously, and a failover may promote a replica
// that lacks the last writes. So a change that ends or narrows a session
// waits (WAIT) until wait_replicas replicas have it; if fewer do within
// wait_timeout, it returns an error wrapping ErrNotReplicated, and a
// retry finds the change already made. Creating a session, Touch and
// lookups never wait.
//
// # Operating Redis
//
//   - Where Redis has replicas, set wait_replicas: 1, or the number of
//     replicas of each master to survive any failover. auto, the default,
//     is 1 if a master had a replica connected when Open ran, else 0.
//   - maxmemory-policy noeviction: every key has a TTL, so a volatile-*
//     policy would evict parts of sessions. A full Redis then refuses
//     writes: logins and revocations fail, and lookups go on.
//   - Persistence: none, or AOF with appendfsync always. A restart from an
//     RDB snapshot or an everysec AOF forgets the last writes, revocations
//     among them.
//   - Memory: a session as sessiond makes it (a 111-byte user agent, IPv4,
//     one role) takes about 440 bytes by MEMORY USAGE and 670 by INFO
//     used_memory; more data takes more. Each process's client-side cache
//     takes up to 128 MiB per connection, in large byte slabs that the
//     garbage collector does not scan entry by entry.
//   - Clocks: Redis expires keys by its own clock; a Redis clock ahead of
//     the hosts' ends sessions early by the difference. Use NTP.
//   - ACL: the Store never runs KEYS, SCAN or CONFIG. It needs the keys
//     ~PREFIX* (~sessiond:* by default) and the commands GET, SET, DEL,
//     PTTL, PEXPIREAT, EVAL, EVALSHA, WAIT, INFO, PING, HELLO, SELECT and
//     CLIENT, and, inside its scripts, PEXPIRETIME, SETBIT and BITCOUNT;
//     on Cluster, CLUSTER SHARDS and CLUSTER SLOTS.
//
// docs/scaling.md covers many instances on one Redis: sizing, failovers,
// partitions, and what the tests check.
package redisstore
