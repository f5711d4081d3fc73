package users_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

var ctx = context.Background()

// openDir opens a sqliteusers Directory on a new file and closes it when
// the test ends.
func openDir(t *testing.T) *sqliteusers.DB {
	t.Helper()
	return openDirAt(t, filepath.Join(t.TempDir(), "sessiond.db"))
}

// openDirAt opens a sqliteusers Directory on path and closes it when the
// test ends.
func openDirAt(t *testing.T, path string) *sqliteusers.DB {
	t.Helper()
	db, err := sqliteusers.Open(path)
	if err != nil {
		t.Fatalf("sqliteusers.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// newAccounts returns Accounts over a new Directory, hashing with
// testParams.
func newAccounts(t *testing.T) *users.Accounts {
	t.Helper()
	return users.NewAccounts(openDir(t), testParams)
}

// mustAdd adds a user and fails the test on an error.
func mustAdd(t *testing.T, acc *users.Accounts, username, password string, roles ...string) *users.User {
	t.Helper()
	u, err := acc.Add(ctx, username, password, roles)
	if err != nil {
		t.Fatalf("Add(%q): %v", username, err)
	}
	return u
}

func TestAuthenticate(t *testing.T) {
	acc := newAccounts(t)
	alice := mustAdd(t, acc, "alice", "correct horse", "user")
	bob := mustAdd(t, acc, "bob", "battery staple")
	if err := acc.SetDisabled(ctx, bob, true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, username, password string
		want                     error
	}{
		{"right password", "alice", "correct horse", nil},
		{"wrong password", "alice", "correct horse!", users.ErrBadCredentials},
		{"empty password", "alice", "", users.ErrBadCredentials},
		{"unknown user", "carol", "correct horse", users.ErrBadCredentials},
		{"username in another case", "Alice", "correct horse", users.ErrBadCredentials},
		{"empty username", "", "correct horse", users.ErrBadCredentials},
		{"disabled, right password", "bob", "battery staple", users.ErrDisabled},
		{"disabled, wrong password", "bob", "wrong", users.ErrBadCredentials},
		{"over-long password", "alice", strings.Repeat("x", users.MaxPasswordLen+1), users.ErrBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := acc.Authenticate(ctx, tc.username, tc.password)
			if err != tc.want {
				t.Fatalf("Authenticate(%q, %q): got %v, want %v", tc.username, tc.password, err, tc.want)
			}
			if err == nil && (u == nil || u.ID != alice.ID) {
				t.Errorf("Authenticate: got user %+v, want %s", u, alice.ID)
			}
			if err != nil && u != nil {
				t.Errorf("Authenticate failed with %v but returned user %+v", err, u)
			}
		})
	}
}

// TestAuthenticateUnknownUserHashes checks that a login with an unknown
// username does the work of one with a known username and a wrong
// password, so that its timing does not tell which usernames exist.
func TestAuthenticateUnknownUserHashes(t *testing.T) {
	// Costlier parameters than testParams, so that hashing, the work
	// being compared, outweighs the directory lookup even under -race
	// (where the lookup, in transpiled C, slows down more than the
	// hashing, in assembly).
	acc := users.NewAccounts(openDir(t), users.Params{Memory: 512, Time: 1, Threads: 1})
	mustAdd(t, acc, "alice", "correct horse")

	// An unknown username waits for a hashing slot, as a known one does.
	release := acc.HoldSlots(10 * time.Millisecond)
	if _, err := acc.Authenticate(ctx, "nobody", "correct horse"); err != users.ErrBusy {
		t.Errorf("unknown username with every hashing slot taken: got %v, want users.ErrBusy", err)
	}
	release()

	// And it takes about as long. Interleave the two and compare medians,
	// so that a pause of the machine skews neither; and measure again
	// before failing, since a loaded machine (go test runs packages in
	// parallel) can skew even medians. Skipping the hash makes every
	// attempt fail: it is most of the work.
	login := func(username string) time.Duration {
		start := time.Now()
		if _, err := acc.Authenticate(ctx, username, "wrong password"); err != users.ErrBadCredentials {
			t.Fatalf("Authenticate(%q, a wrong password): got %v, want users.ErrBadCredentials", username, err)
		}
		return time.Since(start)
	}
	login("alice") // warm up
	const attempts, tries = 3, 11
	for attempt := 1; ; attempt++ {
		var unknown, known []time.Duration
		for range tries {
			unknown = append(unknown, login("nobody"))
			known = append(known, login("alice"))
		}
		u, k := median(unknown), median(known)
		t.Logf("median login: unknown username %v, known username with a wrong password %v", u, k)
		if u >= k/2 && u <= 2*k {
			break
		}
		if attempt == attempts {
			t.Fatalf("median login with an unknown username took %v, with a known one %v: want them within a factor of 2", u, k)
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestOverlongPasswordNotHashed checks that a password longer than
// MaxPasswordLen is refused before any hashing: with every hashing slot
// taken, the answer comes at once instead of ErrBusy.
func TestOverlongPasswordNotHashed(t *testing.T) {
	acc := newAccounts(t)
	u := mustAdd(t, acc, "alice", "correct horse")
	long := strings.Repeat("x", users.MaxPasswordLen+1)
	defer acc.HoldSlots(time.Minute)()

	start := time.Now()
	if _, err := acc.Authenticate(ctx, "alice", long); err != users.ErrBadCredentials {
		t.Errorf("Authenticate: got %v, want users.ErrBadCredentials", err)
	}
	if _, err := acc.Authenticate(ctx, "nobody", long); err != users.ErrBadCredentials {
		t.Errorf("Authenticate, unknown user: got %v, want users.ErrBadCredentials", err)
	}
	if ok, err := acc.CheckPassword(ctx, u, long); ok || err != nil {
		t.Errorf("CheckPassword: got %v, %v, want false, nil", ok, err)
	}
	if _, err := acc.Add(ctx, "bob", long, nil); !errors.Is(err, users.ErrInvalid) {
		t.Errorf("Add: got %v, want users.ErrInvalid", err)
	}
	if err := acc.SetPassword(ctx, u, long); !errors.Is(err, users.ErrInvalid) {
		t.Errorf("SetPassword: got %v, want users.ErrInvalid", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("refusing over-long passwords took %v: it waited for a hashing slot", d)
	}
}

func TestBusy(t *testing.T) {
	acc := newAccounts(t)
	u := mustAdd(t, acc, "alice", "correct horse")

	release := acc.HoldSlots(20 * time.Millisecond)
	if _, err := acc.Authenticate(ctx, "alice", "correct horse"); err != users.ErrBusy {
		t.Errorf("Authenticate: got %v, want users.ErrBusy", err)
	}
	if ok, err := acc.CheckPassword(ctx, u, "correct horse"); ok || err != users.ErrBusy {
		t.Errorf("CheckPassword: got %v, %v, want false, users.ErrBusy", ok, err)
	}
	if _, err := acc.Add(ctx, "bob", "battery staple", nil); err != users.ErrBusy {
		t.Errorf("Add: got %v, want users.ErrBusy", err)
	}
	if err := acc.SetPassword(ctx, u, "battery staple"); err != users.ErrBusy {
		t.Errorf("SetPassword: got %v, want users.ErrBusy", err)
	}
	// A caller that gives up waiting first gets its context's error.
	acc.SetWait(time.Minute)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := acc.Authenticate(cctx, "alice", "correct horse"); err != context.DeadlineExceeded {
		t.Errorf("Authenticate with a context that ends while it waits: got %v, want context.DeadlineExceeded", err)
	}
	release()

	if _, err := acc.Authenticate(ctx, "alice", "correct horse"); err != nil {
		t.Errorf("Authenticate once the slots are free: %v", err)
	}
	if _, err := acc.Authenticate(ctx, "alice", "battery staple"); err != users.ErrBadCredentials {
		t.Errorf("the password changed while busy: got %v, want users.ErrBadCredentials", err)
	}
}

func TestAddValidates(t *testing.T) {
	acc := newAccounts(t)
	for _, tc := range []struct {
		name, username, password string
		roles                    []string
		ok                       bool
	}{
		{"plain", "alice", "tq8-vm3k", nil, true},
		{"every allowed character", "A.z_0-9@example.com", "tq8-vm3k", []string{"admin", "user_1", "read-only"}, true},
		{"64 characters", strings.Repeat("u", 64), "tq8-vm3k", nil, true},
		{"8 multibyte characters", "carol", "密码密码密码密码", nil, true},
		{"longest password", "dave", strings.Repeat("x", users.MaxPasswordLen), nil, true},
		{"empty username", "", "tq8-vm3k", nil, false},
		{"65 characters", strings.Repeat("u", 65), "tq8-vm3k", nil, false},
		{"space in username", "al ice", "tq8-vm3k", nil, false},
		{"newline in username", "alice\n", "tq8-vm3k", nil, false},
		{"slash in username", "al/ice", "tq8-vm3k", nil, false},
		{"non-ASCII username", "alicé", "tq8-vm3k", nil, false},
		{"7-character password", "erin", "1234567", nil, false},
		{"7 multibyte characters", "erin", "密码密码密码密", nil, false},
		{"empty password", "erin", "", nil, false},
		{"over-long password", "erin", strings.Repeat("x", users.MaxPasswordLen+1), nil, false},
		{"common password", "erin", "Password1", nil, false},
		{"empty role", "erin", "tq8-vm3k", []string{""}, false},
		{"uppercase role", "erin", "tq8-vm3k", []string{"Admin"}, false},
		{"role with a space", "erin", "tq8-vm3k", []string{"a b"}, false},
		{"33-character role", "erin", "tq8-vm3k", []string{strings.Repeat("r", 33)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := acc.Add(ctx, tc.username, tc.password, tc.roles)
			if !tc.ok {
				if !errors.Is(err, users.ErrInvalid) {
					t.Errorf("Add(%q, %q, %q): got %v, want an error wrapping users.ErrInvalid", tc.username, tc.password, tc.roles, err)
				}
				if n, _ := acc.Directory().ByUsername(ctx, tc.username); n != nil {
					t.Errorf("the refused user was stored: %+v", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Add(%q, %q, %q): %v", tc.username, tc.password, tc.roles, err)
			}
			if _, err := acc.Authenticate(ctx, tc.username, tc.password); err != nil {
				t.Errorf("Authenticate as the new user: %v", err)
			}
			if !strings.HasPrefix(u.ID, "u_") || u.CreatedAt.IsZero() || !u.UpdatedAt.Equal(u.CreatedAt) {
				t.Errorf("new user: got %+v", u)
			}
		})
	}

	if _, err := acc.Add(ctx, "alice", "another password", nil); err != users.ErrExists {
		t.Errorf("Add with a taken username: got %v, want users.ErrExists", err)
	}
	// Roles are stored sorted, without duplicates.
	u := mustAdd(t, acc, "frank", "tq8-vm3k", "user", "admin", "user")
	if want := []string{"admin", "user"}; !slices.Equal(u.Roles, want) {
		t.Errorf("roles: got %q, want %q", u.Roles, want)
	}
}

// TestChangesPersist changes a user through Accounts and reads it back
// through another handle on the file.
func TestChangesPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessiond.db")
	acc := users.NewAccounts(openDirAt(t, path), testParams)
	other := users.NewAccounts(openDirAt(t, path), testParams)
	// Another admin, so that alice may lose the admin role she gains
	// below: the last enabled admin keeps it.
	mustAdd(t, acc, "root", "root password", "admin")
	u := mustAdd(t, acc, "alice", "correct horse", "user")
	reread := func() *users.User {
		t.Helper()
		got, err := other.Lookup(ctx, u.ID)
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		return got
	}
	if got := reread(); !reflect.DeepEqual(got, u) {
		t.Errorf("after Add: got %+v, want %+v", got, u)
	}

	created, oldHash := u.CreatedAt, u.PasswordHash
	if err := acc.SetPassword(ctx, u, "battery staple"); err != nil {
		t.Fatal(err)
	}
	if got := reread(); got.PasswordHash == oldHash || got.PasswordHash != u.PasswordHash || !got.CreatedAt.Equal(created) || got.UpdatedAt.Before(created) {
		t.Errorf("after SetPassword: got %+v", got)
	}
	if _, err := other.Authenticate(ctx, "alice", "battery staple"); err != nil {
		t.Errorf("Authenticate with the new password: %v", err)
	}
	if _, err := other.Authenticate(ctx, "alice", "correct horse"); err != users.ErrBadCredentials {
		t.Errorf("Authenticate with the old password: got %v, want users.ErrBadCredentials", err)
	}
	if err := acc.SetPassword(ctx, u, "short"); !errors.Is(err, users.ErrInvalid) {
		t.Errorf("SetPassword to a short password: got %v, want users.ErrInvalid", err)
	}

	if err := acc.SetRoles(ctx, u, []string{"user", "admin", "admin"}); err != nil {
		t.Fatal(err)
	}
	if got := reread(); !slices.Equal(got.Roles, []string{"admin", "user"}) || !got.HasRole("admin") {
		t.Errorf("after SetRoles: got roles %q, want [admin user]", got.Roles)
	}
	if err := acc.SetRoles(ctx, u, []string{"Admin"}); !errors.Is(err, users.ErrInvalid) {
		t.Errorf("SetRoles with a bad role: got %v, want users.ErrInvalid", err)
	}
	if got := reread(); !slices.Equal(got.Roles, []string{"admin", "user"}) {
		t.Errorf("after a refused SetRoles: got roles %q, want [admin user]", got.Roles)
	}
	if err := acc.SetRoles(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	if got := reread(); len(got.Roles) != 0 || got.HasRole("admin") {
		t.Errorf("after SetRoles(nil): got roles %q", got.Roles)
	}

	if err := acc.SetDisabled(ctx, u, true); err != nil {
		t.Fatal(err)
	}
	if got := reread(); !got.Disabled {
		t.Errorf("after SetDisabled(true): got %+v", got)
	}
	if _, err := other.Authenticate(ctx, "alice", "battery staple"); err != users.ErrDisabled {
		t.Errorf("Authenticate when disabled: got %v, want users.ErrDisabled", err)
	}
	if err := acc.SetDisabled(ctx, u, false); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Authenticate(ctx, "alice", "battery staple"); err != nil {
		t.Errorf("Authenticate when enabled again: %v", err)
	}

	// Changing a user who has gone is ErrNotFound.
	ghost := &users.User{ID: "u_ghost", Username: "ghost"}
	if err := acc.SetDisabled(ctx, ghost, true); err != users.ErrNotFound {
		t.Errorf("SetDisabled of an unknown user: got %v, want users.ErrNotFound", err)
	}
}

func TestLookup(t *testing.T) {
	acc := newAccounts(t)
	alice := mustAdd(t, acc, "alice", "correct horse")
	// No username has the form of an ID, so neither is read as the other.
	if _, err := acc.Add(ctx, alice.ID, "correct horse", nil); !errors.Is(err, users.ErrInvalid) {
		t.Errorf("Add with another user's ID as the username: got %v, want users.ErrInvalid", err)
	}
	for _, ref := range []string{alice.ID, "alice"} {
		if got, err := acc.Lookup(ctx, ref); err != nil || got.ID != alice.ID {
			t.Errorf("Lookup(%q): got %+v, %v, want %s", ref, got, err, alice.ID)
		}
	}
	for _, ref := range []string{"bob", "", "ALICE", "u_nobody"} {
		if got, err := acc.Lookup(ctx, ref); err != users.ErrNotFound {
			t.Errorf("Lookup(%q): got %+v, %v, want users.ErrNotFound", ref, got, err)
		}
	}
}

func TestCheckPassword(t *testing.T) {
	acc := newAccounts(t)
	u := mustAdd(t, acc, "alice", "correct horse")
	if ok, err := acc.CheckPassword(ctx, u, "correct horse"); !ok || err != nil {
		t.Errorf("right password: got %v, %v", ok, err)
	}
	if ok, err := acc.CheckPassword(ctx, u, "wrong horse"); ok || err != nil {
		t.Errorf("wrong password: got %v, %v", ok, err)
	}
	// A stored hash that cannot be read is a technical failure, not a
	// wrong password.
	broken := *u
	broken.PasswordHash = "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw"
	if ok, err := acc.CheckPassword(ctx, &broken, "correct horse"); ok || err == nil || errors.Is(err, users.ErrBadCredentials) {
		t.Errorf("unreadable hash: got %v, %v, want false and an error", ok, err)
	}
}
