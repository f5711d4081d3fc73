package assertion_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/sessiond/sessiond/assertion"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/users/pgusers"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// TestSchemaOwnComponent: the keys share the users' database under a
// schema version of their own, and the users' stays as it was.
func TestSchemaOwnComponent(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sessiond.db")
		d, err := sqliteusers.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var usersBefore int
		if err := db.QueryRow(`SELECT version FROM schema_versions WHERE component = 'users'`).Scan(&usersBefore); err != nil {
			t.Fatal(err)
		}
		for range 2 { // a second open finds the schema done
			ks, err := assertion.OpenSQLite(path)
			if err != nil {
				t.Fatal(err)
			}
			ks.Close()
		}
		var usersAfter, keys int
		if err := db.QueryRow(`SELECT version FROM schema_versions WHERE component = 'users'`).Scan(&usersAfter); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(`SELECT version FROM schema_versions WHERE component = 'assertion'`).Scan(&keys); err != nil {
			t.Fatal(err)
		}
		if usersAfter != usersBefore || keys != 1 {
			t.Errorf("schema versions: users %d → %d, assertion %d; want the users' unchanged and assertion 1", usersBefore, usersAfter, keys)
		}
		if d, err := sqliteusers.Open(path); err != nil {
			t.Errorf("the users reopen beside the keys: %v", err)
		} else {
			d.Close()
		}
	})
	t.Run("postgres", func(t *testing.T) {
		ctx := context.Background()
		url := testenv.PostgresSchema(t)
		d, err := pgusers.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		ks, err := assertion.OpenPostgres(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		ks.Close()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, `SELECT component, max(version) FROM sessiond_schema_migrations GROUP BY component ORDER BY component`)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for rows.Next() {
			var c string
			var v int
			if err := rows.Scan(&c, &v); err != nil {
				t.Fatal(err)
			}
			got[c] = v
		}
		if got["assertion"] != 1 || got["users"] == 0 || len(got) != 2 {
			t.Errorf("schema versions %v, want assertion 1 beside the users'", got)
		}
	})
}
