// Package sqlitefile opens a SQLite database file the way sessiond's SQLite
// packages (store/sqlitestore, users/sqliteusers, assertion) use it, so that they can
// keep their tables in one file, each through its own connections, with the
// same settings:
//
//   - WAL mode, kept in the file, so that readers run alongside the writer
//     and each other;
//   - synchronous=FULL: a commit is synced to stable storage before it
//     returns, so nothing acknowledged is lost if the process is killed;
//   - busy_timeout of BusyTimeout: a connection waits that long for another
//     connection or process to release a lock before failing with
//     SQLITE_BUSY;
//   - two pools: a writer of one connection, whose write transactions
//     begin IMMEDIATE (taking the write lock up front, so that two
//     processes never deadlock upgrading a read to a write, and so that
//     writers queue in Go instead of spinning on the file lock), and
//     read-only readers (PRAGMA query_only);
//   - a file that Open creates gets mode 0600 before anything is written
//     to it (SQLite then gives the -wal and -shm files the same mode), and a
//     directory it creates gets mode 0700: the file holds user IDs, IP
//     addresses and password hashes.
//
// What differs between the packages (their schemas and how they migrate
// them, the page size of a new file, memory-mapped reads, the number of
// readers) is theirs, passed in Options.
//
// Errors from this package do not name the caller's package: the caller
// wraps them with its own prefix ("sqlitestore: %w").
package sqlitefile

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// BusyTimeout is how long a connection waits for another connection or
// process to release a lock before failing with SQLITE_BUSY.
const BusyTimeout = 5 * time.Second

// Options are a caller's own settings of a database file. The zero value
// opens the file with SQLite's defaults and no schema of the caller's.
type Options struct {
	// Migrate, if not nil, brings the caller's schema up to date through
	// the writer pool once WAL mode is on. It should do so in one
	// transaction (which, on the writer, begins IMMEDIATE), so that when
	// several processes open a new file at once, one creates the schema
	// and the others, waiting for the write lock, then find it done. If it
	// fails with SQLITE_BUSY, Open runs the whole setup again.
	Migrate func(ctx context.Context, w *sql.DB) error
	// PageSize, if not zero, is the page size (PRAGMA page_size) of a
	// file that Open creates. An existing file keeps its own: the page
	// size of a file is fixed when its first page is written. Zero leaves
	// SQLite's default, 4096 bytes.
	PageSize int
	// ReaderMmapSize, if not zero, is how many bytes of the file each
	// reader connection maps into memory (PRAGMA mmap_size). The writer
	// never maps the file. Zero maps nothing.
	ReaderMmapSize int64
	// Readers is the most connections the reader pool opens, all kept
	// open once opened. Zero means one per CPU (GOMAXPROCS).
	Readers int
}

// DB is a database file opened by Open. Its fields are not to be changed.
type DB struct {
	// Path is the file's absolute path.
	Path string
	// W is the writer pool: one connection, whose transactions begin
	// IMMEDIATE.
	W *sql.DB
	// R is the reader pool: read-only connections (PRAGMA query_only).
	R *sql.DB
}

// Open opens the database file at path, creating the file (mode 0600) and
// its parent directory (mode 0700) if they do not exist, switches it to
// WAL mode and runs o.Migrate. Close the DB when done.
func Open(path string, o Options) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, err
	}
	_, err = os.Stat(abs)
	db := &DB{Path: abs}
	if err := db.open(o, errors.Is(err, os.ErrNotExist)); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// open opens the connection pools and sets the file up. isNew says the
// file did not exist before Open.
func (db *DB) open(o Options, isNew bool) error {
	w, err := sql.Open("sqlite", DSN(db.Path, true))
	if err != nil {
		return err
	}
	db.W = w
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	ctx := context.Background()
	if err := RetryBusy(func() error { return setup(ctx, w, db.Path, isNew, o) }); err != nil {
		return err
	}

	pragmas := []string{"query_only(1)"}
	if o.ReaderMmapSize != 0 {
		pragmas = append(pragmas, fmt.Sprintf("mmap_size(%d)", o.ReaderMmapSize))
	}
	r, err := sql.Open("sqlite", DSN(db.Path, false, pragmas...))
	if err != nil {
		return err
	}
	db.R = r
	readers := o.Readers
	if readers <= 0 {
		readers = runtime.GOMAXPROCS(0)
	}
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)
	return nil
}

// setup makes a new file private, sets the page size of a new file,
// switches the database to WAL mode (a setting kept in the file) and runs
// o.Migrate.
func setup(ctx context.Context, w *sql.DB, path string, isNew bool, o Options) error {
	c, err := w.Conn(ctx) // opens, and if need be creates, the file
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer c.Close()
	if isNew {
		// SQLite creates the file with mode 0644 less the umask. Tighten
		// it before anything is written to it; SQLite then gives the -wal
		// and -shm files the same mode. (Creating the file ourselves would
		// mean closing a descriptor of it, which drops the locks any other
		// connection in this process may already hold on it.)
		if err := os.Chmod(path, 0o600); err != nil {
			return err
		}
	}
	if o.PageSize != 0 {
		// The page size of a file is fixed when its first page is
		// written, which the switch to WAL mode below does for a new
		// file; for an existing file this does nothing.
		if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA page_size = %d", o.PageSize)); err != nil {
			return fmt.Errorf("set page size: %w", err)
		}
	}
	var mode string
	if err := c.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return fmt.Errorf("enable WAL mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("cannot enable WAL mode (the journal mode stays %q): is the file on a filesystem that supports shared memory?", mode)
	}
	if err := c.Close(); err != nil { // give the connection back for Migrate
		return fmt.Errorf("open: %w", err)
	}
	if o.Migrate == nil {
		return nil
	}
	return o.Migrate(ctx, w)
}

// Close closes the pools (which closes the statements prepared on them).
// The data stays in the file for the next Open.
func (db *DB) Close() error {
	var errs []error
	for _, p := range []*sql.DB{db.R, db.W} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

// DSN returns the modernc.org/sqlite data source name for the file at abs,
// an absolute path: with the busy timeout, synchronous=FULL and the pragmas
// given (such as "query_only(1)"), and with _txlock=immediate if immediate
// is set. A file: URI with an escaped path keeps any '?' or '#' in the path
// from being read as the start of the parameters.
func DSN(abs string, immediate bool, pragmas ...string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeout.Milliseconds()))
	q.Add("_pragma", "synchronous(FULL)")
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	if immediate {
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	return u.String()
}

// RetryBusy calls f until it returns something other than SQLITE_BUSY, for
// at most BusyTimeout. SQLite's busy handler does not cover every case:
// when several connections open a new file at once, the switch from the
// rollback journal to WAL can fail with SQLITE_BUSY at once, because
// waiting could deadlock. Retrying the whole step from the start (a new
// connection, a new transaction) resolves it.
func RetryBusy(f func() error) error {
	deadline := time.Now().Add(BusyTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := f()
		if !IsCode(err, sqlite3.SQLITE_BUSY) || time.Now().Add(wait).After(deadline) {
			return err
		}
		time.Sleep(wait)
	}
}

// IsCode reports whether err is, or wraps, a SQLite error whose primary
// result code is code (sqlite3.SQLITE_BUSY, say): the low byte of its
// extended code.
func IsCode(err error, code int) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == code
}

// IsExtendedCode reports whether err is, or wraps, a SQLite error with the
// extended result code code (sqlite3.SQLITE_CONSTRAINT_UNIQUE, say).
func IsExtendedCode(err error, code int) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code() == code
}

// Stmt is a statement for Prepare: SQL, to be prepared on DB (a DB's W or
// R) and stored in *Dst.
type Stmt struct {
	Dst **sql.Stmt
	DB  *sql.DB
	SQL string
}

// Prepare prepares each of stmts in turn, stopping at the first that
// fails. The statements are closed with the pools they were prepared on.
func Prepare(ctx context.Context, stmts ...Stmt) error {
	for _, s := range stmts {
		p, err := s.DB.PrepareContext(ctx, s.SQL)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", s.SQL, err)
		}
		*s.Dst = p
	}
	return nil
}
