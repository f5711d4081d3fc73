package app_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/store/memstore"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// ivyActor is ivy acting from client, without a session.
func (f *fixture) ivyActor(t *testing.T) (app.Actor, *users.User) {
	t.Helper()
	u, err := f.app.User(t.Context(), app.CLI, "ivy")
	if err != nil {
		t.Fatal(err)
	}
	return app.Actor{ID: u.ID, Client: client}, u
}

// code returns the TOTP code of the base32 secret at the fixture's time
// moved by steps time steps, as an authenticator app computes it.
func (f *fixture) code(t *testing.T, secret string, steps int) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, f.clock().Add(time.Duration(steps)*30*time.Second), totp.ValidateOpts{
		Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrol enrols ivy in TOTP and returns the secret; the fixture's clock is
// then one time step later, so that the next code is a fresh one.
func (f *fixture) enrol(t *testing.T) string {
	t.Helper()
	actor, _ := f.ivyActor(t)
	e, err := f.app.BeginTOTP(t.Context(), actor)
	if err != nil {
		t.Fatalf("BeginTOTP: %v", err)
	}
	if _, err := f.app.ConfirmTOTP(t.Context(), actor, f.code(t, e.Secret, 0), nil); err != nil {
		t.Fatalf("ConfirmTOTP: %v", err)
	}
	f.advance(30 * time.Second)
	return e.Secret
}

func (f *fixture) summary(t *testing.T) users.FactorSummary {
	t.Helper()
	actor, _ := f.ivyActor(t)
	s, err := f.app.Factors(t.Context(), actor)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// events returns the audit events of type typ about ivy, newest first.
func (f *fixture) events(t *testing.T, typ string) []audit.Event {
	t.Helper()
	list, err := f.app.Audit(t.Context(), app.CLI, app.AuditQuery{User: "ivy", Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func TestTOTPEnrolment(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	actor, ivy := f.ivyActor(t)

	if _, err := f.app.PendingTOTP(ctx, actor); !isCode(err, app.CodeNotFound) {
		t.Errorf("PendingTOTP before any: got %v, want not_found", err)
	}
	if _, err := f.app.ConfirmTOTP(ctx, actor, "123456", nil); !isCode(err, app.CodeNotFound) {
		t.Errorf("ConfirmTOTP without an enrolment: got %v, want not_found", err)
	}
	first, err := f.app.BeginTOTP(ctx, actor)
	if err != nil {
		t.Fatal(err)
	}
	// A new start replaces a pending enrolment.
	e, err := f.app.BeginTOTP(ctx, actor)
	if err != nil {
		t.Fatal(err)
	}
	if e.Secret == first.Secret {
		t.Error("a second BeginTOTP kept the secret")
	}
	if !strings.HasPrefix(e.URL, "otpauth://totp/sessiond:ivy?") || !strings.Contains(e.URL, "secret="+e.Secret) || len(e.QR) < 21 {
		t.Errorf("enrolment: got %+v", e)
	}
	if again, err := f.app.PendingTOTP(ctx, actor); err != nil || again.Secret != e.Secret || again.URL != e.URL {
		t.Errorf("PendingTOTP: got %+v, %v, want the enrolment again", again, err)
	}
	if s := f.summary(t); s.TOTP {
		t.Error("a pending enrolment counts as TOTP on")
	}
	// A pending enrolment is no second factor.
	if _, err := f.app.VerifySecondFactor(ctx, ivy, f.code(t, e.Secret, 0), "", client); err != app.ErrWrongCode {
		t.Errorf("a code of a pending enrolment at sign-in: got %v, want ErrWrongCode", err)
	}
	if _, err := f.app.ConfirmTOTP(ctx, actor, f.code(t, first.Secret, 0), nil); err != app.ErrWrongCode {
		t.Errorf("ConfirmTOTP with the replaced secret's code: got %v, want ErrWrongCode", err)
	}
	if _, err := f.app.ConfirmTOTP(ctx, actor, "12345x", nil); err != app.ErrWrongCode {
		t.Errorf("ConfirmTOTP with a malformed code: got %v, want ErrWrongCode", err)
	}
	if _, err := f.app.ConfirmTOTP(ctx, actor, f.code(t, e.Secret, 1), nil); err != nil {
		t.Fatalf("ConfirmTOTP with the next step's code: %v", err)
	}
	if s := f.summary(t); !s.TOTP {
		t.Error("TOTP is not on after ConfirmTOTP")
	}
	if _, err := f.app.ConfirmTOTP(ctx, actor, f.code(t, e.Secret, 0), nil); !isCode(err, app.CodeConflict) {
		t.Errorf("ConfirmTOTP again: got %v, want conflict", err)
	}
	if _, err := f.app.BeginTOTP(ctx, actor); !isCode(err, app.CodeConflict) {
		t.Errorf("BeginTOTP with TOTP on: got %v, want conflict", err)
	}
	if _, err := f.app.PendingTOTP(ctx, actor); !isCode(err, app.CodeNotFound) {
		t.Errorf("PendingTOTP with TOTP on: got %v, want not_found", err)
	}
	if got := f.events(t, audit.TOTPEnabled); len(got) != 1 || got[0].Actor != ivy.ID || got[0].IP != client.IP {
		t.Errorf("totp.enabled events: got %+v", got)
	}
}

func isCode(err error, code app.Code) bool {
	var e *app.Error
	return errors.As(err, &e) && e.Code == code
}

// TestTOTPCodeAcceptedOnce: a code counts once, and so does any code of an
// earlier time step after it, within the skew window too.
func TestTOTPCodeAcceptedOnce(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	secret := f.enrol(t)
	_, ivy := f.ivyActor(t)
	now := f.code(t, secret, 0)
	amr, err := f.app.VerifySecondFactor(ctx, ivy, now, "", client)
	if err != nil || !slices.Equal(amr, []string{"otp"}) {
		t.Fatalf("a fresh code: got %v, %v, want [otp]", amr, err)
	}
	if _, err := f.app.VerifySecondFactor(ctx, ivy, now, "", client); err != app.ErrWrongCode {
		t.Errorf("the same code again: got %v, want ErrWrongCode", err)
	}
	if _, err := f.app.VerifySecondFactor(ctx, ivy, f.code(t, secret, -1), "", client); err != app.ErrWrongCode {
		t.Errorf("the previous step's code after this one's: got %v, want ErrWrongCode", err)
	}
	// The same code later in its window.
	f.advance(20 * time.Second)
	if _, err := f.app.VerifySecondFactor(ctx, ivy, now, "", client); err != app.ErrWrongCode {
		t.Errorf("the same code later: got %v, want ErrWrongCode", err)
	}
	f.advance(30 * time.Second)
	if _, err := f.app.VerifySecondFactor(ctx, ivy, f.code(t, secret, 0), "", client); err != nil {
		t.Errorf("the next step's code: %v", err)
	}
}

// TestTOTPSkew: codes of one step before or after the present are
// accepted, two steps are not.
func TestTOTPSkew(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	secret := f.enrol(t)
	_, ivy := f.ivyActor(t)
	// Well past the enrolment's step, so that only the skew refuses.
	f.advance(5 * time.Minute)
	for _, tt := range []struct {
		steps int
		ok    bool
	}{
		// In the order of their steps: each accepted code refuses the
		// earlier ones.
		{-2, false}, {2, false}, {-1, true}, {0, true}, {1, true},
	} {
		_, err := f.app.VerifySecondFactor(ctx, ivy, f.code(t, secret, tt.steps), "", client)
		if ok := err == nil; ok != tt.ok {
			t.Errorf("a code %d steps off: got %v, want accepted %v", tt.steps, err, tt.ok)
		}
		if err != nil && err != app.ErrWrongCode {
			t.Errorf("a code %d steps off: got %v, want ErrWrongCode", tt.steps, err)
		}
	}
}

func TestRecoveryCodes(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	actor, ivy := f.ivyActor(t)
	codes, err := f.app.NewRecoveryCodes(ctx, actor)
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 10 || len(slices.Compact(slices.Sorted(slices.Values(codes)))) != 10 {
		t.Fatalf("NewRecoveryCodes: got %q, want 10 distinct codes", codes)
	}
	if s := f.summary(t); s.RecoveryCodes != 10 {
		t.Errorf("codes left: got %d, want 10", s.RecoveryCodes)
	}
	// Typed in upper case with spaces for dashes.
	typed := strings.ToUpper(strings.ReplaceAll(codes[2], "-", " "))
	amr, err := f.app.VerifySecondFactor(ctx, ivy, "", typed, client)
	if err != nil || !slices.Equal(amr, []string{"otp"}) {
		t.Fatalf("a recovery code: got %v, %v, want [otp]", amr, err)
	}
	if _, err := f.app.VerifySecondFactor(ctx, ivy, "", codes[2], client); err != app.ErrWrongCode {
		t.Errorf("a recovery code twice: got %v, want ErrWrongCode", err)
	}
	if s := f.summary(t); s.RecoveryCodes != 9 {
		t.Errorf("codes left after one use: got %d, want 9", s.RecoveryCodes)
	}
	used := f.events(t, audit.RecoveryCodeUsed)
	if len(used) != 1 || used[0].Reason != "9 left" || used[0].IP != client.IP {
		t.Errorf("recovery_codes.used events: got %+v, want one with reason %q", used, "9 left")
	}
	// Another user's code is no good for ivy.
	root, err := f.app.User(ctx, app.CLI, "root")
	if err != nil {
		t.Fatal(err)
	}
	rootCodes, err := f.app.NewRecoveryCodes(ctx, app.Actor{ID: root.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.VerifySecondFactor(ctx, ivy, "", rootCodes[0], client); err != app.ErrWrongCode {
		t.Errorf("another user's recovery code: got %v, want ErrWrongCode", err)
	}
	// A new set voids the old one.
	fresh, err := f.app.NewRecoveryCodes(ctx, actor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.VerifySecondFactor(ctx, ivy, "", codes[3], client); err != app.ErrWrongCode {
		t.Errorf("a code of the voided set: got %v, want ErrWrongCode", err)
	}
	if _, err := f.app.VerifySecondFactor(ctx, ivy, "", fresh[9], client); err != nil {
		t.Errorf("a code of the new set: %v", err)
	}
	if got := f.events(t, audit.RecoveryCodesGenerated); len(got) != 2 {
		t.Errorf("recovery_codes.generated events: got %d, want 2", len(got))
	}
	for _, bad := range []struct{ totp, recovery string }{{"", ""}, {"", "not a code"}, {"", strings.Repeat("a", 1<<16)}} {
		if _, err := f.app.VerifySecondFactor(ctx, ivy, bad.totp, bad.recovery, client); err != app.ErrWrongCode {
			t.Errorf("VerifySecondFactor(%.20q, %.20q): got %v, want ErrWrongCode", bad.totp, bad.recovery, err)
		}
	}
	if _, err := f.app.VerifySecondFactor(ctx, ivy, "123456", fresh[0], client); !isCode(err, app.CodeBadRequest) {
		t.Errorf("both codes: got %v, want bad_request", err)
	}
	// A TOTP code for a user without TOTP.
	if _, err := f.app.VerifySecondFactor(ctx, ivy, "123456", "", client); err != app.ErrWrongCode {
		t.Errorf("a TOTP code without TOTP: got %v, want ErrWrongCode", err)
	}
}

// TestSecondFactorThrottle: wrong codes count against the sign-in
// throttle for the account and client network: after five, even the right
// code waits, with Retry-After; a right code refunds.
func TestSecondFactorThrottle(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	secret := f.enrol(t)
	actor, ivy := f.ivyActor(t)
	wrong := func() string { // a code that is not this window's
		for _, c := range []string{"000000", "111111", "222222"} {
			if !slices.Contains([]string{f.code(t, secret, -1), f.code(t, secret, 0), f.code(t, secret, 1)}, c) {
				return c
			}
		}
		t.Fatal("no wrong code")
		return ""
	}()
	// A right code refunds: four wrong, a right, and four wrong again
	// pass.
	for range 4 {
		if _, err := f.app.VerifySecondFactor(ctx, ivy, wrong, "", client); err != app.ErrWrongCode {
			t.Fatalf("a wrong code: %v", err)
		}
	}
	if _, err := f.app.VerifySecondFactor(ctx, ivy, f.code(t, secret, 0), "", client); err != nil {
		t.Fatalf("the right code: %v", err)
	}
	f.advance(30 * time.Second)
	for i := range 5 {
		if _, err := f.app.VerifySecondFactor(ctx, ivy, wrong, "", client); err != app.ErrWrongCode {
			t.Fatalf("wrong code %d after a success: %v", i+1, err)
		}
	}
	_, err := f.app.VerifySecondFactor(ctx, ivy, f.code(t, secret, 0), "", client)
	wait, ok := rateLimited(err)
	if !ok || wait != time.Second {
		t.Fatalf("the right code after 5 wrong ones: got %v, want a 1s wait", err)
	}
	// Recovery codes, and disabling TOTP, share the limit; so do
	// passwords, and another client network is not held up.
	if _, err := f.app.VerifySecondFactor(ctx, ivy, "", "abcd-efgh-jk01", client); err == nil {
		t.Error("a recovery code passed the limit")
	} else if _, ok := rateLimited(err); !ok {
		t.Errorf("a recovery code past the limit: %v", err)
	}
	if err := f.app.DisableTOTP(ctx, actor, f.code(t, secret, 0)); err == nil {
		t.Error("DisableTOTP passed the limit")
	} else if _, ok := rateLimited(err); !ok {
		t.Errorf("DisableTOTP past the limit: %v", err)
	}
	if _, _, err := f.signIn(ctx, "ivy", ivyPassword, client); err == nil {
		t.Error("a password login passed the limit wrong codes reached")
	}
	other := client
	other.IP = "203.0.113.50"
	if _, err := f.app.VerifySecondFactor(ctx, ivy, f.code(t, secret, 0), "", other); err != nil {
		t.Errorf("another client network: %v", err)
	}
	f.advance(30*time.Second + time.Second)
	if _, err := f.app.VerifySecondFactor(ctx, ivy, f.code(t, secret, 0), "", client); err != nil {
		t.Errorf("the right code after the wait: %v", err)
	}
	// ConfirmTOTP's guesses count too.
	f2 := newFixture(t, app.ThrottleConfig{})
	a2, _ := f2.ivyActor(t)
	if _, err := f2.app.BeginTOTP(ctx, a2); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		f2.app.ConfirmTOTP(ctx, a2, "000000", nil)
	}
	if _, ok := rateLimited(second(f2.app.ConfirmTOTP(ctx, a2, "000000", nil))); !ok {
		t.Error("ConfirmTOTP is not throttled after 5 wrong codes")
	}
}

func TestDisableTOTP(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	actor, _ := f.ivyActor(t)
	if err := f.app.DisableTOTP(ctx, actor, ""); !isCode(err, app.CodeNotFound) {
		t.Errorf("DisableTOTP without TOTP: got %v, want not_found", err)
	}
	// A pending enrolment goes without a code.
	if _, err := f.app.BeginTOTP(ctx, actor); err != nil {
		t.Fatal(err)
	}
	if err := f.app.DisableTOTP(ctx, actor, ""); err != nil {
		t.Errorf("DisableTOTP of a pending enrolment: %v", err)
	}
	if _, err := f.app.PendingTOTP(ctx, actor); !isCode(err, app.CodeNotFound) {
		t.Errorf("PendingTOTP after DisableTOTP: got %v", err)
	}

	secret := f.enrol(t)
	codes, err := f.app.NewRecoveryCodes(ctx, actor)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "000000x", "not a code", f.code(t, secret, -3)} {
		if err := f.app.DisableTOTP(ctx, actor, bad); err != app.ErrWrongCode {
			t.Errorf("DisableTOTP(%q): got %v, want ErrWrongCode", bad, err)
		}
	}
	if s := f.summary(t); !s.TOTP {
		t.Fatal("a refused DisableTOTP turned TOTP off")
	}
	if err := f.app.DisableTOTP(ctx, actor, f.code(t, secret, 0)); err != nil {
		t.Fatalf("DisableTOTP with a code: %v", err)
	}
	if s := f.summary(t); s.TOTP || s.RecoveryCodes != 10 {
		t.Errorf("after DisableTOTP: got %+v, want TOTP off and the recovery codes kept", s)
	}
	// With a recovery code, which it uses up.
	f.enrol(t)
	if err := f.app.DisableTOTP(ctx, actor, codes[0]); err != nil {
		t.Fatalf("DisableTOTP with a recovery code: %v", err)
	}
	if s := f.summary(t); s.TOTP || s.RecoveryCodes != 9 {
		t.Errorf("after DisableTOTP with a recovery code: got %+v, want TOTP off and 9 codes", s)
	}
	if got := f.events(t, audit.TOTPDisabled); len(got) != 2 {
		t.Errorf("totp.disabled events: got %d, want 2", len(got))
	}
}

// TestResetSecondFactors: an admin's reset removes every factor, raises
// the account's version, ends the user's sessions (after storing the
// reset) and is audited; only an admin may.
func TestResetSecondFactors(t *testing.T) {
	f := newFixture(t, app.ThrottleConfig{})
	ctx := t.Context()
	actor, _ := f.ivyActor(t)
	for range 2 { // before the enrolment: with a password alone
		if _, _, err := f.signIn(ctx, "ivy", ivyPassword, client); err != nil {
			t.Fatal(err)
		}
	}
	f.enrol(t)
	if _, err := f.app.NewRecoveryCodes(ctx, actor); err != nil {
		t.Fatal(err)
	}
	_, before := f.ivyActor(t)
	if _, _, err := f.app.ResetSecondFactors(ctx, actor, "ivy"); err != app.ErrForbidden {
		t.Errorf("a reset by a non-admin: got %v, want ErrForbidden", err)
	}
	if _, _, err := f.app.ResetSecondFactors(ctx, app.CLI, "nobody"); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("a reset of an unknown user: got %v, want users.ErrNotFound", err)
	}
	u, n, err := f.app.ResetSecondFactors(ctx, app.CLI, "ivy")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("sessions ended: got %d, want 2", n)
	}
	if live := f.live(t, "ivy"); len(live) != 0 {
		t.Errorf("%d sessions outlive the reset", len(live))
	}
	if u.Version != before.Version+1 {
		t.Errorf("version: got %d, want %d", u.Version, before.Version+1)
	}
	if s := f.summary(t); s != (users.FactorSummary{}) {
		t.Errorf("factors after the reset: got %+v, want none", s)
	}
	if got := f.events(t, audit.SecondFactorsReset); len(got) != 1 || got[0].Actor != app.ActorCLI {
		t.Errorf("second_factors.reset events: got %+v", got)
	}
	m, err := f.app.UserFactors(ctx, app.CLI, []*users.User{u})
	if err != nil || m[u.ID] != (users.FactorSummary{}) {
		t.Errorf("UserFactors: got %+v, %v", m, err)
	}
	if _, err := f.app.UserFactors(ctx, actor, []*users.User{u}); err != app.ErrForbidden {
		t.Errorf("UserFactors by a non-admin: got %v, want ErrForbidden", err)
	}
}

// dropTime drops the time of log lines, whose digits could hold a
// 6-digit code by chance.
func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// TestSecondFactorSecretsAreNeverLogged runs every second-factor action
// with a logger and checks that no secret, TOTP code or recovery code
// reaches a log line or the audit log.
func TestSecondFactorSecretsAreNeverLogged(t *testing.T) {
	db, err := sqliteusers.Open(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var logs bytes.Buffer
	clock := &fixture{now: time.Now()}
	a, err := app.New(app.Deps{
		Store: memstore.New(), Accounts: users.NewAccounts(db, users.Params{Memory: 64, Time: 1, Threads: 1}), Audit: db,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropTime})), Now: clock.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u, err := a.CreateUser(ctx, app.CLI, "ivy", ivyPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	actor := app.Actor{ID: u.ID, Client: client}
	code := func(secret string) string {
		c, err := totp.GenerateCode(secret, clock.clock())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	e, err := a.BeginTOTP(ctx, actor)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{e.Secret}
	c := code(e.Secret)
	secrets = append(secrets, c)
	a.ConfirmTOTP(ctx, actor, "999999", nil)
	if _, err := a.ConfirmTOTP(ctx, actor, c, nil); err != nil {
		t.Fatal(err)
	}
	clock.advance(30 * time.Second)
	c = code(e.Secret)
	secrets = append(secrets, c)
	if _, err := a.VerifySecondFactor(ctx, u, c, "", client); err != nil {
		t.Fatal(err)
	}
	codes, err := a.NewRecoveryCodes(ctx, actor)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range codes {
		secrets = append(secrets, rc, strings.ReplaceAll(rc, "-", ""))
	}
	a.VerifySecondFactor(ctx, u, "", codes[0], client)
	a.VerifySecondFactor(ctx, u, "", "wxyz-wxyz-wxyz", client)
	if err := a.DisableTOTP(ctx, actor, codes[1]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.ResetSecondFactors(ctx, app.CLI, "ivy"); err != nil {
		t.Fatal(err)
	}

	events, err := a.Audit(ctx, app.CLI, app.AuditQuery{User: "ivy"})
	if err != nil {
		t.Fatal(err)
	}
	var stored strings.Builder
	for _, ev := range events {
		stored.WriteString(ev.Type + " " + ev.Reason + " " + ev.Actor + " " + ev.UserAgent + "\n")
	}
	for _, want := range []string{audit.TOTPEnabled, audit.RecoveryCodesGenerated, audit.RecoveryCodeUsed, audit.TOTPDisabled, audit.SecondFactorsReset} {
		if !strings.Contains(stored.String(), want) {
			t.Errorf("no %s event", want)
		}
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %s log line", want)
		}
	}
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the log holds a secret or code %q:\n%s", s, logs.String())
		}
		if strings.Contains(stored.String(), s) {
			t.Errorf("the audit log holds a secret or code %q", s)
		}
	}
}

// raceFactors runs once before the next UseTOTPStep, to act at the exact
// point between a code's check and its record.
type raceFactors struct {
	users.Factors
	once func()
}

func (r *raceFactors) UseTOTPStep(ctx context.Context, userID string, step int64, confirm bool) error {
	if h := r.once; h != nil {
		r.once = nil
		h()
	}
	return r.Factors.UseTOTPStep(ctx, userID, step, confirm)
}

// TestConfirmRacingANewStart: a BeginTOTP that replaces the secret while
// a code of the old one is being confirmed leaves the new secret pending:
// no code of it was ever checked.
func TestConfirmRacingANewStart(t *testing.T) {
	db, err := sqliteusers.Open(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rf := &raceFactors{Factors: db}
	a, err := app.New(app.Deps{Store: memstore.New(), Accounts: users.NewAccounts(db, users.Params{Memory: 64, Time: 1, Threads: 1}), Audit: db, Factors: rf})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	u, err := a.CreateUser(ctx, app.CLI, "ivy", ivyPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	actor := app.Actor{ID: u.ID, Client: client}
	old, err := a.BeginTOTP(ctx, actor)
	if err != nil {
		t.Fatal(err)
	}
	var started *app.TOTPEnrolment
	rf.once = func() {
		if started, err = a.BeginTOTP(ctx, actor); err != nil {
			t.Errorf("the racing BeginTOTP: %v", err)
		}
	}
	code, err := totp.GenerateCode(old.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ConfirmTOTP(ctx, actor, code, nil); !isCode(err, app.CodeConflict) {
		t.Fatalf("a confirmation raced by a new start: got %v, want conflict", err)
	}
	if s, _ := a.Factors(ctx, actor); s.TOTP {
		t.Fatal("TOTP is on with a secret no code was checked against")
	}
	pending, err := a.PendingTOTP(ctx, actor)
	if err != nil || pending.Secret != started.Secret {
		t.Fatalf("pending after the race: got %+v, %v, want the new start's secret", pending, err)
	}
	fresh, _ := totp.GenerateCode(started.Secret, time.Now())
	if _, err := a.ConfirmTOTP(ctx, actor, fresh, nil); err != nil {
		t.Errorf("confirming the new secret: %v", err)
	}
}

// second returns the error of a call that returns a value and an error.
func second[T any](_ T, err error) error { return err }
