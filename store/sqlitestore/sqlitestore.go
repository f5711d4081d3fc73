package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sessiond/sessiond/internal/sqlitefile"
	"github.com/sessiond/sessiond/session"
)

var (
	_ session.Store   = (*Store)(nil)
	_ session.Sweeper = (*Store)(nil)
)

// ErrHashCollision is returned, wrapped, by Create, and by Update when it
// changes a session's token hash, if the first 63 bits of the new hash are
// those of another stored session's (the table's key: see hashKey). The
// session is not stored, or keeps its old token. With random tokens this
// happens about once in 2^63/n writes among n stored sessions (once in
// about 10^13 at a million sessions); retrying with a new token succeeds.
var ErrHashCollision = errors.New("sqlitestore: token hash collides with another session's in its first 63 bits")

// cacheEntries bounds the sessions a Store keeps in memory for ByHash.
const cacheEntries = 100_000

// Store is a session.Store backed by a SQLite database file. It is safe for
// concurrent use, and several Stores, in one process or in several, may
// share one file. The zero value is not usable; call Open.
//
// A Store holds two pools of connections: one writer, because SQLite
// allows one write transaction at a time and queueing writers in Go is
// cheaper than having them spin on the file lock, and several readers,
// which in WAL mode run alongside the writer and each other.
type Store struct {
	path string
	w    *sql.DB // one connection; write transactions BEGIN IMMEDIATE
	r    *sql.DB // read-only connections (PRAGMA query_only)

	// Prepared statements: reads on r, writes on w.
	byHash, byID, listByUser, exists                    *sql.Stmt
	insert, update, touch, deleteID, deleteByUser, live *sql.Stmt
	deleteExpired                                       *sql.Stmt

	// cache answers ByHash from memory while provably current (cache.go);
	// nil only in benchmarks that measure the database alone.
	cache *cache

	// touches queue Touch calls for the toucher goroutine (touch.go),
	// which runs until quit closes and then closes toucherDone.
	touches     chan *touchReq
	quit        chan struct{}
	toucherDone chan struct{}
	closeOnce   sync.Once
}

// Open opens the session database at path, creating the file (mode 0600)
// and its parent directory (mode 0700) if they do not exist, and creates or
// upgrades its schema. Close the Store when done.
func Open(path string) (*Store, error) {
	st := &Store{}
	if err := st.open(path); err != nil {
		st.Close()
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	var err error
	if st.cache, err = openCache(st.path+"-epoch", cacheEntries); err != nil {
		st.Close()
		return nil, err
	}
	st.touches = make(chan *touchReq)
	st.quit = make(chan struct{})
	st.toucherDone = make(chan struct{})
	go st.toucher()
	return st, nil
}

// pageSize is the page size of a database file that Open creates: 16 KiB,
// four times SQLite's default. The table of a million sessions is then
// three levels deep instead of four, with 23 interior pages instead of
// 386: few enough to stay in the CPU's caches, so that the one page a
// lookup must fetch from memory is the leaf that holds the row. With
// mapped reads (see mmapSize), BenchmarkByHash (cache=off) measures
// 16.5 µs among a million sessions with 16 KiB pages against 19.2 µs with
// 4 KiB ones, and 15-16 µs among a thousand. The cost is in writes: a
// commit writes whole pages to the write-ahead log, so a Touch (two or
// three pages) writes up to 48 KiB instead of 12 KiB. Its time is the
// fsync's either way, and the difference does not show beyond the noise.
const pageSize = 16384

// mmapSize is how much of the database file each read connection maps
// into memory (PRAGMA mmap_size), on 64-bit platforms: 1 GiB, about two
// million sessions of a few hundred bytes; pages beyond it are read with
// read(2) as usual.
//
// A mapped page is read in place, so a lookup that misses the
// connection's small page cache, as almost every lookup in a large store
// does, costs no system call and no copy: BenchmarkByHash (cache=off)
// measures 16.5 µs among a million sessions mapped against 20.4 µs
// unmapped, and 15-16 µs among a thousand. And it shares one copy of the
// file, the kernel's, between all the connections instead of a page cache
// each.
//
// The cost (https://sqlite.org/mmap.html): SQLite cannot catch an I/O
// error on a mapped page. The kernel raises SIGBUS instead, which the Go
// runtime cannot recover from, so where a failing disk would make a read
// return an error it crashes the process instead. That is acceptable for
// the read pool: a store whose disk fails to read can validate no session
// either way, so both fail closed, and a crash in the middle of a write
// (in another goroutine) loses nothing that was acknowledged (see
// Durability in the package doc). A file truncated behind SQLite's back
// raises SIGBUS too, but that is corruption whatever the mode. The writer
// does not map the file, so a write keeps returning I/O errors as
// errors. On 32-bit platforms, several gigabyte-sized mappings (one per
// connection) would crowd the address space, so there is none.
const mmapSize = 1 << 30

// open opens the database file through sqlitefile, with this package's
// schema, page size, memory-mapped readers and number of readers, and
// prepares the statements.
func (st *Store) open(path string) error {
	o := sqlitefile.Options{
		Migrate:  migrate,
		PageSize: pageSize,
		// Reads are CPU-bound once the pages are cached, and
		// modernc.org/sqlite runs them on Go threads, so a few connections
		// per CPU keep the CPUs busy; each connection has its own page
		// cache, so not many more.
		Readers: max(4, 2*runtime.GOMAXPROCS(0)),
	}
	if strconv.IntSize == 64 {
		o.ReaderMmapSize = mmapSize
	}
	db, err := sqlitefile.Open(path, o)
	if err != nil {
		return err
	}
	st.path, st.w, st.r = db.Path, db.W, db.R
	r, w := st.r, st.w
	return sqlitefile.Prepare(context.Background(),
		sqlitefile.Stmt{Dst: &st.byHash, DB: r, SQL: sqlByHash},
		sqlitefile.Stmt{Dst: &st.byID, DB: r, SQL: sqlByID},
		sqlitefile.Stmt{Dst: &st.listByUser, DB: r, SQL: sqlListByUser},
		sqlitefile.Stmt{Dst: &st.exists, DB: w, SQL: sqlExists},
		sqlitefile.Stmt{Dst: &st.live, DB: w, SQL: sqlLive},
		sqlitefile.Stmt{Dst: &st.insert, DB: w, SQL: sqlInsert},
		sqlitefile.Stmt{Dst: &st.update, DB: w, SQL: sqlUpdate},
		sqlitefile.Stmt{Dst: &st.touch, DB: w, SQL: sqlTouch},
		sqlitefile.Stmt{Dst: &st.deleteID, DB: w, SQL: sqlDeleteID},
		sqlitefile.Stmt{Dst: &st.deleteByUser, DB: w, SQL: sqlDeleteByUser},
		sqlitefile.Stmt{Dst: &st.deleteExpired, DB: w, SQL: sqlDeleteExpired},
	)
}

// The statements a Store prepares. Positional parameters ?1 and ?2 are
// the key and the present time (ns); the writes name theirs.
const (
	// A hash is a current token or, for a grace window after a rotation,
	// a previous one. The first arm finds a current token by the table's
	// integer key, ?3 = hashKey(?1), and checks the whole hash; only when
	// it finds nothing (LIMIT 1 stops the query at the first row) does the
	// second arm look the hash up in the index of previous tokens.
	sqlByHash = `SELECT ` + columns + ` FROM sessions WHERE hash_key = ?3 AND token_hash = ?1 AND expires_at > ?2
		UNION ALL
		SELECT ` + columns + ` FROM sessions WHERE prev_token_hash = ?1 AND expires_at > ?2
		LIMIT 1`
	sqlByID       = `SELECT ` + columns + ` FROM sessions WHERE id = ?1 AND expires_at > ?2`
	sqlListByUser = `SELECT ` + columns + ` FROM sessions WHERE user_id = ?1 AND expires_at > ?2 ORDER BY created_at, id`
	sqlExists     = `SELECT 1 FROM sessions WHERE id = ?1 AND expires_at > ?2`
	sqlLive       = `SELECT id FROM sessions WHERE user_id = ?1 AND expires_at > ?2 ORDER BY created_at, id`

	sqlInsert = `INSERT INTO sessions (hash_key, ` + columns + `) VALUES (
		:hash_key, :id, :token_hash, :prev_token_hash, :user_id, :roles,
		:created_at, :authenticated_at, :rotated_at, :last_seen_at, :idle_deadline, :absolute_deadline,
		:remember, :created_ip, :created_ua, :last_ip, :last_ua, :data, :version, :amr)`
	// In an UPDATE every expression sees the row as it was, so each CASE
	// compares the new last_seen_at with the stored one. A new token hash
	// moves the row to its new hash_key.
	sqlUpdate = `UPDATE sessions SET
		hash_key = :hash_key, token_hash = :token_hash, prev_token_hash = :prev_token_hash, user_id = :user_id, roles = :roles, amr = :amr,
		created_at = :created_at, authenticated_at = :authenticated_at, rotated_at = :rotated_at,
		last_seen_at = max(last_seen_at, :last_seen_at),
		last_ip = CASE WHEN last_seen_at > :last_seen_at THEN last_ip ELSE :last_ip END,
		last_ua = CASE WHEN last_seen_at > :last_seen_at THEN last_ua ELSE :last_ua END,
		idle_deadline = max(idle_deadline, :idle_deadline), absolute_deadline = :absolute_deadline,
		remember = :remember, created_ip = :created_ip, created_ua = :created_ua,
		data = :data, version = version + 1
		WHERE id = :id AND version = :version AND expires_at > :now`
	sqlTouch = `UPDATE sessions SET
		last_seen_at = max(last_seen_at, :at),
		last_ip = CASE WHEN :at > last_seen_at THEN :ip ELSE last_ip END,
		last_ua = CASE WHEN :at > last_seen_at THEN :ua ELSE last_ua END,
		idle_deadline = max(idle_deadline, :idle_deadline)
		WHERE id = :id AND expires_at > :now`
	sqlDeleteID      = `DELETE FROM sessions WHERE id = ?1`
	sqlDeleteByUser  = `DELETE FROM sessions WHERE user_id = ?1 AND id != ?2 RETURNING id`
	sqlDeleteExpired = `DELETE FROM sessions WHERE rowid IN (
		SELECT rowid FROM sessions WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2
		) RETURNING ` + columns
)

// Close closes the database. Sessions stay in the file for the next Open.
func (st *Store) Close() error {
	var errs []error
	st.closeOnce.Do(func() {
		if st.quit != nil {
			close(st.quit)
			<-st.toucherDone
		}
		errs = append(errs, st.cache.close())
		for _, db := range []*sql.DB{st.r, st.w} { // closing the pools closes their statements
			if db != nil {
				errs = append(errs, db.Close())
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlitestore: close: %w", err)
	}
	return nil
}

// Create implements session.Store.
func (st *Store) Create(ctx context.Context, s *session.Session, lim session.Limit) ([]string, error) {
	roles, err := encodeList(s.Roles)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: create: %w", err)
	}
	amr, err := encodeList(s.AMR)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: create: %w", err)
	}
	args := []any{
		sql.Named("hash_key", hashKey(s.TokenHash)),
		sql.Named("id", s.ID),
		sql.Named("token_hash", s.TokenHash[:]),
		sql.Named("prev_token_hash", encodeHash(s.PrevTokenHash)),
		sql.Named("user_id", s.UserID),
		sql.Named("roles", roles),
		sql.Named("amr", amr),
		sql.Named("created_at", encodeTime(s.CreatedAt)),
		sql.Named("authenticated_at", encodeTime(s.AuthenticatedAt)),
		sql.Named("rotated_at", encodeTime(s.RotatedAt)),
		sql.Named("last_seen_at", encodeTime(s.LastSeenAt)),
		sql.Named("idle_deadline", encodeTime(s.IdleDeadline)),
		sql.Named("absolute_deadline", encodeTime(s.AbsoluteDeadline)),
		sql.Named("remember", encodeBool(s.Remember)),
		sql.Named("created_ip", s.CreatedIP),
		sql.Named("created_ua", s.CreatedUserAgent),
		sql.Named("last_ip", s.LastIP),
		sql.Named("last_ua", s.LastUserAgent),
		sql.Named("data", encodeData(s.Data)),
		sql.Named("version", s.Version),
	}
	if lim.Max <= 0 {
		if _, err := st.insert.ExecContext(ctx, args...); err != nil {
			return nil, fmt.Errorf("sqlitestore: create: %w", keyError(err))
		}
		return nil, nil
	}

	// Count, evict and insert in one IMMEDIATE transaction: it holds the
	// write lock from the count on, so no other connection or process can
	// add a session for the user in between.
	tx, err := st.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: create: %w", err)
	}
	defer tx.Rollback()
	live, err := queryIDs(ctx, tx.StmtContext(ctx, st.live), s.UserID, time.Now().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: create: count sessions: %w", err)
	}
	var evicted []string
	if n := len(live) - lim.Max + 1; n > 0 {
		if lim.Reject {
			return nil, session.ErrTooManySessions
		}
		st.cache.begin() // evicting ends sessions others may have cached
		defer st.cache.end()
		del := tx.StmtContext(ctx, st.deleteID)
		for _, id := range live[:n] {
			if _, err := del.ExecContext(ctx, id); err != nil {
				return nil, fmt.Errorf("sqlitestore: create: evict: %w", err)
			}
		}
		evicted = live[:n]
	}
	if _, err := tx.StmtContext(ctx, st.insert).ExecContext(ctx, args...); err != nil {
		return nil, fmt.Errorf("sqlitestore: create: %w", keyError(err))
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlitestore: create: %w", err)
	}
	return evicted, nil
}

// keyError returns ErrHashCollision, wrapping err, if err is the primary
// key's uniqueness failing, and err otherwise. The primary key is
// hash_key; a duplicate ID fails the UNIQUE constraint on id instead.
func keyError(err error) error {
	if sqlitefile.IsExtendedCode(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
		return fmt.Errorf("%w: %w", ErrHashCollision, err)
	}
	return err
}

// queryIDs runs a statement that returns one column of IDs.
func queryIDs(ctx context.Context, stmt *sql.Stmt, args ...any) ([]string, error) {
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// ByHash implements session.Store.
func (st *Store) ByHash(ctx context.Context, h session.Hash) (*session.Session, error) {
	if s, ok := st.cache.get(h); ok && !s.Expired(time.Now()) {
		return s, nil
	}
	return st.cache.fill(h, func() (*session.Session, error) {
		return st.one(ctx, "by hash", st.byHash, h[:], time.Now().UnixNano(), hashKey(h))
	})
}

// ByID implements session.Store.
func (st *Store) ByID(ctx context.Context, id string) (*session.Session, error) {
	return st.one(ctx, "by id", st.byID, id, time.Now().UnixNano())
}

// one runs a read statement that returns at most one session.
func (st *Store) one(ctx context.Context, op string, stmt *sql.Stmt, args ...any) (*session.Session, error) {
	s, err := scanSession(stmt.QueryRowContext(ctx, args...))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, session.ErrNotFound
	case errors.Is(err, session.ErrInvalidRecord):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlitestore: %s: %w", op, err)
	}
	return s, nil
}

// Update implements session.Store.
func (st *Store) Update(ctx context.Context, s *session.Session) error {
	roles, err := encodeList(s.Roles)
	if err != nil {
		return fmt.Errorf("sqlitestore: update: %w", err)
	}
	amr, err := encodeList(s.AMR)
	if err != nil {
		return fmt.Errorf("sqlitestore: update: %w", err)
	}
	st.cache.begin()
	defer st.cache.end()
	now := time.Now().UnixNano()
	res, err := st.update.ExecContext(ctx,
		sql.Named("id", s.ID),
		sql.Named("version", s.Version),
		sql.Named("now", now),
		sql.Named("hash_key", hashKey(s.TokenHash)),
		sql.Named("token_hash", s.TokenHash[:]),
		sql.Named("prev_token_hash", encodeHash(s.PrevTokenHash)),
		sql.Named("user_id", s.UserID),
		sql.Named("roles", roles),
		sql.Named("amr", amr),
		sql.Named("created_at", encodeTime(s.CreatedAt)),
		sql.Named("authenticated_at", encodeTime(s.AuthenticatedAt)),
		sql.Named("rotated_at", encodeTime(s.RotatedAt)),
		sql.Named("last_seen_at", encodeTime(s.LastSeenAt)),
		sql.Named("last_ip", s.LastIP),
		sql.Named("last_ua", s.LastUserAgent),
		sql.Named("idle_deadline", encodeTime(s.IdleDeadline)),
		sql.Named("absolute_deadline", encodeTime(s.AbsoluteDeadline)),
		sql.Named("remember", encodeBool(s.Remember)),
		sql.Named("created_ip", s.CreatedIP),
		sql.Named("created_ua", s.CreatedUserAgent),
		sql.Named("data", encodeData(s.Data)),
	)
	if err != nil {
		return fmt.Errorf("sqlitestore: update: %w", keyError(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlitestore: update: %w", err)
	} else if n == 1 {
		s.Version++
		return nil
	}
	// Nothing matched: the session is gone (or expired), or its version
	// moved on. A session never comes back once gone and its version
	// only grows, so asking after the failed UPDATE tells the two apart
	// truthfully.
	var one int
	switch err := st.exists.QueryRowContext(ctx, s.ID, now).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return session.ErrNotFound
	case err != nil:
		return fmt.Errorf("sqlitestore: update: %w", err)
	}
	return session.ErrConflict
}

// Delete implements session.Store.
func (st *Store) Delete(ctx context.Context, id string) error {
	st.cache.begin()
	defer st.cache.end()
	res, err := st.deleteID.ExecContext(ctx, id)
	if err != nil {
		return fmt.Errorf("sqlitestore: delete: %w", err)
	}
	return affectedOne(res, "delete")
}

// affectedOne returns ErrNotFound if res changed no row. (SQLite counts a
// row an UPDATE matched as changed even if its values stay the same.)
func affectedOne(res sql.Result, op string) error {
	n, err := res.RowsAffected()
	switch {
	case err != nil:
		return fmt.Errorf("sqlitestore: %s: %w", op, err)
	case n == 0:
		return session.ErrNotFound
	}
	return nil
}

// ListByUser implements session.Store. If any of the user's live sessions
// cannot be decoded it returns an error wrapping session.ErrInvalidRecord
// and no sessions.
func (st *Store) ListByUser(ctx context.Context, userID string) ([]*session.Session, error) {
	rows, err := st.listByUser.QueryContext(ctx, userID, time.Now().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: list by user: %w", err)
	}
	defer rows.Close()
	var list []*session.Session
	for rows.Next() {
		s, err := scanSession(rows)
		if errors.Is(err, session.ErrInvalidRecord) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: list by user: %w", err)
		}
		list = append(list, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: list by user: %w", err)
	}
	return list, nil
}

// DeleteByUser implements session.Store.
func (st *Store) DeleteByUser(ctx context.Context, userID, except string) ([]string, error) {
	st.cache.begin()
	defer st.cache.end()
	ids, err := queryIDs(ctx, st.deleteByUser, userID, except)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: delete by user: %w", err)
	}
	return ids, nil
}

// DeleteExpired implements session.Sweeper. It deletes the sessions that
// expired earliest first. A deleted session that cannot be decoded is
// returned with only its ID and UserID set, and the error then wraps
// session.ErrInvalidRecord: the sweep itself succeeded.
func (st *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) ([]*session.Session, error) {
	rows, err := st.deleteExpired.QueryContext(ctx, encodeTime(now), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: delete expired: %w", err)
	}
	defer rows.Close()
	var (
		gone    []*session.Session
		invalid []error
	)
	for rows.Next() {
		var r row
		if err := r.scan(rows); err != nil {
			return gone, fmt.Errorf("sqlitestore: delete expired: %w", err)
		}
		s, err := r.session()
		if err != nil {
			invalid = append(invalid, err)
			s = &session.Session{ID: r.id, UserID: r.userID}
		}
		gone = append(gone, s)
	}
	if err := rows.Err(); err != nil {
		return gone, fmt.Errorf("sqlitestore: delete expired: %w", err)
	}
	return gone, errors.Join(invalid...)
}
