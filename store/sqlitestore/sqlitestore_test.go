package sqlitestore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	})
}

func randID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randHash() session.Hash {
	var b [32]byte
	rand.Read(b[:])
	return sha256.Sum256(b[:])
}

// newSession returns a session for userID, live for an hour.
func newSession(userID string) *session.Session {
	now := time.Now()
	return &session.Session{
		ID:               randID(),
		TokenHash:        randHash(),
		UserID:           userID,
		Roles:            []string{"user"},
		CreatedAt:        now,
		AuthenticatedAt:  now,
		RotatedAt:        now,
		LastSeenAt:       now,
		IdleDeadline:     now.Add(30 * time.Minute),
		AbsoluteDeadline: now.Add(time.Hour),
		CreatedIP:        "192.0.2.1",
		CreatedUserAgent: "test",
		LastIP:           "192.0.2.1",
		LastUserAgent:    "test",
		Version:          1,
	}
}

func mustCreate(t *testing.T, st session.Store, s *session.Session) {
	t.Helper()
	if _, err := st.Create(ctx, s, session.Limit{}); err != nil {
		t.Fatalf("Create: %v", err)
	}
}

// TestTwoHandles opens two Stores on one file, as two processes sharing it
// would, and checks that each sees the other's writes at once.
func TestTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	a, b := openAt(t, path), openAt(t, path)

	user := randID()
	s := newSession(user)
	mustCreate(t, a, s)
	got, err := b.ByHash(ctx, s.TokenHash)
	if err != nil {
		t.Fatalf("ByHash on the second handle of a session created on the first: %v", err)
	}
	if got.ID != s.ID || got.UserID != user {
		t.Errorf("second handle returned session %s of user %s, want %s of %s", got.ID, got.UserID, s.ID, user)
	}

	later := time.Now().Add(time.Minute)
	if err := b.Touch(ctx, s.ID, session.TouchInfo{At: later, IP: "198.51.100.7", IdleDeadline: later.Add(time.Minute)}); err != nil {
		t.Fatalf("Touch on the second handle: %v", err)
	}
	if got, err := a.ByID(ctx, s.ID); err != nil || got.LastIP != "198.51.100.7" {
		t.Errorf("first handle after a Touch on the second: got %+v, %v; want last IP 198.51.100.7", got, err)
	}

	if err := b.Delete(ctx, s.ID); err != nil {
		t.Fatalf("Delete on the second handle: %v", err)
	}
	if _, err := a.ByHash(ctx, s.TokenHash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("first handle after revocation on the second: got %v, want ErrNotFound", err)
	}

	others := []*session.Session{newSession(user), newSession(user)}
	for _, s := range others {
		mustCreate(t, b, s)
	}
	if gone, err := a.DeleteByUser(ctx, user, ""); err != nil || len(gone) != 2 {
		t.Fatalf("DeleteByUser on the first handle: removed %q, %v; want 2", gone, err)
	}
	for _, s := range others {
		if _, err := b.ByHash(ctx, s.TokenHash); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("second handle after revoke-all on the first: got %v, want ErrNotFound", err)
		}
	}
}

// TestLimitAcrossHandles runs concurrent limited Creates through several
// handles on one file: the IMMEDIATE transaction, not a mutex in one Store,
// must keep the count right.
func TestLimitAcrossHandles(t *testing.T) {
	const handles, perHandle, max = 3, 10, 4
	path := filepath.Join(t.TempDir(), "sessions.db")
	var stores []*Store
	for range handles {
		stores = append(stores, openAt(t, path))
	}
	user := randID()
	var wg sync.WaitGroup
	for _, st := range stores {
		for range perHandle {
			wg.Go(func() {
				if _, err := st.Create(ctx, newSession(user), session.Limit{Max: max}); err != nil {
					t.Errorf("Create: %v", err)
				}
			})
		}
	}
	wg.Wait()
	list, err := stores[0].ListByUser(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != max {
		t.Errorf("after %d concurrent creates through %d handles with limit %d, the user holds %d sessions", handles*perHandle, handles, max, len(list))
	}
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
	s := newSession(randID())
	mustCreate(t, stores[0], s)
	if _, err := stores[n-1].ByID(ctx, s.ID); err != nil {
		t.Errorf("ByID through another handle: %v", err)
	}
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "sessiond")
	path := filepath.Join(dir, "sessions.db")
	st := openAt(t, path)
	mustCreate(t, st, newSession(randID()))
	for name, want := range map[string]os.FileMode{dir: 0o700, path: 0o600, path + "-wal": 0o600, path + "-shm": 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s: got %v, want %v", name, got, want)
		}
	}
}

func TestReopenKeepsSessions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(randID())
	s.PrevTokenHash = randHash()
	s.Data = []byte(`{"k":"v"}`)
	mustCreate(t, st, s)
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
	s := newSession(randID())
	s.CreatedAt = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	s.AuthenticatedAt = time.Time{}
	s.RotatedAt = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	s.AbsoluteDeadline = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	mustCreate(t, st, s)
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
			user := randID()
			s := newSession(user)
			mustCreate(t, st, s)
			if _, err := db.Exec(tt.damage, s.ID); err != nil {
				t.Fatalf("damaging the row: %v", err)
			}
			if got, err := st.ByID(ctx, s.ID); !errors.Is(err, session.ErrInvalidRecord) {
				t.Errorf("ByID: got %+v, %v; want ErrInvalidRecord", got, err)
			}
			if got, err := st.ByHash(ctx, s.TokenHash); err == nil || !(errors.Is(err, session.ErrInvalidRecord) || errors.Is(err, session.ErrNotFound)) {
				t.Errorf("ByHash: got %+v, %v; want ErrInvalidRecord (or ErrNotFound if the hash itself was damaged)", got, err)
			}
			if got, err := st.ListByUser(ctx, user); !errors.Is(err, session.ErrInvalidRecord) {
				t.Errorf("ListByUser: got %d sessions, %v; want ErrInvalidRecord", len(got), err)
			}
			// The damaged session can still be revoked.
			if err := st.Delete(ctx, s.ID); err != nil {
				t.Errorf("Delete: %v", err)
			}
		})
	}

	t.Run("swept", func(t *testing.T) {
		s := newSession(randID())
		s.AbsoluteDeadline = time.Now().Add(-time.Minute)
		mustCreate(t, st, s)
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

// TestQueryPlans checks that no statement scans the whole table or sorts
// in a temporary B-tree: each must find its rows through an index.
func TestQueryPlans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	openAt(t, path)
	db := rawDB(t, path)
	for name, q := range map[string]string{
		"ByHash": sqlByHash, "ByID": sqlByID, "ListByUser": sqlListByUser, "Exists": sqlExists, "Live": sqlLive,
		"Update": sqlUpdate, "Touch": sqlTouch, "Delete": sqlDeleteID, "DeleteByUser": sqlDeleteByUser, "DeleteExpired": sqlDeleteExpired,
	} {
		// EXPLAIN runs nothing, but every parameter needs a value.
		var args []any
		for i := 1; strings.Contains(q, fmt.Sprintf("?%d", i)); i++ {
			args = append(args, 0)
		}
		seen := map[string]bool{}
		for _, m := range namedParam.FindAllStringSubmatch(q, -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				args = append(args, sql.Named(m[1], 0))
			}
		}
		rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, step := range plan {
			if strings.HasPrefix(step, "SCAN") || strings.Contains(step, "TEMP B-TREE") {
				t.Errorf("%s: plan %q has the step %q", name, plan, step)
			}
		}
	}
}

// TestPragmas checks the settings durability and sharing depend on, on
// every connection of both pools.
func TestPragmas(t *testing.T) {
	st := openTemp(t)
	want := map[string]string{"journal_mode": "wal", "synchronous": "2", "busy_timeout": "5000"}
	for pool, db := range map[string]*sql.DB{"writer": st.w, "reader": st.r} {
		// Hold several connections at once so that each is checked.
		var conns []*sql.Conn
		for range 3 {
			c, err := db.Conn(ctx)
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
			if pool == "writer" {
				break // it has one connection
			}
		}
		for _, c := range conns {
			c.Close()
		}
	}
	if _, err := st.r.ExecContext(ctx, "DELETE FROM sessions"); err == nil {
		t.Errorf("the reader pool can write")
	}
}
