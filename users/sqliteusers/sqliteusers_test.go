package sqliteusers

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/users"
)

var ctx = context.Background()

// openTemp opens a DB on a new file in a test directory and closes it when
// the test ends.
func openTemp(t *testing.T) *DB {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "sessiond.db"))
}

// openAt opens a DB on path and closes it when the test ends.
func openAt(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(path)
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

// newUser returns a user named username with a fresh ID, as Accounts.Add
// would make it (but with a dummy hash).
func newUser(username string) *users.User {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &users.User{
		ID:           "u_" + rand.Text(),
		Username:     username,
		Roles:        []string{"user"},
		PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U",
		CreatedAt:    now,
		UpdatedAt:    now,
	}
}

func mustCreate(t *testing.T, db *DB, u *users.User) {
	t.Helper()
	if err := db.Create(ctx, u); err != nil {
		t.Fatalf("Create(%q): %v", u.Username, err)
	}
}

func TestDirectoryRoundTrip(t *testing.T) {
	db := openTemp(t)
	u := &users.User{
		ID:           "u_1",
		Username:     "alice@example.com",
		Roles:        []string{"admin", "user"},
		Disabled:     true,
		PasswordHash: newUser("x").PasswordHash,
		CreatedAt:    time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
		UpdatedAt:    time.Date(2026, 7, 8, 9, 10, 11, 12, time.UTC),
	}
	mustCreate(t, db, u)
	for name, get := range map[string]func() (*users.User, error){
		"ByID":       func() (*users.User, error) { return db.ByID(ctx, u.ID) },
		"ByUsername": func() (*users.User, error) { return db.ByUsername(ctx, u.Username) },
	} {
		got, err := get()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, u) {
			t.Errorf("%s: got %+v, want %+v", name, got, u)
		}
	}

	// No roles and zero times read back as nil and zero.
	bare := &users.User{ID: "u_2", Username: "bob", Roles: []string{}, PasswordHash: "h"}
	mustCreate(t, db, bare)
	got, err := db.ByID(ctx, bare.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (&users.User{ID: "u_2", Username: "bob", PasswordHash: "h"}); !reflect.DeepEqual(got, want) {
		t.Errorf("bare user: got %+v, want %+v", got, want)
	}

	// Update replaces every field but the ID.
	u.Username, u.Roles, u.Disabled, u.PasswordHash = "alice", nil, false, "h2"
	u.UpdatedAt = u.UpdatedAt.Add(time.Hour)
	if err := db.Update(ctx, u); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got, err := db.ByID(ctx, u.ID); err != nil || !reflect.DeepEqual(got, u) {
		t.Errorf("after Update: got %+v, %v, want %+v", got, err, u)
	}
	if _, err := db.ByUsername(ctx, "alice@example.com"); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("ByUsername(old name) after rename: got %v, want ErrNotFound", err)
	}
}

func TestNotFound(t *testing.T) {
	db := openTemp(t)
	mustCreate(t, db, newUser("alice"))
	for name, err := range map[string]error{
		"ByID":                   second(db.ByID(ctx, "u_nobody")),
		"ByUsername":             second(db.ByUsername(ctx, "nobody")),
		"ByUsername other case":  second(db.ByUsername(ctx, "Alice")),
		"ByUsername with spaces": second(db.ByUsername(ctx, " alice ")),
		"ByUsername empty":       second(db.ByUsername(ctx, "")),
		"Update":                 db.Update(ctx, newUser("nobody")),
	} {
		if err != users.ErrNotFound {
			t.Errorf("%s: got %v, want users.ErrNotFound", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestUsernameUnique(t *testing.T) {
	db := openTemp(t)
	alice := newUser("alice")
	mustCreate(t, db, alice)

	if err := db.Create(ctx, newUser("alice")); err != users.ErrExists {
		t.Errorf("Create with a taken username: got %v, want users.ErrExists", err)
	}
	// Usernames are compared exactly: another case is another user.
	mustCreate(t, db, newUser("Alice"))

	// A duplicate ID is a bug in the caller, not a taken username.
	dup := newUser("carol")
	dup.ID = alice.ID
	if err := db.Create(ctx, dup); err == nil || errors.Is(err, users.ErrExists) {
		t.Errorf("Create with a duplicate ID: got %v, want an error other than ErrExists", err)
	}

	bob := newUser("bob")
	mustCreate(t, db, bob)
	bob.Username = "alice"
	if err := db.Update(ctx, bob); err != users.ErrExists {
		t.Errorf("Update to a taken username: got %v, want users.ErrExists", err)
	}
	if n, err := db.Count(ctx); err != nil || n != 3 {
		t.Errorf("Count: got %d, %v, want 3", n, err)
	}
}

func TestListAndCount(t *testing.T) {
	db := openTemp(t)
	if list, err := db.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List of none: got %v, %v", list, err)
	}
	if n, err := db.Count(ctx); err != nil || n != 0 {
		t.Errorf("Count of none: got %d, %v", n, err)
	}
	for _, name := range []string{"carol", "bob", "alice", "Alice", "_x"} {
		mustCreate(t, db, newUser(name))
	}
	list, err := db.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range list {
		got = append(got, u.Username)
	}
	// Byte order, as Go compares strings.
	if want := []string{"Alice", "_x", "alice", "bob", "carol"}; !reflect.DeepEqual(got, want) {
		t.Errorf("List: got %q, want %q", got, want)
	}
	if n, err := db.Count(ctx); err != nil || n != 5 {
		t.Errorf("Count: got %d, %v, want 5", n, err)
	}
}

func TestTimes(t *testing.T) {
	db := openTemp(t)
	u := newUser("alice")
	u.CreatedAt = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC) // zero nanoseconds, not the zero time
	u.UpdatedAt = time.Date(2262, 1, 1, 0, 0, 0, 1, time.FixedZone("X", 3600))
	mustCreate(t, db, u)
	got, err := db.ByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(u.CreatedAt) || got.CreatedAt.IsZero() || !got.UpdatedAt.Equal(u.UpdatedAt) || got.UpdatedAt.Location() != time.UTC {
		t.Errorf("times: got %v, %v, want %v, %v in UTC", got.CreatedAt, got.UpdatedAt, u.CreatedAt, u.UpdatedAt)
	}
	for _, tm := range []time.Time{time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		v := newUser("t" + rand.Text())
		v.CreatedAt = tm
		if err := db.Create(ctx, v); err == nil {
			t.Errorf("Create with CreatedAt %v: got no error, want one", tm)
		}
	}
}

// TestTwoHandles opens two DBs on one file, as two processes sharing it
// would, and checks that each sees the other's writes at once.
func TestTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessiond.db")
	a, b := openAt(t, path), openAt(t, path)

	u := newUser("alice")
	mustCreate(t, a, u)
	got, err := b.ByUsername(ctx, "alice")
	if err != nil || got.ID != u.ID {
		t.Fatalf("ByUsername through the other handle: got %+v, %v", got, err)
	}
	got.Disabled = true
	if err := b.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if got, err := a.ByID(ctx, u.ID); err != nil || !got.Disabled {
		t.Errorf("after Update through the other handle: got %+v, %v, want disabled", got, err)
	}
	if err := b.Create(ctx, newUser("alice")); err != users.ErrExists {
		t.Errorf("Create of a username taken through the other handle: got %v, want users.ErrExists", err)
	}

	e := event("login.succeeded", u.ID)
	if err := a.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got := query(t, b, audit.Filter{UserID: u.ID}); len(got) != 1 || got[0].ID != e.ID {
		t.Errorf("Query through the other handle: got %+v, want event %d", got, e.ID)
	}
}

// TestConcurrentOpen opens a new file from several handles at once: the
// schema must be created exactly once, without errors.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "sessiond.db")
	const n = 8
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = Open(path) })
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
	u := newUser("alice")
	mustCreate(t, dbs[0], u)
	if _, err := dbs[n-1].ByID(ctx, u.ID); err != nil {
		t.Errorf("ByID through another handle: %v", err)
	}
	if v := schemaVersion(t, path); v != len(migrations) {
		t.Errorf("schema version: got %d, want %d", v, len(migrations))
	}
}

// rawDB opens path with no settings of this package, for tests to look at
// or tamper with the file.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// schemaVersion returns this package's row in schema_versions.
func schemaVersion(t *testing.T, path string) int {
	t.Helper()
	var v int
	if err := rawDB(t, path).QueryRow("SELECT version FROM schema_versions WHERE component = 'users'").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessiond.db")
	openAt(t, path)
	if _, err := rawDB(t, path).Exec("UPDATE schema_versions SET version = 99 WHERE component = 'users'"); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(path); err == nil {
		db.Close()
		t.Fatal("Open of a database with a newer schema succeeded, want an error")
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessiond.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	u := newUser("alice")
	mustCreate(t, db, u)
	e := event("user.created", u.ID)
	if err := db.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, path)
	if got, err := db.ByID(ctx, u.ID); err != nil || !reflect.DeepEqual(got, u) {
		t.Errorf("after reopening: got %+v, %v, want %+v", got, err, u)
	}
	if got := query(t, db, audit.Filter{}); len(got) != 1 || got[0] != *e {
		t.Errorf("events after reopening: got %+v, want %+v", got, e)
	}
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "sessiond")
	path := filepath.Join(dir, "sessiond.db")
	db := openAt(t, path)
	mustCreate(t, db, newUser("alice"))
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

// TestPragmas checks the settings durability and sharing depend on, on
// every connection of both pools.
func TestPragmas(t *testing.T) {
	db := openTemp(t)
	want := map[string]string{"journal_mode": "wal", "synchronous": "2", "busy_timeout": "5000"}
	for pool, p := range map[string]*sql.DB{"writer": db.w, "reader": db.r} {
		// Hold several connections at once so that each is checked.
		var conns []*sql.Conn
		for range 2 {
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
			if pool == "writer" {
				break // it has one connection
			}
		}
		for _, c := range conns {
			c.Close()
		}
	}
	if _, err := db.r.ExecContext(ctx, "DELETE FROM users"); err == nil {
		t.Errorf("the reader pool can write")
	}
	// Write transactions take the write lock at BEGIN: a second writer
	// through another handle waits rather than failing to upgrade later.
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	other := rawDB(t, db.path)
	if _, err := other.Exec("PRAGMA busy_timeout = 0"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec("INSERT INTO audit_events (type, user_id, username, session_id, actor, reason, ip, user_agent) VALUES ('x', '', '', '', '', '', '', '')"); err == nil {
		t.Errorf("a write through another connection succeeded while a transaction of the writer pool was open: it did not BEGIN IMMEDIATE")
	}
}

// TestQueryPlans checks that the lookups and the audit queries use
// indexes and read them in ID order rather than sorting what they find.
func TestQueryPlans(t *testing.T) {
	db := openTemp(t)
	type plan struct {
		sql  string
		args []any
		want []string // in the plan
	}
	audited := func(f audit.Filter, types []string, want ...string) plan {
		q, args := querySQL(f, types)
		return plan{q, args, want}
	}
	for _, p := range []plan{
		{sqlByID, []any{"k"}, []string{"USING INDEX sqlite_autoindex_users_1 (id=?)"}},
		{sqlByUsername, []any{"k"}, []string{"USING INDEX sqlite_autoindex_users_2 (username=?)"}},
		audited(audit.Filter{}, nil, "SCAN audit_events"),
		audited(audit.Filter{Before: 5}, nil, "USING INTEGER PRIMARY KEY (rowid<?)"),
		audited(audit.Filter{UserID: "u"}, nil, "USING INDEX audit_events_user_id (user_id=?)"),
		audited(audit.Filter{UserID: "u", Before: 5}, nil, "USING INDEX audit_events_user_id (user_id=? AND id<?)"),
		audited(audit.Filter{UserID: "u", Type: "t."}, nil, "USING INDEX audit_events_user_id (user_id=?)"),
		audited(audit.Filter{Type: "t"}, nil, "USING INDEX audit_events_type (type=?)"),
		audited(audit.Filter{Type: "t", Before: 5}, nil, "USING INDEX audit_events_type (type=? AND id<?)"),
		audited(audit.Filter{Type: "t."}, []string{"t.a", "t.b"}, "USING INDEX audit_events_type (type=?)"),
		audited(audit.Filter{Type: "t.", Before: 5}, []string{"t.a", "t.b"}, "USING INDEX audit_events_type (type=? AND id<?)"),
	} {
		rows, err := db.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+p.sql, p.args...)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			got = append(got, detail)
		}
		rows.Close()
		plan := strings.Join(got, "; ")
		for _, w := range p.want {
			if !strings.Contains(plan, w) {
				t.Errorf("plan of %s: got %q, want %q in it", p.sql, plan, w)
			}
		}
		// A sort right after reading the table sorts every row found. (A
		// merge of families sorts each arm's output, at most Limit rows.)
		for i, step := range got {
			if strings.HasPrefix(step, "USE TEMP B-TREE") && i > 0 && !strings.HasPrefix(got[i-1], "SCAN (subquery") {
				t.Errorf("plan of %s sorts what it reads: %q", p.sql, plan)
			}
		}
	}
}
