package sqliteusers

import (
	"crypto/rand"
	"crypto/sha256"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/sqlitestore"
)

// openSessions opens a session store on path and closes it when the test
// ends.
func openSessions(t *testing.T, path string) *sqlitestore.Store {
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

// newSession returns a session for userID, live for an hour.
func newSession(userID string) *session.Session {
	now := time.Now()
	return &session.Session{
		ID:               "s_" + rand.Text(),
		TokenHash:        sha256.Sum256([]byte(rand.Text())),
		UserID:           userID,
		Roles:            []string{"user"},
		CreatedAt:        now,
		AuthenticatedAt:  now,
		RotatedAt:        now,
		LastSeenAt:       now,
		IdleDeadline:     now.Add(30 * time.Minute),
		AbsoluteDeadline: now.Add(time.Hour),
		Version:          1,
	}
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
// default layout, opening the two stores in either order and at once, and
// checks that each works, survives reopening, and leaves the other's
// schema version alone.
func TestSharedFile(t *testing.T) {
	// The session store's schema version, from a file of its own.
	alone := filepath.Join(t.TempDir(), "sessions.db")
	openSessions(t, alone)
	sessionsVersion := userVersion(t, alone)
	if sessionsVersion == 0 {
		t.Fatal("the session store left user_version 0")
	}

	for _, order := range []string{"sessions first", "users first", "at once"} {
		t.Run(order, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sessiond.db")
			var (
				st  *sqlitestore.Store
				db  *DB
				err error
			)
			switch order {
			case "sessions first":
				st = openSessions(t, path)
				db = openAt(t, path)
			case "users first":
				db = openAt(t, path)
				st = openSessions(t, path)
			case "at once":
				// Several of each on a new file, as a server and CLIs
				// starting together would.
				const n = 4
				var wg sync.WaitGroup
				errs := make(chan error, 2*n)
				for range n {
					wg.Go(func() {
						s, err := sqlitestore.Open(path)
						if err == nil {
							err = s.Close()
						}
						errs <- err
					})
					wg.Go(func() {
						d, err := Open(path)
						if err == nil {
							err = d.Close()
						}
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("concurrent Open: %v", err)
					}
				}
				st, db = openSessions(t, path), openAt(t, path)
			}

			u := newUser("alice")
			mustCreate(t, db, u)
			s := newSession(u.ID)
			if _, err := st.Create(ctx, s, session.Limit{Max: 5}); err != nil {
				t.Fatalf("session Create: %v", err)
			}
			e := event("session.created", u.ID)
			e.SessionID = s.ID
			if err := db.Append(ctx, e); err != nil {
				t.Fatal(err)
			}

			// Each store sees its data, through a second handle too.
			st2, db2 := openSessions(t, path), openAt(t, path)
			if got, err := st2.ByID(ctx, s.ID); err != nil || got.UserID != u.ID {
				t.Errorf("session ByID: got %+v, %v", got, err)
			}
			if got, err := db2.ByUsername(ctx, "alice"); err != nil || got.ID != u.ID {
				t.Errorf("ByUsername: got %+v, %v", got, err)
			}
			if got := query(t, db2, audit.Filter{UserID: u.ID}); len(got) != 1 || got[0].SessionID != s.ID {
				t.Errorf("Query: got %+v", got)
			}
			// Writes through either interleave with the other's.
			if _, err := st2.DeleteByUser(ctx, u.ID, ""); err != nil {
				t.Fatal(err)
			}
			if _, err = st.ByID(ctx, s.ID); err != session.ErrNotFound {
				t.Errorf("session ByID after DeleteByUser: got %v, want session.ErrNotFound", err)
			}

			if v := userVersion(t, path); v != sessionsVersion {
				t.Errorf("user_version: got %d, want the session store's %d", v, sessionsVersion)
			}
			if v := schemaVersion(t, path); v != len(migrations) {
				t.Errorf("users schema version: got %d, want %d", v, len(migrations))
			}
		})
	}
}
