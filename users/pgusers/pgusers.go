package pgusers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/pgpool"
	"github.com/sessiond/sessiond/users"
)

var (
	_ users.Directory = (*DB)(nil)
	_ audit.Log       = (*DB)(nil)
	_ audit.Pruner    = (*DB)(nil)
)

// DB is a users.Directory and an audit.Log (with audit.Pruner) backed by
// a PostgreSQL database. It is safe for concurrent use, and any number of
// DBs, in one process or on many hosts, may share one database. The zero
// value is not usable; call Open.
type DB struct {
	pool *pgxpool.Pool
}

// Open connects to the PostgreSQL database at url and creates or upgrades
// this package's tables in it. url is a postgres:// URL or a list of
// key=value pairs, as libpq and pgx take them; the database may be the one
// store/pgstore keeps sessions in. Like pgstore.Open, Open turns
// synchronous_commit on for its connections if the server has it off and
// url does not set it. Close the DB when done.
func Open(ctx context.Context, url string) (*DB, error) {
	pool, err := pgpool.Open(ctx, url, component, migrations)
	if err != nil {
		return nil, fmt.Errorf("pgusers: %w", err)
	}
	return &DB{pool: pool}, nil
}

// Close closes the connections. The data stays in the database.
func (db *DB) Close() { db.pool.Close() }

// userColumns lists the stored fields of a user in the order scanUser
// reads them.
const userColumns = `id, username, roles, disabled, password_hash, created_at, updated_at, version`

// The statements a DB runs (pgx prepares each once per connection).
// Update and Delete run sqlLockStored, then sqlAdminLock and
// sqlOtherAdmin if need be, then sqlUpdate or sqlDelete, in one
// transaction (see change).
const (
	sqlByID       = `SELECT ` + userColumns + ` FROM sessiond_users WHERE id = $1`
	sqlByUsername = `SELECT ` + userColumns + ` FROM sessiond_users WHERE username = $1`
	sqlList       = `SELECT ` + userColumns + ` FROM sessiond_users ORDER BY username`
	sqlCount      = `SELECT count(*) FROM sessiond_users`
	sqlInsert     = `INSERT INTO sessiond_users (` + userColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, 1)`
	sqlUpdate     = `UPDATE sessiond_users SET username = $2, roles = $3, disabled = $4, password_hash = $5,
		created_at = $6, updated_at = $7, version = version + 1 WHERE id = $1`
	sqlDelete = `DELETE FROM sessiond_users WHERE id = $1`
	// sqlLockStored locks the row of user $1 until the transaction ends
	// and returns its version and whether it is an enabled holder of role
	// $2 (users.User.IsActiveAdmin, for $2 the admin role).
	sqlLockStored = `SELECT version, NOT disabled AND $2 = ANY (roles) FROM sessiond_users WHERE id = $1 FOR UPDATE`
	// sqlAdminLock takes the lock that serialises the changes that take
	// an enabled admin away, until the transaction ends.
	sqlAdminLock = `SELECT pg_advisory_xact_lock($1, 0)`
	// sqlOtherAdmin reports whether a user other than $1 is an enabled
	// holder of role $2. It reads the whole table, which is small, and
	// runs only for a change that takes an enabled admin away.
	sqlOtherAdmin = `SELECT EXISTS (SELECT 1 FROM sessiond_users WHERE id <> $1 AND NOT disabled AND $2 = ANY (roles))`
)

// usernameKey is the name of the UNIQUE constraint on usernames (see the
// migrations).
const usernameKey = "sessiond_users_username_key"

// userArgs returns the parameters $1 to $7 of sqlInsert and sqlUpdate.
func userArgs(u *users.User) []any {
	roles := u.Roles
	if roles == nil {
		roles = []string{} // pgx sends a nil slice as NULL
	}
	return []any{u.ID, u.Username, roles, u.Disabled, u.PasswordHash, encodeTime(u.CreatedAt), encodeTime(u.UpdatedAt)}
}

// Create implements users.Directory. It stores u as it is, with version
// 1, and sets u.Version to 1: checking the username, roles and password
// is users.Accounts' job.
func (db *DB) Create(ctx context.Context, u *users.User) error {
	if _, err := db.pool.Exec(ctx, sqlInsert, userArgs(u)...); err != nil {
		return writeErr("create", err)
	}
	u.Version = 1
	return nil
}

// Update implements users.Directory. It replaces every field but the ID
// and raises the version by one, if the stored version is u.Version; it
// returns users.ErrExists if u's username is another user's. u.Version
// changes only if the change is committed.
func (db *DB) Update(ctx context.Context, u *users.User) error {
	if err := db.change(ctx, "update", u, u.IsActiveAdmin(), sqlUpdate, userArgs(u)...); err != nil {
		return err
	}
	u.Version++
	return nil
}

// Delete implements users.Directory. The audit log keeps the events
// about the user: they name it by ID and username, not by a foreign key
// that deleting the user would break.
func (db *DB) Delete(ctx context.Context, u *users.User) error {
	return db.change(ctx, "delete", u, false, sqlDelete, u.ID)
}

// change runs the statement write with args in one transaction, if the
// stored user u.ID exists with version u.Version and, should the stored
// user be an enabled admin that the change leaves none (staysAdmin
// false), another enabled admin exists. It returns users.ErrNotFound,
// users.ErrConflict or users.ErrLastAdmin, writing nothing, if not.
//
// The transaction is READ COMMITTED, whatever the server's or the
// connection's default_transaction_isolation, so that each statement sees
// what was committed when it began; it makes the checks hold until the
// commit with two locks:
//
//   - It locks the user's row first (FOR UPDATE). A change of the same
//     user elsewhere waits for this one to end, then reads the row as it
//     committed, with the raised version: of two changes from one
//     version, one wins and the other gets users.ErrConflict.
//   - A change that takes an enabled admin away then takes the advisory
//     lock (adminLockClass, 0), and only then looks for another enabled
//     admin. Two such changes of two different users would otherwise
//     each find the other admin, neither change being committed yet, and
//     both remove one of the last two. The lock makes them take turns:
//     the second looks only after the first has committed, and finds
//     its result. Locking every admin row (SELECT … FOR UPDATE) would do
//     the same, but could deadlock two changes that lock them in
//     different orders; the one advisory lock cannot, because a
//     transaction that holds it waits for no row lock of another that
//     waits for it (it has locked its own row already, and writes no
//     other). Changes that keep every admin, the common ones, never take
//     it.
func (db *DB) change(ctx context.Context, op string, u *users.User, staysAdmin bool, write string, args ...any) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("pgusers: %s: %w", op, err)
	}
	defer tx.Rollback(ctx)
	var (
		version int64
		admin   bool
	)
	err = tx.QueryRow(ctx, sqlLockStored, u.ID, users.RoleAdmin).Scan(&version, &admin)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return users.ErrNotFound
	case err != nil:
		return fmt.Errorf("pgusers: %s: %w", op, err)
	case version != u.Version:
		return users.ErrConflict
	}
	if admin && !staysAdmin {
		if _, err := tx.Exec(ctx, sqlAdminLock, adminLockClass); err != nil {
			return fmt.Errorf("pgusers: %s: lock: %w", op, err)
		}
		var other bool
		if err := tx.QueryRow(ctx, sqlOtherAdmin, u.ID, users.RoleAdmin).Scan(&other); err != nil {
			return fmt.Errorf("pgusers: %s: %w", op, err)
		}
		if !other {
			return users.ErrLastAdmin
		}
	}
	if _, err := tx.Exec(ctx, write, args...); err != nil {
		return writeErr(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgusers: %s: %w", op, err)
	}
	return nil
}

// writeErr maps a failed INSERT or UPDATE of users to users.ErrExists if
// it broke the uniqueness of usernames (SQLSTATE 23505 on usernameKey; a
// duplicate ID breaks the primary key instead, which is the caller's bug,
// not a taken username).
func writeErr(op string, err error) error {
	var e *pgconn.PgError
	if errors.As(err, &e) && e.Code == "23505" && e.ConstraintName == usernameKey {
		return users.ErrExists
	}
	return fmt.Errorf("pgusers: %s: %w", op, err)
}

// ByID implements users.Directory.
func (db *DB) ByID(ctx context.Context, id string) (*users.User, error) {
	return db.one(ctx, "by id", sqlByID, id)
}

// ByUsername implements users.Directory. The username is matched exactly,
// byte for byte.
func (db *DB) ByUsername(ctx context.Context, username string) (*users.User, error) {
	return db.one(ctx, "by username", sqlByUsername, username)
}

// one runs a read statement that returns at most one user.
func (db *DB) one(ctx context.Context, op, sql, key string) (*users.User, error) {
	u, err := scanUser(db.pool.QueryRow(ctx, sql, key))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, users.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("pgusers: %s: %w", op, err)
	}
	return u, nil
}

// List implements users.Directory. Usernames are ordered byte by byte, as
// Go compares strings.
func (db *DB) List(ctx context.Context) ([]*users.User, error) {
	rows, err := db.pool.Query(ctx, sqlList)
	if err != nil {
		return nil, fmt.Errorf("pgusers: list: %w", err)
	}
	// AppendRows closes rows and returns their error; appending to nil
	// makes the List of no users nil.
	list, err := pgx.AppendRows([]*users.User(nil), rows, func(row pgx.CollectableRow) (*users.User, error) { return scanUser(row) })
	if err != nil {
		return nil, fmt.Errorf("pgusers: list: %w", err)
	}
	return list, nil
}

// Count implements users.Directory.
func (db *DB) Count(ctx context.Context) (int, error) {
	var n int
	if err := db.pool.QueryRow(ctx, sqlCount).Scan(&n); err != nil {
		return 0, fmt.Errorf("pgusers: count: %w", err)
	}
	return n, nil
}

// scanUser reads the columns userColumns names from sc.
func scanUser(sc pgx.Row) (*users.User, error) {
	var (
		u                users.User
		created, updated pgtype.Timestamptz
	)
	if err := sc.Scan(&u.ID, &u.Username, &u.Roles, &u.Disabled, &u.PasswordHash, &created, &updated, &u.Version); err != nil {
		return nil, err
	}
	if len(u.Roles) == 0 {
		u.Roles = nil
	}
	var err error
	if u.CreatedAt, err = decodeTime(created); err != nil {
		return nil, fmt.Errorf("user %s: created_at: %w", u.ID, err)
	}
	if u.UpdatedAt, err = decodeTime(updated); err != nil {
		return nil, fmt.Errorf("user %s: updated_at: %w", u.ID, err)
	}
	return &u, nil
}

// encodeTime returns t as a timestamptz, NULL for the zero time.
// PostgreSQL keeps microseconds: finer parts are truncated.
func encodeTime(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t, Valid: true}
}

// decodeTime is the inverse of encodeTime, in UTC. It refuses infinite
// times, which encodeTime never writes.
func decodeTime(v pgtype.Timestamptz) (time.Time, error) {
	switch {
	case !v.Valid:
		return time.Time{}, nil
	case v.InfinityModifier != pgtype.Finite:
		return time.Time{}, fmt.Errorf("time is %s", v.InfinityModifier)
	}
	return v.Time.UTC(), nil
}
