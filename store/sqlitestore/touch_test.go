package sqlitestore

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// TestTouchGroup queues touches behind another connection's write lock,
// so that they are written together, and checks that each gets its own
// answer: the live sessions are extended, the deleted ones report
// ErrNotFound, and one bad touch does not fail the rest of its group.
func TestTouchGroup(t *testing.T) {
	st := openTemp(t)
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		s := storetest.NewSession("user-1")
		storetest.MustCreate(t, st, s)
		ids[i] = s.ID
	}
	for i := 0; i < n; i += 2 {
		if err := st.Delete(ctx, ids[i]); err != nil {
			t.Fatal(err)
		}
	}

	// Hold the write lock while the touches queue up.
	lock, err := rawDB(t, st.path).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(time.Minute)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			errs[i] = st.Touch(ctx, id, session.TouchInfo{At: at, IP: "198.51.100.7", UserAgent: "grouped", IdleDeadline: at.Add(30 * time.Minute)})
		})
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := lock.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	for i, id := range ids {
		if i%2 == 0 {
			if !errors.Is(errs[i], session.ErrNotFound) {
				t.Errorf("touch of deleted session %d: %v, want ErrNotFound", i, errs[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("touch of live session %d: %v", i, errs[i])
			continue
		}
		s, err := openAt(t, st.path).ByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !s.LastSeenAt.Equal(at) || s.LastIP != "198.51.100.7" || !s.IdleDeadline.Equal(at.Add(30*time.Minute)) {
			t.Errorf("session %d after touch: last seen %v from %s, idle deadline %v", i, s.LastSeenAt, s.LastIP, s.IdleDeadline)
		}
	}
}

// TestUseAfterClose: a Store used after Close, by mistake, answers with
// errors (Touch without waiting for a writer that is gone), and never
// with a session or a crash, even for a session it had cached.
func TestUseAfterClose(t *testing.T) {
	st, err := Open(t.TempDir() + "/sessions.db")
	if err != nil {
		t.Fatal(err)
	}
	s := storetest.NewSession("user-1")
	storetest.MustCreate(t, st, s)
	if _, err := st.ByHash(ctx, s.TokenHash); err != nil { // now cached
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Touch(ctx, s.ID, session.TouchInfo{At: time.Now(), IdleDeadline: time.Now().Add(time.Minute)}); !errors.Is(err, errClosed) {
		t.Errorf("Touch after Close: %v, want errClosed", err)
	}
	for _, h := range []session.Hash{s.TokenHash, storetest.NewHash()} {
		if got, err := st.ByHash(ctx, h); err == nil || errors.Is(err, session.ErrNotFound) || got != nil {
			t.Errorf("ByHash after Close: %v, %v; want a store error", got, err)
		}
	}
	if _, err := st.Create(ctx, storetest.NewSession("user-1"), session.Limit{}); err == nil {
		t.Error("Create after Close succeeded")
	}
	if err := st.Delete(ctx, s.ID); err == nil {
		t.Error("Delete after Close succeeded")
	}
}
