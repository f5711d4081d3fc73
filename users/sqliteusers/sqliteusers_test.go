package sqliteusers

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/sqlitefile"
	"github.com/sessiond/sessiond/users/directorytest"
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

func TestBackend(t *testing.T) {
	directorytest.Run(t, directorytest.Harness{
		New: func(t *testing.T) directorytest.Backend { return openTemp(t) },
		Open: func(t *testing.T, b directorytest.Backend) directorytest.Backend {
			return openAt(t, b.(*DB).path)
		},
		Close: func(t *testing.T, b directorytest.Backend) {
			if err := b.(*DB).Close(); err != nil {
				t.Fatal(err)
			}
		},
		Raw: func(t *testing.T, b directorytest.Backend) []byte {
			// Closing checkpoints the WAL into the file; read both anyway.
			db := b.(*DB)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			var raw []byte
			for _, f := range []string{db.path, db.path + "-wal"} {
				data, err := os.ReadFile(f)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
				raw = append(raw, data...)
			}
			return raw
		},
		AuditColumns: func(t *testing.T, b directorytest.Backend) []string {
			rows, err := b.(*DB).r.QueryContext(ctx, "SELECT name FROM pragma_table_info('audit_events')")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var names []string
			for rows.Next() {
				var name string
				if err := rows.Scan(&name); err != nil {
					t.Fatal(err)
				}
				names = append(names, name)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return names
		},
		AppendMany: func(t *testing.T, b directorytest.Backend, n int) {
			// In one transaction: each Append syncs.
			if _, err := b.(*DB).w.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
				INSERT INTO audit_events (`+eventColumns+`) SELECT i, 'session.touched', 'u_a', '', '', '', '', '', '' FROM n`, n); err != nil {
				t.Fatal(err)
			}
		},
		DeleteEvent: func(t *testing.T, b directorytest.Backend, id int64) {
			if _, err := b.(*DB).w.ExecContext(ctx, "DELETE FROM audit_events WHERE id = ?", id); err != nil {
				t.Fatal(err)
			}
		},
		TimeResolution: time.Nanosecond,
		MaxFamilyTypes: maxFamilyTypes,
	})
}

// TestTimeRange checks that times int64 nanoseconds cannot hold are
// refused, not wrapped around.
func TestTimeRange(t *testing.T) {
	db := openTemp(t)
	for _, tm := range []time.Time{time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		v := directorytest.NewUser("t" + rand.Text())
		v.CreatedAt = tm
		if err := db.Create(ctx, v); err == nil {
			t.Errorf("Create with CreatedAt %v: got no error, want one", tm)
		}
	}
	if err := db.Append(ctx, &audit.Event{Type: "x", Time: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Errorf("Append with a time after 2262: got no error, want one")
	}
}

// rawDB opens path with no settings of this package, for tests to look at
// or tamper with the file.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqlitefile.DSN(path, false))
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
		{sqlDeleteBefore, []any{0, 10}, []string{"SEARCH audit_events USING INTEGER PRIMARY KEY (rowid=?)", "SEARCH audit_events USING COVERING INDEX audit_events_time (time<?)"}},
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

// TestVersionMigration opens a file written by schema version 2, whose
// users have no version: they read back at version 1, and Update takes
// them from there.
func TestVersionMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessiond.db")
	raw := rawDB(t, path)
	for _, q := range []string{
		sqlitefile.CreateSchemaVersions, migrations[0], migrations[1],
		"INSERT INTO schema_versions (component, version) VALUES ('users', 2)",
		`INSERT INTO users (id, username, roles, disabled, password_hash, created_at, updated_at)
			VALUES ('u_old', 'old', '["admin"]', 0, 'h', NULL, NULL)`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db := openAt(t, path)
	if v := schemaVersion(t, path); v != len(migrations) {
		t.Errorf("schema version: got %d, want %d", v, len(migrations))
	}
	directorytest.CheckVersionMigrated(t, db, "u_old")
}
