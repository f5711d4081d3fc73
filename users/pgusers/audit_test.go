package pgusers

import (
	"crypto/rand"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/testenv"
)

// event returns an event of type typ about userID, with every field set.
func event(typ, userID string) *audit.Event {
	return &audit.Event{
		Time:      time.Now().UTC().Truncate(time.Microsecond),
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

// query runs db.Query and fails the test on an error.
func query(t *testing.T, db *DB, f audit.Filter) []audit.Event {
	t.Helper()
	got, err := db.Query(ctx, f)
	if err != nil {
		t.Fatalf("Query(%+v): %v", f, err)
	}
	return got
}

// ids returns the IDs of events.
func ids(events []audit.Event) []int64 {
	var out []int64
	for _, e := range events {
		out = append(out, e.ID)
	}
	return out
}

func TestAppendRoundTrip(t *testing.T) {
	db := openTemp(t)
	e := &audit.Event{
		Time:      time.Date(2026, 2, 3, 4, 5, 6, 789000, time.UTC), // microseconds: what PostgreSQL keeps
		Type:      "session.revoked",
		UserID:    "u_1",
		Username:  "alice",
		SessionID: "s_1",
		Actor:     "cli",
		Reason:    "admin revoked: lost laptop",
		IP:        "2001:db8::1",
		UserAgent: "curl/8.0",
	}
	if err := db.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	if e.ID <= 0 {
		t.Errorf("Append assigned ID %d, want a positive one", e.ID)
	}
	if got := query(t, db, audit.Filter{}); len(got) != 1 || !reflect.DeepEqual(got[0], *e) {
		t.Errorf("Query: got %+v, want [%+v]", got, *e)
	}

	// An event with only a type (and the zero time) round-trips too.
	bare := &audit.Event{Type: "x"}
	if err := db.Append(ctx, bare); err != nil {
		t.Fatal(err)
	}
	if bare.ID <= e.ID {
		t.Errorf("second event's ID %d is not above the first's %d", bare.ID, e.ID)
	}
	if got := query(t, db, audit.Filter{Type: "x"}); len(got) != 1 || !reflect.DeepEqual(got[0], *bare) {
		t.Errorf("Query: got %+v, want [%+v]", got, *bare)
	}

	// Finer than microseconds is truncated; times far from now are kept.
	for _, tm := range []time.Time{time.Date(2026, 1, 1, 0, 0, 0, 1999, time.UTC), time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		e := &audit.Event{Type: "t", Time: tm}
		if err := db.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		if got := query(t, db, audit.Filter{Type: "t", Limit: 1}); len(got) != 1 || !got[0].Time.Equal(tm.Truncate(time.Microsecond)) {
			t.Errorf("event with time %v: got %+v, want the time to the microsecond", tm, got)
		}
	}
}

func TestQueryFilters(t *testing.T) {
	db := openTemp(t)
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
		e := event(x.typ, x.user)
		e.Reason = fmt.Sprint(i)
		if err := db.Append(ctx, e); err != nil {
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
			got := query(t, db, tc.filter)
			if !slices.Equal(ids(got), tc.want) {
				t.Errorf("Query(%+v): got IDs %v, want %v", tc.filter, ids(got), tc.want)
			}
			for _, e := range got {
				if e != all[e.ID-all[0].ID] {
					t.Errorf("event %d: got %+v, want %+v", e.ID, e, all[e.ID-all[0].ID])
				}
			}
		})
	}
}

// TestQueryPaging pages back through a user's events with Before and
// checks that every event comes once, newest first.
func TestQueryPaging(t *testing.T) {
	db := openTemp(t)
	var want []int64
	for i := range 20 {
		user := "u_a"
		if i%3 == 0 {
			user = "u_b"
		}
		e := event("session.touched", user)
		if err := db.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		if user == "u_a" {
			want = append([]int64{e.ID}, want...)
		}
	}
	var got []int64
	f := audit.Filter{UserID: "u_a", Limit: 4}
	for {
		page := query(t, db, f)
		if len(page) > f.Limit {
			t.Fatalf("page of %d events, want at most %d", len(page), f.Limit)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, ids(page)...)
		f.Before = page[len(page)-1].ID
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged IDs: got %v, want %v", got, want)
	}
}

// TestQueryLimits checks the default and the maximum number of events
// Query returns.
func TestQueryLimits(t *testing.T) {
	db := openTemp(t)
	// 1100 events in one statement, bypassing Append.
	if _, err := db.pool.Exec(ctx, `INSERT INTO sessiond_audit_events (`+eventColumns+`)
		SELECT now(), 'session.touched', 'u_a', '', '', '', '', '', '' FROM generate_series(1, 1100)`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		limit, want int
	}{{0, 100}, {-1, 100}, {1, 1}, {999, 999}, {1000, 1000}, {1001, 1000}, {1 << 40, 1000}} {
		got := query(t, db, audit.Filter{Limit: tc.limit})
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

// TestIDsNotReused checks that deleting the newest events does not give
// their IDs to new ones, which would put a new event behind a reader's
// Before cursor.
func TestIDsNotReused(t *testing.T) {
	db := openTemp(t)
	e := event("x", "u")
	for range 3 {
		if err := db.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	last := e.ID
	if _, err := db.pool.Exec(ctx, "DELETE FROM sessiond_audit_events WHERE id = $1", last); err != nil {
		t.Fatal(err)
	}
	if err := db.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	if e.ID <= last {
		t.Errorf("after deleting event %d, a new event got ID %d", last, e.ID)
	}
}

// TestQueryFamilies checks family queries both ways Query runs them:
// merging the newest events of each type, and, past maxFamilyTypes
// distinct types, sorting the family.
func TestQueryFamilies(t *testing.T) {
	for _, n := range []int{3, maxFamilyTypes, maxFamilyTypes + 1} {
		t.Run(fmt.Sprintf("types=%d", n), func(t *testing.T) {
			db := openTemp(t)
			var want []int64 // newest first
			add := func(typ string, in bool) {
				e := event(typ, "u_a")
				if err := db.Append(ctx, e); err != nil {
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
			var got []int64
			f := audit.Filter{Type: "t.", Limit: 7}
			for {
				page := query(t, db, f)
				if len(page) == 0 {
					break
				}
				got = append(got, ids(page)...)
				f.Before = page[len(page)-1].ID
			}
			if !slices.Equal(got, want) {
				t.Errorf("paged IDs: got %v, want %v", got, want)
			}
			if got := query(t, db, audit.Filter{Type: "v."}); len(got) != 0 {
				t.Errorf("empty family: got %v", ids(got))
			}
		})
	}
}

// TestAppendCommitOrder appends from many goroutines through two DBs while
// a reader keeps reading the newest events, and checks that no event ever
// appears behind what the reader has seen: each read that saw ID n saw
// every event below n that exists at the end. Otherwise a reader paging
// back with Before from the newest event could miss one for good.
func TestAppendCommitOrder(t *testing.T) {
	url := testenv.PostgresSchema(t)
	dbs := []*DB{openAt(t, url), openAt(t, url)}
	const writers, perWriter = 8, 40
	var (
		wg    sync.WaitGroup
		reads [][]int64
		done  = make(chan struct{})
	)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-done:
				return
			default:
			}
			got, err := dbs[1].Query(ctx, audit.Filter{Limit: 1000})
			if err != nil {
				t.Errorf("Query: %v", err)
				return
			}
			reads = append(reads, ids(got))
		}
	}()
	for i := range writers {
		db := dbs[i%2]
		wg.Go(func() {
			for range perWriter {
				if err := db.Append(ctx, event("session.created", "u_a")); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	<-readerDone
	all := ids(query(t, dbs[0], audit.Filter{Limit: 1000}))
	if len(all) != writers*perWriter {
		t.Fatalf("got %d events, want %d", len(all), writers*perWriter)
	}
	for _, read := range reads {
		if len(read) == 0 {
			continue
		}
		newest := read[0]
		var want []int64
		for _, id := range all {
			if id <= newest {
				want = append(want, id)
			}
		}
		if !slices.Equal(read, want) {
			missing := 0
			for _, id := range want {
				if !slices.Contains(read, id) {
					missing++
				}
			}
			t.Fatalf("a read saw event %d but not %d older events that exist now: they committed after it", newest, missing)
		}
	}
	t.Logf("%d reads checked", len(reads))
}
