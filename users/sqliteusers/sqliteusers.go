package sqliteusers

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/sqlitefile"
	"github.com/sessiond/sessiond/users"
)

var (
	_ users.Directory = (*DB)(nil)
	_ audit.Log       = (*DB)(nil)
	_ audit.Pruner    = (*DB)(nil)
)

// DB is a users.Directory and an audit.Log (with audit.Pruner) backed by
// a SQLite database file. It is safe for concurrent use, and several DBs,
// in one process or in several, may share one file. The zero value is not
// usable; call Open.
//
// Like the session store, a DB holds two pools of connections: one writer,
// whose write transactions begin IMMEDIATE, and several read-only readers,
// which in WAL mode run alongside the writer and each other.
type DB struct {
	path string
	w    *sql.DB // one connection; write transactions BEGIN IMMEDIATE
	r    *sql.DB // read-only connections (PRAGMA query_only)

	// Prepared statements: reads on r, writes on w. stored and
	// otherAdmin read on w, inside the write transactions of Update and
	// Delete.
	byID, byUsername, list, count              *sql.Stmt
	insert, update, remove, stored, otherAdmin *sql.Stmt
	appendEvent, deleteEvents                  *sql.Stmt
}

// Open opens the database at path, creating the file (mode 0600) and its
// parent directory (mode 0700) if they do not exist, and creates or
// upgrades this package's tables in it. The file may be the one
// store/sqlitestore keeps sessions in. Close the DB when done.
func Open(path string) (*DB, error) {
	db := &DB{}
	if err := db.open(path); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqliteusers: %w", err)
	}
	return db, nil
}

// open opens the database file through sqlitefile, with this package's
// schema and number of readers, and prepares the statements.
func (db *DB) open(path string) error {
	f, err := sqlitefile.Open(path, sqlitefile.Options{
		Migrate: migrate,
		// Account lookups are few next to session lookups (a login is
		// bounded by password hashing), so a few readers suffice.
		Readers: max(2, runtime.GOMAXPROCS(0)),
	})
	if err != nil {
		return err
	}
	db.path, db.w, db.r = f.Path, f.W, f.R
	r, w := db.r, db.w
	return sqlitefile.Prepare(context.Background(),
		sqlitefile.Stmt{Dst: &db.byID, DB: r, SQL: sqlByID},
		sqlitefile.Stmt{Dst: &db.byUsername, DB: r, SQL: sqlByUsername},
		sqlitefile.Stmt{Dst: &db.list, DB: r, SQL: sqlList},
		sqlitefile.Stmt{Dst: &db.count, DB: r, SQL: sqlCount},
		sqlitefile.Stmt{Dst: &db.insert, DB: w, SQL: sqlInsert},
		sqlitefile.Stmt{Dst: &db.update, DB: w, SQL: sqlUpdate},
		sqlitefile.Stmt{Dst: &db.remove, DB: w, SQL: sqlDelete},
		sqlitefile.Stmt{Dst: &db.stored, DB: w, SQL: sqlStored},
		sqlitefile.Stmt{Dst: &db.otherAdmin, DB: w, SQL: sqlOtherAdmin},
		sqlitefile.Stmt{Dst: &db.appendEvent, DB: w, SQL: sqlAppend},
		sqlitefile.Stmt{Dst: &db.deleteEvents, DB: w, SQL: sqlDeleteBefore},
	)
}

// userColumns lists the stored fields of a user in the order scanUser
// reads them.
const userColumns = `id, username, roles, disabled, password_hash, created_at, updated_at, version`

// The statements a DB prepares. Update and Delete run sqlStored, then
// sqlOtherAdmin if need be, then sqlUpdate or sqlDelete, in one write
// transaction (see change).
const (
	sqlByID       = `SELECT ` + userColumns + ` FROM users WHERE id = ?1`
	sqlByUsername = `SELECT ` + userColumns + ` FROM users WHERE username = ?1`
	sqlList       = `SELECT ` + userColumns + ` FROM users ORDER BY username`
	sqlCount      = `SELECT count(*) FROM users`
	sqlInsert     = `INSERT INTO users (` + userColumns + `) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)`
	sqlUpdate     = `UPDATE users SET username = ?2, roles = ?3, disabled = ?4, password_hash = ?5,
		created_at = ?6, updated_at = ?7, version = version + 1 WHERE id = ?1`
	sqlDelete = `DELETE FROM users WHERE id = ?1`
	// sqlStored returns the version of user ?1 and whether it is an
	// enabled holder of role ?2 (users.User.IsActiveAdmin, for ?2 the
	// admin role).
	sqlStored = `SELECT version, disabled = 0 AND EXISTS (SELECT 1 FROM json_each(roles) WHERE value = ?2)
		FROM users WHERE id = ?1`
	// sqlOtherAdmin reports whether a user other than ?1 is an enabled
	// holder of role ?2. It reads the whole table, which is small, and
	// runs only for a change that takes an enabled admin away.
	sqlOtherAdmin = `SELECT EXISTS (SELECT 1 FROM users WHERE id != ?1 AND disabled = 0
		AND EXISTS (SELECT 1 FROM json_each(users.roles) WHERE value = ?2))`
	sqlAppend = `INSERT INTO audit_events (` + eventColumns + `) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)`
)

// Close closes the database. Its contents stay in the file for the next
// Open.
func (db *DB) Close() error {
	var errs []error
	for _, p := range []*sql.DB{db.r, db.w} { // closing the pools closes their statements
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqliteusers: close: %w", err)
	}
	return nil
}

// userArgs returns the parameters ?1 to ?7 of sqlInsert and sqlUpdate.
func userArgs(u *users.User) ([]any, error) {
	roles := []byte("[]")
	if len(u.Roles) > 0 {
		var err error
		if roles, err = json.Marshal(u.Roles); err != nil {
			return nil, err
		}
	}
	created, err := encodeTime(u.CreatedAt)
	if err != nil {
		return nil, err
	}
	updated, err := encodeTime(u.UpdatedAt)
	if err != nil {
		return nil, err
	}
	return []any{u.ID, u.Username, string(roles), encodeBool(u.Disabled), u.PasswordHash, created, updated}, nil
}

// Create implements users.Directory. It stores u as it is, with version
// 1, and sets u.Version to 1: checking the username, roles and password
// is users.Accounts' job.
func (db *DB) Create(ctx context.Context, u *users.User) error {
	args, err := userArgs(u)
	if err != nil {
		return fmt.Errorf("sqliteusers: create: %w", err)
	}
	if _, err := db.insert.ExecContext(ctx, args...); err != nil {
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
	args, err := userArgs(u)
	if err != nil {
		return fmt.Errorf("sqliteusers: update: %w", err)
	}
	if err := db.change(ctx, "update", u, u.IsActiveAdmin(), db.update, args...); err != nil {
		return err
	}
	u.Version++
	return nil
}

// Delete implements users.Directory. The audit log keeps the events
// about the user: they name it by ID and username, not by a reference
// that deleting the user would break.
func (db *DB) Delete(ctx context.Context, u *users.User) error {
	return db.change(ctx, "delete", u, false, db.remove, u.ID)
}

// change runs the statement write with args in one write transaction, if
// the stored user u.ID exists with version u.Version and, should the
// stored user be an enabled admin that the change leaves none (staysAdmin
// false), another enabled admin exists. It returns users.ErrNotFound,
// users.ErrConflict or users.ErrLastAdmin, writing nothing, if not.
//
// The transaction begins IMMEDIATE (see sqlitefile): it holds the file's
// write lock from the first read to the commit, so no other writer, in
// this process or another, changes the users between the checks and the
// write. Two changes that each take away one of the last two admins run
// one after the other, and the second finds the first's result.
func (db *DB) change(ctx context.Context, op string, u *users.User, staysAdmin bool, write *sql.Stmt, args ...any) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqliteusers: %s: %w", op, err)
	}
	defer tx.Rollback()
	var (
		version int64
		admin   bool
	)
	err = tx.StmtContext(ctx, db.stored).QueryRowContext(ctx, u.ID, users.RoleAdmin).Scan(&version, &admin)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return users.ErrNotFound
	case err != nil:
		return fmt.Errorf("sqliteusers: %s: %w", op, err)
	case version != u.Version:
		return users.ErrConflict
	}
	if admin && !staysAdmin {
		var other bool
		if err := tx.StmtContext(ctx, db.otherAdmin).QueryRowContext(ctx, u.ID, users.RoleAdmin).Scan(&other); err != nil {
			return fmt.Errorf("sqliteusers: %s: %w", op, err)
		}
		if !other {
			return users.ErrLastAdmin
		}
	}
	if _, err := tx.StmtContext(ctx, write).ExecContext(ctx, args...); err != nil {
		return writeErr(op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqliteusers: %s: %w", op, err)
	}
	return nil
}

// writeErr maps a failed INSERT or UPDATE of users to users.ErrExists if it
// broke the UNIQUE constraint, which the table has on username alone (the
// ID, its primary key, fails with SQLITE_CONSTRAINT_PRIMARYKEY instead).
func writeErr(op string, err error) error {
	if sqlitefile.IsExtendedCode(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
		return users.ErrExists
	}
	return fmt.Errorf("sqliteusers: %s: %w", op, err)
}

// ByID implements users.Directory.
func (db *DB) ByID(ctx context.Context, id string) (*users.User, error) {
	return db.one(ctx, "by id", db.byID, id)
}

// ByUsername implements users.Directory. The username is matched exactly,
// byte for byte.
func (db *DB) ByUsername(ctx context.Context, username string) (*users.User, error) {
	return db.one(ctx, "by username", db.byUsername, username)
}

// one runs a read statement that returns at most one user.
func (db *DB) one(ctx context.Context, op string, stmt *sql.Stmt, key string) (*users.User, error) {
	u, err := scanUser(stmt.QueryRowContext(ctx, key))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, users.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("sqliteusers: %s: %w", op, err)
	}
	return u, nil
}

// List implements users.Directory. Usernames are ordered byte by byte, as
// Go compares strings.
func (db *DB) List(ctx context.Context) ([]*users.User, error) {
	rows, err := db.list.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqliteusers: list: %w", err)
	}
	defer rows.Close()
	var list []*users.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("sqliteusers: list: %w", err)
		}
		list = append(list, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqliteusers: list: %w", err)
	}
	return list, nil
}

// Count implements users.Directory.
func (db *DB) Count(ctx context.Context) (int, error) {
	var n int
	if err := db.count.QueryRowContext(ctx).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqliteusers: count: %w", err)
	}
	return n, nil
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanUser reads the columns userColumns names from sc.
func scanUser(sc scanner) (*users.User, error) {
	var (
		u                users.User
		roles            string
		disabled         int64
		created, updated sql.NullInt64
	)
	if err := sc.Scan(&u.ID, &u.Username, &roles, &disabled, &u.PasswordHash, &created, &updated, &u.Version); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(roles), &u.Roles); err != nil {
		return nil, fmt.Errorf("user %s: roles: %w", u.ID, err)
	}
	if len(u.Roles) == 0 {
		u.Roles = nil
	}
	u.Disabled = disabled != 0
	u.CreatedAt, u.UpdatedAt = decodeTime(created), decodeTime(updated)
	return &u, nil
}

// Times int64 nanoseconds since the Unix epoch can hold.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// encodeTime returns t as nanoseconds since the Unix epoch, or NULL (nil)
// for the zero time. It refuses times int64 nanoseconds cannot hold.
func encodeTime(t time.Time) (any, error) {
	switch {
	case t.IsZero():
		return nil, nil
	case t.Before(minTime) || t.After(maxTime):
		return nil, fmt.Errorf("time %v out of range (years 1678 to 2262)", t)
	}
	return t.UnixNano(), nil
}

// decodeTime is the inverse of encodeTime, in UTC.
func decodeTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

func encodeBool(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
