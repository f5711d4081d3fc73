package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

var ctx = context.Background()

// openTemp opens a Store on a new file in a test directory and closes it
// when the test ends.
func openTemp(t *testing.T) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "sessions.db"))
}

// openAt opens a Store on path and closes it when the test ends.
func openAt(t testing.TB, path string) *Store {
	t.Helper()
	st, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

func TestStore(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) session.Store { return openTemp(t) },
		Raw: func(t *testing.T, st session.Store) []byte {
			// The database and its -wal and -shm files, as they are on
			// disk while the store is open: recent commits are still in
			// the -wal file. cat reads them, in another process, because
			// closing a descriptor of them here would drop SQLite's locks
			// (see the package doc).
			path := st.(*Store).path
			files := []string{path}
			for _, f := range []string{path + "-wal", path + "-shm"} {
				if _, err := os.Stat(f); err == nil {
					files = append(files, f)
				}
			}
			raw, err := exec.Command("cat", files...).Output()
			if err != nil {
				t.Fatalf("cat %q: %v", files, err)
			}
			return raw
		},
		Shared: func(t *testing.T, st session.Store) session.Store { return openAt(t, st.(*Store).path) },
	})
}

// TestConcurrentOpen opens a new file from several handles at once: the
// schema must be created exactly once, without errors.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "sessions.db")
	const n = 8
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(path) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		defer stores[i].Close()
	}
	if t.Failed() {
		return
	}
	s := storetest.NewSession(storetest.NewID())
	storetest.MustCreate(t, stores[0], s)
	if _, err := stores[n-1].ByID(ctx, s.ID); err != nil {
		t.Errorf("ByID through another handle: %v", err)
	}
}

// TestEpochFilePrivate checks the mode of the file of cache counters that
// Open creates beside the database. (sqlitefile's tests check the
// database's own files and directory.)
func TestEpochFilePrivate(t *testing.T) {
	st := openTemp(t)
	fi, err := os.Stat(st.path + "-epoch")
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode of %s-epoch: got %v, want 0600", st.path, got)
	}
}

func TestReopenKeepsSessions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s := storetest.NewSession(storetest.NewID())
	s.PrevTokenHash = storetest.NewHash()
	s.Data = []byte(`{"k":"v"}`)
	storetest.MustCreate(t, st, s)
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got, err := openAt(t, path).ByHash(ctx, s.PrevTokenHash)
	if err != nil {
		t.Fatalf("ByHash after reopening: %v", err)
	}
	if got.ID != s.ID || !got.CreatedAt.Equal(s.CreatedAt) || string(got.Data) != `{"k":"v"}` {
		t.Errorf("after reopening: got %+v, want %+v", got, s)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	openAt(t, path)
	db := rawDB(t, path)
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	if st, err := Open(path); err == nil {
		st.Close()
		t.Fatal("Open of a database with a newer schema succeeded, want an error")
	}
}

// TestTimes checks that times round-trip to the nanosecond, that the zero
// time survives, and that times int64 nanoseconds cannot hold keep their
// order relative to now.
func TestTimes(t *testing.T) {
	st := openTemp(t)
	s := storetest.NewSession(storetest.NewID())
	s.CreatedAt = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	s.AuthenticatedAt = time.Time{}
	s.RotatedAt = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	s.AbsoluteDeadline = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	storetest.MustCreate(t, st, s)
	got, err := st.ByID(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(s.CreatedAt) {
		t.Errorf("CreatedAt: got %v, want %v", got.CreatedAt, s.CreatedAt)
	}
	if !got.AuthenticatedAt.IsZero() {
		t.Errorf("zero AuthenticatedAt came back as %v", got.AuthenticatedAt)
	}
	if !got.RotatedAt.Before(time.Now()) || !got.AbsoluteDeadline.After(time.Now().AddDate(200, 0, 0)) {
		t.Errorf("out-of-range times lost their order: rotated %v, absolute deadline %v", got.RotatedAt, got.AbsoluteDeadline)
	}
}

// rawDB opens path directly, bypassing the Store, and closes it when the
// test ends.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // so that connection pragmas hold for every statement
	t.Cleanup(func() { db.Close() })
	return db
}

// TestCorruptRow damages stored rows behind the Store's back and checks
// that reading them fails with ErrInvalidRecord, not a panic or a bogus
// session.
func TestCorruptRow(t *testing.T) {
	tests := []struct {
		name   string
		damage string // SQL with ?1 = the session's ID
	}{
		{"roles not JSON", `UPDATE sessions SET roles = 'admin,ops' WHERE id = ?1`},
		{"roles not an array", `UPDATE sessions SET roles = '{"admin":true}' WHERE id = ?1`},
		{"roles not strings", `UPDATE sessions SET roles = '[1,2]' WHERE id = ?1`},
		{"short token hash", `UPDATE sessions SET token_hash = x'0102' WHERE id = ?1`},
		{"empty token hash", `UPDATE sessions SET token_hash = x'' WHERE id = ?1`},
		{"long previous hash", `UPDATE sessions SET prev_token_hash = zeroblob(33) WHERE id = ?1`},
		{"remember out of range", `UPDATE sessions SET remember = 7 WHERE id = ?1`},
	}
	path := filepath.Join(t.TempDir(), "sessions.db")
	st := openAt(t, path)
	db := rawDB(t, path)
	// The schema's CHECKs would refuse these writes; damage does not ask.
	if _, err := db.Exec("PRAGMA ignore_check_constraints = ON"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := storetest.NewSession(storetest.NewID())
			storetest.MustCreate(t, st, s)
			if _, err := db.Exec(tt.damage, s.ID); err != nil {
				t.Fatalf("damaging the row: %v", err)
			}
			storetest.CheckDamaged(t, st, s)
		})
	}

	t.Run("swept", func(t *testing.T) {
		s := storetest.NewSession(storetest.NewID())
		s.AbsoluteDeadline = time.Now().Add(-time.Minute)
		storetest.MustCreate(t, st, s)
		if _, err := db.Exec(`UPDATE sessions SET roles = 'garbage' WHERE id = ?1`, s.ID); err != nil {
			t.Fatal(err)
		}
		gone, err := st.DeleteExpired(ctx, time.Now(), 100)
		if !errors.Is(err, session.ErrInvalidRecord) {
			t.Errorf("DeleteExpired: got %v, want an error wrapping ErrInvalidRecord", err)
		}
		if len(gone) != 1 || gone[0].ID != s.ID || gone[0].UserID != s.UserID {
			t.Errorf("DeleteExpired returned %+v, want the damaged session's ID and user", gone)
		}
		if err := st.Delete(ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("the damaged expired session is still stored: Delete gave %v", err)
		}
	})
}

var namedParam = regexp.MustCompile(`:(\w+)`)

// TestQueryPlans checks the plan of every statement: none scans the whole
// table or sorts in a temporary B-tree, and ByHash finds a current token
// by the table's integer key alone, touching the index of previous
// tokens only in the arm that runs when that finds nothing.
func TestQueryPlans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	openAt(t, path)
	db := rawDB(t, path)
	const (
		byKey  = "SEARCH sessions USING INTEGER PRIMARY KEY (rowid=?)"
		byID   = "SEARCH sessions USING INDEX sqlite_autoindex_sessions_1 (id=?)"
		byUser = "SEARCH sessions USING INDEX sessions_user_id (user_id=?)"
	)
	tests := []struct {
		name, sql string
		want      []string
	}{
		{"ByHash", sqlByHash, []string{
			"COMPOUND QUERY",
			"LEFT-MOST SUBQUERY",
			byKey,
			"UNION ALL",
			"SEARCH sessions USING INDEX sessions_prev_token_hash (prev_token_hash=?)",
		}},
		{"ByID", sqlByID, []string{byID}},
		{"ListByUser", sqlListByUser, []string{byUser}},
		{"Exists", sqlExists, []string{byID}},
		{"Live", sqlLive, []string{byUser}},
		{"Update", sqlUpdate, []string{byID}},
		{"Touch", sqlTouch, []string{byID}},
		{"Delete", sqlDeleteID, []string{byID}},
		{"DeleteByUser", sqlDeleteByUser, []string{"SEARCH sessions USING COVERING INDEX sessions_user_id (user_id=?)"}},
		{"DeleteExpired", sqlDeleteExpired, []string{
			byKey,
			"LIST SUBQUERY 1",
			"SEARCH sessions USING INDEX sessions_expires_at (expires_at<?)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// EXPLAIN runs nothing, but every parameter needs a value.
			var args []any
			for i := 1; strings.Contains(tt.sql, fmt.Sprintf("?%d", i)); i++ {
				args = append(args, 0)
			}
			seen := map[string]bool{}
			for _, m := range namedParam.FindAllStringSubmatch(tt.sql, -1) {
				if !seen[m[1]] {
					seen[m[1]] = true
					args = append(args, sql.Named(m[1], 0))
				}
			}
			rows, err := db.Query("EXPLAIN QUERY PLAN "+tt.sql, args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			for _, step := range plan {
				if strings.HasPrefix(step, "SCAN") || strings.Contains(step, "TEMP B-TREE") {
					t.Errorf("plan %q has the step %q", plan, step)
				}
			}
			if !slices.Equal(plan, tt.want) {
				t.Errorf("plan:\n got %q\nwant %q", plan, tt.want)
			}
		})
	}
}

// TestHashKey checks that the table key is the hash's first 63 bits, never
// negative.
func TestHashKey(t *testing.T) {
	tests := []struct {
		prefix string // the hash's first 8 bytes, in hex
		want   int64
	}{
		{"0000000000000000", 0},
		{"0000000000000001", 0},
		{"0000000000000002", 1},
		{"8000000000000000", 1 << 62},
		{"ffffffffffffffff", math.MaxInt64},
		{"0123456789abcdef", 0x0123456789abcdef >> 1},
	}
	for _, tt := range tests {
		var h session.Hash
		if _, err := hex.Decode(h[:8], []byte(tt.prefix)); err != nil {
			t.Fatal(err)
		}
		for i := 8; i < len(h); i++ {
			h[i] = 0xa5 // the rest of the hash plays no part
		}
		if got := hashKey(h); got != tt.want {
			t.Errorf("hashKey(%s...) = %#x, want %#x", tt.prefix, got, tt.want)
		}
	}
}

// colliding returns a hash that differs from h but has the same table key:
// the same first 63 bits.
func colliding(h session.Hash) session.Hash {
	h[7] ^= 1     // the 64th bit, which hashKey drops
	h[31] ^= 0xff // and the tail
	return h
}

// TestHashCollision checks that a session whose token hash has another
// session's key is refused with ErrHashCollision, by Create (both ways it
// commits) and by Update, and that neither session is disturbed.
func TestHashCollision(t *testing.T) {
	st := openTemp(t)
	first := storetest.NewSession(storetest.NewID())
	storetest.MustCreate(t, st, first)
	clash := colliding(first.TokenHash)
	if hashKey(clash) != hashKey(first.TokenHash) || clash == first.TokenHash {
		t.Fatal("colliding does not collide")
	}

	for _, lim := range []session.Limit{{}, {Max: 10}} {
		s := storetest.NewSession(storetest.NewID())
		s.TokenHash = clash
		if _, err := st.Create(ctx, s, lim); !errors.Is(err, ErrHashCollision) {
			t.Errorf("Create with limit %d of a colliding hash: got %v, want ErrHashCollision", lim.Max, err)
		}
		if _, err := st.ByID(ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("the refused session was stored: ByID gave %v", err)
		}
	}

	// Rotating another session to the colliding hash fails the same way.
	other := storetest.NewSession(storetest.NewID())
	storetest.MustCreate(t, st, other)
	rotated := other.Clone()
	rotated.PrevTokenHash, rotated.TokenHash = other.TokenHash, clash
	if err := st.Update(ctx, rotated); !errors.Is(err, ErrHashCollision) {
		t.Errorf("Update to a colliding hash: got %v, want ErrHashCollision", err)
	}
	if got, err := st.ByHash(ctx, other.TokenHash); err != nil || got.Version != other.Version {
		t.Errorf("after the refused rotation, ByHash(old token) gave %+v, %v; want the unchanged session", got, err)
	}

	if _, err := st.ByHash(ctx, clash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ByHash(colliding hash): got %v, want ErrNotFound", err)
	}
	if got, err := st.ByHash(ctx, first.TokenHash); err != nil || got.ID != first.ID {
		t.Errorf("ByHash(first hash): got %+v, %v; want session %s", got, err, first.ID)
	}

	// A duplicate ID is a different failure.
	dup := storetest.NewSession(storetest.NewID())
	dup.ID = first.ID
	if _, err := st.Create(ctx, dup, session.Limit{}); err == nil || errors.Is(err, ErrHashCollision) {
		t.Errorf("Create with a duplicate ID: got %v, want an error other than ErrHashCollision", err)
	}
}

// TestPragmas checks this package's own settings of the file, the
// options it gives sqlitefile: the page size of a new file, and that only
// the readers map the file (on 64-bit platforms). sqlitefile's tests check
// that options reach every connection, and the settings every file gets
// (WAL, synchronous=FULL, busy_timeout, read-only readers, IMMEDIATE
// writes).
func TestPragmas(t *testing.T) {
	st := openTemp(t)
	readerMmap := 0
	if strconv.IntSize == 64 {
		readerMmap = mmapSize
	}
	tests := []struct {
		pool   string
		db     *sql.DB
		pragma string
		want   int
	}{
		{"writer", st.w, "page_size", pageSize},
		{"reader", st.r, "page_size", pageSize},
		{"writer", st.w, "mmap_size", 0},
		{"reader", st.r, "mmap_size", readerMmap},
	}
	for _, tt := range tests {
		var got int
		if err := tt.db.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("%s pool: PRAGMA %s is %d, want %d", tt.pool, tt.pragma, got, tt.want)
		}
	}
}
