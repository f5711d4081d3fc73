package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessiond/sessiond/internal/lease"
	"github.com/sessiond/sessiond/internal/pgpool"
	"github.com/sessiond/sessiond/session"
)

var (
	_ session.Store   = (*Store)(nil)
	_ session.Sweeper = (*Store)(nil)
)

// Store is a session.Store backed by a PostgreSQL database. It is safe for
// concurrent use, and any number of Stores, in one process or on many
// hosts, may share one database. The zero value is not usable; call Open.
type Store struct {
	pool *pgxpool.Pool
	// cache and listener are nil with cache=off.
	cache    *cache
	listener *listener
	// beforePut, if set, is called between a lookup's read from the
	// database and its put into the cache: tests delay puts with it.
	beforePut atomic.Pointer[func()]
	// noSettle makes the changes that end or narrow a session return
	// without waiting (settle): tests of the fences alone, without
	// leases, set it.
	noSettle bool
}

// Open connects to the PostgreSQL database at url and creates or upgrades
// its schema. url is a postgres:// URL or a list of key=value pairs, as
// libpq and pgx take them; pgx's pool_* parameters set the connection pool
// (by default at most max(4, number of CPUs) connections), and any other
// parameter PostgreSQL knows, search_path for instance, is set on every
// connection. Unless url sets synchronous_commit, connections of a server
// configured with synchronous_commit=off turn it on (see Durability in the
// package doc). The parameters cache, cache_entries and cache_bytes set
// the Store's cache of sessions (see Cache in the package doc); with the
// cache on, Open fails if it cannot make the cache's listening connection.
// Close the Store when done.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	opts, err := takeOptions(cfg.ConnConfig.RuntimeParams)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	pool, err := pgpool.OpenConfig(ctx, cfg, component, migrations)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	st := &Store{pool: pool}
	if opts.cache {
		st.cache = newCache(opts.maxEntries, opts.maxBytes)
		st.listener = newListener(pool.Config().ConnConfig.Config.Copy(), st.cache)
		st.listener.start()
		if err := st.listener.connect(ctx); err != nil {
			st.listener.close()
			pool.Close()
			return nil, fmt.Errorf("pgstore: cache: listening connection: %w (cache=off in the URL runs without the cache)", err)
		}
	}
	return st, nil
}

// Close closes the connections. Sessions stay in the database.
func (st *Store) Close() {
	if st.listener != nil {
		st.listener.close()
	}
	st.pool.Close()
}

// The statements a Store runs. pgx prepares each on first use on a
// connection and keeps it prepared, so the hot path (ByHash, Touch) costs
// one round trip and no parsing or planning. now() is the database's
// clock: see Expiry in the package doc.
const (
	// A hash is a current token or, for a grace window after a rotation,
	// a previous one. The first arm looks the hash up in the unique index
	// of current tokens; only when it finds nothing (LIMIT 1 stops the
	// Append at the first row) does the second arm look in the index of
	// previous tokens.
	sqlByHash = `SELECT ` + columns + ` FROM sessiond_sessions WHERE token_hash = $1 AND expires_at > now()
		UNION ALL
		SELECT ` + columns + ` FROM sessiond_sessions WHERE prev_token_hash = $1 AND expires_at > now()
		LIMIT 1`
	sqlByID       = `SELECT ` + columns + ` FROM sessiond_sessions WHERE id = $1 AND expires_at > now()`
	sqlListByUser = `SELECT ` + columns + ` FROM sessiond_sessions WHERE user_id = $1 AND expires_at > now() ORDER BY created_at, id`
	sqlExists     = `SELECT 1 FROM sessiond_sessions WHERE id = $1 AND expires_at > now()`
	sqlLive       = `SELECT id FROM sessiond_sessions WHERE user_id = $1 AND expires_at > now() ORDER BY created_at, id`
	sqlLockUser   = `SELECT pg_advisory_xact_lock($1, $2)`

	sqlInsert = `INSERT INTO sessiond_sessions (` + columns + `) VALUES (
		$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`
	// In an UPDATE every expression sees the row as it was, so each CASE
	// compares the new last_seen_at with the stored one.
	sqlUpdate = `UPDATE sessiond_sessions SET
		token_hash = $3, prev_token_hash = $4, user_id = $5, roles = $6,
		created_at = $7, authenticated_at = $8, rotated_at = $9,
		last_seen_at = GREATEST(last_seen_at, $10),
		last_ip = CASE WHEN last_seen_at > $10 THEN last_ip ELSE $11 END,
		last_ua = CASE WHEN last_seen_at > $10 THEN last_ua ELSE $12 END,
		idle_deadline = GREATEST(idle_deadline, $13), absolute_deadline = $14,
		remember = $15, created_ip = $16, created_ua = $17,
		data = $18, amr = $19, version = version + 1
		WHERE id = $1 AND version = $2 AND expires_at > now()`
	sqlTouch = `UPDATE sessiond_sessions SET
		last_seen_at = GREATEST(last_seen_at, $2),
		last_ip = CASE WHEN $2 > last_seen_at THEN $3 ELSE last_ip END,
		last_ua = CASE WHEN $2 > last_seen_at THEN $4 ELSE last_ua END,
		idle_deadline = GREATEST(idle_deadline, $5)
		WHERE id = $1 AND expires_at > now()`
	sqlDeleteID     = `DELETE FROM sessiond_sessions WHERE id = $1`
	sqlDeleteIDs    = `DELETE FROM sessiond_sessions WHERE id = ANY($1)`
	sqlDeleteByUser = `DELETE FROM sessiond_sessions WHERE user_id = $1 AND id <> $2 RETURNING id`
	// The sweep locks the rows it picks, skipping rows another
	// transaction holds (another instance's sweep, or a Touch or Update
	// in flight), so sweepers running at once take disjoint batches and
	// never wait for each other or for a request. A session counts as
	// expired by the earlier of the caller's clock and the database's, so
	// a sweeper on a host whose clock runs fast never deletes a session
	// that reads still count live. The picked IDs are collected into an
	// array, which the DELETE looks up in the primary key whatever it
	// guesses of the batch's size (a join could hash the whole table when
	// the statement's generic plan guesses a large batch).
	sqlDeleteExpired = `DELETE FROM sessiond_sessions WHERE id = ANY (ARRAY(
			SELECT id FROM sessiond_sessions WHERE expires_at <= LEAST($1, now())
			ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED))
		RETURNING ` + columns
)

// Create implements session.Store. With a Limit, it counts, evicts and
// inserts in one transaction that holds an advisory lock on the user (see
// the package doc), so that concurrent Creates for one user, from any
// number of Stores, take their turns.
func (st *Store) Create(ctx context.Context, s *session.Session, lim session.Limit) ([]string, error) {
	args := []any{
		s.ID, s.TokenHash[:], encodeHash(s.PrevTokenHash), s.UserID, encodeList(s.Roles),
		s.CreatedAt, s.AuthenticatedAt, s.RotatedAt, s.LastSeenAt, s.IdleDeadline, s.AbsoluteDeadline,
		s.Remember, s.CreatedIP, s.CreatedUserAgent, s.LastIP, s.LastUserAgent, encodeData(s.Data), s.Version,
		encodeList(s.AMR),
	}
	if lim.Max <= 0 {
		if _, err := st.pool.Exec(ctx, sqlInsert, args...); err != nil {
			return nil, fmt.Errorf("pgstore: create: %w", err)
		}
		return nil, nil
	}

	tx, err := st.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: create: %w", err)
	}
	defer tx.Rollback(ctx)
	// The lock comes first, in a statement of its own: at READ COMMITTED
	// each statement sees what was committed when it began, so the count
	// that follows sees every session the lock's previous holders added.
	if _, err := tx.Exec(ctx, sqlLockUser, userLockClass, userKey(s.UserID)); err != nil {
		return nil, fmt.Errorf("pgstore: create: lock user: %w", err)
	}
	live, err := queryIDs(ctx, tx, sqlLive, s.UserID)
	if err != nil {
		return nil, fmt.Errorf("pgstore: create: count sessions: %w", err)
	}
	var evicted []string
	if n := len(live) - lim.Max + 1; n > 0 {
		if lim.Reject {
			return nil, session.ErrTooManySessions
		}
		evicted = live[:n]
		if _, err := tx.Exec(ctx, sqlDeleteIDs, evicted); err != nil {
			return nil, fmt.Errorf("pgstore: create: evict: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, sqlInsert, args...); err != nil {
		return nil, fmt.Errorf("pgstore: create: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("pgstore: create: %w", err)
	}
	if len(evicted) > 0 {
		st.settle()
	}
	return evicted, nil
}

// settle returns lease.Write after it is called, which is right after the
// database reported committed a change that ends or narrows a session
// (Delete, DeleteByUser, Update, the evictions of Create): by then no
// Store's lease covers a lookup that could still see what the change
// ended or replaced (see Cache in the package doc). Every such change
// settles, whether or not this Store has a cache: other Stores may.
func (st *Store) settle() {
	if !st.noSettle {
		lease.Settle(lease.Now())
	}
}

// querier is what queryIDs needs of a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// queryIDs runs a statement that returns one column of IDs.
func queryIDs(ctx context.Context, q querier, sql string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ByHash implements session.Store. With the cache on, a session in the
// cache is returned once the lease or a fence has made sure that no change
// the lookup must see is still on its way (see Cache in the package doc);
// anything else is read from the database, and a session read is cached.
func (st *Store) ByHash(ctx context.Context, h session.Hash) (*session.Session, error) {
	c := st.cache
	if c == nil {
		return st.one(ctx, "by hash", sqlByHash, h[:])
	}
	if c.contains(h) {
		now, err := st.listener.fence(ctx)
		if err == nil {
			if s := c.get(h, now); s != nil {
				return s, nil
			}
		} else if ctx.Err() != nil {
			return nil, fmt.Errorf("pgstore: by hash: %w", err)
		}
		// The listener is down or the entry went: read the database.
	}
	seq, ok := c.begin()
	s, err := st.one(ctx, "by hash", sqlByHash, h[:])
	if err == nil && ok {
		if f := st.beforePut.Load(); f != nil {
			(*f)()
		}
		c.put(h, s, seq)
	}
	return s, err
}

// ByID implements session.Store.
func (st *Store) ByID(ctx context.Context, id string) (*session.Session, error) {
	return st.one(ctx, "by id", sqlByID, id)
}

// one runs a read statement that takes one key and returns at most one
// session.
func (st *Store) one(ctx context.Context, op, sql string, key any) (*session.Session, error) {
	s, err := scanSession(st.pool.QueryRow(ctx, sql, key))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, session.ErrNotFound
	case errors.Is(err, session.ErrInvalidRecord):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("pgstore: %s: %w", op, err)
	}
	return s, nil
}

// Update implements session.Store.
func (st *Store) Update(ctx context.Context, s *session.Session) error {
	tag, err := st.pool.Exec(ctx, sqlUpdate,
		s.ID, s.Version,
		s.TokenHash[:], encodeHash(s.PrevTokenHash), s.UserID, encodeList(s.Roles),
		s.CreatedAt, s.AuthenticatedAt, s.RotatedAt,
		s.LastSeenAt, s.LastIP, s.LastUserAgent,
		s.IdleDeadline, s.AbsoluteDeadline,
		s.Remember, s.CreatedIP, s.CreatedUserAgent, encodeData(s.Data), encodeList(s.AMR))
	if err != nil {
		return fmt.Errorf("pgstore: update: %w", err)
	}
	if tag.RowsAffected() == 1 {
		st.settle()
		s.Version++
		return nil
	}
	// Nothing matched: the session is gone (or expired), or its version
	// moved on. A session never comes back once gone and its version
	// only grows, so asking after the failed UPDATE tells the two apart
	// truthfully.
	var one int
	switch err := st.pool.QueryRow(ctx, sqlExists, s.ID).Scan(&one); {
	case errors.Is(err, pgx.ErrNoRows):
		return session.ErrNotFound
	case err != nil:
		return fmt.Errorf("pgstore: update: %w", err)
	}
	return session.ErrConflict
}

// Touch implements session.Store.
func (st *Store) Touch(ctx context.Context, id string, t session.TouchInfo) error {
	tag, err := st.pool.Exec(ctx, sqlTouch, id, t.At, t.IP, t.UserAgent, t.IdleDeadline)
	if err != nil {
		return fmt.Errorf("pgstore: touch: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return session.ErrNotFound
	}
	return nil
}

// Delete implements session.Store.
func (st *Store) Delete(ctx context.Context, id string) error {
	tag, err := st.pool.Exec(ctx, sqlDeleteID, id)
	if err != nil {
		return fmt.Errorf("pgstore: delete: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return session.ErrNotFound
	}
	st.settle()
	return nil
}

// ListByUser implements session.Store. If any of the user's live sessions
// cannot be decoded it returns an error wrapping session.ErrInvalidRecord
// and no sessions.
func (st *Store) ListByUser(ctx context.Context, userID string) ([]*session.Session, error) {
	rows, err := st.pool.Query(ctx, sqlListByUser, userID)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list by user: %w", err)
	}
	defer rows.Close()
	var list []*session.Session
	for rows.Next() {
		s, err := scanSession(rows)
		if errors.Is(err, session.ErrInvalidRecord) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("pgstore: list by user: %w", err)
		}
		list = append(list, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: list by user: %w", err)
	}
	return list, nil
}

// DeleteByUser implements session.Store.
func (st *Store) DeleteByUser(ctx context.Context, userID, except string) ([]string, error) {
	ids, err := queryIDs(ctx, st.pool, sqlDeleteByUser, userID, except)
	if err != nil {
		return nil, fmt.Errorf("pgstore: delete by user: %w", err)
	}
	if len(ids) > 0 {
		st.settle()
	}
	return ids, nil
}

// DeleteExpired implements session.Sweeper. It deletes the sessions that
// expired earliest first, up to limit (none if limit is not positive),
// counting a session as expired by the earlier of now and the database's
// clock. Sweepers may run on several instances at once: each session is
// deleted, and returned, by one of them. A deleted session that cannot be
// decoded is returned with only its ID and UserID set, and the error then
// wraps session.ErrInvalidRecord: the sweep itself succeeded.
func (st *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) ([]*session.Session, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := st.pool.Query(ctx, sqlDeleteExpired, now, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: delete expired: %w", err)
	}
	defer rows.Close()
	var (
		gone    []*session.Session
		invalid []error
	)
	for rows.Next() {
		var r row
		if err := r.scan(rows); err != nil {
			return gone, fmt.Errorf("pgstore: delete expired: %w", err)
		}
		s, err := r.session()
		if err != nil {
			invalid = append(invalid, err)
			s = &session.Session{ID: r.id, UserID: r.userID.String}
		}
		gone = append(gone, s)
	}
	if err := rows.Err(); err != nil {
		return gone, fmt.Errorf("pgstore: delete expired: %w", err)
	}
	return gone, errors.Join(invalid...)
}
