// Package sqlitestore keeps sessions in one SQLite database file: the
// embedded, durable default store. It uses modernc.org/sqlite, a pure-Go
// SQLite, so it needs no cgo.
//
//	st, err := sqlitestore.Open("sessiond-data/sessiond.db")
//	if err != nil {
//		return err
//	}
//	defer st.Close()
//	m, err := session.New(st, session.Config{})
//
// Store implements session.Sweeper too: the Manager's Sweep deletes
// expired rows to reclaim space.
//
// # Durability
//
// The database runs in WAL mode with synchronous=FULL: every commit syncs
// the write-ahead log to stable storage before Create, Update, Touch or
// Delete returns. A session that Create acknowledged therefore survives the
// process being killed (kill -9) and, as far as the disk and filesystem
// honour fsync, a power loss. Touches that arrive while another commit is
// under way are written together in the next one, so that a server whose
// sessions all come due for an idle-deadline write at once pays one fsync
// per group instead of one per request. A killed process leaves a -wal
// file beside the database; the next Open replays it. Back up the
// database with SQLite's backup API or VACUUM INTO, not by copying the
// file alone, which misses whatever is still in the -wal file.
//
// # Several processes
//
// Several processes (a server and a CLI, say) may open the same file at
// once, and so may several Stores in one process: each sees the others'
// commits at its next read, so a revocation by one takes effect at once
// for all.
//
// A Store answers repeated token lookups (ByHash) from memory, for up to
// 100,000 sessions, and only while it can prove nothing changed them: every
// process that opens the database shares a write counter, kept in a
// 16-byte file beside it (PATH-epoch, mode 0600) and mapped into memory,
// which every write that can end or change a session advances before it
// commits. A cached answer is used only while the counter has not moved
// since it was read, so a revocation by any process is never served from
// another's memory. The -epoch file holds no session data and needs no
// backup, but never delete or replace it while any process has the
// database open: processes on different counters would not see each
// other's revocations.
//
// SQLite allows one writer at a time; a writer waits up to five
// seconds (busy_timeout) for another process's write to finish before
// failing. Writes that read before they write (Create with a Limit, Update)
// begin their transactions IMMEDIATE, taking the write lock up front, so
// two processes cannot deadlock trying to upgrade a read to a write. The
// file must be on a local filesystem: SQLite's locks do not work over
// network filesystems, and WAL mode needs shared memory between the
// processes.
//
// Other code may keep tables of its own in the same file, through its own
// connections, but PRAGMA user_version is this package's schema version:
// it must not be used for anything else.
//
// Within one process, do not open the database files (the database, -wal
// or -shm) with os.Open or similar while a Store uses them: closing such a
// descriptor drops the POSIX locks SQLite holds on the file, unless OFD
// locking is enabled (see modernc.org/sqlite.OFDLocking).
//
// # Memory-mapped reads
//
// On 64-bit platforms the read connections map the first GiB of the
// database file into memory (PRAGMA mmap_size), which keeps a lookup in a
// store of a million sessions nearly as fast as in one of a thousand. The
// price is how a disk error shows: SQLite cannot catch an I/O error on a
// mapped page, so where a failing disk would make a read return an error,
// the kernel raises SIGBUS and the process crashes. Either way no session
// validates, and nothing acknowledged is lost (see Durability); the writer
// does not map the file. Never truncate or overwrite the database file
// while it is open (restore a backup into a new file and point the server
// at it): besides corrupting the data, that crashes every process reading
// it.
//
// # Expiry
//
// Expiry is enforced on read: every lookup, list, count, Touch and Update
// ignores sessions whose idle or absolute deadline has passed by the wall
// clock (time.Now), whether or not they have been swept, so a clock-driven
// deadline never depends on a background job. DeleteExpired (session.Sweeper)
// only reclaims space; the Manager calls it periodically.
//
// # What is stored
//
// Each session is one row of the table sessions, with a column per field,
// keyed by the first 63 bits of its token hash so that validating a token
// is one lookup of an integer key (see ErrHashCollision for the one
// consequence callers can see). Tokens are never stored, only their
// SHA-256 hashes, so a copy of the file holds no usable credential; it
// does hold user IDs, IP addresses, user agents and application data, so
// a file that Open creates gets mode 0600 before anything is written to it
// (and SQLite gives the -wal and -shm files the same mode), and a
// directory that Open creates gets mode 0700. Times are stored as INTEGER
// nanoseconds since the Unix epoch, which round-trips a time.Time exactly
// (up to its location and monotonic reading) between the years 1678 and
// 2262; times outside that range are clamped to it, which keeps every
// comparison with the present unchanged. The schema version is kept in
// PRAGMA user_version.
package sqlitestore
