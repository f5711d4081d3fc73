package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/postgresstore"
	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for scs's postgresstore
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/assertion"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// Defaults of -redis and -postgres: the services of the test machine.
const (
	defaultRedis    = "redis://127.0.0.1:6379/0"
	defaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// directory is what serve keeps the users and the audit log in.
type directory interface {
	users.Directory
	audit.Log
}

// backend is where a case's server keeps its sessions, users and audit
// log, laid out as "sessiond serve" lays them out for the same --store;
// or, for a peer case (kind scs-*), the scs store that keeps its sessions.
type backend struct {
	store session.Store
	dir   directory
	// peer and peerLoad are a peer case's scs store and the handle the
	// preload writes through (peer, or one on connections of its own that
	// commit without waiting for the disk); nil for a sessiond case.
	peer, peerLoad scs.Store
	// loadStore and loadDir take the preload: store and dir, or handles
	// on connections of their own that commit without waiting for the
	// disk (the preload is not under test), with loaders goroutines.
	loadStore session.Store
	loadDir   users.Directory
	loaders   int
	// loaded closes the preload's own handles, if any, once the preload
	// is done, so that their connections do not count against the
	// database's limit while the runs go on; close closes them too if
	// loaded was not called.
	loaded func() error
	// storeCPU returns the CPU time the store's server has used so far
	// (zero for a store in the process).
	storeCPU func(context.Context) (time.Duration, error)
	// close closes every handle and removes what the case stored in a
	// shared server (its Redis keys, its PostgreSQL schema).
	close func() error
	// keys, if not nil, signs X-Session-Assertion (sqlite-assertion).
	keys assertion.KeyStore
}

// openBackend opens the stores of kind: sqlite and memstore in dir,
// redis, redis-unfenced and redis-nocache in the Redis at redisURL under a key prefix of
// the case's own (resolveload:NAME:, NAME being dir's base name),
// postgres in a schema of its own (resolveload_NAME) of the database at
// pgURL; and scs's stores for the peer kinds: scs-memstore in the
// process, scs-redis (goredisstore) and scs-postgres (postgresstore) as
// redis and postgres. Keys and schema are removed first, if an
// interrupted run left them, and again by close.
func openBackend(ctx context.Context, kind, dir, redisURL, pgURL string) (*backend, error) {
	name := filepath.Base(dir)
	dbPath := filepath.Join(dir, "sessiond.db")
	b := &backend{loaders: 1, storeCPU: func(context.Context) (time.Duration, error) { return 0, nil }}
	var closers []func() error
	b.close = func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (*backend, error) { return nil, errors.Join(err, b.close()) }
	// open opens the stores as "sessiond serve" does, through the one
	// function it uses.
	open := func(storeURL, usersURL string) (*app.Stores, error) {
		st, err := app.OpenStores(ctx, storeURL, usersURL)
		if err != nil {
			return nil, err
		}
		closers = append(closers, st.Close)
		return st, nil
	}
	sqliteUsers := "sqlite:" + dbPath // as serve: users in the SQLite file

	switch kind {
	case "sqlite", "memstore", "sqlite-assertion":
		if kind == "sqlite-assertion" { // keys in the users' file, as serve --assertion keeps them
			ks, err := assertion.OpenSQLite(dbPath)
			if err != nil {
				return fail(err)
			}
			b.keys, closers = ks, append(closers, ks.Close)
		}
		storeURL := "sqlite:" + dbPath
		if kind == "memstore" {
			storeURL = "memory:"
		}
		st, err := open(storeURL, sqliteUsers)
		if err != nil {
			return fail(err)
		}
		b.store, b.dir, b.loadDir = st.Sessions, st.Directory, st.Directory

	case "redis", "redis-unfenced", "redis-nocache":
		prefix, admin, err := redisKeys(ctx, redisURL, name, &closers)
		if err != nil {
			return fail(err)
		}
		u, err := withQuery(redisURL, "prefix", prefix)
		if err != nil {
			return fail(err)
		}
		switch kind {
		case "redis-unfenced": // for what the fences cost; unsafe (see redisstore)
			u, _ = withQuery(u, "cache", "unsafe-unfenced")
		case "redis-nocache":
			u, _ = withQuery(u, "cache", "off")
		}
		st, err := open(u, sqliteUsers)
		if err != nil {
			return fail(err)
		}
		b.store, b.loadStore, b.loaders = st.Sessions, st.Sessions, 32
		b.dir, b.loadDir = st.Directory, st.Directory
		b.storeCPU = func(ctx context.Context) (time.Duration, error) { return redisCPU(ctx, admin) }

	case "postgres":
		schema, err := pgSchema(ctx, pgURL, name, &closers)
		if err != nil {
			return fail(err)
		}
		u, err := withQuery(pgURL, "search_path", schema)
		if err != nil {
			return fail(err)
		}
		st, err := open(u, "") // as serve: users in the same database
		if err != nil {
			return fail(err)
		}
		b.store, b.dir = st.Sessions, st.Directory
		// The preload's connections commit without waiting for the disk,
		// many at once: 100k durable one-row commits take minutes.
		load, _ := withQuery(u, "synchronous_commit", "off")
		load, _ = withQuery(load, "pool_max_conns", "16")
		lst, err := app.OpenStores(ctx, load, "")
		if err != nil {
			return fail(err)
		}
		b.loaded = sync.OnceValue(lst.Close)
		closers = append(closers, b.loaded)
		b.loadStore, b.loadDir, b.loaders = lst.Sessions, lst.Directory, 16
		b.storeCPU = func(ctx context.Context) (time.Duration, error) { return postgresCPU(ctx, pgURL) }

	case "scs-memstore":
		// As scs.New() makes it: expired sessions swept every minute. Its
		// sweeper runs until the process ends: MemStore.StopCleanup races
		// with the sweeper's start (v2.9.0).
		b.peer = memstore.New()

	case "scs-redis":
		prefix, admin, err := redisKeys(ctx, redisURL, name, &closers)
		if err != nil {
			return fail(err)
		}
		opt, err := redis.ParseURL(redisURL)
		if err != nil {
			return fail(fmt.Errorf("-redis %q: %w", redisURL, err))
		}
		// go-redis's defaults: a pool of 10 connections per CPU, RESP3,
		// no client-side cache.
		client := redis.NewClient(opt)
		closers = append(closers, client.Close)
		b.peer, b.loaders = goredisstore.NewWithPrefix(client, prefix), 32
		b.storeCPU = func(ctx context.Context) (time.Duration, error) { return redisCPU(ctx, admin) }

	case "scs-postgres":
		schema, err := pgSchema(ctx, pgURL, name, &closers)
		if err != nil {
			return fail(err)
		}
		u, err := withQuery(pgURL, "search_path", schema)
		if err != nil {
			return fail(err)
		}
		// The table and index of postgresstore's README.
		if err := pgExec(ctx, u, scsPostgresSchema); err != nil {
			return fail(err)
		}
		db, err := scsPostgresDB(u, sessiondPoolSize())
		if err != nil {
			return fail(err)
		}
		closers = append(closers, db.Close)
		st := postgresstore.New(db) // expired sessions swept every 5 minutes
		closers = append(closers, func() error { st.StopCleanup(); return nil })
		// As for postgres: the preload commits without waiting for the
		// disk, on 16 connections.
		load, _ := withQuery(u, "synchronous_commit", "off")
		ldb, err := scsPostgresDB(load, 16)
		if err != nil {
			return fail(err)
		}
		b.loaded = sync.OnceValue(ldb.Close)
		closers = append(closers, b.loaded)
		b.peer, b.peerLoad, b.loaders = st, postgresstore.NewWithCleanupInterval(ldb, 0), 16
		b.storeCPU = func(ctx context.Context) (time.Duration, error) { return postgresCPU(ctx, pgURL) }

	default:
		return nil, fmt.Errorf("unknown store kind %q", kind)
	}
	if b.loadStore == nil {
		b.loadStore = b.store
	}
	if b.peerLoad == nil {
		b.peerLoad = b.peer
	}
	if b.loaded == nil {
		b.loaded = func() error { return nil }
	}
	return b, nil
}

// redisKeys returns the key prefix of the case name in the Redis at
// redisURL, resolveload:NAME:, and a client for what the stores never do
// themselves (SCAN, INFO). It removes the keys under the prefix that an
// interrupted run left, and appends to closers a function that removes
// them again and closes the client.
func redisKeys(ctx context.Context, redisURL, name string, closers *[]func() error) (string, rueidis.Client, error) {
	prefix := "resolveload:" + name + ":"
	admin, err := redisAdmin(redisURL)
	if err != nil {
		return "", nil, err
	}
	*closers = append(*closers, func() error { admin.Close(); return nil })
	if err := unlinkPrefix(ctx, admin, prefix); err != nil {
		return "", nil, err
	}
	*closers = append(*closers, func() error { return unlinkPrefix(context.Background(), admin, prefix) })
	return prefix, admin, nil
}

// pgSchema creates the schema of the case name, resolveload_NAME, in the
// database at pgURL, after dropping what an interrupted run left, and
// appends to closers a function that drops it again.
func pgSchema(ctx context.Context, pgURL, name string, closers *[]func() error) (string, error) {
	schema := "resolveload_" + regexp.MustCompile(`[^a-z0-9_]`).ReplaceAllString(strings.ToLower(name), "_")
	drop := func(ctx context.Context) error {
		return pgExec(ctx, pgURL, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	}
	if err := drop(ctx); err != nil {
		return "", err
	}
	if err := pgExec(ctx, pgURL, "CREATE SCHEMA "+schema); err != nil {
		return "", err
	}
	*closers = append(*closers, func() error { return drop(context.Background()) })
	return schema, nil
}

// scsPostgresSchema is the sessions table of scs's postgresstore, as its
// README gives it.
const scsPostgresSchema = `CREATE TABLE sessions (
	token TEXT PRIMARY KEY,
	data BYTEA NOT NULL,
	expiry TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_expiry_idx ON sessions (expiry);`

// scsPostgresDB opens the database at pgURL through database/sql and
// pgx's driver, keeping up to conns connections open and idle: without
// that, database/sql keeps 2 idle and opens and closes a connection for
// most requests under load.
func scsPostgresDB(pgURL string, conns int) (*sql.DB, error) {
	db, err := sql.Open("pgx", pgURL)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	return db, nil
}

// sessiondPoolSize is the size of store/pgstore's connection pool, pgx's
// default: max(4, number of CPUs).
func sessiondPoolSize() int { return max(4, runtime.NumCPU()) }

// withQuery returns the URL s with the query parameter key set to value.
func withQuery(s, key, value string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// redisAdmin connects to the Redis at a redis:// URL, for what the store
// never does itself: SCAN, and INFO for the CPU time.
func redisAdmin(redisURL string) (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(redisURL)
	if err != nil {
		return nil, fmt.Errorf("-redis %q: %w (a redis:// URL of one server)", redisURL, err)
	}
	opt.DisableCache = true
	return rueidis.NewClient(opt)
}

// unlinkPrefix removes every key that starts with prefix.
func unlinkPrefix(ctx context.Context, c rueidis.Client, prefix string) error {
	cursor := uint64(0)
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return fmt.Errorf("removing the keys %s*: %w", prefix, err)
		}
		if len(e.Elements) > 0 {
			if err := c.Do(ctx, c.B().Unlink().Key(e.Elements...).Build()).Error(); err != nil {
				return fmt.Errorf("removing the keys %s*: %w", prefix, err)
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return nil
		}
	}
}

// redisCPU returns the CPU time (user + system) the Redis server has used
// since it started, from INFO cpu.
func redisCPU(ctx context.Context, c rueidis.Client) (time.Duration, error) {
	info, err := c.Do(ctx, c.B().Info().Section("cpu").Build()).ToString()
	if err != nil {
		return 0, err
	}
	var total float64
	for line := range strings.Lines(info) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu: %s: %w", line, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second)), nil
}

// pgExec runs one statement on a connection of its own.
func pgExec(ctx context.Context, pgURL, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return fmt.Errorf("-postgres: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// postgresCPU returns the CPU time the PostgreSQL server's processes
// (each backend and background process that pg_stat_activity lists, of
// every database, but the one answering this question) have used, read
// from /proc: PostgreSQL must run on this machine. Processes that end
// between two readings take their time with them; the case's own
// connections outlive its runs.
func postgresCPU(ctx context.Context, pgURL string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT pid FROM pg_stat_activity")
	if err != nil {
		return 0, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return 0, err
	}
	self := int32(conn.PgConn().PID()) // this connection's backend, left out
	if _, err := cpuTime(int(self)); err != nil {
		return 0, fmt.Errorf("PostgreSQL does not seem to run on this machine (its CPU time is read from /proc): %w", err)
	}
	var total time.Duration
	for _, pid := range pids {
		if pid == self {
			continue
		}
		d, err := cpuTime(int(pid))
		if errors.Is(err, os.ErrNotExist) {
			continue // ended meanwhile
		}
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}
