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
const userColumns = `id, username, roles, disabled, password_hash, created_at, updated_at`

// The statements a DB runs (pgx prepares each once per connection).
const (
	sqlByID       = `SELECT ` + userColumns + ` FROM sessiond_users WHERE id = $1`
	sqlByUsername = `SELECT ` + userColumns + ` FROM sessiond_users WHERE username = $1`
	sqlList       = `SELECT ` + userColumns + ` FROM sessiond_users ORDER BY username`
	sqlCount      = `SELECT count(*) FROM sessiond_users`
	sqlInsert     = `INSERT INTO sessiond_users (` + userColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7)`
	sqlUpdate     = `UPDATE sessiond_users SET username = $2, roles = $3, disabled = $4, password_hash = $5,
		created_at = $6, updated_at = $7 WHERE id = $1`
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

// Create implements users.Directory. It stores u as it is: checking the
// username, roles and password is users.Accounts' job.
func (db *DB) Create(ctx context.Context, u *users.User) error {
	if _, err := db.pool.Exec(ctx, sqlInsert, userArgs(u)...); err != nil {
		return writeErr("create", err)
	}
	return nil
}

// Update implements users.Directory. It replaces every field but the ID;
// it returns users.ErrExists if u's username is another user's.
func (db *DB) Update(ctx context.Context, u *users.User) error {
	tag, err := db.pool.Exec(ctx, sqlUpdate, userArgs(u)...)
	if err != nil {
		return writeErr("update", err)
	}
	if tag.RowsAffected() == 0 {
		return users.ErrNotFound
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
	if err := sc.Scan(&u.ID, &u.Username, &u.Roles, &u.Disabled, &u.PasswordHash, &created, &updated); err != nil {
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

// Delete implements users.Directory.
func (db *DB) Delete(ctx context.Context, u *users.User) error {
	return errors.New("TODO: Delete")
}
