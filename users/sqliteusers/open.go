package sqliteusers

// The file handling here (DSN, pragmas, retry on SQLITE_BUSY, file mode)
// repeats store/sqlitestore's, so that both packages open the shared file
// with the same settings. Keep the two in step.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// busyTimeout is how long a connection waits for another connection or
// process to release a lock before failing with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// dsn returns the modernc.org/sqlite data source name for the file at abs,
// with the durability pragmas and any extra ones, and with
// _txlock=immediate if immediate is set. A file: URI with an escaped path
// keeps any '?' or '#' in the path from being read as the start of the
// parameters.
func dsn(abs string, immediate bool, extra ...string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "synchronous(FULL)")
	for _, p := range extra {
		q.Add("_pragma", p)
	}
	if immediate {
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	return u.String()
}

// retryBusy calls f until it returns something other than SQLITE_BUSY, for
// at most busyTimeout. SQLite's busy handler does not cover every case:
// when several connections open a new file at once, the switch from the
// rollback journal to WAL can fail with SQLITE_BUSY at once, because
// waiting could deadlock. Retrying the whole step from the start (a new
// connection, a new transaction) resolves it.
func retryBusy(f func() error) error {
	deadline := time.Now().Add(busyTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := f()
		if !isCode(err, sqlite3.SQLITE_BUSY) || time.Now().Add(wait).After(deadline) {
			return err
		}
		time.Sleep(wait)
	}
}

// isCode reports whether err is a SQLite error whose primary result code
// is code (the low byte of an extended code).
func isCode(err error, code int) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == code
}

// isExtendedCode reports whether err is a SQLite error with the extended
// result code code.
func isExtendedCode(err error, code int) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code() == code
}

// setup makes a new file private, switches the database to WAL mode (a
// setting kept in the file) and brings this package's schema up to date.
func setup(ctx context.Context, w *sql.DB, path string, isNew bool) error {
	c, err := w.Conn(ctx) // opens, and if need be creates, the file
	if err != nil {
		return fmt.Errorf("sqliteusers: open: %w", err)
	}
	defer c.Close()
	if isNew {
		// SQLite creates the file with mode 0644 less the umask. Tighten
		// it before anything is written to it; SQLite then gives the -wal
		// and -shm files the same mode. (Creating the file ourselves would
		// mean closing a descriptor of it, which drops the locks any other
		// connection in this process may already hold on it.)
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("sqliteusers: %w", err)
		}
	}
	var mode string
	if err := c.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return fmt.Errorf("sqliteusers: enable WAL mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("sqliteusers: cannot enable WAL mode (the journal mode stays %q): is the file on a filesystem that supports shared memory?", mode)
	}
	if err := c.Close(); err != nil { // give the connection back for migrate
		return fmt.Errorf("sqliteusers: open: %w", err)
	}
	return migrate(ctx, w)
}
