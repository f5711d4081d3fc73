package directorytest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/users"
)

// RunChanges runs the part of the suite about changing users: versions,
// Update from a stale version, Delete, and the last-admin rule, each also
// from two handles at once. Run runs it too; a backend runs it again on
// its own for a setting of its storage that could change how it makes a
// change atomic (a server's default isolation level, say). It uses
// h.New, h.Open and h.TimeResolution only.
func RunChanges(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"Version", testVersion},
		{"UpdateConflict", testUpdateConflict},
		{"UpdateConcurrent", testUpdateConcurrent},
		{"Delete", testDelete},
		{"LastAdmin", testLastAdmin},
		{"LastAdminConcurrent", testLastAdminConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
	}
}

// newAdmin returns NewUser(username) with the admin role.
func newAdmin(username string) *users.User {
	u := NewUser(username)
	u.Roles = []string{users.RoleAdmin, "user"}
	return u
}

// clone returns a copy of u that shares nothing with it.
func clone(u *users.User) *users.User {
	c := *u
	c.Roles = slices.Clone(u.Roles)
	return &c
}

// mustByID returns the stored user id and fails the test on an error.
func mustByID(t testing.TB, d users.Directory, id string) *users.User {
	t.Helper()
	u, err := d.ByID(ctx, id)
	if err != nil {
		t.Fatalf("ByID(%q): %v", id, err)
	}
	return u
}

// activeAdmins returns the usernames of the enabled admins in d, in
// username order.
func activeAdmins(t testing.TB, d users.Directory) []string {
	t.Helper()
	list, err := d.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	names := []string{}
	for _, u := range list {
		if u.IsActiveAdmin() {
			names = append(names, u.Username)
		}
	}
	return names
}

// A change is what a caller does to a user it has just read: d.Update
// or d.Delete, with u's Version the one it read.
type change func(d users.Directory, u *users.User) error

// The changes the tests make.
var (
	demote change = func(d users.Directory, u *users.User) error {
		u.Roles = []string{"user"}
		return d.Update(ctx, u)
	}
	promote change = func(d users.Directory, u *users.User) error {
		u.Roles = append(u.Roles, users.RoleAdmin)
		return d.Update(ctx, u)
	}
	disable change = func(d users.Directory, u *users.User) error {
		u.Disabled = true
		return d.Update(ctx, u)
	}
	enable change = func(d users.Directory, u *users.User) error {
		u.Disabled = false
		return d.Update(ctx, u)
	}
	rehash change = func(d users.Directory, u *users.User) error {
		u.PasswordHash = "h-" + rand.Text()
		return d.Update(ctx, u)
	}
	remove change = func(d users.Directory, u *users.User) error { return d.Delete(ctx, u) }
)

// testVersion checks that Create stores version 1 and sets it on the
// user, whatever the user held, and that each Update raises the stored
// version and the user's by one.
func testVersion(t *testing.T, h Harness) {
	b := h.New(t)
	u := NewUser("alice")
	u.Version = 7
	MustCreate(t, b, u)
	if u.Version != 1 {
		t.Errorf("Version after Create: got %d, want 1", u.Version)
	}
	if got := mustByID(t, b, u.ID); got.Version != 1 {
		t.Errorf("stored Version after Create: got %d, want 1", got.Version)
	}
	for want := int64(2); want <= 4; want++ {
		u.PasswordHash = fmt.Sprintf("h%d", want)
		if err := b.Update(ctx, u); err != nil {
			t.Fatalf("Update from version %d: %v", want-1, err)
		}
		if u.Version != want {
			t.Errorf("Version after Update: got %d, want %d", u.Version, want)
		}
		if got := mustByID(t, b, u.ID); !reflect.DeepEqual(got, u) {
			t.Errorf("after Update: got %+v, want %+v", got, u)
		}
	}
}

// testUpdateConflict checks that an Update made from another version than
// the stored one fails with ErrConflict, writes nothing and leaves the
// user's Version as it is; read again, the change goes through.
func testUpdateConflict(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name   string
		change change
	}{
		{"promote", promote},
		{"disable", disable},
		{"rename", func(d users.Directory, u *users.User) error {
			u.Username = "mallory"
			return d.Update(ctx, u)
		}},
		{"password", rehash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := h.New(t)
			u := NewUser("alice")
			MustCreate(t, b, u)
			stale := mustByID(t, b, u.ID)
			u.Roles = []string{"editor"}
			if err := b.Update(ctx, u); err != nil {
				t.Fatal(err)
			}
			stored := mustByID(t, b, u.ID)
			ahead := clone(stored)
			ahead.Version++
			for name, from := range map[string]*users.User{"stale": stale, "ahead": ahead} {
				version := from.Version
				if err := tc.change(b, from); !errors.Is(err, users.ErrConflict) {
					t.Errorf("Update from a version %s (%d, stored %d): got %v, want users.ErrConflict", name, version, stored.Version, err)
				}
				if from.Version != version {
					t.Errorf("failed Update from a version %s: Version got %d, want %d", name, from.Version, version)
				}
				if got := mustByID(t, b, u.ID); !reflect.DeepEqual(got, stored) {
					t.Errorf("after a failed Update from a version %s: got %+v, want %+v", name, got, stored)
				}
			}
			fresh := mustByID(t, b, u.ID)
			if err := tc.change(b, fresh); err != nil {
				t.Fatalf("Update read again: got %v, want nil", err)
			}
			if got := mustByID(t, b, u.ID); !reflect.DeepEqual(got, fresh) || got.Version != stored.Version+1 {
				t.Errorf("after Update read again: got %+v, want %+v at version %d", got, fresh, stored.Version+1)
			}
		})
	}
}

// testUpdateConcurrent runs Updates from one version at once, through two
// handles, as requests on two instances would: in each round exactly one
// wins, the others fail with ErrConflict, and the stored user is the
// winner's.
func testUpdateConcurrent(t *testing.T, h Harness) {
	a := h.New(t)
	handles := []Backend{a, h.Open(t, a)}
	u := NewUser("alice")
	MustCreate(t, a, u)
	const rounds, writers = 10, 4
	for round := range rounds {
		base := mustByID(t, a, u.ID)
		changed := make([]*users.User, writers)
		errs := make([]error, writers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range writers {
			c := clone(base)
			c.PasswordHash = fmt.Sprintf("h-%d-%d", round, i)
			changed[i] = c
			d := handles[i%len(handles)]
			wg.Go(func() {
				<-start
				errs[i] = d.Update(ctx, c)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: Updates %d and %d from version %d both succeeded", round, winner, i, base.Version)
			case err == nil:
				winner = i
			case !errors.Is(err, users.ErrConflict):
				t.Fatalf("round %d: Update %d: got %v, want nil or users.ErrConflict", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: got %v, want one Update to succeed", round, errs)
		}
		if got, want := mustByID(t, handles[1], u.ID), changed[winner]; !reflect.DeepEqual(got, want) || got.Version != base.Version+1 {
			t.Fatalf("round %d: got %+v, want the winner's %+v at version %d", round, got, want, base.Version+1)
		}
	}
}

// testDelete checks that Delete removes the stored version of a user
// only, returns ErrNotFound for a missing user, frees the username, and
// leaves the audit events about the user in the log.
func testDelete(t *testing.T, h Harness) {
	b := h.New(t)
	alice, bob := NewUser("alice"), NewUser("bob")
	MustCreate(t, b, alice)
	MustCreate(t, b, bob)
	e := h.event("user.created", alice.ID)
	if err := b.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	stale := clone(alice)
	alice.Roles = []string{"editor"}
	if err := b.Update(ctx, alice); err != nil {
		t.Fatal(err)
	}
	ahead := clone(alice)
	ahead.Version++
	for _, tc := range []struct {
		name string
		u    *users.User
		want error
	}{
		{"stale version", stale, users.ErrConflict},
		{"version ahead", ahead, users.ErrConflict},
		{"missing user", NewUser("nobody"), users.ErrNotFound},
	} {
		if err := b.Delete(ctx, tc.u); !errors.Is(err, tc.want) {
			t.Errorf("Delete of a %s: got %v, want %v", tc.name, err, tc.want)
		}
		if got := mustByID(t, b, alice.ID); !reflect.DeepEqual(got, alice) {
			t.Errorf("after Delete of a %s: got %+v, want %+v", tc.name, got, alice)
		}
	}

	if err := b.Delete(ctx, alice); err != nil {
		t.Fatalf("Delete: got %v, want nil", err)
	}
	for name, err := range map[string]error{
		"ByID":       second(b.ByID(ctx, alice.ID)),
		"ByUsername": second(b.ByUsername(ctx, "alice")),
		"Delete":     b.Delete(ctx, alice),
		"Update":     b.Update(ctx, alice),
	} {
		if !errors.Is(err, users.ErrNotFound) {
			t.Errorf("%s after Delete: got %v, want users.ErrNotFound", name, err)
		}
	}
	if list, err := b.List(ctx); err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], bob) {
		t.Errorf("List after Delete: got %+v, %v, want [%+v]", list, err, bob)
	}
	if n, err := b.Count(ctx); err != nil || n != 1 {
		t.Errorf("Count after Delete: got %d, %v, want 1", n, err)
	}
	if got := Query(t, b, audit.Filter{UserID: alice.ID}); len(got) != 1 || got[0] != *e {
		t.Errorf("events about the deleted user: got %+v, want [%+v]", got, *e)
	}
	MustCreate(t, b, NewUser("alice"))
}

// testLastAdmin checks the last-admin rule: a change that would leave no
// enabled admin (a demotion, a disabling, a deletion) fails with
// ErrLastAdmin and writes nothing, while a disabled admin does not count
// and changes that keep an admin, or that touch no enabled admin, go
// through.
func testLastAdmin(t *testing.T, h Harness) {
	type step struct {
		user   string
		change change
		want   error
	}
	for _, tc := range []struct {
		name  string
		users []*users.User
		steps []step
		// admins are the enabled admins at the end.
		admins []string
	}{
		{
			name:   "demote the only admin",
			users:  []*users.User{newAdmin("root"), NewUser("carol")},
			steps:  []step{{"root", demote, users.ErrLastAdmin}},
			admins: []string{"root"},
		},
		{
			name:   "disable the only admin",
			users:  []*users.User{newAdmin("root"), NewUser("carol")},
			steps:  []step{{"root", disable, users.ErrLastAdmin}},
			admins: []string{"root"},
		},
		{
			name:   "delete the only admin",
			users:  []*users.User{newAdmin("root"), NewUser("carol")},
			steps:  []step{{"root", remove, users.ErrLastAdmin}},
			admins: []string{"root"},
		},
		{
			name:   "the only admin stays one",
			users:  []*users.User{newAdmin("root")},
			steps:  []step{{"root", rehash, nil}, {"root", enable, nil}},
			admins: []string{"root"},
		},
		{
			name:   "demote two admins",
			users:  []*users.User{newAdmin("root"), newAdmin("ann")},
			steps:  []step{{"root", demote, nil}, {"ann", demote, users.ErrLastAdmin}},
			admins: []string{"ann"},
		},
		{
			name:   "disable, then delete, two admins",
			users:  []*users.User{newAdmin("root"), newAdmin("ann")},
			steps:  []step{{"ann", disable, nil}, {"root", remove, users.ErrLastAdmin}, {"ann", remove, nil}},
			admins: []string{"root"},
		},
		{
			name:  "a disabled admin does not count",
			users: []*users.User{newAdmin("root"), disabledAdmin("old")},
			steps: []step{
				{"root", demote, users.ErrLastAdmin},
				{"root", disable, users.ErrLastAdmin},
				{"root", remove, users.ErrLastAdmin},
				{"old", demote, nil},
				{"old", remove, nil},
			},
			admins: []string{"root"},
		},
		{
			name:   "a re-enabled admin counts",
			users:  []*users.User{newAdmin("root"), disabledAdmin("old")},
			steps:  []step{{"old", enable, nil}, {"root", demote, nil}, {"old", disable, users.ErrLastAdmin}},
			admins: []string{"old"},
		},
		{
			name:   "a promoted user counts",
			users:  []*users.User{newAdmin("root"), NewUser("carol")},
			steps:  []step{{"carol", promote, nil}, {"root", remove, nil}, {"carol", demote, users.ErrLastAdmin}},
			admins: []string{"carol"},
		},
		{
			name:   "no admin to keep",
			users:  []*users.User{NewUser("carol"), NewUser("dave"), disabledAdmin("old")},
			steps:  []step{{"carol", disable, nil}, {"dave", remove, nil}, {"old", remove, nil}},
			admins: []string{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := h.New(t)
			for _, u := range tc.users {
				MustCreate(t, b, u)
			}
			for i, s := range tc.steps {
				u, err := b.ByUsername(ctx, s.user)
				if err != nil {
					t.Fatalf("step %d: ByUsername(%q): %v", i, s.user, err)
				}
				before := clone(u)
				err = s.change(b, u)
				if !errors.Is(err, s.want) {
					t.Fatalf("step %d, %s: got %v, want %v", i, s.user, err, s.want)
				}
				if s.want == nil {
					continue
				}
				if u.Version != before.Version {
					t.Errorf("step %d, %s: after a failed change, Version got %d, want %d", i, s.user, u.Version, before.Version)
				}
				if got := mustByID(t, b, u.ID); !reflect.DeepEqual(got, before) {
					t.Errorf("step %d, %s: after a failed change, got %+v, want %+v", i, s.user, got, before)
				}
			}
			if got := activeAdmins(t, b); !slices.Equal(got, tc.admins) {
				t.Errorf("enabled admins: got %q, want %q", got, tc.admins)
			}
		})
	}
}

// disabledAdmin returns newAdmin(username), disabled.
func disabledAdmin(username string) *users.User {
	u := newAdmin(username)
	u.Disabled = true
	return u
}

// testLastAdminConcurrent starts, in each round, two changes at once
// through two handles, as two instances would, each taking away one of
// the last two enabled admins (by demotion, disabling or deletion): one
// must succeed and the other fail with ErrLastAdmin, never both succeed.
// The round's loser is then made an admin again for the next.
func testLastAdminConcurrent(t *testing.T, h Harness) {
	a := h.New(t)
	handles := [2]Backend{a, h.Open(t, a)}
	admins := [2]*users.User{newAdmin("admin-a"), newAdmin("admin-b")}
	for _, u := range admins {
		MustCreate(t, a, u)
	}
	kinds := []struct {
		name   string
		change change
	}{{"demote", demote}, {"disable", disable}, {"delete", remove}}
	const rounds = 30
	for round := range rounds {
		kind := kinds[round%len(kinds)]
		var (
			targets [2]*users.User
			errs    [2]error
			wg      sync.WaitGroup
		)
		for i, u := range admins {
			targets[i] = mustByID(t, handles[i], u.ID)
		}
		start := make(chan struct{})
		for i := range targets {
			wg.Go(func() {
				<-start
				errs[i] = kind.change(handles[i], targets[i])
			})
		}
		close(start)
		wg.Wait()

		if got := activeAdmins(t, a); len(got) != 1 {
			t.Fatalf("round %d (%s both at once): got enabled admins %q, want one (errors %v)", round, kind.name, got, errs)
		}
		changed := -1
		for i, err := range errs {
			switch {
			case err == nil:
				changed = i
			case !errors.Is(err, users.ErrLastAdmin):
				t.Fatalf("round %d (%s): change %d: got %v, want nil or users.ErrLastAdmin", round, kind.name, i, err)
			}
		}
		if changed < 0 || errs[1-changed] == nil {
			t.Fatalf("round %d (%s both at once): got errors %v, want one nil and one users.ErrLastAdmin", round, kind.name, errs)
		}

		// Make the changed one an enabled admin again.
		if kind.name == "delete" {
			admins[changed] = newAdmin(fmt.Sprintf("admin-%d", round))
			MustCreate(t, a, admins[changed])
			continue
		}
		u := mustByID(t, a, admins[changed].ID)
		u.Roles, u.Disabled = []string{users.RoleAdmin, "user"}, false
		if err := a.Update(ctx, u); err != nil {
			t.Fatalf("round %d: restore %s: %v", round, u.Username, err)
		}
	}
}
