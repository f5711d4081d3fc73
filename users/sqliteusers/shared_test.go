package sqliteusers

import (
	"path/filepath"
	"testing"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/sqlitestore"
	"github.com/sessiond/sessiond/users/directorytest"
)

// openSessions opens a session store on path and closes it when the test
// ends.
func openSessions(t *testing.T, path string) session.Store {
	t.Helper()
	st, err := sqlitestore.Open(path)
	if err != nil {
		t.Fatalf("sqlitestore.Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("sqlitestore Close: %v", err)
		}
	})
	return st
}

// userVersion returns PRAGMA user_version of the file at path: the session
// store's schema version.
func userVersion(t *testing.T, path string) int {
	t.Helper()
	var v int
	if err := rawDB(t, path).QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSharedFile keeps sessions, users and audit events in one file, the
// default layout (see directorytest.RunShared), and checks that each store
// leaves the other's schema version alone.
func TestSharedFile(t *testing.T) {
	// The session store's schema version, from a file of its own.
	alone := filepath.Join(t.TempDir(), "sessions.db")
	openSessions(t, alone)
	sessionsVersion := userVersion(t, alone)
	if sessionsVersion == 0 {
		t.Fatal("the session store left user_version 0")
	}

	directorytest.RunShared(t, directorytest.SharedHarness{
		New:          func(t *testing.T) string { return filepath.Join(t.TempDir(), "sessiond.db") },
		OpenSessions: openSessions,
		Open:         func(t *testing.T, path string) directorytest.Backend { return openAt(t, path) },
		StartSessions: func(path string) error {
			st, err := sqlitestore.Open(path)
			if err != nil {
				return err
			}
			return st.Close()
		},
		Start: func(path string) error {
			db, err := Open(path)
			if err != nil {
				return err
			}
			return db.Close()
		},
		Check: func(t *testing.T, path string) {
			if v := userVersion(t, path); v != sessionsVersion {
				t.Errorf("user_version: got %d, want the session store's %d", v, sessionsVersion)
			}
			if v := schemaVersion(t, path); v != len(migrations) {
				t.Errorf("users schema version: got %d, want %d", v, len(migrations))
			}
		},
	})
}
