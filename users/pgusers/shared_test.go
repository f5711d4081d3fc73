package pgusers

import (
	"slices"
	"testing"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/pgstore"
	"github.com/sessiond/sessiond/users/directorytest"
)

// TestSharedDatabase keeps sessions, users and audit events in one
// database (see directorytest.RunShared), and checks that each store
// records its own migrations.
func TestSharedDatabase(t *testing.T) {
	directorytest.RunShared(t, directorytest.SharedHarness{
		New: func(t *testing.T) string { return testenv.PostgresSchema(t) },
		OpenSessions: func(t *testing.T, url string) session.Store {
			st, err := pgstore.Open(ctx, url)
			if err != nil {
				t.Fatalf("pgstore.Open: %v", err)
			}
			t.Cleanup(st.Close)
			return st
		},
		Open: func(t *testing.T, url string) directorytest.Backend { return openAt(t, url) },
		StartSessions: func(url string) error {
			st, err := pgstore.Open(ctx, url)
			if err == nil {
				st.Close()
			}
			return err
		},
		Start: func(url string) error {
			db, err := Open(ctx, url)
			if err == nil {
				db.Close()
			}
			return err
		},
		Check: func(t *testing.T, url string) {
			if got, want := column[string](t, url, "SELECT DISTINCT component FROM sessiond_schema_migrations ORDER BY component"), []string{"sessions", "users"}; !slices.Equal(got, want) {
				t.Errorf("components in sessiond_schema_migrations: got %q, want %q", got, want)
			}
			if got := schemaVersions(t, url); !slices.Equal(got, allVersions()) {
				t.Errorf("users migrations: got %v, want %v", got, allVersions())
			}
		},
	})
}
