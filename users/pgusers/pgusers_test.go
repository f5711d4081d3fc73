package pgusers

import (
	"context"
	"crypto/rand"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/users"
)

var ctx = context.Background()

// openAt opens a DB on the database at url and closes it when the test
// ends.
func openAt(t testing.TB, url string) *DB {
	t.Helper()
	db, err := Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// openTemp opens a DB on a schema of the test's own.
func openTemp(t testing.TB) *DB {
	t.Helper()
	return openAt(t, testenv.PostgresSchema(t))
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
		CreatedAt:    time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC), // microseconds: what PostgreSQL keeps
		UpdatedAt:    time.Date(2026, 7, 8, 9, 10, 11, 12000, time.UTC),
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

// TestTimes checks that times keep their microseconds, read back in UTC,
// and that the zero time and the Unix epoch stay apart.
func TestTimes(t *testing.T) {
	db := openTemp(t)
	u := newUser("alice")
	u.CreatedAt = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC) // zero microseconds, not the zero time
	u.UpdatedAt = time.Date(3000, 1, 1, 0, 0, 0, 1999, time.FixedZone("X", 3600))
	mustCreate(t, db, u)
	got, err := db.ByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := u.UpdatedAt.Truncate(time.Microsecond); !got.CreatedAt.Equal(u.CreatedAt) || got.CreatedAt.IsZero() ||
		!got.UpdatedAt.Equal(want) || got.UpdatedAt.Location() != time.UTC {
		t.Errorf("times: got %v, %v, want %v, %v in UTC", got.CreatedAt, got.UpdatedAt, u.CreatedAt, want)
	}
}

// TestTwoDBs opens two DBs on one database, as two instances of sessiond
// would, and checks that each sees the other's writes at once.
func TestTwoDBs(t *testing.T) {
	url := testenv.PostgresSchema(t)
	a, b := openAt(t, url), openAt(t, url)

	u := newUser("alice")
	mustCreate(t, a, u)
	got, err := b.ByUsername(ctx, "alice")
	if err != nil || got.ID != u.ID {
		t.Fatalf("ByUsername through the other DB: got %+v, %v", got, err)
	}
	got.Disabled = true
	if err := b.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if got, err := a.ByID(ctx, u.ID); err != nil || !got.Disabled {
		t.Errorf("after Update through the other DB: got %+v, %v, want disabled", got, err)
	}
	if err := b.Create(ctx, newUser("alice")); err != users.ErrExists {
		t.Errorf("Create of a username taken through the other DB: got %v, want users.ErrExists", err)
	}

	e := event("login.succeeded", u.ID)
	if err := a.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got := query(t, b, audit.Filter{UserID: u.ID}); len(got) != 1 || got[0].ID != e.ID {
		t.Errorf("Query through the other DB: got %+v, want event %d", got, e.ID)
	}
}

// TestConcurrentMigrations opens DBs on a new schema from several
// goroutines at once: the schema must be created exactly once, without
// errors.
func TestConcurrentMigrations(t *testing.T) {
	url := testenv.PostgresSchema(t)
	const n = 4
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = Open(ctx, url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		t.Cleanup(dbs[i].Close)
	}
	if t.Failed() {
		return
	}
	u := newUser("alice")
	mustCreate(t, dbs[0], u)
	if _, err := dbs[n-1].ByID(ctx, u.ID); err != nil {
		t.Errorf("ByID through another DB: %v", err)
	}
	if got := schemaVersions(t, url); !reflect.DeepEqual(got, allVersions()) {
		t.Errorf("recorded migrations: got %v, want %v", got, allVersions())
	}
}

// schemaVersions returns the versions recorded for this package's
// component in the database at url.
func schemaVersions(t *testing.T, url string) []int {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, "SELECT version FROM sessiond_schema_migrations WHERE component = $1 ORDER BY version", component)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return versions
}

// allVersions returns 1 to len(migrations).
func allVersions() []int {
	var v []int
	for i := range migrations {
		v = append(v, i+1)
	}
	return v
}

func TestNewerSchemaRefused(t *testing.T) {
	url := testenv.PostgresSchema(t)
	db := openAt(t, url)
	if _, err := db.pool.Exec(ctx, "INSERT INTO sessiond_schema_migrations (component, version) VALUES ($1, 99)", component); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(ctx, url); err == nil {
		db.Close()
		t.Fatal("Open of a database with a newer schema succeeded, want an error")
	}
}

func TestReopenKeepsData(t *testing.T) {
	url := testenv.PostgresSchema(t)
	db, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	u := newUser("alice")
	mustCreate(t, db, u)
	e := event("user.created", u.ID)
	if err := db.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openAt(t, url)
	if got, err := db.ByID(ctx, u.ID); err != nil || !reflect.DeepEqual(got, u) {
		t.Errorf("after reopening: got %+v, %v, want %+v", got, err, u)
	}
	if got := query(t, db, audit.Filter{}); len(got) != 1 || got[0] != *e {
		t.Errorf("events after reopening: got %+v, want %+v", got, e)
	}
}

// TestDatabaseGone checks that a DB whose connections are gone fails every
// call with an error, never with an answer: above all, a lookup must not
// report users.ErrNotFound, which Accounts.Authenticate would turn into
// "wrong username or password".
func TestDatabaseGone(t *testing.T) {
	db := openTemp(t)
	u := newUser("alice")
	mustCreate(t, db, u)
	db.pool.Close()
	for name, err := range map[string]error{
		"ByID":         second(db.ByID(ctx, u.ID)),
		"ByUsername":   second(db.ByUsername(ctx, "nobody")),
		"List":         second(db.List(ctx)),
		"Count":        second(db.Count(ctx)),
		"Create":       db.Create(ctx, newUser("bob")),
		"Update":       db.Update(ctx, u),
		"Append":       db.Append(ctx, event("x", u.ID)),
		"Query":        second(db.Query(ctx, audit.Filter{})),
		"Query family": second(db.Query(ctx, audit.Filter{Type: "session."})),
	} {
		if err == nil || errors.Is(err, users.ErrNotFound) || errors.Is(err, users.ErrExists) {
			t.Errorf("%s with the pool closed: got %v, want an error that is no answer", name, err)
		}
	}
}

// TestQueryPlans checks, on a log of 20,000 events (mostly of one type, as
// session.created would be, the others rarer; half of them of one user),
// that the lookups use their indexes and that the audit queries read
// events in ID order from an index, newest first, rather than reading the
// whole table or sorting what they find. Which index an audit query reads
// is the planner's choice, which depends on the data; that one can serve
// it in order is what the indexes on (user_id, id) and (type, id) are for.
func TestQueryPlans(t *testing.T) {
	db := openTemp(t)
	if _, err := db.pool.Exec(ctx, `INSERT INTO sessiond_audit_events (`+eventColumns+`)
		SELECT now(), CASE WHEN i % 100 < 5 THEN 'login.failed' WHEN i % 100 = 5 THEN 'session.revoked'
				WHEN i % 100 = 6 THEN 'user.created' WHEN i % 100 = 7 THEN 'login.succeeded' ELSE 'session.created' END,
			CASE WHEN i % 2 = 0 THEN 'u_heavy' ELSE 'u_' || (i % 500) END, 'name', 's', 'a', '', '192.0.2.1', 'ua'
		FROM generate_series(1, 20000) i;
		INSERT INTO sessiond_users (`+userColumns+`)
		SELECT 'u_' || i, 'name' || i, '{user}', false, 'h', now(), now() FROM generate_series(1, 2000) i;
		ANALYZE sessiond_audit_events; ANALYZE sessiond_users`); err != nil {
		t.Fatal(err)
	}
	type plan struct {
		sql  string
		args []any
		want []string // in the plan
	}
	const inOrder = "Index Scan Backward"
	audited := func(f audit.Filter, types []string) plan {
		q, args := querySQL(f, types)
		return plan{q, args, []string{inOrder}}
	}
	for _, p := range []plan{
		{sqlByID, []any{"k"}, []string{"Index Scan using sessiond_users_pkey"}},
		{sqlByUsername, []any{"k"}, []string{"Index Scan using sessiond_users_username_key"}},
		{sqlFamilyTypes, []any{"t.", "t/", 65}, []string{"Index Only Scan using sessiond_audit_events_type"}},
		audited(audit.Filter{}, nil),
		audited(audit.Filter{Before: 5}, nil),
		audited(audit.Filter{UserID: "u_heavy"}, nil),
		audited(audit.Filter{UserID: "u_heavy", Before: 5000}, nil),
		audited(audit.Filter{UserID: "u_heavy", Type: "session."}, nil),
		audited(audit.Filter{Type: "login.failed"}, nil),
		audited(audit.Filter{Type: "login.failed", Before: 5000}, nil),
		audited(audit.Filter{Type: "session."}, []string{"session.created", "session.revoked"}),
		audited(audit.Filter{Type: "session.", Before: 5000}, []string{"session.created", "session.revoked"}),
		audited(audit.Filter{Type: "login."}, nil),
	} {
		rows, err := db.pool.Query(ctx, "EXPLAIN "+p.sql, p.args...)
		if err != nil {
			t.Fatalf("EXPLAIN %s: %v", p.sql, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		for _, w := range p.want {
			if !strings.Contains(plan, w) {
				t.Errorf("plan of %s: want %q in it:\n%s", p.sql, w, plan)
			}
		}
		if strings.Contains(plan, "Seq Scan") {
			t.Errorf("plan of %s reads the whole table:\n%s", p.sql, plan)
		}
		// A merge of a family's types sorts each type's newest events,
		// at most Limit of each; any other sort sorts what it reads.
		if strings.Contains(plan, "Sort") && !strings.Contains(p.sql, "LATERAL") {
			t.Errorf("plan of %s sorts what it reads:\n%s", p.sql, plan)
		}
	}
}
