package pgusers

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/pgstore"
)

// openSessions opens a session store on the database at url and closes it
// when the test ends.
func openSessions(t *testing.T, url string) *pgstore.Store {
	t.Helper()
	st, err := pgstore.Open(ctx, url)
	if err != nil {
		t.Fatalf("pgstore.Open: %v", err)
	}
	t.Cleanup(st.Close)
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

// components returns the components recorded in sessiond_schema_migrations
// of the database at url.
func components(t *testing.T, url string) []string {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, "SELECT DISTINCT component FROM sessiond_schema_migrations ORDER BY component")
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// TestSharedDatabase keeps sessions, users and audit events in one
// database, opening the two stores in either order and at once, and checks
// that each works and that each records its own migrations.
func TestSharedDatabase(t *testing.T) {
	for _, order := range []string{"sessions first", "users first", "at once"} {
		t.Run(order, func(t *testing.T) {
			url := testenv.PostgresSchema(t)
			var (
				st *pgstore.Store
				db *DB
			)
			switch order {
			case "sessions first":
				st = openSessions(t, url)
				db = openAt(t, url)
			case "users first":
				db = openAt(t, url)
				st = openSessions(t, url)
			case "at once":
				// Several of each on a new schema, as instances and CLIs
				// starting together would.
				const n = 4
				var wg sync.WaitGroup
				errs := make(chan error, 2*n)
				for range n {
					wg.Go(func() {
						s, err := pgstore.Open(ctx, url)
						if err == nil {
							s.Close()
						}
						errs <- err
					})
					wg.Go(func() {
						d, err := Open(ctx, url)
						if err == nil {
							d.Close()
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
				st, db = openSessions(t, url), openAt(t, url)
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

			st2, db2 := openSessions(t, url), openAt(t, url)
			if got, err := st2.ByID(ctx, s.ID); err != nil || got.UserID != u.ID {
				t.Errorf("session ByID: got %+v, %v", got, err)
			}
			if got, err := db2.ByUsername(ctx, "alice"); err != nil || got.ID != u.ID {
				t.Errorf("ByUsername: got %+v, %v", got, err)
			}
			if got := query(t, db2, audit.Filter{UserID: u.ID}); len(got) != 1 || got[0].SessionID != s.ID {
				t.Errorf("Query: got %+v", got)
			}
			if _, err := st2.DeleteByUser(ctx, u.ID, ""); err != nil {
				t.Fatal(err)
			}
			if _, err := st.ByID(ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("session ByID after DeleteByUser: got %v, want session.ErrNotFound", err)
			}
			if got, want := components(t, url), []string{"sessions", "users"}; !slices.Equal(got, want) {
				t.Errorf("components in sessiond_schema_migrations: got %q, want %q", got, want)
			}
			if got := schemaVersions(t, url); !slices.Equal(got, allVersions()) {
				t.Errorf("users migrations: got %v, want %v", got, allVersions())
			}
		})
	}
}
