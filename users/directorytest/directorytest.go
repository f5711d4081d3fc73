// Package directorytest is the conformance suite every backend of
// users.Directory, users.Factors and audit.Log (with audit.Pruner, its
// retention) runs (a backend implements all four, as users/sqliteusers and
// users/pgusers do):
//
//	func TestBackend(t *testing.T) {
//		directorytest.Run(t, directorytest.Harness{New: newBackend, ...})
//	}
//
// It also exports the few helpers the backends' own tests share (NewUser,
// NewEvent, NewPasskey, MustCreate, Query, IDs); RunChanges, the part of
// Run about changing users (versions, Delete, the last-admin rule), and
// RunFactors, the part about second factors and challenges, for a backend
// to run again under a setting of its own; and RunShared, the suite for a
// backend that keeps its data beside a session store's in one storage.
package directorytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/users"
)

// Backend is what the suite tests: a user directory with the users'
// second factors, and an audit log that can delete its old events, kept
// in one storage.
type Backend interface {
	users.Directory
	users.Factors
	audit.Log
	audit.Pruner
}

// Harness tells Run how to reach a backend.
type Harness struct {
	// New returns a ready backend on a new, empty storage (no users, no
	// events, so that event IDs start at 1), and closes it when the test
	// ends.
	New func(t *testing.T) Backend
	// Open returns another handle on the storage behind b (the same file,
	// the same database), as another process would open it, and closes it
	// when the test ends. b may be closed.
	Open func(t *testing.T, b Backend) Backend
	// Close closes b, which the suite no longer uses. (New's cleanup may
	// close it again.)
	Close func(t *testing.T, b Backend)
	// Raw returns everything the storage behind b holds, as bytes (the
	// files, or every row of every table), for the check that no password
	// is stored. It may close b: the suite uses b no more.
	Raw func(t *testing.T, b Backend) []byte
	// AuditColumns returns the names of the columns of the table b keeps
	// audit events in, for the check that none is meant for a password.
	AuditColumns func(t *testing.T, b Backend) []string
	// AppendMany stores n events of type "session.touched" by user "u_a"
	// at once, bypassing Append (which may commit, and sync, each event on
	// its own). In a new backend their IDs are 1 to n.
	AppendMany func(t *testing.T, b Backend, n int)
	// DeleteEvent deletes the event with ID id behind the log's back, as
	// an operator might by hand.
	DeleteEvent func(t *testing.T, b Backend, id int64)
	// TimeResolution is the finest unit of time the backend keeps: it
	// truncates times (of users and of events) to a multiple of it. Zero
	// means a nanosecond: it keeps every time.Time as it is.
	TimeResolution time.Duration
	// MaxFamilyTypes is the number of distinct types past which the
	// backend runs a family query (Filter.Type "x.") another way; the
	// suite checks families of that many types and of one more. Zero
	// means it has no such threshold.
	MaxFamilyTypes int
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"DirectoryRoundTrip", testDirectoryRoundTrip},
		{"NotFound", testNotFound},
		{"UsernameUnique", testUsernameUnique},
		{"ListAndCount", testListAndCount},
		{"Times", testTimes},
		{"TwoHandles", testTwoHandles},
		{"ReopenKeepsData", testReopenKeepsData},
		{"AppendRoundTrip", testAppendRoundTrip},
		{"QueryFilters", testQueryFilters},
		{"QueryPaging", testQueryPaging},
		{"QueryLimits", testQueryLimits},
		{"IDsNotReused", testIDsNotReused},
		{"QueryFamilies", testQueryFamilies},
		{"DeleteBefore", testDeleteBefore},
		{"DeleteBeforeConcurrent", testDeleteBeforeConcurrent},
		{"NoPasswordStored", testNoPasswordStored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
	}
	RunChanges(t, h)
	RunFactors(t, h)
}

var ctx = context.Background()

// truncate returns tm truncated to the backend's time resolution.
func (h Harness) truncate(tm time.Time) time.Time {
	if h.TimeResolution <= 0 {
		return tm
	}
	return tm.Truncate(h.TimeResolution)
}

// event returns NewEvent(typ, userID) with its time truncated to the
// backend's resolution, so that it reads back equal.
func (h Harness) event(typ, userID string) *audit.Event {
	e := NewEvent(typ, userID)
	e.Time = h.truncate(e.Time)
	return e
}

// NewUser returns a user named username with a fresh ID, as Accounts.Add
// would make it (but with a dummy hash). Its times are whole microseconds,
// which every backend keeps.
func NewUser(username string) *users.User {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &users.User{
		ID:           "u_" + rand.Text(),
		Username:     username,
		Roles:        []string{"user"},
		PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U",
		CreatedAt:    now,
		UpdatedAt:    now,
	}
}

// NewEvent returns an event of type typ about userID, with every field
// set. Its time is now, in UTC, to the nanosecond: a backend that keeps
// less truncates it.
func NewEvent(typ, userID string) *audit.Event {
	return &audit.Event{
		Time:      time.Now().UTC(),
		Type:      typ,
		UserID:    userID,
		Username:  "name-of-" + userID,
		SessionID: "s_" + rand.Text(),
		Actor:     userID,
		Reason:    "test",
		IP:        "192.0.2.1",
		UserAgent: "Mozilla/5.0",
	}
}

// MustCreate creates u in d and fails the test on an error.
func MustCreate(t testing.TB, d users.Directory, u *users.User) {
	t.Helper()
	if err := d.Create(ctx, u); err != nil {
		t.Fatalf("Create(%q): %v", u.Username, err)
	}
}

// Query runs l.Query and fails the test on an error.
func Query(t testing.TB, l audit.Log, f audit.Filter) []audit.Event {
	t.Helper()
	got, err := l.Query(ctx, f)
	if err != nil {
		t.Fatalf("Query(%+v): %v", f, err)
	}
	return got
}

// IDs returns the IDs of events.
func IDs(events []audit.Event) []int64 {
	var out []int64
	for _, e := range events {
		out = append(out, e.ID)
	}
	return out
}

func second[T any](_ T, err error) error { return err }

func testDirectoryRoundTrip(t *testing.T, h Harness) {
	b := h.New(t)
	u := &users.User{
		ID:           "u_1",
		Username:     "alice@example.com",
		Roles:        []string{"admin", "user"},
		Disabled:     true,
		PasswordHash: NewUser("x").PasswordHash,
		// As fine as the backend keeps.
		CreatedAt: h.truncate(time.Date(2025, 1, 2, 3, 4, 5, 6006006, time.UTC)),
		UpdatedAt: h.truncate(time.Date(2026, 7, 8, 9, 10, 11, 12012012, time.UTC)),
	}
	MustCreate(t, b, u)
	for name, get := range map[string]func() (*users.User, error){
		"ByID":       func() (*users.User, error) { return b.ByID(ctx, u.ID) },
		"ByUsername": func() (*users.User, error) { return b.ByUsername(ctx, u.Username) },
	} {
		got, err := get()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, u) {
			t.Errorf("%s: got %+v, want %+v", name, got, u)
		}
	}

	// No roles and zero times read back as nil and zero.
	bare := &users.User{ID: "u_2", Username: "bob", Roles: []string{}, PasswordHash: "h"}
	MustCreate(t, b, bare)
	got, err := b.ByID(ctx, bare.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (&users.User{ID: "u_2", Username: "bob", PasswordHash: "h", Version: 1}); !reflect.DeepEqual(got, want) {
		t.Errorf("bare user: got %+v, want %+v", got, want)
	}

	// Update replaces every field but the ID.
	u.Username, u.Roles, u.Disabled, u.PasswordHash = "alice", nil, false, "h2"
	u.UpdatedAt = u.UpdatedAt.Add(time.Hour)
	if err := b.Update(ctx, u); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got, err := b.ByID(ctx, u.ID); err != nil || !reflect.DeepEqual(got, u) {
		t.Errorf("after Update: got %+v, %v, want %+v", got, err, u)
	}
	if _, err := b.ByUsername(ctx, "alice@example.com"); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("ByUsername(old name) after rename: got %v, want ErrNotFound", err)
	}
}

func testNotFound(t *testing.T, h Harness) {
	b := h.New(t)
	MustCreate(t, b, NewUser("alice"))
	for name, err := range map[string]error{
		"ByID":                   second(b.ByID(ctx, "u_nobody")),
		"ByUsername":             second(b.ByUsername(ctx, "nobody")),
		"ByUsername other case":  second(b.ByUsername(ctx, "Alice")),
		"ByUsername with spaces": second(b.ByUsername(ctx, " alice ")),
		"ByUsername empty":       second(b.ByUsername(ctx, "")),
		"Update":                 b.Update(ctx, NewUser("nobody")),
		"Delete":                 b.Delete(ctx, NewUser("nobody")),
	} {
		if err != users.ErrNotFound {
			t.Errorf("%s: got %v, want users.ErrNotFound", name, err)
		}
	}
}

func testUsernameUnique(t *testing.T, h Harness) {
	b := h.New(t)
	alice := NewUser("alice")
	MustCreate(t, b, alice)

	if err := b.Create(ctx, NewUser("alice")); err != users.ErrExists {
		t.Errorf("Create with a taken username: got %v, want users.ErrExists", err)
	}
	// Usernames are compared exactly: another case is another user.
	MustCreate(t, b, NewUser("Alice"))

	// A duplicate ID is a bug in the caller, not a taken username.
	dup := NewUser("carol")
	dup.ID = alice.ID
	if err := b.Create(ctx, dup); err == nil || errors.Is(err, users.ErrExists) {
		t.Errorf("Create with a duplicate ID: got %v, want an error other than ErrExists", err)
	}

	bob := NewUser("bob")
	MustCreate(t, b, bob)
	bob.Username = "alice"
	if err := b.Update(ctx, bob); err != users.ErrExists {
		t.Errorf("Update to a taken username: got %v, want users.ErrExists", err)
	}
	if bob.Version != 1 {
		t.Errorf("Version after a failed Update: got %d, want 1", bob.Version)
	}
	if got := mustByID(t, b, bob.ID); got.Username != "bob" || got.Version != 1 {
		t.Errorf("after a failed Update: got %+v, want bob at version 1", got)
	}
	if n, err := b.Count(ctx); err != nil || n != 3 {
		t.Errorf("Count: got %d, %v, want 3", n, err)
	}
}

func testListAndCount(t *testing.T, h Harness) {
	b := h.New(t)
	if list, err := b.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List of none: got %v, %v", list, err)
	}
	if n, err := b.Count(ctx); err != nil || n != 0 {
		t.Errorf("Count of none: got %d, %v", n, err)
	}
	for _, name := range []string{"carol", "bob", "alice", "Alice", "_x"} {
		MustCreate(t, b, NewUser(name))
	}
	list, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range list {
		got = append(got, u.Username)
	}
	// Byte order, as Go compares strings.
	if want := []string{"Alice", "_x", "alice", "bob", "carol"}; !reflect.DeepEqual(got, want) {
		t.Errorf("List: got %q, want %q", got, want)
	}
	if n, err := b.Count(ctx); err != nil || n != 5 {
		t.Errorf("Count: got %d, %v, want 5", n, err)
	}
}

// testTimes checks that a user's times keep what the backend's resolution
// holds, read back in UTC, and that the zero time and the Unix epoch stay
// apart. (Which years a backend holds is its own business.)
func testTimes(t *testing.T, h Harness) {
	b := h.New(t)
	u := NewUser("alice")
	u.CreatedAt = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC) // zero nanoseconds, not the zero time
	u.UpdatedAt = time.Date(2262, 1, 1, 0, 0, 0, 1999, time.FixedZone("X", 3600))
	MustCreate(t, b, u)
	got, err := b.ByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := h.truncate(u.UpdatedAt); !got.CreatedAt.Equal(u.CreatedAt) || got.CreatedAt.IsZero() ||
		!got.UpdatedAt.Equal(want) || got.UpdatedAt.Location() != time.UTC {
		t.Errorf("times: got %v, %v, want %v, %v in UTC", got.CreatedAt, got.UpdatedAt, u.CreatedAt, want)
	}
}

// testTwoHandles opens two handles on one storage, as two processes
// sharing it would, and checks that each sees the other's writes at once.
func testTwoHandles(t *testing.T, h Harness) {
	a := h.New(t)
	b := h.Open(t, a)

	u := NewUser("alice")
	MustCreate(t, a, u)
	got, err := b.ByUsername(ctx, "alice")
	if err != nil || got.ID != u.ID {
		t.Fatalf("ByUsername through the other handle: got %+v, %v", got, err)
	}
	got.Disabled = true
	if err := b.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if got, err := a.ByID(ctx, u.ID); err != nil || !got.Disabled {
		t.Errorf("after Update through the other handle: got %+v, %v, want disabled", got, err)
	}
	if err := b.Create(ctx, NewUser("alice")); err != users.ErrExists {
		t.Errorf("Create of a username taken through the other handle: got %v, want users.ErrExists", err)
	}

	e := h.event("login.succeeded", u.ID)
	if err := a.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got := Query(t, b, audit.Filter{UserID: u.ID}); len(got) != 1 || got[0].ID != e.ID {
		t.Errorf("Query through the other handle: got %+v, want event %d", got, e.ID)
	}
}

// testReopenKeepsData closes the only handle on a storage and opens it
// again.
func testReopenKeepsData(t *testing.T, h Harness) {
	b := h.New(t)
	u := NewUser("alice")
	MustCreate(t, b, u)
	e := h.event("user.created", u.ID)
	if err := b.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	h.Close(t, b)
	b = h.Open(t, b)
	if got, err := b.ByID(ctx, u.ID); err != nil || !reflect.DeepEqual(got, u) {
		t.Errorf("after reopening: got %+v, %v, want %+v", got, err, u)
	}
	if got := Query(t, b, audit.Filter{}); len(got) != 1 || got[0] != *e {
		t.Errorf("events after reopening: got %+v, want %+v", got, e)
	}
}

func testAppendRoundTrip(t *testing.T, h Harness) {
	b := h.New(t)
	e := &audit.Event{
		Time:      h.truncate(time.Date(2026, 2, 3, 4, 5, 6, 789789789, time.UTC)),
		Type:      "session.revoked",
		UserID:    "u_1",
		Username:  "alice",
		SessionID: "s_1",
		Actor:     "cli",
		Reason:    "admin revoked: lost laptop",
		IP:        "2001:db8::1",
		UserAgent: "curl/8.0",
	}
	if err := b.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	if e.ID <= 0 {
		t.Errorf("Append assigned ID %d, want a positive one", e.ID)
	}
	if got := Query(t, b, audit.Filter{}); len(got) != 1 || !reflect.DeepEqual(got[0], *e) {
		t.Errorf("Query: got %+v, want [%+v]", got, *e)
	}

	// An event with only a type (and the zero time) round-trips too.
	bare := &audit.Event{Type: "x"}
	if err := b.Append(ctx, bare); err != nil {
		t.Fatal(err)
	}
	if bare.ID <= e.ID {
		t.Errorf("second event's ID %d is not above the first's %d", bare.ID, e.ID)
	}
	if got := Query(t, b, audit.Filter{Type: "x"}); len(got) != 1 || !reflect.DeepEqual(got[0], *bare) {
		t.Errorf("Query: got %+v, want [%+v]", got, *bare)
	}

	// Finer than the resolution is truncated.
	tm := time.Date(2026, 1, 1, 0, 0, 0, 1999, time.UTC)
	if err := b.Append(ctx, &audit.Event{Type: "t", Time: tm}); err != nil {
		t.Fatal(err)
	}
	if got := Query(t, b, audit.Filter{Type: "t", Limit: 1}); len(got) != 1 || !got[0].Time.Equal(h.truncate(tm)) {
		t.Errorf("event with time %v: got %+v, want the time to %v", tm, got, h.truncate(tm))
	}
}

func testQueryFilters(t *testing.T, h Harness) {
	b := h.New(t)
	var all []audit.Event // in the order appended
	for i, x := range []struct{ typ, user string }{
		{"user.created", "u_a"},
		{"login.succeeded", "u_a"},
		{"session.created", "u_a"},
		{"login.failed", "u_b"},
		{"session.created", "u_b"},
		{"session.rotated", "u_a"},
		{"sessions.purged", "u_a"}, // not a session. event
		{"session", "u_b"},         // nor this
		{"session.revoked", "u_b"},
		{"a_.x", "u_c"}, // types with LIKE and GLOB wildcards
		{"ab.x", "u_c"},
		{"a*.x", "u_c"},
		{"a%.x", "u_c"},
	} {
		e := h.event(x.typ, x.user)
		e.Reason = fmt.Sprint(i)
		if err := b.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		all = append(all, *e)
	}
	// want returns the IDs of the events (newest first) that match.
	want := func(match func(e audit.Event) bool) []int64 {
		var out []int64
		for _, e := range slices.Backward(all) {
			if match(e) {
				out = append(out, e.ID)
			}
		}
		return out
	}
	mid := all[5].ID
	for _, tc := range []struct {
		name   string
		filter audit.Filter
		want   []int64
	}{
		{"everything", audit.Filter{}, want(func(audit.Event) bool { return true })},
		{"user", audit.Filter{UserID: "u_b"}, want(func(e audit.Event) bool { return e.UserID == "u_b" })},
		{"unknown user", audit.Filter{UserID: "u_z"}, nil},
		{"exact type", audit.Filter{Type: "session.created"}, want(func(e audit.Event) bool { return e.Type == "session.created" })},
		{"exact type without a dot", audit.Filter{Type: "session"}, want(func(e audit.Event) bool { return e.Type == "session" })},
		{"type prefix of another", audit.Filter{Type: "session.create"}, nil},
		{"family", audit.Filter{Type: "session."}, want(func(e audit.Event) bool {
			return slices.Contains([]string{"session.created", "session.rotated", "session.revoked"}, e.Type)
		})},
		{"family login.", audit.Filter{Type: "login."}, want(func(e audit.Event) bool { return strings.HasPrefix(e.Type, "login.") })},
		{"family with _", audit.Filter{Type: "a_."}, want(func(e audit.Event) bool { return e.Type == "a_.x" })},
		{"family with *", audit.Filter{Type: "a*."}, want(func(e audit.Event) bool { return e.Type == "a*.x" })},
		{"family with %", audit.Filter{Type: "a%."}, want(func(e audit.Event) bool { return e.Type == "a%.x" })},
		{"before", audit.Filter{Before: mid}, want(func(e audit.Event) bool { return e.ID < mid })},
		{"before the first", audit.Filter{Before: all[0].ID}, nil},
		{"limit", audit.Filter{Limit: 2}, want(func(audit.Event) bool { return true })[:2]},
		{"user and family", audit.Filter{UserID: "u_a", Type: "session."}, want(func(e audit.Event) bool {
			return e.UserID == "u_a" && (e.Type == "session.created" || e.Type == "session.rotated")
		})},
		{"user, family, before and limit", audit.Filter{UserID: "u_a", Type: "session.", Before: all[5].ID, Limit: 5}, []int64{all[2].ID}},
		{"type and before", audit.Filter{Type: "session.created", Before: all[4].ID}, []int64{all[2].ID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Query(t, b, tc.filter)
			if !slices.Equal(IDs(got), tc.want) {
				t.Errorf("Query(%+v): got IDs %v, want %v", tc.filter, IDs(got), tc.want)
			}
			for _, e := range got {
				if e != all[e.ID-all[0].ID] {
					t.Errorf("event %d: got %+v, want %+v", e.ID, e, all[e.ID-all[0].ID])
				}
			}
		})
	}
}

// testQueryPaging pages back through a user's events with Before and
// checks that every event comes once, newest first.
func testQueryPaging(t *testing.T, h Harness) {
	b := h.New(t)
	var want []int64
	for i := range 20 {
		user := "u_a"
		if i%3 == 0 {
			user = "u_b"
		}
		e := h.event("session.touched", user)
		if err := b.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		if user == "u_a" {
			want = append([]int64{e.ID}, want...)
		}
	}
	if got := pageBack(t, b, audit.Filter{UserID: "u_a", Limit: 4}); !slices.Equal(got, want) {
		t.Errorf("paged IDs: got %v, want %v", got, want)
	}
}

// pageBack pages back through the events f selects, each page of at most
// f.Limit events from below the last one of the page before, and returns
// their IDs.
func pageBack(t *testing.T, l audit.Log, f audit.Filter) []int64 {
	t.Helper()
	var got []int64
	for {
		page := Query(t, l, f)
		if len(page) > f.Limit {
			t.Fatalf("page of %d events, want at most %d", len(page), f.Limit)
		}
		if len(page) == 0 {
			return got
		}
		got = append(got, IDs(page)...)
		f.Before = page[len(page)-1].ID
	}
}

// testQueryLimits checks the default and the maximum number of events
// Query returns.
func testQueryLimits(t *testing.T, h Harness) {
	b := h.New(t)
	h.AppendMany(t, b, 1100)
	for _, tc := range []struct {
		limit, want int
	}{{0, 100}, {-1, 100}, {1, 1}, {999, 999}, {1000, 1000}, {1001, 1000}, {1 << 40, 1000}} {
		got := Query(t, b, audit.Filter{Limit: tc.limit})
		if len(got) != tc.want {
			t.Errorf("Limit %d: got %d events, want %d", tc.limit, len(got), tc.want)
		}
		if len(got) > 0 && got[0].ID != 1100 {
			t.Errorf("Limit %d: first event %d, want the newest, 1100", tc.limit, got[0].ID)
		}
		if !slices.IsSortedFunc(got, func(a, b audit.Event) int { return int(b.ID - a.ID) }) {
			t.Errorf("Limit %d: events not newest first", tc.limit)
		}
	}
}

// testIDsNotReused checks that deleting the newest events does not give
// their IDs to new ones, which would put a new event behind a reader's
// Before cursor.
func testIDsNotReused(t *testing.T, h Harness) {
	b := h.New(t)
	e := h.event("x", "u")
	for range 3 {
		if err := b.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	last := e.ID
	h.DeleteEvent(t, b, last)
	if err := b.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	if e.ID <= last {
		t.Errorf("after deleting event %d, a new event got ID %d", last, e.ID)
	}
}

// testQueryFamilies checks family queries of few types and, if the
// backend runs them differently past MaxFamilyTypes distinct types, of
// that many and of one more.
func testQueryFamilies(t *testing.T, h Harness) {
	counts := []int{3}
	if h.MaxFamilyTypes > 0 {
		counts = append(counts, h.MaxFamilyTypes, h.MaxFamilyTypes+1)
	}
	for _, n := range counts {
		t.Run(fmt.Sprintf("types=%d", n), func(t *testing.T) {
			b := h.New(t)
			var want []int64 // newest first
			add := func(typ string, in bool) {
				e := h.event(typ, "u_a")
				if err := b.Append(ctx, e); err != nil {
					t.Fatal(err)
				}
				if in {
					want = append([]int64{e.ID}, want...)
				}
			}
			add("t.", true) // the prefix itself begins with the prefix
			for round := range 3 {
				for i := range n {
					add(fmt.Sprintf("t.%03d", (i*7+round)%n), true)
					if i%10 == 0 {
						add("t", false)
						add("u.x", false)
						add("t/", false)
						add("s.x", false)
					}
				}
			}
			if got := pageBack(t, b, audit.Filter{Type: "t.", Limit: 7}); !slices.Equal(got, want) {
				t.Errorf("paged IDs: got %v, want %v", got, want)
			}
			if got := Query(t, b, audit.Filter{Type: "v."}); len(got) != 0 {
				t.Errorf("empty family: got %v", IDs(got))
			}
		})
	}
}

// appendAt appends an event of type typ by user "u_a" at tm to b.
func appendAt(t *testing.T, b Backend, typ string, tm time.Time) *audit.Event {
	t.Helper()
	e := NewEvent(typ, "u_a")
	e.Time = tm
	if err := b.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	return e
}

// testDeleteBefore checks the retention of the audit log: DeleteBefore
// deletes the events from before its time, oldest first (by time, not by
// ID), at most limit of them, and keeps the rest: newer events, one at
// exactly that time, and one with no time.
func testDeleteBefore(t *testing.T, h Harness) {
	b := h.New(t)
	now := h.truncate(time.Now().UTC())
	cutoff := now.Add(-90 * 24 * time.Hour)
	tick := max(h.TimeResolution, time.Nanosecond)
	// Appended out of time order, so that IDs do not give the order away.
	old3 := appendAt(t, b, "old", cutoff.Add(-time.Hour))
	old1 := appendAt(t, b, "old", cutoff.Add(-3*24*time.Hour))
	old2 := appendAt(t, b, "old", cutoff.Add(-2*24*time.Hour))
	old4 := appendAt(t, b, "old", cutoff.Add(-tick)) // the last instant before
	edge := appendAt(t, b, "edge", cutoff)
	recent := appendAt(t, b, "recent", now)
	untimed := &audit.Event{Type: "untimed"}
	if err := b.Append(ctx, untimed); err != nil {
		t.Fatal(err)
	}
	left := func(want ...*audit.Event) {
		t.Helper()
		var ids []int64 // newest first, as Query returns them
		for _, e := range want {
			ids = append([]int64{e.ID}, ids...)
		}
		if got := IDs(Query(t, b, audit.Filter{})); !slices.Equal(got, ids) {
			t.Errorf("events left: got IDs %v, want %v", got, ids)
		}
	}
	steps := []struct {
		limit, want int
		left        []*audit.Event
	}{
		{0, 0, []*audit.Event{old3, old1, old2, old4, edge, recent, untimed}},
		{-1, 0, []*audit.Event{old3, old1, old2, old4, edge, recent, untimed}},
		{2, 2, []*audit.Event{old3, old4, edge, recent, untimed}}, // the two oldest
		{1, 1, []*audit.Event{old4, edge, recent, untimed}},
		{100, 1, []*audit.Event{edge, recent, untimed}},
		{100, 0, []*audit.Event{edge, recent, untimed}},
	}
	for _, s := range steps {
		n, err := b.DeleteBefore(ctx, cutoff, s.limit)
		if err != nil || n != s.want {
			t.Errorf("DeleteBefore(cutoff, %d): got %d, %v; want %d", s.limit, n, err, s.want)
		}
		left(s.left...)
	}
	// A zero time is before every event.
	if n, err := b.DeleteBefore(ctx, time.Time{}, 100); err != nil || n != 0 {
		t.Errorf("DeleteBefore(zero time): got %d, %v; want 0", n, err)
	}
	left(edge, recent, untimed)
	// A time far in the future is after every event with a time.
	if n, err := b.DeleteBefore(ctx, now.AddDate(1000, 0, 0), 100); err != nil || n != 2 {
		t.Errorf("DeleteBefore(in a thousand years): got %d, %v; want 2", n, err)
	}
	left(untimed)
}

// testDeleteBeforeConcurrent runs DeleteBefore from several goroutines
// through two handles at once, as the sweeps of several instances would:
// together they delete every old event once, with no errors, and keep the
// recent ones.
func testDeleteBeforeConcurrent(t *testing.T, h Harness) {
	a := h.New(t)
	b := h.Open(t, a)
	now := h.truncate(time.Now().UTC())
	cutoff := now.Add(-time.Hour)
	const old = 60
	for i := range old {
		appendAt(t, a, "old", cutoff.Add(-time.Duration(i+1)*time.Minute))
	}
	var recent []int64 // newest first
	for range 3 {
		recent = append([]int64{appendAt(t, b, "recent", now).ID}, recent...)
	}
	var (
		wg      sync.WaitGroup
		deleted atomic.Int64
	)
	for i := range 4 {
		handle := []Backend{a, b}[i%2]
		wg.Go(func() {
			for {
				n, err := handle.DeleteBefore(ctx, cutoff, 7)
				if err != nil {
					t.Errorf("DeleteBefore: %v", err)
					return
				}
				if n == 0 {
					return
				}
				deleted.Add(int64(n))
			}
		})
	}
	wg.Wait()
	if got := deleted.Load(); got != old {
		t.Errorf("the sweeps deleted %d events together, want %d", got, old)
	}
	if got := IDs(Query(t, a, audit.Filter{})); !slices.Equal(got, recent) {
		t.Errorf("events left: got IDs %v, want the recent ones %v", got, recent)
	}
}

// testNoPasswordStored runs an account's life through users.Accounts over
// a backend, appending the audit events a server would, and checks that
// no password reaches the audit table, and that no password, only hashes,
// reaches the storage at all.
func testNoPasswordStored(t *testing.T, h Harness) {
	b := h.New(t)
	acc := users.NewAccounts(b, users.Params{Memory: 64, Time: 1, Threads: 1})
	first, wrong, second := "first-"+rand.Text(), "wrong-"+rand.Text(), "second-"+rand.Text()
	passwords := []string{first, wrong, second}

	log := func(typ string, u *users.User, reason string) {
		t.Helper()
		e := &audit.Event{Time: time.Now(), Type: typ, Actor: "cli", Reason: reason, IP: "192.0.2.1", UserAgent: "test"}
		if u != nil {
			e.UserID, e.Username = u.ID, u.Username
		}
		if err := b.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	u, err := acc.Add(ctx, "alice", first, []string{"user"})
	if err != nil {
		t.Fatal(err)
	}
	log("user.created", u, "")
	hashes := []string{u.PasswordHash}
	if _, err := acc.Authenticate(ctx, "alice", first); err != nil {
		t.Fatal(err)
	}
	log("login.succeeded", u, "")
	_, err = acc.Authenticate(ctx, "alice", wrong)
	if !errors.Is(err, users.ErrBadCredentials) {
		t.Fatalf("Authenticate with a wrong password: %v", err)
	}
	log("login.failed", u, err.Error())
	_, err = acc.Authenticate(ctx, "nobody", wrong)
	log("login.failed", &users.User{Username: "nobody"}, fmt.Sprint(err))
	if err := acc.SetPassword(ctx, u, second); err != nil {
		t.Fatal(err)
	}
	hashes = append(hashes, u.PasswordHash)
	log("password.changed", u, "")
	if err := acc.SetDisabled(ctx, u, true); err != nil {
		t.Fatal(err)
	}
	log("user.disabled", u, "")

	// The audit table has no column for a password or a hash...
	columns := h.AuditColumns(t, b)
	if len(columns) == 0 {
		t.Fatal("AuditColumns returned nothing: cannot check the audit table")
	}
	for _, name := range columns {
		if strings.Contains(name, "pass") || strings.Contains(name, "hash") {
			t.Errorf("the audit table has a column %q", name)
		}
	}
	// ...and none of its values holds one.
	events := Query(t, b, audit.Filter{})
	if len(events) != 6 {
		t.Fatalf("got %d events, want 6", len(events))
	}
	for _, e := range events {
		s := fmt.Sprintf("%+v", e)
		for _, secret := range append(append([]string{"$argon2id$"}, passwords...), hashes...) {
			if strings.Contains(s, secret) {
				t.Errorf("event %s holds %q", s, secret)
			}
		}
	}

	// The storage holds the hashes, but none of the passwords.
	raw := h.Raw(t, b)
	if !bytes.Contains(raw, []byte(u.PasswordHash)) {
		t.Fatalf("the raw data does not hold the current hash: the test reads the wrong bytes")
	}
	for _, p := range passwords {
		if bytes.Contains(raw, []byte(p)) {
			t.Errorf("the storage holds the password %q", p)
		}
	}
}
