package sqlitefile

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sqlite3 "modernc.org/sqlite/lib"
)

var ctx = context.Background()

// openAt opens path with o and closes it when the test ends.
func openAt(t *testing.T, path string, o Options) *DB {
	t.Helper()
	db, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// createItems is a Migrate that creates the table items once, counting
// in created how many times it did, in one transaction that checks PRAGMA
// user_version first, as the packages' migrations do.
func createItems(created *atomic.Int32) func(context.Context, *sql.DB) error {
	return func(ctx context.Context, w *sql.DB) error {
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return err
		}
		if v > 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "CREATE TABLE items (k TEXT PRIMARY KEY); PRAGMA user_version = 1"); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		if created != nil {
			created.Add(1)
		}
		return nil
	}
}

// rawDB opens path with none of Open's pools, one connection, for tests to
// look at or lock the file, and closes it when the test ends.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", DSN(path, false))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "sessiond")
	path := filepath.Join(dir, "sessiond.db")
	db := openAt(t, path, Options{Migrate: createItems(nil)})
	if _, err := db.W.ExecContext(ctx, "INSERT INTO items VALUES ('a')"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{dir: 0o700, path: 0o600, path + "-wal": 0o600, path + "-shm": 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s: got %v, want %v", name, got, want)
		}
	}
	if db.Path != path {
		t.Errorf("Path: got %q, want %q", db.Path, path)
	}
}

// TestPragmas checks the settings durability and sharing depend on, and
// the options, on every connection of both pools; that the readers cannot
// write; and that the writer's transactions take the write lock at BEGIN.
func TestPragmas(t *testing.T) {
	tests := []struct {
		name               string
		o                  Options
		pageSize, mmapSize string // of a new file; of a reader
		readers            int
	}{
		{"defaults", Options{}, "4096", "0", runtime.GOMAXPROCS(0)},
		{"options", Options{PageSize: 16384, ReaderMmapSize: 1 << 20, Readers: 3}, "16384", strconv.Itoa(1 << 20), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Migrate = createItems(nil)
			db := openAt(t, filepath.Join(t.TempDir(), "x.db"), tt.o)
			for pool, p := range map[string]*sql.DB{"writer": db.W, "reader": db.R} {
				want := map[string]string{
					"journal_mode": "wal", "synchronous": "2", "busy_timeout": "5000",
					"page_size": tt.pageSize, "mmap_size": "0", "query_only": "0",
				}
				wantConns := 1
				if pool == "reader" {
					want["mmap_size"], want["query_only"], wantConns = tt.mmapSize, "1", tt.readers
				}
				if got := p.Stats().MaxOpenConnections; got != wantConns {
					t.Errorf("%s pool: at most %d connections, want %d", pool, got, wantConns)
				}
				// Hold every connection at once so that each is checked.
				var conns []*sql.Conn
				for range wantConns {
					c, err := p.Conn(ctx)
					if err != nil {
						t.Fatal(err)
					}
					conns = append(conns, c)
					for pragma, v := range want {
						var got string
						if err := c.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
							t.Fatal(err)
						}
						if got != v {
							t.Errorf("%s pool: PRAGMA %s is %s, want %s", pool, pragma, got, v)
						}
					}
				}
				for _, c := range conns {
					c.Close()
				}
			}
			if _, err := db.R.ExecContext(ctx, "INSERT INTO items VALUES ('r')"); err == nil {
				t.Errorf("the reader pool can write")
			}
			// A write transaction takes the write lock at BEGIN: a write
			// through another connection fails while it is open, rather
			// than the transaction failing to upgrade later.
			tx, err := db.W.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			other := rawDB(t, db.Path)
			if _, err := other.Exec("PRAGMA busy_timeout = 0"); err != nil {
				t.Fatal(err)
			}
			if _, err := other.Exec("INSERT INTO items VALUES ('o')"); !IsCode(err, sqlite3.SQLITE_BUSY) {
				t.Errorf("a write through another connection while a transaction of the writer pool was open: got %v, want SQLITE_BUSY (it did not BEGIN IMMEDIATE)", err)
			}
		})
	}
}

// TestPageSizeOfExistingFile checks that PageSize applies to new files
// only: a file keeps the page size it was created with.
func TestPageSizeOfExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	first, err := Open(path, Options{Migrate: createItems(nil)})
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	db := openAt(t, path, Options{PageSize: 16384, Migrate: createItems(nil)})
	var got int
	if err := db.R.QueryRowContext(ctx, "PRAGMA page_size").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != 4096 {
		t.Errorf("page size: got %d, want the file's 4096", got)
	}
}

// TestConcurrentOpen opens a new file from several handles at once: the
// switch to WAL mode and Migrate must succeed for all of them, and create
// the schema exactly once.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "x.db")
	const n = 8
	var created atomic.Int32
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = Open(path, Options{Migrate: createItems(&created)}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		defer dbs[i].Close()
	}
	if t.Failed() {
		return
	}
	if got := created.Load(); got != 1 {
		t.Errorf("the schema was created %d times, want once", got)
	}
	if _, err := dbs[0].W.ExecContext(ctx, "INSERT INTO items VALUES ('a')"); err != nil {
		t.Fatal(err)
	}
	var k string
	if err := dbs[n-1].R.QueryRowContext(ctx, "SELECT k FROM items").Scan(&k); err != nil || k != "a" {
		t.Errorf("read through another handle: got %q, %v, want \"a\"", k, err)
	}
}

// TestPathWithURICharacters checks that characters with a meaning in a
// URI, in the directory's and the file's names, name the file and nothing
// else.
func TestPathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c %41&d=e")
	path := filepath.Join(dir, "f?_pragma=query_only(1)#x.db")
	db := openAt(t, path, Options{Migrate: createItems(nil)})
	if _, err := db.W.ExecContext(ctx, "INSERT INTO items VALUES ('a')"); err != nil {
		t.Fatalf("write: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	base := filepath.Base(path)
	if want := []string{base, base + "-shm", base + "-wal"}; !slices.Equal(names, want) {
		t.Errorf("files in the directory: got %q, want %q", names, want)
	}
}

// TestMigrateError checks that Open returns Migrate's error, and leaves
// nothing open.
func TestMigrateError(t *testing.T) {
	boom := errors.New("boom")
	db, err := Open(filepath.Join(t.TempDir(), "x.db"), Options{Migrate: func(context.Context, *sql.DB) error { return boom }})
	if !errors.Is(err, boom) || db != nil {
		t.Errorf("Open: got %v, %v; want nil and an error wrapping Migrate's", db, err)
	}
}

// TestErrorCodes checks IsCode and IsExtendedCode on errors SQLite
// returns.
func TestErrorCodes(t *testing.T) {
	db := openAt(t, filepath.Join(t.TempDir(), "x.db"), Options{Migrate: createItems(nil)})
	if _, err := db.W.ExecContext(ctx, "INSERT INTO items VALUES ('a')"); err != nil {
		t.Fatal(err)
	}
	_, dup := db.W.ExecContext(ctx, "INSERT INTO items VALUES ('a')")
	if dup == nil {
		t.Fatal("a duplicate key was inserted")
	}
	wrapped := fmt.Errorf("insert: %w", dup)
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"IsCode(dup, CONSTRAINT)", IsCode(dup, sqlite3.SQLITE_CONSTRAINT), true},
		{"IsCode(wrapped, CONSTRAINT)", IsCode(wrapped, sqlite3.SQLITE_CONSTRAINT), true},
		{"IsCode(dup, BUSY)", IsCode(dup, sqlite3.SQLITE_BUSY), false},
		{"IsExtendedCode(dup, CONSTRAINT_PRIMARYKEY)", IsExtendedCode(dup, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY), true},
		{"IsExtendedCode(wrapped, CONSTRAINT_PRIMARYKEY)", IsExtendedCode(wrapped, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY), true},
		{"IsExtendedCode(dup, CONSTRAINT_UNIQUE)", IsExtendedCode(dup, sqlite3.SQLITE_CONSTRAINT_UNIQUE), false},
		{"IsExtendedCode(dup, CONSTRAINT)", IsExtendedCode(dup, sqlite3.SQLITE_CONSTRAINT), false},
		{"IsCode(nil, CONSTRAINT)", IsCode(nil, sqlite3.SQLITE_CONSTRAINT), false},
		{"IsCode(other error, CONSTRAINT)", IsCode(errors.New("constraint"), sqlite3.SQLITE_CONSTRAINT), false},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v (error: %v)", tt.name, tt.got, tt.want, dup)
		}
	}
}

// TestRetryBusy holds the write lock through another connection for a
// while: RetryBusy keeps retrying a write that fails with SQLITE_BUSY at
// once until the lock is released, and returns any other error at once.
func TestRetryBusy(t *testing.T) {
	db := openAt(t, filepath.Join(t.TempDir(), "x.db"), Options{Migrate: createItems(nil)})
	writer := rawDB(t, db.Path)
	if _, err := writer.Exec("PRAGMA busy_timeout = 0"); err != nil {
		t.Fatal(err)
	}
	lock, err := db.W.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	const held = 100 * time.Millisecond
	released := make(chan struct{})
	go func() {
		time.Sleep(held)
		lock.Rollback()
		close(released)
	}()
	start := time.Now()
	calls := 0
	err = RetryBusy(func() error {
		calls++
		_, err := writer.Exec("INSERT INTO items VALUES ('a')")
		return err
	})
	<-released
	if err != nil {
		t.Fatalf("RetryBusy: %v", err)
	}
	if calls < 2 || time.Since(start) < held {
		t.Errorf("RetryBusy returned after %d calls in %v, want several calls over at least %v", calls, time.Since(start), held)
	}

	calls = 0
	err = RetryBusy(func() error {
		calls++
		_, err := writer.Exec("INSERT INTO items VALUES ('a')") // a duplicate
		return err
	})
	if !IsCode(err, sqlite3.SQLITE_CONSTRAINT) || calls != 1 {
		t.Errorf("RetryBusy of a failing insert: got %v after %d calls, want the constraint error after one", err, calls)
	}
}

func TestPrepare(t *testing.T) {
	db := openAt(t, filepath.Join(t.TempDir(), "x.db"), Options{Migrate: createItems(nil)})
	var ins, sel, bad *sql.Stmt
	if err := Prepare(ctx,
		Stmt{Dst: &ins, DB: db.W, SQL: "INSERT INTO items VALUES (?1)"},
		Stmt{Dst: &sel, DB: db.R, SQL: "SELECT count(*) FROM items"},
	); err != nil {
		t.Fatal(err)
	}
	if _, err := ins.ExecContext(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := sel.QueryRowContext(ctx).Scan(&n); err != nil || n != 1 {
		t.Errorf("count through the prepared SELECT: got %d, %v, want 1", n, err)
	}
	const wrong = "SELECT nothing FROM nowhere"
	err := Prepare(ctx, Stmt{Dst: &bad, DB: db.R, SQL: wrong})
	if err == nil || !strings.Contains(err.Error(), wrong) || bad != nil {
		t.Errorf("Prepare of %q: got %v, want an error that quotes it", wrong, err)
	}
}
