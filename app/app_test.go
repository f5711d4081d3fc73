package app_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// hookedDir is a users.Directory that calls a hook after a read, so that a
// test can change the account at an exact point of a login.
type hookedDir struct {
	app.Directory
	mu           sync.Mutex
	afterByName  func()
	afterByIDRun func()
}

func (d *hookedDir) ByUsername(ctx context.Context, name string) (*users.User, error) {
	u, err := d.Directory.ByUsername(ctx, name)
	d.mu.Lock()
	hook := d.afterByName
	d.afterByName = nil
	d.mu.Unlock()
	if hook != nil {
		hook()
	}
	return u, err
}

func (d *hookedDir) ByID(ctx context.Context, id string) (*users.User, error) {
	u, err := d.Directory.ByID(ctx, id)
	d.mu.Lock()
	hook := d.afterByIDRun
	d.afterByIDRun = nil
	d.mu.Unlock()
	if hook != nil {
		hook()
	}
	return u, err
}

// fixture is an App on a memstore and a SQLite directory, with the users
// root (admin) and ivy, and cheap password hashing.
type fixture struct {
	app      *app.App
	dir      *hookedDir
	sessions session.Store
	now      time.Time
	mu       sync.Mutex
}

const ivyPassword = "ivy's long password"

func newFixture(t *testing.T, throttle app.ThrottleConfig) *fixture {
	t.Helper()
	db, err := sqliteusers.Open(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{dir: &hookedDir{Directory: db}, sessions: memstore.New(), now: time.Now()}
	acc := users.NewAccounts(f.dir, users.Params{Memory: 64, Time: 1, Threads: 1})
	f.app, err = app.New(app.Deps{Store: f.sessions, Accounts: acc, Audit: db, Throttle: throttle, Now: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := f.app.CreateUser(ctx, app.CLI, "root", "root's long password", []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.CreateUser(ctx, app.CLI, "ivy", ivyPassword, []string{"editor"}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

var client = session.Client{IP: "192.0.2.1", UserAgent: "test"}

// signIn signs in with a bearer-style session and returns it and its
// token.
func (f *fixture) signIn(ctx context.Context, name, password string, c session.Client) (*session.Session, string, error) {
	var token string
	_, s, err := f.app.SignIn(ctx, app.Credentials{Username: name, Password: password}, c, func(l session.Login) (*session.Session, error) {
		s, tok, err := f.app.Sessions().Create(ctx, l)
		token = tok
		return s, err
	})
	return s, token, err
}

// live returns the user's live sessions.
func (f *fixture) live(t *testing.T, name string) []*session.Session {
	t.Helper()
	_, list, err := f.app.UserSessions(t.Context(), app.CLI, name)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// changes are the admin changes a login may race.
var changes = []struct {
	name    string
	change  func(ctx context.Context, a *app.App) error
	wantErr error // of the login that raced it; nil: it succeeds
	check   func(t *testing.T, s *session.Session)
}{
	{"disable", func(ctx context.Context, a *app.App) error {
		_, _, err := a.SetDisabled(ctx, app.CLI, "ivy", true)
		return err
	}, users.ErrDisabled, nil},
	{"roles", func(ctx context.Context, a *app.App) error {
		_, _, err := a.SetRoles(ctx, app.CLI, "ivy", []string{"viewer"})
		return err
	}, nil, func(t *testing.T, s *session.Session) {
		if !slices.Equal(s.Roles, []string{"viewer"}) {
			t.Errorf("the session's roles: got %v, want [viewer]", s.Roles)
		}
	}},
	{"password reset", func(ctx context.Context, a *app.App) error {
		_, _, err := a.ResetPassword(ctx, app.CLI, "ivy", "a brand new passphrase")
		return err
	}, users.ErrBadCredentials, nil},
	{"delete", func(ctx context.Context, a *app.App) error {
		_, _, err := a.DeleteUser(ctx, app.CLI, "ivy")
		return err
	}, users.ErrBadCredentials, nil},
}

// TestNoSessionOutlivesAnAccountChangeMadeDuringLogin changes the account
// right after the login read it (while its password is being checked):
// the login fails, or for a role change starts a session with the new
// roles; no session with the old state is left.
func TestNoSessionOutlivesAnAccountChangeMadeDuringLogin(t *testing.T) {
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, app.ThrottleConfig{})
			ctx := t.Context()
			f.dir.afterByName = func() {
				if err := c.change(ctx, f.app); err != nil {
					t.Errorf("the change: %v", err)
				}
			}
			s, _, err := f.signIn(ctx, "ivy", ivyPassword, client)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("the login: got %v, want %v", err, c.wantErr)
			}
			if c.name == "delete" {
				return
			}
			live := f.live(t, "ivy")
			if c.wantErr != nil && len(live) != 0 {
				t.Fatalf("%d sessions outlive the change", len(live))
			}
			if c.check != nil {
				if len(live) != 1 || live[0].ID != s.ID {
					t.Fatalf("live sessions %v, want the login's", live)
				}
				c.check(t, live[0])
			}
		})
	}
}

// TestNoSessionOutlivesAnAccountChangeMadeAfterTheLoginsCheck changes the
// account right after the login re-read it: the change ends the session.
func TestNoSessionOutlivesAnAccountChangeMadeAfterTheLoginsCheck(t *testing.T) {
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, app.ThrottleConfig{})
			ctx := t.Context()
			f.dir.afterByName = func() { // the password check's read: arm the next
				f.dir.afterByIDRun = func() {
					if err := c.change(ctx, f.app); err != nil {
						t.Errorf("the change: %v", err)
					}
				}
			}
			_, token, err := f.signIn(ctx, "ivy", ivyPassword, client)
			if err != nil {
				t.Fatalf("the login: %v", err)
			}
			if _, err := f.app.Sessions().Validate(ctx, token, client); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("the token of a login made before the %s: got %v, want ErrNotFound", c.name, err)
			}
		})
	}
}

// TestConcurrentLoginsAndDisable runs logins from many addresses while
// the account is disabled: afterwards no session is left.
func TestConcurrentLoginsAndDisable(t *testing.T) {
	for round := range 5 {
		f := newFixture(t, app.ThrottleConfig{})
		ctx := t.Context()
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 12 {
			wg.Go(func() {
				<-start
				c := session.Client{IP: fmt.Sprintf("198.51.100.%d", i+1)}
				f.signIn(ctx, "ivy", ivyPassword, c)
			})
		}
		wg.Go(func() {
			<-start
			time.Sleep(time.Duration(round) * time.Millisecond)
			if _, _, err := f.app.SetDisabled(ctx, app.CLI, "ivy", true); err != nil {
				t.Error(err)
			}
		})
		close(start)
		wg.Wait()
		if live := f.live(t, "ivy"); len(live) != 0 {
			t.Fatalf("round %d: %d sessions of a disabled user", round, len(live))
		}
	}
}

// TestThrottleCountsFailuresOnly: successful logins never use up the
// budget, so a script that fetches a token per job is never refused.
func TestThrottleCountsFailuresOnly(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	for i := range 100 {
		if _, _, err := f.signIn(t.Context(), "ivy", ivyPassword, client); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
}

func rateLimited(err error) (time.Duration, bool) {
	var e *app.Error
	if errors.As(err, &e) && e.Code == app.CodeRateLimited {
		return e.RetryAfter, true
	}
	return 0, false
}

// TestThrottleBacksOffPerAccountAndClient: five wrong passwords from one
// client, then waits that double; the right password after the wait
// works, and another client is not held up.
func TestThrottleBacksOffPerAccountAndClient(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	for i := range 5 {
		if _, _, err := f.signIn(ctx, "ivy", "wrong password", client); !errors.Is(err, users.ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	_, _, err := f.signIn(ctx, "ivy", ivyPassword, client)
	wait, ok := rateLimited(err)
	if !ok || wait != time.Second {
		t.Fatalf("after 5 failures: got %v, want a 1s wait", err)
	}
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, session.Client{IP: "203.0.113.9"}); err != nil {
		t.Fatalf("another client: %v", err)
	}
	f.advance(time.Second)
	if _, _, err := f.signIn(ctx, "ivy", "wrong password", client); !errors.Is(err, users.ErrBadCredentials) {
		t.Fatalf("after the wait: %v", err)
	}
	_, _, err = f.signIn(ctx, "ivy", ivyPassword, client)
	if wait, ok := rateLimited(err); !ok || wait != 2*time.Second {
		t.Fatalf("after 6 failures: got %v, want a 2s wait", err)
	}
	f.advance(2 * time.Second)
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, client); err != nil {
		t.Fatalf("the owner after the wait: %v", err)
	}
	// A success forgets the failures.
	for range 5 {
		f.signIn(ctx, "ivy", "wrong password", client)
	}
	if _, _, err := f.signIn(ctx, "ivy", "wrong password", client); err == nil {
		t.Fatal("a wrong password signed in")
	} else if _, ok := rateLimited(err); !ok {
		t.Fatalf("after a success and 5 new failures: %v", err)
	}
}

// TestStrangersCannotLockTheOwnerOut: guesses from many addresses hold up
// new addresses, but not one the owner signed in from before.
func TestStrangersCannotLockTheOwnerOut(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	owner := session.Client{IP: "192.0.2.200"}
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, owner); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		f.signIn(ctx, "ivy", "guess", session.Client{IP: fmt.Sprintf("10.0.%d.%d", i/200, i%200+1)})
	}
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, session.Client{IP: "10.9.9.9"}); err == nil {
		t.Error("a new address was not held up after 40 guesses from others")
	} else if _, ok := rateLimited(err); !ok {
		t.Errorf("a new address: %v", err)
	}
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, owner); err != nil {
		t.Errorf("the owner's own address is locked out: %v", err)
	}
}

// TestThrottleTakesAnIPv6SubnetAsOneClient: addresses of one /64 share the
// per-client limit.
func TestThrottleTakesAnIPv6SubnetAsOneClient(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	for i := range 5 {
		f.signIn(ctx, "ivy", "guess", session.Client{IP: fmt.Sprintf("2001:db8:1:2::%x", i+1)})
	}
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, session.Client{IP: "2001:db8:1:2:ffff::1"}); err == nil {
		t.Error("another address of the same /64 was not held up")
	}
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, session.Client{IP: "2001:db8:1:3::1"}); err != nil {
		t.Errorf("another /64: %v", err)
	}
}

// TestPasswordChangeSharesTheLoginThrottle: wrong current passwords count
// toward the same limit as logins from that client.
func TestPasswordChangeSharesTheLoginThrottle(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	s, _, err := f.signIn(ctx, "ivy", ivyPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	actor := app.SessionActor(s, client)
	rotate := func(ch session.Change) (*session.Session, error) {
		s, _, err := f.app.Sessions().Rotate(ctx, s.ID, ch)
		return s, err
	}
	for range 5 {
		if _, _, err := f.app.ChangePassword(ctx, actor, "guess", "another long password", rotate); !errors.Is(err, app.ErrWrongPassword) {
			t.Fatalf("a wrong current password: %v", err)
		}
	}
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, client); err == nil {
		t.Fatal("five wrong current passwords did not hold up logins from that client")
	}
	if _, _, err := f.app.ChangePassword(ctx, actor, ivyPassword, "another long password", rotate); err == nil {
		t.Fatal("the password change is not held up by the login failures")
	}
}

// TestThrottleMemoryIsBounded: megabyte usernames do not become keys, and
// the keys held stay within MaxKeys.
func TestThrottleMemoryIsBounded(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{MaxKeys: 50})
	ctx := t.Context()
	huge := strings.Repeat("a", 1<<20)
	for i := range 200 {
		c := session.Client{IP: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)}
		if _, _, err := f.signIn(ctx, huge, "guess", c); !errors.Is(err, users.ErrBadCredentials) {
			t.Fatalf("a huge username: %v", err)
		}
		f.signIn(ctx, fmt.Sprintf("user%d", i), "guess", c)
	}
	// Nothing to observe from outside but that it still works and
	// refuses: the bound is checked by the unit test of the throttle.
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, session.Client{IP: "192.0.2.77"}); err != nil {
		t.Fatal(err)
	}
}

// TestInputsAreBounded: a 60 kB user agent is stored cut short in the
// audit log.
func TestInputsAreBounded(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	c := session.Client{IP: "192.0.2.5", UserAgent: strings.Repeat("x", 60<<10)}
	f.signIn(ctx, "ivy", "guess", c)
	f.signIn(ctx, "ivy", ivyPassword, c)
	events, err := f.app.Audit(ctx, app.CLI, app.AuditQuery{User: "ivy"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 {
		t.Fatal("no events")
	}
	for _, e := range events {
		if len(e.UserAgent) > 256 {
			t.Errorf("%s stored a %d-byte user agent", e.Type, len(e.UserAgent))
		}
	}
}

// TestFailedLoginsNameOnlyRealAccounts: a failed login for an unknown
// username stores no username.
func TestFailedLoginsNameOnlyRealAccounts(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	f.signIn(ctx, "nobody", "guess", client)
	events, err := f.app.Audit(ctx, app.CLI, app.AuditQuery{Type: audit.LoginFailed})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Username != "" || events[0].Reason != audit.ReasonBadCredentials {
		t.Errorf("events %+v", events)
	}
}

// TestLastAdmin: the only enabled admin cannot be demoted, disabled or
// deleted; with a second admin they can.
func TestLastAdmin(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	steps := []func() error{
		func() error { _, _, err := f.app.SetRoles(ctx, app.CLI, "root", nil); return err },
		func() error { _, _, err := f.app.SetDisabled(ctx, app.CLI, "root", true); return err },
		func() error { _, _, err := f.app.DeleteUser(ctx, app.CLI, "root"); return err },
	}
	for i, step := range steps {
		if err := step(); !errors.Is(err, users.ErrLastAdmin) {
			t.Errorf("step %d on the last admin: got %v, want ErrLastAdmin", i, err)
		}
	}
	if e := app.ErrorOf(users.ErrLastAdmin); e == nil || e.Code != app.CodeLastAdmin {
		t.Errorf("ErrorOf(ErrLastAdmin) = %v", e)
	}
	if _, _, err := f.app.SetRoles(ctx, app.CLI, "ivy", []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	if err := steps[0](); err != nil {
		t.Errorf("demoting one of two admins: %v", err)
	}
}

// TestUsernamesCannotBeIDs: a username shaped like a user ID is refused,
// and a user ID is never read as a username.
func TestUsernamesCannotBeIDs(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	ivy, err := f.app.User(ctx, app.CLI, "ivy")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.CreateUser(ctx, app.CLI, ivy.ID, "a long enough password", nil); !errors.Is(err, users.ErrInvalid) {
		t.Fatalf("a username equal to ivy's ID: got %v, want ErrInvalid", err)
	}
	if _, err := f.app.CreateUser(ctx, app.CLI, "u_AAAAAAAAAAAAAAAA", "a long enough password", nil); !errors.Is(err, users.ErrInvalid) {
		t.Fatalf("a username shaped like an ID: got %v, want ErrInvalid", err)
	}
	if u, err := f.app.User(ctx, app.CLI, ivy.ID); err != nil || u.Username != "ivy" {
		t.Fatalf("lookup by ID: %v %v", u, err)
	}
}

// TestPasswordChanges: the same password again is refused; a change keeps
// the acting session (with a new token) and ends the others; a reset ends
// them all.
func TestPasswordChanges(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	s, oldToken, err := f.signIn(ctx, "ivy", ivyPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, client); err != nil {
		t.Fatal(err)
	}
	actor := app.SessionActor(s, client)
	var newToken string
	rotate := func(ch session.Change) (*session.Session, error) {
		s, tok, err := f.app.Sessions().Rotate(ctx, s.ID, ch)
		newToken = tok
		return s, err
	}
	if _, _, err := f.app.ChangePassword(ctx, actor, ivyPassword, ivyPassword, rotate); !errors.Is(err, app.ErrSamePassword) {
		t.Fatalf("the same password: got %v, want ErrSamePassword", err)
	}
	_, n, err := f.app.ChangePassword(ctx, actor, ivyPassword, "a brand new passphrase", rotate)
	if err != nil || n != 1 {
		t.Fatalf("change: %v, %d others ended, want 1", err, n)
	}
	if _, err := f.app.Sessions().Validate(ctx, oldToken, client); err == nil {
		t.Error("the token from before the change still works")
	}
	if _, err := f.app.Sessions().Validate(ctx, newToken, client); err != nil {
		t.Errorf("the new token: %v", err)
	}
	if _, n, err := f.app.ResetPassword(ctx, app.CLI, "ivy", "an admin's new password"); err != nil || n != 1 {
		t.Fatalf("reset: %v, %d ended, want 1", err, n)
	}
	events, err := f.app.Audit(ctx, app.CLI, app.AuditQuery{User: "ivy", Type: "password."})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range events {
		types = append(types, e.Type)
	}
	if !slices.Equal(types, []string{audit.PasswordReset, audit.PasswordChanged}) {
		t.Errorf("password events: got %v", types)
	}
}

// TestAdminActionsNeedAnAdmin: every admin action refuses a non-admin
// actor, whatever the transport.
func TestAdminActionsNeedAnAdmin(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	s, _, err := f.signIn(ctx, "ivy", ivyPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	ivy := app.SessionActor(s, client)
	calls := map[string]func() error{
		"CreateUser": func() error {
			_, err := f.app.CreateUser(ctx, ivy, "mallory", "a long enough password", []string{"admin"})
			return err
		},
		"Users":        func() error { _, err := f.app.Users(ctx, ivy); return err },
		"User":         func() error { _, err := f.app.User(ctx, ivy, "root"); return err },
		"SetRoles":     func() error { _, _, err := f.app.SetRoles(ctx, ivy, "ivy", []string{"admin"}); return err },
		"SetDisabled":  func() error { _, _, err := f.app.SetDisabled(ctx, ivy, "root", true); return err },
		"Reset":        func() error { _, _, err := f.app.ResetPassword(ctx, ivy, "root", "a long enough password"); return err },
		"Delete":       func() error { _, _, err := f.app.DeleteUser(ctx, ivy, "root"); return err },
		"RevokeUser":   func() error { _, _, err := f.app.RevokeUserSessions(ctx, ivy, "root"); return err },
		"RevokeOne":    func() error { return f.app.RevokeSession(ctx, ivy, "", s.ID) },
		"Audit":        func() error { _, err := f.app.Audit(ctx, ivy, app.AuditQuery{}); return err },
		"UserSessions": func() error { _, _, err := f.app.UserSessions(ctx, ivy, "root"); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, app.ErrForbidden) {
			t.Errorf("%s by a non-admin: got %v, want ErrForbidden", name, err)
		}
	}
}

// TestPasswordChangeRacingAnAdminReset: an admin's reset that lands
// while the user's own change is checking the current password wins; the
// change is refused as a conflict and sets nothing.
func TestPasswordChangeRacingAnAdminReset(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	s, _, err := f.signIn(ctx, "ivy", ivyPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	f.dir.afterByIDRun = func() {
		if _, _, err := f.app.ResetPassword(ctx, app.CLI, "ivy", "the admin's new passphrase"); err != nil {
			t.Errorf("the reset: %v", err)
		}
	}
	rotate := func(ch session.Change) (*session.Session, error) {
		s, _, err := f.app.Sessions().Rotate(ctx, s.ID, ch)
		return s, err
	}
	_, _, err = f.app.ChangePassword(ctx, app.SessionActor(s, client), ivyPassword, "ivy's own new passphrase", rotate)
	if !errors.Is(err, users.ErrConflict) {
		t.Fatalf("the change racing a reset: got %v, want users.ErrConflict", err)
	}
	if _, _, err := f.signIn(ctx, "ivy", "the admin's new passphrase", session.Client{IP: "192.0.2.99"}); err != nil {
		t.Errorf("the admin's password does not sign in: %v", err)
	}
}

// TestOddUsernamesShareTheirAccountsThrottle: a username typed in
// another case counts toward the same account's limit, and names with
// Unicode spaces or of any length never sign in.
func TestOddUsernamesShareTheirAccountsThrottle(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	for _, name := range []string{"IVY", "Ivy", "iVy", "ivY", "IVy"} {
		if _, _, err := f.signIn(ctx, name, ivyPassword, client); !errors.Is(err, users.ErrBadCredentials) {
			t.Fatalf("%q with ivy's password: got %v, want ErrBadCredentials", name, err)
		}
	}
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, client); err == nil {
		t.Error("five failures in other cases did not hold up ivy from that client")
	}
	for _, name := range []string{"\u2000ivy", "ivy\u00a0", "i\u200bvy", "ivy ", strings.Repeat("ivy", 30)} {
		if _, _, err := f.signIn(ctx, name, ivyPassword, session.Client{IP: "203.0.113.50"}); err == nil {
			t.Errorf("%q signed in as ivy", name)
		}
	}
}

// TestAuditQueriesAreBounded: an audit filter of any length is refused
// before it reaches the log.
func TestAuditQueriesAreBounded(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	_, err := f.app.Audit(t.Context(), app.CLI, app.AuditQuery{Type: strings.Repeat("login.", 1<<14)})
	if e := app.ErrorOf(err); e == nil || e.Code != app.CodeInvalid {
		t.Errorf("a 96 kB type filter: got %v, want an invalid-input error", err)
	}
}
