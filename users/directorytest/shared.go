package directorytest

import (
	"sync"
	"testing"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// SharedHarness tells RunShared how to reach a session store and a backend
// that keep their data in one storage.
type SharedHarness struct {
	// New returns a new, empty storage, by the name the other functions
	// take: a file's path, a database's URL.
	New func(t *testing.T) string
	// OpenSessions opens a session store on storage, and Open a backend;
	// each is closed when the test ends.
	OpenSessions func(t *testing.T, storage string) session.Store
	Open         func(t *testing.T, storage string) Backend
	// StartSessions opens a session store on storage and closes it, and
	// Start does the same with a backend, returning the first error.
	// RunShared calls them from several goroutines at once on a new
	// storage, as processes starting together would.
	StartSessions func(storage string) error
	Start         func(storage string) error
	// Check, if not nil, checks the storage at the end of each test: what
	// each component recorded of its schema, say.
	Check func(t *testing.T, storage string)
}

// RunShared checks a backend and a session store that keep their data in
// one storage (one SQLite file, one PostgreSQL database), as sessiond does
// by default. Opening the two in either order, or several of each at once
// on a new storage, it checks that each stores its data beside the
// other's, that second handles on each find it, and that writes through
// either interleave with the other's.
func RunShared(t *testing.T, h SharedHarness) {
	for _, order := range []string{"sessions first", "users first", "at once"} {
		t.Run(order, func(t *testing.T) {
			storage := h.New(t)
			var (
				st session.Store
				b  Backend
			)
			switch order {
			case "sessions first":
				st = h.OpenSessions(t, storage)
				b = h.Open(t, storage)
			case "users first":
				b = h.Open(t, storage)
				st = h.OpenSessions(t, storage)
			case "at once":
				startTogether(t, 4, func() error { return h.StartSessions(storage) }, func() error { return h.Start(storage) })
				st, b = h.OpenSessions(t, storage), h.Open(t, storage)
			}
			testShared(t, st, b, func() (session.Store, Backend) {
				return h.OpenSessions(t, storage), h.Open(t, storage)
			})
			if h.Check != nil {
				h.Check(t, storage)
			}
		})
	}
}

// startTogether runs each of fns n times, all at once, and fails the test
// if any returns an error.
func startTogether(t *testing.T, n int, fns ...func() error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n*len(fns))
	for range n {
		for _, fn := range fns {
			wg.Go(func() { errs <- fn() })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
}

// testShared checks a session store st and a backend b on one storage;
// open returns second handles on the two.
func testShared(t *testing.T, st session.Store, b Backend, open func() (session.Store, Backend)) {
	u := NewUser("alice")
	MustCreate(t, b, u)
	m, err := session.New(st, session.Config{MaxSessionsPerUser: 5})
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := m.Create(ctx, session.Login{UserID: u.ID, Roles: u.Roles})
	if err != nil {
		t.Fatalf("session Create: %v", err)
	}
	e := NewEvent("session.created", u.ID)
	e.SessionID = s.ID
	if err := b.Append(ctx, e); err != nil {
		t.Fatal(err)
	}

	// Each store sees its data, through a second handle too.
	st2, b2 := open()
	if got, err := st2.ByID(ctx, s.ID); err != nil || got.UserID != u.ID {
		t.Errorf("session ByID: got %+v, %v", got, err)
	}
	if got, err := b2.ByUsername(ctx, "alice"); err != nil || got.ID != u.ID {
		t.Errorf("ByUsername: got %+v, %v", got, err)
	}
	if got := Query(t, b2, audit.Filter{UserID: u.ID}); len(got) != 1 || got[0].SessionID != s.ID {
		t.Errorf("Query: got %+v", got)
	}
	// Writes through either interleave with the other's.
	if _, err := st2.DeleteByUser(ctx, u.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ByID(ctx, s.ID); err != session.ErrNotFound {
		t.Errorf("session ByID after DeleteByUser: got %v, want session.ErrNotFound", err)
	}
}

// CheckVersionMigrated checks the user id that a backend stored before it
// kept versions: it reads back at Version 1 and updates to 2.
func CheckVersionMigrated(t *testing.T, d users.Directory, id string) {
	t.Helper()
	ctx := t.Context()
	u, err := d.ByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if u.Version != 1 {
		t.Errorf("Version of a user stored before versions: got %d, want 1", u.Version)
	}
	u.PasswordHash = "h2"
	if err := d.Update(ctx, u); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got, err := d.ByID(ctx, id); err != nil || got.Version != 2 || got.PasswordHash != "h2" {
		t.Errorf("after Update: got %+v, %v, want version 2", got, err)
	}
}
