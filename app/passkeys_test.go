package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/passkeytest"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

var rp = app.RelyingParty{ID: "login.example.com", Origin: "https://login.example.com"}

// pkFixture is an App whose directory keeps passkeys, with the users
// root (admin) and ivy.
type pkFixture struct {
	app  *app.App
	dir  *sqliteusers.DB
	f    users.Factors
	now  time.Time
	ivy  *users.User
	root *users.User
}

func newPKFixture(t *testing.T) *pkFixture {
	t.Helper()
	db, err := sqliteusers.Open(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	pf := &pkFixture{dir: db, f: db, now: time.Now()}
	acc := users.NewAccounts(db, users.Params{Memory: 64, Time: 1, Threads: 1})
	pf.app, err = app.New(app.Deps{Store: memstore.New(), Accounts: acc, Audit: db, Now: func() time.Time { return pf.now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if pf.root, err = pf.app.CreateUser(ctx, app.CLI, "root", "root's long password", []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	if pf.ivy, err = pf.app.CreateUser(ctx, app.CLI, "ivy", ivyPassword, nil); err != nil {
		t.Fatal(err)
	}
	return pf
}

func (pf *pkFixture) actor(u *users.User) app.Actor {
	return app.Actor{ID: u.ID, SessionID: "s-" + u.ID, Client: client}
}

// options is c's options as the browser gets them.
func options(t *testing.T, c *app.Ceremony) []byte {
	t.Helper()
	b, err := json.Marshal(c.Options)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// register registers a passkey of a for u and returns it.
func (pf *pkFixture) register(t *testing.T, u *users.User, a *passkeytest.Authenticator, name string) *users.Passkey {
	t.Helper()
	ctx := t.Context()
	c, err := pf.app.BeginPasskeyRegistration(ctx, pf.actor(u), pf.now, rp)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.Create(options(t, c))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pf.app.FinishPasskeyRegistration(ctx, pf.actor(u), rp, c.ID, name, resp)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// begin begins a passkey sign-in and returns its ID and a's answer.
func (pf *pkFixture) begin(t *testing.T, a *passkeytest.Authenticator) (string, []byte) {
	t.Helper()
	c, err := pf.app.BeginPasskeyLogin(t.Context(), rp, client)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.Get(options(t, c))
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, resp
}

func (pf *pkFixture) finish(ctx context.Context, id string, resp []byte) (*users.User, *session.Session, error) {
	return pf.app.FinishPasskeyLogin(ctx, rp, id, resp, false, client, func(l session.Login) (*session.Session, error) {
		s, _, err := pf.app.Sessions().Create(ctx, l)
		return s, err
	})
}

// lastEvent is the newest audit event of type typ.
func (pf *pkFixture) lastEvent(t *testing.T, typ string) audit.Event {
	t.Helper()
	evs, err := pf.dir.Query(t.Context(), audit.Filter{Type: typ, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		t.Fatalf("no %s event in the audit log", typ)
	}
	return evs[0]
}

func TestPasskeySignInWithoutPassword(t *testing.T) {
	pf := newPKFixture(t)
	ctx := t.Context()
	a := passkeytest.New(rp.Origin)
	p := pf.register(t, pf.ivy, a, "  Laptop\x07 ")
	if p.Name != "Laptop" || p.UserID != pf.ivy.ID || !p.UserVerified || p.BackupEligible {
		t.Errorf("registered passkey %+v: want the name Laptop, ivy's, user verified, not synced", p)
	}
	if e := pf.lastEvent(t, audit.PasskeyAdded); e.UserID != pf.ivy.ID || e.Reason != "Laptop" {
		t.Errorf("passkey.added event %+v", e)
	}

	id, resp := pf.begin(t, a)
	u, s, err := pf.finish(ctx, id, resp)
	if err != nil {
		t.Fatalf("sign-in with the passkey: %v", err)
	}
	if u.ID != pf.ivy.ID || s.UserID != pf.ivy.ID {
		t.Errorf("signed in as %s with a session of %s, want ivy (%s)", u.ID, s.UserID, pf.ivy.ID)
	}
	if e := pf.lastEvent(t, audit.LoginSucceeded); e.UserID != pf.ivy.ID || e.SessionID != s.ID || e.Reason != "hwk,user,mfa" {
		t.Errorf("login.succeeded event %+v, want ivy's with the session and the method", e)
	}
	stored, err := pf.f.PasskeyByID(ctx, p.CredentialID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.SignCount != 2 || !stored.LastUsedAt.Equal(pf.now.UTC().Truncate(time.Microsecond)) {
		t.Errorf("after a sign-in: sign count %d, last used %v; want 2 and %v", stored.SignCount, stored.LastUsedAt, pf.now)
	}
}

func TestPasskeyAMR(t *testing.T) {
	for _, c := range []struct {
		be, uv bool
		want   []string
	}{
		{false, true, []string{"hwk", "user", "mfa"}},
		{true, true, []string{"swk", "user", "mfa"}},
		{false, false, []string{"hwk", "user"}},
		{true, false, []string{"swk", "user"}},
	} {
		if got := app.PasskeyAMR(c.be, c.uv); !slices.Equal(got, c.want) {
			t.Errorf("PasskeyAMR(backup eligible %v, user verified %v) = %q, want %q", c.be, c.uv, got, c.want)
		}
	}
}

func TestPasskeyCeremonyIsSingleUse(t *testing.T) {
	pf := newPKFixture(t)
	a := passkeytest.New(rp.Origin)
	pf.register(t, pf.ivy, a, "")
	id, resp := pf.begin(t, a)
	if _, _, err := pf.finish(t.Context(), id, resp); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pf.finish(t.Context(), id, resp); !errors.Is(err, app.ErrCeremonyGone) {
		t.Errorf("the same answer again: %v, want ErrCeremonyGone", err)
	}
	// An answer to another ceremony's challenge does not verify.
	c, err := pf.app.BeginPasskeyLogin(t.Context(), rp, client)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pf.finish(t.Context(), c.ID, resp); !errors.Is(err, app.ErrPasskeyRejected) {
		t.Errorf("an old answer to a new ceremony: %v, want ErrPasskeyRejected", err)
	}
	// A registration ceremony is no sign-in ceremony.
	reg, err := pf.app.BeginPasskeyRegistration(t.Context(), pf.actor(pf.ivy), pf.now, rp)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pf.finish(t.Context(), reg.ID, resp); !errors.Is(err, app.ErrCeremonyGone) {
		t.Errorf("a registration ceremony's ID to sign in: %v, want ErrCeremonyGone", err)
	}
}

func TestPasskeyFromAnotherOriginIsRefused(t *testing.T) {
	pf := newPKFixture(t)
	a := passkeytest.New(rp.Origin)
	pf.register(t, pf.ivy, a, "")
	a.Origin = "https://login.example.com.evil.test"
	id, resp := pf.begin(t, a)
	if _, _, err := pf.finish(t.Context(), id, resp); !errors.Is(err, app.ErrPasskeyRejected) {
		t.Fatalf("an answer from another origin: %v, want ErrPasskeyRejected", err)
	}
	if e := pf.lastEvent(t, audit.LoginFailed); e.UserID != pf.ivy.ID || e.Reason != audit.ReasonBadPasskey {
		t.Errorf("login.failed event %+v, want ivy's with reason %s", e, audit.ReasonBadPasskey)
	}
	// Registration checks the origin too.
	b := passkeytest.New("https://evil.test")
	c, err := pf.app.BeginPasskeyRegistration(t.Context(), pf.actor(pf.ivy), pf.now, rp)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = b.Create(options(t, c))
	if _, err := pf.app.FinishPasskeyRegistration(t.Context(), pf.actor(pf.ivy), rp, c.ID, "", resp); !errors.Is(err, app.ErrPasskeyRejected) {
		t.Errorf("registration from another origin: %v, want ErrPasskeyRejected", err)
	}
}

func TestPasskeySignInNeedsUserVerification(t *testing.T) {
	pf := newPKFixture(t)
	a := passkeytest.New(rp.Origin)
	pf.register(t, pf.ivy, a, "")
	a.UserVerified = false
	id, resp := pf.begin(t, a)
	if _, _, err := pf.finish(t.Context(), id, resp); !errors.Is(err, app.ErrPasskeyRejected) {
		t.Errorf("a passwordless sign-in without user verification: %v, want ErrPasskeyRejected", err)
	}
}

func TestPasskeyOfAnotherUserIsRefused(t *testing.T) {
	pf := newPKFixture(t)
	ctx := t.Context()
	ivys, roots := passkeytest.New(rp.Origin), passkeytest.New(rp.Origin)
	pf.register(t, pf.ivy, ivys, "")
	pf.register(t, pf.root, roots, "")

	// root's passkey presented with ivy's user handle.
	roots.UserHandle = []byte(pf.ivy.ID)
	id, resp := pf.begin(t, roots)
	if _, _, err := pf.finish(ctx, id, resp); !errors.Is(err, app.ErrPasskeyRejected) {
		t.Errorf("root's passkey with ivy's user handle: %v, want ErrPasskeyRejected", err)
	}
	roots.UserHandle = []byte(pf.root.ID)

	// A check of ivy's answered with root's passkey.
	c, err := pf.app.BeginPasskeyCheck(ctx, pf.ivy.ID, rp, client)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = roots.Get(options(t, c))
	if err != nil {
		t.Fatal(err)
	}
	rotated := false
	_, err = pf.app.ReauthenticateWithPasskey(ctx, pf.actor(pf.ivy), rp, c.ID, resp, func(session.Change) (*session.Session, error) {
		rotated = true
		return &session.Session{}, nil
	})
	if !errors.Is(err, app.ErrPasskeyRejected) || rotated {
		t.Errorf("ivy re-authenticating with root's passkey: %v (rotated %v), want ErrPasskeyRejected", err, rotated)
	}
	// root cannot finish a ceremony begun for ivy, even with ivy's passkey.
	c, err = pf.app.BeginPasskeyCheck(ctx, pf.ivy.ID, rp, client)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = ivys.Get(options(t, c))
	if _, err := pf.app.ReauthenticateWithPasskey(ctx, pf.actor(pf.root), rp, c.ID, resp, func(session.Change) (*session.Session, error) {
		return &session.Session{}, nil
	}); !errors.Is(err, app.ErrCeremonyGone) {
		t.Errorf("root finishing ivy's ceremony: %v, want ErrCeremonyGone", err)
	}

	// Nor rename or remove another user's.
	roots2, err := pf.app.MyPasskeys(ctx, pf.actor(pf.root))
	if err != nil || len(roots2) != 1 {
		t.Fatalf("root's passkeys: %v, %v", roots2, err)
	}
	if _, err := pf.app.RenamePasskey(ctx, pf.actor(pf.ivy), roots2[0].CredentialID, "mine"); app.ErrorOf(err) == nil || app.ErrorOf(err).Code != app.CodeNotFound {
		t.Errorf("ivy renaming root's passkey: %v, want not found", err)
	}
	if _, err := pf.app.RemovePasskey(ctx, pf.actor(pf.ivy), roots2[0].CredentialID); app.ErrorOf(err) == nil || app.ErrorOf(err).Code != app.CodeNotFound {
		t.Errorf("ivy removing root's passkey: %v, want not found", err)
	}
	if _, err := pf.f.PasskeyByID(ctx, roots2[0].CredentialID); err != nil {
		t.Errorf("root's passkey after ivy's attempts: %v", err)
	}
}

func TestPasskeyReauthentication(t *testing.T) {
	pf := newPKFixture(t)
	ctx := t.Context()
	a := passkeytest.New(rp.Origin)
	pf.register(t, pf.ivy, a, "")
	c, err := pf.app.BeginPasskeyCheck(ctx, pf.ivy.ID, rp, client)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := a.Get(options(t, c))
	var got session.Change
	if _, err := pf.app.ReauthenticateWithPasskey(ctx, pf.actor(pf.ivy), rp, c.ID, resp, func(ch session.Change) (*session.Session, error) {
		got = ch
		return &session.Session{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if !got.Reauthenticated {
		t.Errorf("re-authentication rotated the session with %+v, want it reauthenticated", got)
	}
	// No passkey, no check.
	if _, err := pf.app.BeginPasskeyCheck(ctx, pf.root.ID, rp, client); app.ErrorOf(err) == nil || app.ErrorOf(err).Code != app.CodeNotFound {
		t.Errorf("a check for a user without passkeys: %v, want not found", err)
	}
}

func TestClonedPasskeyIsRefused(t *testing.T) {
	pf := newPKFixture(t)
	ctx := t.Context()
	a := passkeytest.New(rp.Origin)
	pf.register(t, pf.ivy, a, "")
	id, resp := pf.begin(t, a)
	if _, _, err := pf.finish(ctx, id, resp); err != nil {
		t.Fatal(err)
	}
	// A copy of the key answers with the count it had when copied.
	a.SignCount = 2
	id, resp = pf.begin(t, a)
	if _, _, err := pf.finish(ctx, id, resp); !errors.Is(err, app.ErrPasskeyRejected) {
		t.Fatalf("a sign count that did not go up: %v, want ErrPasskeyRejected", err)
	}
	if e := pf.lastEvent(t, audit.LoginFailed); e.UserID != pf.ivy.ID || e.Reason != audit.ReasonClonedAuthenticator {
		t.Errorf("login.failed event %+v, want ivy's with reason %s", e, audit.ReasonClonedAuthenticator)
	}

	// A synced passkey's count is not one authenticator's: it may go
	// back (or stay at 0).
	s := passkeytest.New(rp.Origin)
	s.BackupEligible, s.BackupState, s.SignCount = true, true, 5
	p := pf.register(t, pf.root, s, "")
	if !p.BackupEligible || !p.BackupState {
		t.Errorf("synced passkey stored as %+v", p)
	}
	s.SignCount = 3
	id, resp = pf.begin(t, s)
	if _, _, err := pf.finish(ctx, id, resp); err != nil {
		t.Errorf("a synced passkey whose count went back: %v, want it accepted", err)
	}
}

func TestPasskeySignInRefusesDisabledAccounts(t *testing.T) {
	pf := newPKFixture(t)
	ctx := t.Context()
	a := passkeytest.New(rp.Origin)
	pf.register(t, pf.ivy, a, "")
	if _, _, err := pf.app.SetDisabled(ctx, app.CLI, "ivy", true); err != nil {
		t.Fatal(err)
	}
	id, resp := pf.begin(t, a)
	if _, _, err := pf.finish(ctx, id, resp); !errors.Is(err, users.ErrDisabled) {
		t.Errorf("a disabled account's passkey: %v, want ErrDisabled", err)
	}
	if e := pf.lastEvent(t, audit.LoginFailed); e.UserID != pf.ivy.ID || e.Reason != audit.ReasonDisabled {
		t.Errorf("login.failed event %+v", e)
	}
}

func TestPasskeyRegistrationNeedsARecentSignIn(t *testing.T) {
	pf := newPKFixture(t)
	old := pf.now.Add(-app.PasskeyRecentAuth - time.Second)
	_, err := pf.app.BeginPasskeyRegistration(t.Context(), pf.actor(pf.ivy), old, rp)
	if e := app.ErrorOf(err); e == nil || e.Code != app.CodeReauthRequired {
		t.Errorf("registration from a session authenticated %v ago: %v, want reauth_required", pf.now.Sub(old), err)
	}
}

func TestPasskeyRegistrationIsTheActorsOwn(t *testing.T) {
	pf := newPKFixture(t)
	c, err := pf.app.BeginPasskeyRegistration(t.Context(), pf.actor(pf.ivy), pf.now, rp)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := passkeytest.New(rp.Origin).Create(options(t, c))
	if _, err := pf.app.FinishPasskeyRegistration(t.Context(), pf.actor(pf.root), rp, c.ID, "", resp); !errors.Is(err, app.ErrCeremonyGone) {
		t.Errorf("root finishing ivy's registration: %v, want ErrCeremonyGone", err)
	}
	if n, _ := pf.f.Passkeys(t.Context(), pf.root.ID); len(n) != 0 {
		t.Errorf("root has %d passkeys", len(n))
	}
}

func TestPasskeyRenameAndRemove(t *testing.T) {
	pf := newPKFixture(t)
	ctx := t.Context()
	p := pf.register(t, pf.ivy, passkeytest.New(rp.Origin), "")
	if want := "Passkey of " + pf.now.UTC().Format("2 Jan 2006"); p.Name != want {
		t.Errorf("default name %q, want %q", p.Name, want)
	}
	got, err := pf.app.RenamePasskey(ctx, pf.actor(pf.ivy), p.CredentialID, "Phone")
	if err != nil || got.Name != "Phone" {
		t.Fatalf("rename: %+v, %v", got, err)
	}
	if _, err := pf.app.RenamePasskey(ctx, pf.actor(pf.ivy), p.CredentialID, longName(users.MaxPasskeyNameLen+1)); app.ErrorOf(err) == nil || app.ErrorOf(err).Code != app.CodeInvalid {
		t.Errorf("a name of %d characters: %v, want invalid", users.MaxPasskeyNameLen+1, err)
	}
	if _, err := pf.app.RemovePasskey(ctx, pf.actor(pf.ivy), p.CredentialID); err != nil {
		t.Fatal(err)
	}
	if e := pf.lastEvent(t, audit.PasskeyRemoved); e.UserID != pf.ivy.ID || e.Reason != "Phone" {
		t.Errorf("passkey.removed event %+v", e)
	}
	if list, _ := pf.app.MyPasskeys(ctx, pf.actor(pf.ivy)); len(list) != 0 {
		t.Errorf("ivy's passkeys after removing the only one: %d", len(list))
	}
}

func longName(n int) string {
	b := make([]rune, n)
	for i := range b {
		b[i] = 'é'
	}
	return string(b)
}

func TestPasskeyCeremoniesAreLimitedPerNetwork(t *testing.T) {
	pf := newPKFixture(t)
	ctx := t.Context()
	for i := range 20 {
		// Addresses of one /64 are one client.
		c := session.Client{IP: "2001:db8::" + string(rune('a'+i%6))}
		if _, err := pf.app.BeginPasskeyLogin(ctx, rp, c); err != nil {
			t.Fatalf("ceremony %d: %v", i+1, err)
		}
	}
	_, err := pf.app.BeginPasskeyLogin(ctx, rp, session.Client{IP: "2001:db8::1"})
	e := app.ErrorOf(err)
	if e == nil || e.Code != app.CodeRateLimited || e.RetryAfter <= 0 {
		t.Fatalf("ceremony 21 from one network: %v, want rate limited with a wait", err)
	}
	if _, err := pf.app.BeginPasskeyLogin(ctx, rp, session.Client{IP: "192.0.2.7"}); err != nil {
		t.Errorf("another network: %v", err)
	}
	pf.now = pf.now.Add(time.Minute)
	if _, err := pf.app.BeginPasskeyLogin(ctx, rp, session.Client{IP: "2001:db8::1"}); err != nil {
		t.Errorf("the network after a minute: %v", err)
	}
}

func TestPasskeySignInsGiveTheirCeremonyBack(t *testing.T) {
	pf := newPKFixture(t)
	a := passkeytest.New(rp.Origin)
	pf.register(t, pf.ivy, a, "")
	for i := range 40 {
		id, resp := pf.begin(t, a)
		if _, _, err := pf.finish(t.Context(), id, resp); err != nil {
			t.Fatalf("sign-in %d from one network: %v", i+1, err)
		}
	}
}

// pendingFor signs u in with password and returns the ticket of the
// pending sign-in that waits for the second factor.
func (pf *pkFixture) pendingFor(t *testing.T, name, password string) string {
	t.Helper()
	_, _, err := pf.app.SignIn(t.Context(), app.Credentials{Username: name, Password: password, Pending: true}, client, func(l session.Login) (*session.Session, error) {
		t.Fatal("a session started before the second factor")
		return nil, nil
	})
	var sf *app.SecondFactorRequired
	if !errors.As(err, &sf) || sf.Ticket == "" || !slices.Contains(sf.Methods, app.MethodPasskey) {
		t.Fatalf("the password of a user with a passkey: %v, want a pending sign-in with the passkey method", err)
	}
	return sf.Ticket
}

func TestPasskeyAsTheSecondFactor(t *testing.T) {
	pf := newPKFixture(t)
	ctx := t.Context()
	a := passkeytest.New(rp.Origin)
	pf.register(t, pf.ivy, a, "")
	roots := passkeytest.New(rp.Origin)
	pf.register(t, pf.root, roots, "")
	ticket := pf.pendingFor(t, "ivy", ivyPassword)
	start := func(l session.Login) (*session.Session, error) {
		s, _, err := pf.app.Sessions().Create(ctx, l)
		return s, err
	}

	// root's passkey does not complete ivy's sign-in, which waits on.
	c, err := pf.app.BeginPasskeySecondFactor(ctx, ticket, rp, client)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := roots.Get(options(t, c))
	if _, _, err := pf.app.CompleteSecondFactorWithPasskey(ctx, ticket, rp, c.ID, resp, client, start); !errors.Is(err, app.ErrPasskeyRejected) {
		t.Fatalf("ivy's sign-in with root's passkey: %v, want ErrPasskeyRejected", err)
	}

	// ivy's passkey, even without user verification, completes it: AAL2.
	a.UserVerified = false
	c, err = pf.app.BeginPasskeySecondFactor(ctx, ticket, rp, client)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = a.Get(options(t, c))
	u, s, err := pf.app.CompleteSecondFactorWithPasskey(ctx, ticket, rp, c.ID, resp, client, start)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != pf.ivy.ID || !slices.Equal(s.AMR, []string{"pwd", "hwk", "user", "mfa"}) || s.AAL() != 2 {
		t.Errorf("the session after the password and the passkey: %s with amr %q, AAL%d; want ivy's, pwd,hwk,user,mfa, AAL2", u.Username, s.AMR, s.AAL())
	}
	// The pending sign-in is used up.
	if _, err := pf.app.BeginPasskeySecondFactor(ctx, ticket, rp, client); app.ErrorOf(err) == nil || app.ErrorOf(err).Code != app.CodeUnauthenticated {
		t.Errorf("the pending sign-in again: %v, want unauthenticated", err)
	}
}
