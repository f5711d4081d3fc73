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
//	                   contain '{' or '}'; up to 13 bytes keep every key in
//	                   Redis's smallest allocation for it (see "Memory")
//	cache=MODE         fenced (default), off or unsafe-unfenced: see
//	                   "Client-side cache"
//	cache_ttl=D        how long a cached record may be kept at most
//	                   (default 1m); Redis's invalidations, not this, keep
//	                   the cache correct
//	timeout=D          how long one operation may take, reconnecting and
//	                   retrying included, before it fails (default 2s);
//	                   also the dial timeout
//	wait_replicas=N    how many replicas must have a change that ends or
//	                   narrows a session before the Store reports it
//	                   done: auto (the default), 0 (never wait) or a
//	                   number; see "Replication"
//	wait_timeout=D     how long to wait for them (default: half of
//	                   timeout, 1s); shorter than timeout
//	master=NAME        the Sentinel master set (redis+sentinel:// only)
//	sentinel_username, sentinel_password
//	ca_file=PATH       PEM CA certificates for rediss schemes
//	server_name=NAME   the name the server's certificate must have
//	client_name=NAME   the connections' CLIENT SETNAME (default "sessiond")
//
// # Keys
//
// A user's sessions live in the user's namespace, NS: the first 48 bits of
// SHA-256 of the user ID, as 12 hex digits. With the default prefix, a
// session whose record is in slot S of namespace NS has:
//
//	sessiond:{NS}S   its record, S in base 36 (0, 1, … z, 10, …): a
//	                 string, the session in a compact binary form (see
//	                 record.go): its user ID, session ID, token hash,
//	                 roles, IP address, user agent and app data, and about
//	                 20 bytes more
//	sessiond:hT      token pointer, where T is the first 96 bits of the
//	                 token hash, base64url; one for the current token, one
//	                 for the previous one during a rotation's grace window
//	sessiond:iI      ID pointer, where I is the first 96 bits of SHA-256
//	                 of the session ID, base64url
//	sessiond:{NS}    the namespace's index: a bitmap with bit S set when
//	                 slot S (S > 0) may hold a record; there is none while
//	                 slot 0 is the only one in use, as for every user with
//	                 one session
//
// A pointer holds NS and S as one integer, NS·2^14 + S ("S:NS" from slot
// 16384 on), which Redis keeps inside the key's object header. Create puts
// a session in the namespace's lowest slot not in use.
//
// The hash tag {NS} puts the records and the index of a namespace in one
// Redis Cluster slot, so that every change to a user's sessions is one Lua
// script, atomic on Cluster as on one server: Create counts the user's
// live sessions, evicts the oldest or refuses, and stores the new one, in
// one step; Update compares the stored Version and swaps (CAS); Touch
// moves the last use and idle deadline forward only, keeping the Version;
// Delete, DeleteByUser and ListByUser work from slot 0 and the index,
// unmarking the slots of records Redis has expired. A namespace normally
// holds the sessions of one user; users whose hashes collide share one,
// which costs only time: every record holds its user ID and session ID,
// and the scripts act only on those of the user and session asked for.
// Every key expires (PEXPIREAT) at the session's earlier deadline; Touch
// and Update push the expiry of all of them forward, never back; the index
// expires with its longest-lived session, and goes when no slot is left
// marked. The store never runs KEYS, SCAN or CONFIG. An ACL user for it
// needs the keys ~PREFIX* (~sessiond:* by default) and the commands GET,
// SET, DEL, PTTL, PEXPIREAT, EVAL, EVALSHA, WAIT, INFO, PING, MULTI,
// EXEC, HELLO, SELECT and CLIENT (rueidis turns tracking on and names its
// connections), and in the scripts PEXPIRETIME, SETBIT and BITCOUNT; on
// Cluster also CLUSTER SHARDS or CLUSTER SLOTS.
//
// This layout replaced an earlier one (records named by user and session
// ID, MessagePack records, a sorted set per user) before any release, so
// the Store reads only its own: keys of the earlier layout are ignored,
// and expire by themselves.
//
// Looking a session up by token hash or by public ID cannot know the user,
// so it goes through a pointer, which lives in another slot than the
// record and so cannot be written in the same atomic step. The record is
// the truth: a session exists if and only if its record does, and every
// lookup checks the record it reaches (its full token hash, or its session
// ID; its deadlines). A pointer is a hint; one left pointing at nothing,
// at a session that has since rotated its token, or at a slot another
// session has taken since, finds nothing. Create writes the ID pointer
// first (SET NX, which also refuses a taken ID), holding the namespace
// only; then the record; then both pointers, with the slot. Until they
// have it, lookups by ID search the namespace, and the token, which the
// caller has not handed out yet, resolves to nothing. Update writes new
// token pointers before the record; deletions remove the record before
// its pointers; pointers never expire before their record. A crash
// between the steps leaves at worst a pointer to nothing, which expires
// when the session would have, or a session no token resolves, which
// expires too and which its user can still see and end.
//
// Update cannot move a session to another user.
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
// record, ByHash waits for a round trip on the connection that caches it,
// the fence, whose command was sent after the lookup began; the Store
// keeps one connection per server for that. Redis executes it after every
// write acknowledged before the lookup began, and replies after the
// invalidations that write caused, which rueidis applies in order as it
// reads the connection, before it hands over the reply; so the cached copy
// read next is at least as new as that moment. A lookup therefore costs at
// most one round trip instead of two (pointer, then record), and never
// serves a session whose revocation was acknowledged before it started.
// If the connection is lost, the round trip fails and the lookup with it:
// a lookup fails closed.
//
// Concurrent lookups share fences, as a database groups commits: a lookup
// needs a round trip sent after it began, not one of its own. Per
// connection there is at most one fence in flight and one group of
// lookups waiting for the next; a lookup that finds no fence in flight
// sends one at once, alone; one that finds a fence in flight joins the
// waiting group, never the fence in flight, which may have run before it
// began; when the fence in flight returns, the group's fence is sent,
// after every lookup in it began. So under load Redis sees about one
// fence per round trip rather than one per lookup (BenchmarkByHashCommands:
// 0.037 commands per lookup from 64 goroutines, against 1), and a lookup
// waits at most for the rest of the fence in flight and one more. A fence
// that fails fails every lookup waiting on it. A waiting lookup does not
// watch its context (that would cost every lookup a timer): the group's
// fence has the earliest of its lookups' deadlines, and a lookup with a
// later one whose fence ran out of time sends one of its own; so a lookup
// returns by its deadline, and one canceled earlier is answered with the
// others. The fence is PTTL of a record key and no longer answers whether
// the record exists: the cached read that follows does. A record deleted
// before the fence ran has had its invalidation applied, so the read
// misses the cache, goes to Redis and finds nothing (a read of the key
// still in flight when the invalidation arrives was executed after the
// deletion, and its reply is what the read gets); a record that expired
// is not served either, since rueidis keeps a cached copy no longer than
// the key's TTL and every read checks the deadlines.
//
// On Cluster a fence must reach the node that holds the record, on the
// connection its cached read uses: lookups share fences only with lookups
// of records in the same hash slot, and the fence is PTTL of one of those
// records' keys, which rueidis routes, as it routes the reads, by slot.
// Grouping by node would share more, but rueidis does not expose which
// node holds a slot, and a map of its own could disagree with rueidis's
// during a resharding and send a fence to the wrong node; grouping by slot
// is correct whatever the map. Records of different users are spread over
// 16384 slots, so on Cluster fences are shared mostly by lookups of one
// user's sessions, and a lookup costs about one round trip, as before.
//
// TestCacheNeverServesRevoked checks the guarantee 200 times in a row for
// each of deletion, rotation and a change of roles, and the Cluster test
// on three masters. TestCacheNeverServesRevokedConcurrently makes the
// same changes while 16 goroutines of another Store look the token up
// without pause, that Store's replies delayed by 5ms (SlowLink), and finds
// that no lookup started after the change was acknowledged returns what
// it revoked; letting a lookup join the fence in flight makes it fail
// (110 stale lookups of 4,857 in one run).
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
// microsecond between the years 1883 and 2168 (2^52 µs either side of
// 2026: the scripts subtract times, and Lua numbers hold integers up to
// 2^53); times outside that range are clamped to it, which keeps their
// order relative to the present, and the zero time.Time is kept as such.
//
// # Replication
//
// Redis replicates asynchronously: a master acknowledges a write before
// its replicas have it, and a failover (Sentinel's, or Redis Cluster's)
// promotes a replica that may lack the last writes. A lost login only
// signs its user out; a lost revocation makes a revoked session valid
// again. So each change that ends or narrows a session waits for
// replicas: Delete, DeleteByUser, Update (a rotation, which ends the old
// token, or a change of roles or data, which may take something away),
// and Create when the per-user limit evicts sessions. After the script
// that makes the change, the Store sends
//
//	WAIT wait_replicas wait_timeout
//
// on the same connection, in the same round trip; WAIT answers how many
// replicas have every write that connection made. If fewer than
// wait_replicas have it within wait_timeout, the operation returns an
// error wrapping ErrNotReplicated, and the service answers 503, as for
// any store failure: the master has made the change, and its replicas
// will have it once they catch up, but until then a failover could undo
// it, so it is not reported done. A Create whose eviction failed so
// removes the session it made, which its caller will not hand out. A
// Create that evicts nothing, Touch, and lookups never wait.
//
// WAIT holds its connection until it answers, so it never goes on the
// shared connection that lookups are pipelined on: the write and its WAIT
// run on a connection of rueidis's pool of dedicated ones (Dedicated),
// which on Cluster is bound to the master of the script's first key, the
// user's namespace, where the write is made. The cost, when replicas are
// healthy, is the master's round trip to a replica (it asks them for an
// acknowledgement at once): well under a millisecond on one network.
// TestWaitReplicasShortfall stops the replica (SIGSTOP) and checks that
// each revocation fails after wait_timeout while creating a session and
// lookups carry on; TestWaitReplicasSentinelFailover and
// TestWaitReplicasClusterFailover make each revocation with the replica
// stopped, so that it can only return once the replica has it, then force
// a failover at once (SENTINEL FAILOVER, CLUSTER FAILOVER TAKEOVER) and find
// every revocation on the promoted replica.
//
// wait_replicas=auto, the default, waits for one replica if, when the
// Store connects, a master it sees reports a replica connected
// (connected_slaves in INFO replication), and for none otherwise. One,
// because a failover promotes a replica, and both Sentinel and Cluster
// prefer the replica with the most of the master's data (the highest
// replication offset), which has the change if any has; set wait_replicas
// to the number of replicas of each master to be certain whichever is
// promoted, at the price of failing revocations while any replica is
// down. None without replicas, because there is then nothing to fail
// over to, and waiting could only fail. The choice is made once, because
// at each write the Store cannot tell a replica that is down, which a
// failover could not promote, from one cut off by a partition, which it
// could: giving up waiting when acknowledgements stop would give it up
// exactly when it matters. What follows:
//
//   - A Store that connected while every replica was down does not wait
//     until it reconnects: where Redis has replicas, set wait_replicas
//     explicitly rather than rely on auto.
//   - After a failover that leaves the new master without replicas (a
//     master with one replica, and the old master gone), revocations fail
//     with ErrNotReplicated until a replica is attached again (the old
//     master, restarted, rejoins as one). wait_replicas=0 prefers
//     revocations that succeed to revocations that survive a failover.
//   - On Cluster, auto waits for one replica on every master if any has
//     one: give each master a replica, or set wait_replicas=0.
//   - Retrying a revocation that failed finds it already made on the
//     master (session.ErrNotFound, or nothing for DeleteByUser to end), so
//     it does not wait again; the change is lost only if a failover comes
//     before the replicas catch up, which they do within a replication
//     round trip once they are reachable.
//
// WAIT is not consensus: it does not make a write durable on the
// replica's disk, nor stop a master cut off from its replicas from
// acknowledging others' writes (min-replicas-to-write does that); it
// makes sure that a revocation the Store reports done is on a replica.
//
// # Failures
//
// An operation that cannot reach Redis, or does not get an answer within
// the timeout, returns an error, never session.ErrNotFound, so callers
// fail closed. A change that ends or narrows a session and that fewer
// replicas than wait_replicas acknowledged returns an error wrapping
// ErrNotReplicated (see "Replication"). The Store reconnects by itself when Redis is back. A record
// the Store cannot decode is reported as an error wrapping
// session.ErrInvalidRecord. Removing the pointers of a deleted session is
// best-effort: a failure there leaves pointers to nothing, which expire
// with the session.
//
// # Memory
//
// Redis spends more on a key than a short value needs: an entry in the
// keyspace table (24 bytes, allocated as 32), the key's string, the
// value's object header (16 bytes) and, for a key that expires, an entry
// in the expiry table (32), besides both tables' buckets. The layout is
// sized for that:
//
//   - three keys per session, not four: the index exists only for users
//     with sessions beyond slot 0, and is a bitmap of a few bytes;
//   - keys of at most 30 bytes with the default prefix, which Redis
//     stores with a 1-byte header in 32 bytes: hence the hashed user and
//     session IDs, 96-bit pointer names and base-36 slots;
//   - pointer values that are integers, which live in the object header;
//   - records of at most 220 bytes for a session as sessiond makes it,
//     which fit the 224-byte allocation class with Redis's 4-byte string
//     header: varints, times relative to each other (in seconds when
//     whole), IP addresses as 4 or 16 bytes, session IDs as their 16
//     bytes.
//
// TestMemoryPerSession stores 100,000 sessions shaped as sessiond makes
// them (205-byte records: 111-byte user agent, IPv4, one role, no app
// data) in Redis 7.0 and finds, per session, 440 bytes by MEMORY USAGE:
// record 296 (keyspace entry 24, key 32, object 16, value 224), token
// pointer 72 and ID pointer 72 (entry 24, key 32, object 16 holding the
// integer), no index; 460 with four sessions per user, who share an index
// of 80 bytes; the same after a Touch (210-byte records). The earlier
// layout took 720 (record 328, token pointer 136, ID pointer 120, index
// 136). INFO used_memory, which also counts the expiry table's entries
// (3 × 32 bytes), the tables' buckets (8 bytes each, between 1 and 2 per
// key in each table) and the 8 bytes of each 24-byte keyspace entry that
// MEMORY USAGE leaves out, grows by 666 bytes per session (647 with four
// per user; 966 and 833 before): DESIGN.md's 512 bytes holds by MEMORY
// USAGE, the measure it names, not by used_memory. A longer user agent,
// more roles, app data or a last client other than the first make the
// record longer, and past 220 bytes it takes the next class (256, then
// 320…).
//
// What is left beyond the session's data is the price of three keys
// that expire: about 130 bytes each by used_memory, values aside (entry
// 32, key 32, object 16, expiry entry 32, buckets). Fewer keys would need
// pointers to be fields of shared hashes, which Redis 7.0 cannot expire
// one by one: a field would outlive its session until a sweep found it,
// and sweeping needs SCAN or another index to walk. Per-field expiry
// (HEXPIRE: Redis 7.4, Valkey 9) would allow that; the Store does not
// use it, so that it runs on Redis 7.0.
package redisstore
