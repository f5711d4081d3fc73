package app_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// start is a StartFunc that creates a bearer-style session.
func (f *fixture) start(ctx context.Context) app.StartFunc {
	return func(l session.Login) (*session.Session, error) {
		s, _, err := f.app.Sessions().Create(ctx, l)
		return s, err
	}
}

// pendingSignIn signs ivy in with her password and returns the pending
// sign-in a second factor must complete.
func (f *fixture) pendingSignIn(t *testing.T) *app.SecondFactorRequired {
	t.Helper()
	_, s, err := f.app.SignIn(t.Context(), app.Credentials{Username: "ivy", Password: ivyPassword, Pending: true}, client, f.start(t.Context()))
	var pending *app.SecondFactorRequired
	if !errors.As(err, &pending) || s != nil {
		t.Fatalf("SignIn with a second factor enrolled: got session %v, %v; want SecondFactorRequired", s, err)
	}
	if e := app.ErrorOf(err); e == nil || e.Code != app.CodeSecondFactorRequired {
		t.Errorf("ErrorOf(%v) = %v, want code %s", err, e, app.CodeSecondFactorRequired)
	}
	return pending
}

// TestSignInWithoutASecondFactorIsAAL1: a user with no second factor gets
// a session at once, recording the password alone.
func TestSignInWithoutASecondFactorIsAAL1(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	s, _, err := f.signIn(t.Context(), "ivy", ivyPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.AMR, []string{"pwd"}) || s.AAL() != 1 {
		t.Errorf("AMR %v, AAL %d; want [pwd], 1", s.AMR, s.AAL())
	}
}

// TestSignInWaitsForTheSecondFactor: with TOTP enrolled, the password
// alone starts no session; the pending sign-in is completed by a right
// code only, once, into an AAL2 session.
func TestSignInWaitsForTheSecondFactor(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	secret := f.enrol(t)
	if _, err := f.app.NewRecoveryCodes(t.Context(), must(f.ivyActor(t))); err != nil {
		t.Fatal(err)
	}
	pending := f.pendingSignIn(t)
	if !slices.Equal(pending.Methods, []string{app.MethodTOTP, app.MethodRecoveryCode}) {
		t.Errorf("methods %v, want [totp recovery_code]", pending.Methods)
	}
	if n := len(f.live(t, "ivy")); n != 0 {
		t.Fatalf("%d sessions after the password alone, want 0", n)
	}

	ctx := t.Context()
	if _, _, err := f.app.CompleteSecondFactor(ctx, pending.Ticket, "000000", "", client, f.start(ctx)); !errors.Is(err, app.ErrWrongCode) {
		t.Fatalf("a wrong code: %v, want ErrWrongCode", err)
	}
	u, s, err := f.app.CompleteSecondFactor(ctx, pending.Ticket, f.code(t, secret, 0), "", client, f.start(ctx))
	if err != nil {
		t.Fatalf("the right code after a wrong one: %v", err)
	}
	if u.Username != "ivy" || !slices.Equal(s.AMR, []string{"pwd", "otp", "mfa"}) || s.AAL() != 2 {
		t.Errorf("user %s, AMR %v, AAL %d; want ivy, [pwd otp mfa], 2", u.Username, s.AMR, s.AAL())
	}
	f.advance(30 * time.Second)
	if _, _, err := f.app.CompleteSecondFactor(ctx, pending.Ticket, f.code(t, secret, 0), "", client, f.start(ctx)); app.ErrorOf(err) == nil || app.ErrorOf(err).Code != app.CodeUnauthenticated {
		t.Errorf("the ticket again, with a fresh code: %v, want it used up (unauthenticated)", err)
	}
	if _, _, err := f.app.CompleteSecondFactor(ctx, "not-a-ticket", f.code(t, secret, 0), "", client, f.start(ctx)); app.ErrorOf(err) == nil || app.ErrorOf(err).Code != app.CodeUnauthenticated {
		t.Errorf("a made-up ticket: %v, want unauthenticated", err)
	}
	if n := len(f.live(t, "ivy")); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
}

// TestSignInWithTheCodeInOneStep: an API client sends the code with the
// password; a wrong code starts nothing.
func TestSignInWithTheCodeInOneStep(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	secret := f.enrol(t)
	ctx := t.Context()
	if _, _, err := f.app.SignIn(ctx, app.Credentials{Username: "ivy", Password: ivyPassword, TOTP: "123456"}, client, f.start(ctx)); !errors.Is(err, app.ErrWrongCode) {
		t.Fatalf("a wrong code: %v, want ErrWrongCode", err)
	}
	_, s, err := f.app.SignIn(ctx, app.Credentials{Username: "ivy", Password: ivyPassword, TOTP: f.code(t, secret, 0)}, client, f.start(ctx))
	if err != nil || s.AAL() != 2 {
		t.Fatalf("the right code: %v, %v", s, err)
	}
	if _, _, err := f.app.SignIn(ctx, app.Credentials{Username: "ivy", Password: "wrong password!", TOTP: f.code(t, secret, 1)}, client, f.start(ctx)); !errors.Is(err, users.ErrBadCredentials) {
		t.Errorf("a wrong password with a code: %v, want ErrBadCredentials", err)
	}
}

// TestPendingSignInEndsWithAnAccountChange: a pending sign-in of an
// account changed since the password was checked (disabled, password
// reset, factors reset) completes into nothing.
func TestPendingSignInEndsWithAnAccountChange(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(ctx context.Context, a *app.App) error
	}{
		{"disable", func(ctx context.Context, a *app.App) error {
			_, _, err := a.SetDisabled(ctx, app.CLI, "ivy", true)
			return err
		}},
		{"password reset", func(ctx context.Context, a *app.App) error {
			_, _, err := a.ResetPassword(ctx, app.CLI, "ivy", "a brand new passphrase")
			return err
		}},
		{"second factors reset", func(ctx context.Context, a *app.App) error {
			_, _, err := a.ResetSecondFactors(ctx, app.CLI, "ivy")
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, app.ThrottleConfig{})
			secret := f.enrol(t)
			pending := f.pendingSignIn(t)
			if err := c.change(t.Context(), f.app); err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if _, s, err := f.app.CompleteSecondFactor(ctx, pending.Ticket, f.code(t, secret, 0), "", client, f.start(ctx)); err == nil {
				t.Errorf("completed into session %s after the change", s.ID)
			}
			if n := len(f.live(t, "ivy")); n != 0 {
				t.Errorf("%d sessions, want 0", n)
			}
		})
	}
}

// TestPendingSignInCompletesOnce: many completions of one pending sign-in
// at once, each with a right recovery code of its own, start exactly one
// session.
func TestPendingSignInCompletesOnce(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	f.enrol(t)
	codes, err := f.app.NewRecoveryCodes(t.Context(), must(f.ivyActor(t)))
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		pending := f.pendingSignIn(t)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			code := codes[3*round+i]
			wg.Go(func() {
				_, _, errs[i] = f.app.CompleteSecondFactor(t.Context(), pending.Ticket, "", code, client, f.start(t.Context()))
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			}
		}
		if ok != 1 {
			t.Errorf("round %d: %d completions succeeded (%v), want exactly 1", round, ok, errs)
		}
	}
}

// TestStepUpRaisesTheSessionAndRotatesIt: an AAL1 session of a user who
// enrolled TOTP since is raised to AAL2 by a code, with a new token.
func TestStepUpRaisesTheSessionAndRotatesIt(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	s, oldToken, err := f.signIn(ctx, "ivy", ivyPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	secret := f.enrol(t)
	actor := app.SessionActor(s, client)
	var newToken string
	rotate := func(ch session.Change) (*session.Session, error) {
		s, tok, err := f.app.Sessions().Rotate(ctx, s.ID, ch)
		newToken = tok
		return s, err
	}
	if _, err := f.app.StepUp(ctx, actor, "999999", "", rotate); !errors.Is(err, app.ErrWrongCode) {
		t.Fatalf("a wrong code: %v", err)
	}
	f.advance(time.Minute)
	raised, err := f.app.StepUp(ctx, actor, f.code(t, secret, 0), "", rotate)
	if err != nil {
		t.Fatal(err)
	}
	if raised.AAL() != 2 || !raised.AuthenticatedAt.Equal(f.clock()) {
		t.Errorf("AAL %d, authenticated at %v; want 2, now (%v)", raised.AAL(), raised.AuthenticatedAt, f.clock())
	}
	if _, err := f.app.Sessions().Validate(ctx, oldToken, client); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the token before the step-up: %v, want it dead", err)
	}
	if got, err := f.app.Sessions().Validate(ctx, newToken, client); err != nil || got.AAL() != 2 {
		t.Errorf("the new token: %v, %v", got, err)
	}
	if ev := f.events(t, "login.reauthenticated"); len(ev) != 1 || ev[0].Reason != "otp" {
		t.Errorf("audit: %+v, want one login.reauthenticated with reason otp", ev)
	}
}

// TestReauthenticate: the password refreshes authenticated_at and rotates
// the token; a wrong one is refused and counted by the throttle.
func TestReauthenticate(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	s, _, err := f.signIn(ctx, "ivy", ivyPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	f.advance(20 * time.Minute)
	actor := app.SessionActor(s, client)
	rotate := func(ch session.Change) (*session.Session, error) {
		s, _, err := f.app.Sessions().Rotate(ctx, s.ID, ch)
		return s, err
	}
	for range 5 {
		if _, err := f.app.Reauthenticate(ctx, actor, "not the password", rotate); !errors.Is(err, app.ErrWrongPassword) {
			t.Fatalf("a wrong password: %v", err)
		}
	}
	if _, err := f.app.Reauthenticate(ctx, actor, ivyPassword, rotate); app.ErrorOf(err) == nil || app.ErrorOf(err).Code != app.CodeRateLimited {
		t.Fatalf("after 5 wrong passwords: %v, want rate limited", err)
	}
	f.advance(2 * time.Second) // the throttle's first wait is 1 s
	got, err := f.app.Reauthenticate(ctx, actor, ivyPassword, rotate)
	if err != nil {
		t.Fatal(err)
	}
	if !got.AuthenticatedAt.Equal(f.clock()) || got.AAL() != 1 || got.TokenHash == s.TokenHash {
		t.Errorf("authenticated at %v (want %v), AAL %d, token rotated %v", got.AuthenticatedAt, f.clock(), got.AAL(), got.TokenHash != s.TokenHash)
	}
}

func must(actor app.Actor, _ *users.User) app.Actor { return actor }

// TestNewRecoveryCodesNeedTheSecondFactor: a session that began with the
// password alone cannot mint recovery codes for a user who has a second
// factor; one raised by a code can, and so can a user without one.
func TestNewRecoveryCodesNeedTheSecondFactor(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	s, _, err := f.signIn(ctx, "ivy", ivyPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.NewRecoveryCodes(ctx, app.SessionActor(s, client)); err != nil {
		t.Fatalf("without a second factor, at AAL1: %v", err)
	}
	secret := f.enrol(t)
	actor := app.SessionActor(s, client)
	if _, err := f.app.NewRecoveryCodes(ctx, actor); app.ErrorOf(err) == nil || app.ErrorOf(err).Code != app.CodeSecondFactorRequired {
		t.Fatalf("with TOTP on, at AAL1: %v, want second_factor_required", err)
	}
	raised, err := f.app.StepUp(ctx, actor, f.code(t, secret, 0), "", func(ch session.Change) (*session.Session, error) {
		s, _, err := f.app.Sessions().Rotate(ctx, s.ID, ch)
		return s, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if codes, err := f.app.NewRecoveryCodes(ctx, app.SessionActor(raised, client)); err != nil || len(codes) != 10 {
		t.Errorf("at AAL2: %d codes, %v", len(codes), err)
	}
}
