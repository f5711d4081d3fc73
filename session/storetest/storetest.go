// Package storetest is the conformance suite every session.Store runs:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, storetest.Harness{New: newStore, Raw: rawBytes})
//	}
//
// It uses the wall clock, because stores enforce expiry by their own clock,
// and random user IDs, so stores that share one backend across tests do
// not see each other's sessions.
//
// It also exports the few helpers the stores' own tests share (NewSession,
// NewID, NewHash, MustCreate, and CheckDamaged for their tests of records
// damaged behind their backs).
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
)

// Harness tells Run how to reach a store.
type Harness struct {
	// New returns a ready store; the caller closes it with t.Cleanup.
	// Stores returned by successive calls may share one backend.
	New func(t *testing.T) session.Store
	// Raw returns everything the store's backend holds for st, as bytes
	// (files, dumped keys or rows), for the check that no token is stored.
	Raw func(t *testing.T, st session.Store) []byte
	// Shared returns another handle on st's backend, as a second process
	// or instance would open it, for the checks that what one handle does
	// the other sees at once. Nil skips them (a single-process store).
	Shared func(t *testing.T, st session.Store) session.Store
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"NotFound", testNotFound},
		{"ExpiryOnRead", testExpiryOnRead},
		{"CompareAndSwap", testCompareAndSwap},
		{"ConcurrentUpdatesLoseNothing", testConcurrentUpdates},
		{"Touch", testTouch},
		{"ListAndRevokeByUser", testByUser},
		{"Limit", testLimit},
		{"LimitUnderConcurrentCreates", testLimitConcurrent},
		{"Rotation", testRotation},
		{"Sweep", testSweep},
		{"NoTokenStored", testNoTokenStored},
		{"SharedBackend", testSharedBackend},
		{"LimitAcrossHandles", testLimitAcrossHandles},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
	}
}

var ctx = context.Background()

// NewID returns a random string for session IDs and user IDs.
func NewID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewHash returns a random token hash.
func NewHash() session.Hash {
	var b [32]byte
	rand.Read(b[:])
	return sha256.Sum256(b[:])
}

// NewSession returns a session for userID with a fresh ID and token hash,
// live for an hour, with every field set. Times are whole microseconds, the finest resolution a store
// must keep.
func NewSession(userID string) *session.Session {
	now := time.Now().Truncate(time.Microsecond)
	return &session.Session{
		ID:               NewID(),
		TokenHash:        NewHash(),
		UserID:           userID,
		Roles:            []string{"admin", "ops"},
		AMR:              []string{session.AMRPassword, session.AMROTP, session.AMRMultiFactor},
		CreatedAt:        now,
		AuthenticatedAt:  now,
		RotatedAt:        now,
		LastSeenAt:       now,
		IdleDeadline:     now.Add(30 * time.Minute),
		AbsoluteDeadline: now.Add(time.Hour),
		CreatedIP:        "192.0.2.1",
		CreatedUserAgent: "Mozilla/5.0 (created)",
		LastIP:           "2001:db8::1",
		LastUserAgent:    "Mozilla/5.0 (last) ünïcode",
		Data:             []byte(`{"cart":[1,2,3]}`),
		Version:          1,
	}
}

// MustCreate stores s without a limit and fails the test on an error.
func MustCreate(t testing.TB, st session.Store, s *session.Session) {
	t.Helper()
	if _, err := st.Create(ctx, s, session.Limit{}); err != nil {
		t.Fatalf("Create: %v", err)
	}
}

// CheckDamaged checks how st treats the stored session s once its record
// has been damaged behind the store's back, so that it no longer decodes:
// ByID and ListByUser (of s.UserID) fail with an error wrapping
// session.ErrInvalidRecord, not a panic or a bogus session; ByHash does too,
// or finds nothing if the damage was to the hash itself; and Delete still
// ends the session.
func CheckDamaged(t *testing.T, st session.Store, s *session.Session) {
	t.Helper()
	if got, err := st.ByID(ctx, s.ID); !errors.Is(err, session.ErrInvalidRecord) {
		t.Errorf("ByID: got %+v, %v; want ErrInvalidRecord", got, err)
	}
	if got, err := st.ByHash(ctx, s.TokenHash); err == nil || !(errors.Is(err, session.ErrInvalidRecord) || errors.Is(err, session.ErrNotFound)) {
		t.Errorf("ByHash: got %+v, %v; want ErrInvalidRecord (or ErrNotFound if the hash itself was damaged)", got, err)
	}
	if got, err := st.ListByUser(ctx, s.UserID); !errors.Is(err, session.ErrInvalidRecord) {
		t.Errorf("ListByUser: got %d sessions, %v; want ErrInvalidRecord", len(got), err)
	}
	if err := st.Delete(ctx, s.ID); err != nil {
		t.Errorf("Delete of the damaged session: %v", err)
	}
}

// sameSession reports how got differs from want, or "" if they are equal.
func sameSession(got, want *session.Session) string {
	var diffs []string
	cmp := func(name string, eq bool, g, w any) {
		if !eq {
			diffs = append(diffs, fmt.Sprintf("%s: got %v, want %v", name, g, w))
		}
	}
	cmp("ID", got.ID == want.ID, got.ID, want.ID)
	cmp("TokenHash", got.TokenHash == want.TokenHash, got.TokenHash, want.TokenHash)
	cmp("PrevTokenHash", got.PrevTokenHash == want.PrevTokenHash, got.PrevTokenHash, want.PrevTokenHash)
	cmp("UserID", got.UserID == want.UserID, got.UserID, want.UserID)
	cmp("Roles", slices.Equal(got.Roles, want.Roles), got.Roles, want.Roles)
	cmp("AMR", slices.Equal(got.AMR, want.AMR), got.AMR, want.AMR)
	for _, f := range []struct {
		name string
		g, w time.Time
	}{
		{"CreatedAt", got.CreatedAt, want.CreatedAt}, {"AuthenticatedAt", got.AuthenticatedAt, want.AuthenticatedAt},
		{"RotatedAt", got.RotatedAt, want.RotatedAt}, {"LastSeenAt", got.LastSeenAt, want.LastSeenAt},
		{"IdleDeadline", got.IdleDeadline, want.IdleDeadline}, {"AbsoluteDeadline", got.AbsoluteDeadline, want.AbsoluteDeadline},
	} {
		cmp(f.name, f.g.Equal(f.w), f.g, f.w)
	}
	cmp("Remember", got.Remember == want.Remember, got.Remember, want.Remember)
	cmp("CreatedIP", got.CreatedIP == want.CreatedIP, got.CreatedIP, want.CreatedIP)
	cmp("CreatedUserAgent", got.CreatedUserAgent == want.CreatedUserAgent, got.CreatedUserAgent, want.CreatedUserAgent)
	cmp("LastIP", got.LastIP == want.LastIP, got.LastIP, want.LastIP)
	cmp("LastUserAgent", got.LastUserAgent == want.LastUserAgent, got.LastUserAgent, want.LastUserAgent)
	cmp("Data", bytes.Equal(got.Data, want.Data), string(got.Data), string(want.Data))
	cmp("Version", got.Version == want.Version, got.Version, want.Version)
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprint(diffs)
}

func testRoundTrip(t *testing.T, h Harness) {
	st := h.New(t)
	s := NewSession(NewID())
	s.Remember = true
	MustCreate(t, st, s)

	byHash, err := st.ByHash(ctx, s.TokenHash)
	if err != nil {
		t.Fatalf("ByHash: %v", err)
	}
	if d := sameSession(byHash, s); d != "" {
		t.Errorf("ByHash returned a different session: %s", d)
	}
	byID, err := st.ByID(ctx, s.ID)
	if err != nil {
		t.Fatalf("ByID: %v", err)
	}
	if d := sameSession(byID, s); d != "" {
		t.Errorf("ByID returned a different session: %s", d)
	}

	bare := NewSession(NewID())
	bare.Roles, bare.AMR, bare.Data = nil, nil, nil
	MustCreate(t, st, bare)
	got, err := st.ByID(ctx, bare.ID)
	if err != nil {
		t.Fatalf("ByID: %v", err)
	}
	if len(got.Roles) != 0 || len(got.AMR) != 0 || len(got.Data) != 0 {
		t.Errorf("session without roles, AMR or data came back with roles %q, AMR %q, data %q", got.Roles, got.AMR, got.Data)
	}
}

func testNotFound(t *testing.T, h Harness) {
	st := h.New(t)
	if _, err := st.ByHash(ctx, NewHash()); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ByHash(unknown): got %v, want ErrNotFound", err)
	}
	if _, err := st.ByID(ctx, NewID()); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ByID(unknown): got %v, want ErrNotFound", err)
	}
	if err := st.Delete(ctx, NewID()); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Delete(unknown): got %v, want ErrNotFound", err)
	}
	if err := st.Update(ctx, NewSession(NewID())); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Update(unknown): got %v, want ErrNotFound", err)
	}
	if err := st.Touch(ctx, NewID(), session.TouchInfo{At: time.Now(), IdleDeadline: time.Now().Add(time.Hour)}); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Touch(unknown): got %v, want ErrNotFound", err)
	}
	if got, err := st.ListByUser(ctx, NewID()); err != nil || len(got) != 0 {
		t.Errorf("ListByUser(unknown user): got %d sessions, %v; want none", len(got), err)
	}
	s := NewSession(NewID())
	MustCreate(t, st, s)
	if err := st.Delete(ctx, s.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := st.ByHash(ctx, s.TokenHash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ByHash after Delete: got %v, want ErrNotFound", err)
	}
}

func testExpiryOnRead(t *testing.T, h Harness) {
	st := h.New(t)
	user := NewID()
	idle := NewSession(user)
	idle.IdleDeadline = time.Now().Add(-time.Second)
	absolute := NewSession(user)
	absolute.AbsoluteDeadline = time.Now().Add(-time.Second)
	soon := NewSession(user)
	soon.IdleDeadline = time.Now().Add(300 * time.Millisecond)
	for _, s := range []*session.Session{idle, absolute, soon} {
		MustCreate(t, st, s)
	}
	for name, s := range map[string]*session.Session{"idle": idle, "absolute": absolute} {
		if _, err := st.ByHash(ctx, s.TokenHash); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("ByHash(past %s deadline): got %v, want ErrNotFound", name, err)
		}
		if _, err := st.ByID(ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("ByID(past %s deadline): got %v, want ErrNotFound", name, err)
		}
	}
	if _, err := st.ByHash(ctx, soon.TokenHash); err != nil {
		t.Fatalf("ByHash before the deadline: %v", err)
	}
	time.Sleep(400 * time.Millisecond)
	if _, err := st.ByHash(ctx, soon.TokenHash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ByHash after the deadline passed: got %v, want ErrNotFound", err)
	}
	if err := st.Touch(ctx, soon.ID, session.TouchInfo{At: time.Now(), IdleDeadline: time.Now().Add(time.Hour)}); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Touch revived an expired session: got %v, want ErrNotFound", err)
	}
	if got, err := st.ListByUser(ctx, user); err != nil || len(got) != 0 {
		t.Errorf("ListByUser: got %d sessions, %v; want none (all expired)", len(got), err)
	}
}

func testCompareAndSwap(t *testing.T, h Harness) {
	st := h.New(t)
	s := NewSession(NewID())
	MustCreate(t, st, s)

	a, _ := st.ByID(ctx, s.ID)
	b, _ := st.ByID(ctx, s.ID)
	a.Data = []byte(`{"writer":"a"}`)
	a.AMR = []string{session.AMRHardwareKey, session.AMRUserPresence, session.AMRMultiFactor}
	if err := st.Update(ctx, a); err != nil {
		t.Fatalf("first Update: %v", err)
	}
	if a.Version != 2 {
		t.Errorf("Version after Update: got %d, want 2", a.Version)
	}
	b.Data = []byte(`{"writer":"b"}`)
	if err := st.Update(ctx, b); !errors.Is(err, session.ErrConflict) {
		t.Fatalf("Update with a stale version: got %v, want ErrConflict", err)
	}
	got, _ := st.ByID(ctx, s.ID)
	if string(got.Data) != `{"writer":"a"}` || got.Version != 2 || !slices.Equal(got.AMR, a.AMR) {
		t.Errorf("after the conflict the store holds data %s, AMR %q, version %d; want the winner's (writer a, AMR %q, version 2)", got.Data, got.AMR, got.Version, a.AMR)
	}

	// Two updates racing from the same version: exactly one wins.
	base, _ := st.ByID(ctx, s.ID)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		c := base.Clone()
		c.Data = fmt.Appendf(nil, `{"writer":%d}`, i)
		wg.Go(func() { errs[i] = st.Update(ctx, c) })
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, session.ErrConflict):
			t.Errorf("racing Update: got %v, want nil or ErrConflict", err)
		}
	}
	if wins != 1 {
		t.Errorf("racing updates from one version: %d won, want exactly 1 (errors %v)", wins, errs)
	}
}

func testConcurrentUpdates(t *testing.T, h Harness) {
	st := h.New(t)
	s := NewSession(NewID())
	s.Data = []byte(`0`)
	MustCreate(t, st, s)
	const writers = 20
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				cur, err := st.ByID(ctx, s.ID)
				if err != nil {
					t.Errorf("ByID: %v", err)
					return
				}
				var n int
				fmt.Sscan(string(cur.Data), &n)
				cur.Data = fmt.Append(nil, n+1)
				err = st.Update(ctx, cur)
				if err == nil {
					return
				}
				if !errors.Is(err, session.ErrConflict) {
					t.Errorf("Update: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, _ := st.ByID(ctx, s.ID)
	if string(got.Data) != fmt.Sprint(writers) {
		t.Errorf("after %d read-modify-write increments the counter is %s: updates were lost", writers, got.Data)
	}
	if got.Version != writers+1 {
		t.Errorf("Version: got %d, want %d", got.Version, writers+1)
	}
}

func testTouch(t *testing.T, h Harness) {
	st := h.New(t)
	s := NewSession(NewID())
	MustCreate(t, st, s)
	later := s.LastSeenAt.Add(time.Minute)
	touch := session.TouchInfo{At: later, IP: "198.51.100.7", UserAgent: "curl/8", IdleDeadline: later.Add(30 * time.Minute)}
	if err := st.Touch(ctx, s.ID, touch); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	got, _ := st.ByID(ctx, s.ID)
	if !got.LastSeenAt.Equal(later) || got.LastIP != touch.IP || got.LastUserAgent != touch.UserAgent || !got.IdleDeadline.Equal(touch.IdleDeadline) {
		t.Errorf("after Touch: last seen %v from %q %q, idle deadline %v; want %v from %q %q, %v",
			got.LastSeenAt, got.LastIP, got.LastUserAgent, got.IdleDeadline, later, touch.IP, touch.UserAgent, touch.IdleDeadline)
	}
	if got.Version != s.Version {
		t.Errorf("Touch changed Version from %d to %d", s.Version, got.Version)
	}

	// An older touch moves nothing backwards.
	old := session.TouchInfo{At: s.LastSeenAt, IP: "203.0.113.9", UserAgent: "old", IdleDeadline: s.IdleDeadline}
	if err := st.Touch(ctx, s.ID, old); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	got, _ = st.ByID(ctx, s.ID)
	if !got.LastSeenAt.Equal(later) || !got.IdleDeadline.Equal(touch.IdleDeadline) || got.LastIP != touch.IP {
		t.Errorf("an older Touch moved the session back to last seen %v, deadline %v, IP %q", got.LastSeenAt, got.IdleDeadline, got.LastIP)
	}

	// An Update from a copy read before the Touch keeps the Touch.
	s.Data = []byte(`{"after":"touch"}`)
	if err := st.Update(ctx, s); err != nil {
		t.Fatalf("Update after Touch: %v (Touch must not change Version)", err)
	}
	got, _ = st.ByID(ctx, s.ID)
	if !got.LastSeenAt.Equal(later) || !got.IdleDeadline.Equal(touch.IdleDeadline) || got.LastIP != touch.IP {
		t.Errorf("Update lost the concurrent Touch: last seen %v, deadline %v, IP %q", got.LastSeenAt, got.IdleDeadline, got.LastIP)
	}
	if string(got.Data) != `{"after":"touch"}` {
		t.Errorf("Update lost its data: %s", got.Data)
	}
}

func testByUser(t *testing.T, h Harness) {
	st := h.New(t)
	alice, bob := NewID(), NewID()
	var mine []*session.Session
	for i := range 3 {
		s := NewSession(alice)
		s.CreatedAt = s.CreatedAt.Add(time.Duration(i) * time.Second)
		MustCreate(t, st, s)
		mine = append(mine, s)
	}
	other := NewSession(bob)
	MustCreate(t, st, other)

	list, err := st.ListByUser(ctx, alice)
	if err != nil {
		t.Fatalf("ListByUser: %v", err)
	}
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	want := []string{mine[0].ID, mine[1].ID, mine[2].ID}
	if !slices.Equal(ids, want) {
		t.Fatalf("ListByUser: got %q, want %q (oldest first, only the user's)", ids, want)
	}
	if d := sameSession(list[1], mine[1]); d != "" {
		t.Errorf("ListByUser returned a different session: %s", d)
	}

	gone, err := st.DeleteByUser(ctx, alice, mine[1].ID)
	if err != nil {
		t.Fatalf("DeleteByUser: %v", err)
	}
	slices.Sort(gone)
	want = []string{mine[0].ID, mine[2].ID}
	slices.Sort(want)
	if !slices.Equal(gone, want) {
		t.Errorf("DeleteByUser(except current): removed %q, want %q", gone, want)
	}
	for _, s := range []*session.Session{mine[0], mine[2]} {
		if _, err := st.ByHash(ctx, s.TokenHash); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("revoked session still found: %v", err)
		}
	}
	if _, err := st.ByHash(ctx, mine[1].TokenHash); err != nil {
		t.Errorf("the excepted session is gone: %v", err)
	}
	if _, err := st.ByHash(ctx, other.TokenHash); err != nil {
		t.Errorf("another user's session is gone: %v", err)
	}
	gone, err = st.DeleteByUser(ctx, alice, "")
	if err != nil || len(gone) != 1 || gone[0] != mine[1].ID {
		t.Errorf("DeleteByUser(all): got %q, %v; want [%s]", gone, err, mine[1].ID)
	}
	if list, _ := st.ListByUser(ctx, alice); len(list) != 0 {
		t.Errorf("after revoking all, %d sessions remain", len(list))
	}
}

func testLimit(t *testing.T, h Harness) {
	st := h.New(t)
	user := NewID()
	lim := session.Limit{Max: 3}
	expired := NewSession(user)
	expired.IdleDeadline = time.Now().Add(-time.Second)
	MustCreate(t, st, expired) // does not count towards the limit
	var made []*session.Session
	for i := range 3 {
		s := NewSession(user)
		s.CreatedAt = s.CreatedAt.Add(time.Duration(i) * time.Second)
		evicted, err := st.Create(ctx, s, lim)
		if err != nil || len(evicted) != 0 {
			t.Fatalf("Create %d under the limit: evicted %q, %v", i, evicted, err)
		}
		made = append(made, s)
	}
	next := NewSession(user)
	next.CreatedAt = next.CreatedAt.Add(time.Hour)
	if _, err := st.Create(ctx, next, session.Limit{Max: 3, Reject: true}); !errors.Is(err, session.ErrTooManySessions) {
		t.Fatalf("Create at the limit with Reject: got %v, want ErrTooManySessions", err)
	}
	if _, err := st.ByHash(ctx, next.TokenHash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("a rejected session was stored: %v", err)
	}
	evicted, err := st.Create(ctx, next, lim)
	if err != nil {
		t.Fatalf("Create at the limit: %v", err)
	}
	if !slices.Equal(evicted, []string{made[0].ID}) {
		t.Errorf("evicted %q, want the oldest [%s]", evicted, made[0].ID)
	}
	if _, err := st.ByHash(ctx, made[0].TokenHash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the evicted session still validates: %v", err)
	}
	if list, _ := st.ListByUser(ctx, user); len(list) != 3 {
		t.Errorf("user holds %d sessions, want 3", len(list))
	}
}

func testLimitConcurrent(t *testing.T, h Harness) {
	const creates, max = 50, 5
	for _, reject := range []bool{false, true} {
		t.Run(fmt.Sprintf("Reject=%v", reject), func(t *testing.T) {
			st := h.New(t)
			user := NewID()
			var wg sync.WaitGroup
			errs := make(chan error, creates)
			for range creates {
				wg.Go(func() {
					_, err := st.Create(ctx, NewSession(user), session.Limit{Max: max, Reject: reject})
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			ok := 0
			for err := range errs {
				switch {
				case err == nil:
					ok++
				case !reject || !errors.Is(err, session.ErrTooManySessions):
					t.Errorf("Create: %v", err)
				}
			}
			list, err := st.ListByUser(ctx, user)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != max {
				t.Errorf("after %d concurrent creates with limit %d the user holds %d sessions", creates, max, len(list))
			}
			if reject && ok != max {
				t.Errorf("%d creates succeeded, want %d (the rest rejected)", ok, max)
			}
		})
	}
}

func testRotation(t *testing.T, h Harness) {
	st := h.New(t)
	s := NewSession(NewID())
	MustCreate(t, st, s)
	old := s.TokenHash
	s.PrevTokenHash, s.TokenHash = old, NewHash()
	if err := st.Update(ctx, s); err != nil {
		t.Fatalf("Update (rotate with grace): %v", err)
	}
	for name, h := range map[string]session.Hash{"new": s.TokenHash, "previous": old} {
		got, err := st.ByHash(ctx, h)
		if err != nil {
			t.Fatalf("ByHash(%s token): %v", name, err)
		}
		if got.ID != s.ID || got.TokenHash != s.TokenHash || got.PrevTokenHash != old {
			t.Errorf("ByHash(%s token) returned %s with hashes %x/%x", name, got.ID, got.TokenHash, got.PrevTokenHash)
		}
	}
	s.PrevTokenHash, s.TokenHash = session.Hash{}, NewHash()
	if err := st.Update(ctx, s); err != nil {
		t.Fatalf("Update (rotate, old token dead): %v", err)
	}
	if _, err := st.ByHash(ctx, old); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ByHash(token from two rotations ago): got %v, want ErrNotFound", err)
	}
	if got, err := st.ByHash(ctx, s.TokenHash); err != nil || got.ID != s.ID {
		t.Errorf("ByHash(newest token): %v", err)
	}
}

func testSweep(t *testing.T, h Harness) {
	st := h.New(t)
	sw, ok := st.(session.Sweeper)
	if !ok {
		t.Skip("store expires sessions by itself (no Sweeper)")
	}
	user := NewID()
	expired := NewSession(user)
	expired.AbsoluteDeadline = time.Now().Add(-time.Minute)
	live := NewSession(user)
	MustCreate(t, st, expired)
	MustCreate(t, st, live)
	gone, err := sw.DeleteExpired(ctx, time.Now(), 1000)
	if err != nil {
		t.Fatalf("DeleteExpired: %v", err)
	}
	found := false
	for _, s := range gone {
		found = found || s.ID == expired.ID
		if s.ID == live.ID {
			t.Errorf("DeleteExpired removed a live session")
		}
	}
	if !found {
		t.Errorf("DeleteExpired did not report the expired session")
	}
	if err := st.Delete(ctx, expired.ID); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the swept session is still stored: Delete gave %v", err)
	}
	if _, err := st.ByID(ctx, live.ID); err != nil {
		t.Errorf("live session after sweep: %v", err)
	}
}

func testNoTokenStored(t *testing.T, h Harness) {
	st := h.New(t)
	m, err := session.New(st, session.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for range 20 {
		s, token, err := m.Create(ctx, session.Login{UserID: NewID(), Client: session.Client{IP: "192.0.2.1", UserAgent: "test"}})
		if err != nil {
			t.Fatal(err)
		}
		_, rotated, err := m.Rotate(ctx, s.ID, session.Change{Reauthenticated: true})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, token, rotated)
	}
	raw := h.Raw(t, st)
	if len(raw) == 0 {
		t.Fatal("Raw returned nothing: cannot check what the store holds")
	}
	for _, tok := range tokens {
		bin, _ := base64.RawURLEncoding.DecodeString(tok)
		if bytes.Contains(raw, []byte(tok)) || bytes.Contains(raw, bin) {
			t.Fatalf("the store holds a raw token")
		}
	}
}

// shared returns two handles on one backend, or skips.
func shared(t *testing.T, h Harness) (session.Store, session.Store) {
	t.Helper()
	if h.Shared == nil {
		t.Skip("the store keeps its sessions in one process (no Shared)")
	}
	a := h.New(t)
	return a, h.Shared(t, a)
}

func testSharedBackend(t *testing.T, h Harness) {
	a, b := shared(t, h)
	user := NewID()
	s := NewSession(user)
	MustCreate(t, a, s)
	for range 2 { // the second read may come from a cache
		if got, err := b.ByHash(ctx, s.TokenHash); err != nil || got.ID != s.ID {
			t.Fatalf("the other handle does not see a new session: %v", err)
		}
		if _, err := a.ByHash(ctx, s.TokenHash); err != nil {
			t.Fatal(err)
		}
	}
	later := s.LastSeenAt.Add(time.Minute)
	if err := b.Touch(ctx, s.ID, session.TouchInfo{At: later, IP: "198.51.100.7", IdleDeadline: later.Add(time.Hour)}); err != nil {
		t.Fatalf("Touch on the other handle: %v", err)
	}
	if got, err := a.ByID(ctx, s.ID); err != nil || got.LastIP != "198.51.100.7" {
		t.Errorf("after a Touch on the other handle: %v, %v; want last IP 198.51.100.7", got, err)
	}

	old := s.TokenHash
	cur, _ := b.ByID(ctx, s.ID)
	cur.TokenHash = NewHash()
	if err := b.Update(ctx, cur); err != nil {
		t.Fatalf("rotation on the other handle: %v", err)
	}
	if _, err := a.ByHash(ctx, old); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the token replaced on the other handle still resolves: %v", err)
	}
	if _, err := a.ByHash(ctx, cur.TokenHash); err != nil {
		t.Errorf("the new token does not resolve here: %v", err)
	}
	if err := b.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ByHash(ctx, cur.TokenHash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("a session deleted on the other handle still resolves: %v", err)
	}

	others := []*session.Session{NewSession(user), NewSession(user)}
	for _, o := range others {
		MustCreate(t, b, o)
		a.ByHash(ctx, o.TokenHash)
	}
	if gone, err := a.DeleteByUser(ctx, user, ""); err != nil || len(gone) != 2 {
		t.Fatalf("DeleteByUser: removed %q, %v; want 2", gone, err)
	}
	for _, o := range others {
		if _, err := b.ByHash(ctx, o.TokenHash); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("a session revoked on the other handle still resolves: %v", err)
		}
	}
}

func testLimitAcrossHandles(t *testing.T, h Harness) {
	const perHandle, max = 15, 4
	a, b := shared(t, h)
	for _, reject := range []bool{false, true} {
		t.Run(fmt.Sprintf("Reject=%v", reject), func(t *testing.T) {
			user := NewID()
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok := 0
			for _, st := range []session.Store{a, b} {
				for range perHandle {
					wg.Go(func() {
						_, err := st.Create(ctx, NewSession(user), session.Limit{Max: max, Reject: reject})
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil:
							ok++
						case !reject || !errors.Is(err, session.ErrTooManySessions):
							t.Errorf("Create: %v", err)
						}
					})
				}
			}
			wg.Wait()
			live, err := a.ListByUser(ctx, user)
			if err != nil {
				t.Fatal(err)
			}
			if len(live) != max {
				t.Errorf("after %d concurrent creates through two handles with limit %d, the user holds %d sessions", 2*perHandle, max, len(live))
			}
			if reject && ok != max {
				t.Errorf("%d creates succeeded, want %d", ok, max)
			}
		})
	}
}
