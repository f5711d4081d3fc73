package pgusers

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/pgmigrate"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/directorytest"
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

func TestBackend(t *testing.T) {
	directorytest.Run(t, directorytest.Harness{
		New: func(t *testing.T) directorytest.Backend { return openTemp(t) },
		Open: func(t *testing.T, b directorytest.Backend) directorytest.Backend {
			return openAt(t, b.(*DB).pool.Config().ConnString())
		},
		Close: func(t *testing.T, b directorytest.Backend) { b.(*DB).Close() },
		Raw:   func(t *testing.T, b directorytest.Backend) []byte { return dump(t, b.(*DB)) },
		AuditColumns: func(t *testing.T, b directorytest.Backend) []string {
			rows, _ := b.(*DB).pool.Query(ctx, "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'sessiond_audit_events'")
			names, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			return names
		},
		AppendMany: func(t *testing.T, b directorytest.Backend, n int) {
			// In one statement.
			if _, err := b.(*DB).pool.Exec(ctx, `INSERT INTO sessiond_audit_events (`+eventColumns+`)
				SELECT now(), 'session.touched', 'u_a', '', '', '', '', '', '' FROM generate_series(1, $1)`, n); err != nil {
				t.Fatal(err)
			}
		},
		DeleteEvent: func(t *testing.T, b directorytest.Backend, id int64) {
			if _, err := b.(*DB).pool.Exec(ctx, "DELETE FROM sessiond_audit_events WHERE id = $1", id); err != nil {
				t.Fatal(err)
			}
		},
		TimeResolution: time.Microsecond, // what timestamptz keeps
		MaxFamilyTypes: maxFamilyTypes,
	})
}

// dump returns every row of every table in the DB's schema, as text.
func dump(t *testing.T, db *DB) []byte {
	t.Helper()
	rows, err := db.pool.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, table := range tables {
		rows, err := db.pool.Query(ctx, "SELECT t::text FROM "+pgx.Identifier{table}.Sanitize()+" t")
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			out = append(append(out, l...), '\n')
		}
	}
	return out
}

// TestTimesFarFromNow checks that times far from now, which timestamptz
// holds (4713 BC to 294276 AD), are kept to the microsecond.
func TestTimesFarFromNow(t *testing.T) {
	db := openTemp(t)
	u := directorytest.NewUser("alice")
	u.UpdatedAt = time.Date(3000, 1, 1, 0, 0, 0, 1999, time.FixedZone("X", 3600))
	directorytest.MustCreate(t, db, u)
	got, err := db.ByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := u.UpdatedAt.Truncate(time.Microsecond); !got.UpdatedAt.Equal(want) || got.UpdatedAt.Location() != time.UTC {
		t.Errorf("UpdatedAt: got %v, want %v in UTC", got.UpdatedAt, want)
	}
	for _, tm := range []time.Time{time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		e := &audit.Event{Type: "t", Time: tm}
		if err := db.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		if got := directorytest.Query(t, db, audit.Filter{Type: "t", Limit: 1}); len(got) != 1 || !got[0].Time.Equal(tm.Truncate(time.Microsecond)) {
			t.Errorf("event with time %v: got %+v, want the time to the microsecond", tm, got)
		}
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
	u := directorytest.NewUser("alice")
	directorytest.MustCreate(t, dbs[0], u)
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
	return column[int](t, url, "SELECT version FROM sessiond_schema_migrations WHERE component = $1 ORDER BY version", component)
}

// column returns the one column of the rows sql selects in the database
// at url, through a connection of its own.
func column[T any](t *testing.T, url, sql string, args ...any) []T {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, sql, args...)
	list, err := pgx.CollectRows(rows, pgx.RowTo[T])
	if err != nil {
		t.Fatal(err)
	}
	return list
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

func second[T any](_ T, err error) error { return err }

// TestDatabaseGone checks that a DB whose connections are gone fails every
// call with an error, never with an answer: above all, a lookup must not
// report users.ErrNotFound, which Accounts.Authenticate would turn into
// "wrong username or password".
func TestDatabaseGone(t *testing.T) {
	db := openTemp(t)
	u := directorytest.NewUser("alice")
	directorytest.MustCreate(t, db, u)
	db.pool.Close()
	for name, err := range map[string]error{
		"ByID":         second(db.ByID(ctx, u.ID)),
		"ByUsername":   second(db.ByUsername(ctx, "nobody")),
		"List":         second(db.List(ctx)),
		"Count":        second(db.Count(ctx)),
		"Create":       db.Create(ctx, directorytest.NewUser("bob")),
		"Update":       db.Update(ctx, u),
		"Delete":       db.Delete(ctx, u),
		"Append":       db.Append(ctx, directorytest.NewEvent("x", u.ID)),
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
// The retention sweep finds the oldest events in the index on time.
func TestQueryPlans(t *testing.T) {
	db := openTemp(t)
	if _, err := db.pool.Exec(ctx, `INSERT INTO sessiond_audit_events (`+eventColumns+`)
		SELECT now(), CASE WHEN i % 100 < 5 THEN 'login.failed' WHEN i % 100 = 5 THEN 'session.revoked'
				WHEN i % 100 = 6 THEN 'user.created' WHEN i % 100 = 7 THEN 'login.succeeded' ELSE 'session.created' END,
			CASE WHEN i % 2 = 0 THEN 'u_heavy' ELSE 'u_' || (i % 500) END, 'name', 's', 'a', '', '192.0.2.1', 'ua'
		FROM generate_series(1, 20000) i;
		INSERT INTO sessiond_users (`+userColumns+`)
		SELECT 'u_' || i, 'name' || i, '{user}', false, 'h', now(), now(), 1 FROM generate_series(1, 2000) i;
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
		{sqlDeleteBefore, []any{time.Now().Add(-90 * 24 * time.Hour), 1000}, []string{"Index Scan using sessiond_audit_events_time", "Index Scan using sessiond_audit_events_pkey"}},
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

// TestVersionMigration opens a database written by schema version 2,
// whose users have no version: they read back at version 1, and Update
// takes them from there.
func TestVersionMigration(t *testing.T) {
	url := testenv.PostgresSchema(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := pgmigrate.Apply(ctx, conn, component, migrations[:2]); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO sessiond_users (id, username, roles, disabled, password_hash, created_at, updated_at)
		VALUES ('u_old', 'old', '{admin}', false, 'h', NULL, NULL)`); err != nil {
		t.Fatal(err)
	}
	db := openAt(t, url)
	if got := schemaVersions(t, url); !reflect.DeepEqual(got, allVersions()) {
		t.Errorf("recorded migrations: got %v, want %v", got, allVersions())
	}
	directorytest.CheckVersionMigrated(t, db, "u_old")
}

// TestChangesWhateverTheDefaultIsolation runs the suite's changes of
// users against connections whose default isolation level is not READ
// COMMITTED: the last-admin check must see the changes committed while it
// waited for the lock, and concurrent Updates must fail with
// users.ErrConflict, not with a serialization failure.
func TestChangesWhateverTheDefaultIsolation(t *testing.T) {
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			directorytest.RunChanges(t, directorytest.Harness{
				New: func(t *testing.T) directorytest.Backend {
					url, err := testenv.WithParam(testenv.PostgresSchema(t), "default_transaction_isolation", level)
					if err != nil {
						t.Fatal(err)
					}
					return openAt(t, url)
				},
				Open: func(t *testing.T, b directorytest.Backend) directorytest.Backend {
					return openAt(t, b.(*DB).pool.Config().ConnString())
				},
				TimeResolution: time.Microsecond,
			})
		})
	}
}
