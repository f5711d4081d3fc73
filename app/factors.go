package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// Second factors: TOTP (RFC 6238) and recovery codes, enrolled by the user
// and reset by an admin. Every check of a code runs under the sign-in
// throttle, keyed by the username and the client network as a password
// check is: a wrong code counts as a failed guess, a right one refunds it.
// No secret, code or recovery code is logged or audited.

// errNoFactors is the technical failure of a second-factor action on an
// App whose directory keeps no factors.
var errNoFactors = errors.New("app: the user directory keeps no second factors")

var (
	errTOTPEnabled   = Errorf(CodeConflict, "Two-step verification is already on; turn it off first to enrol another authenticator.")
	errNoTOTP        = Errorf(CodeNotFound, "Two-step verification is not on.")
	errNoPending     = Errorf(CodeNotFound, "No authenticator is being set up; start again.")
	errBothCodes     = Errorf(CodeBadRequest, "Send a TOTP code or a recovery code, not both.")
	errTOTPRestarted = Errorf(CodeConflict, "The set-up was started again meanwhile; scan the newest QR code and enter its code.")
)

// TOTPEnrolment is what a user needs to add sessiond to an authenticator
// app: the secret as base32 text, the otpauth:// URL, and its QR code as
// rows of modules (true for dark), for the transport to render.
type TOTPEnrolment struct {
	Secret string
	URL    string
	QR     [][]bool
}

// factorStore returns the App's factor store, or errNoFactors.
func (a *App) factorStore() (users.Factors, error) {
	if a.factors == nil {
		return nil, errNoFactors
	}
	return a.factors, nil
}

// enrolment returns the TOTPEnrolment of secret for u.
func (a *App) enrolment(u *users.User, secret []byte) (*TOTPEnrolment, error) {
	k, err := users.TOTPKeyFor(secret, a.totpIssuer, u.Username)
	if err != nil {
		return nil, err
	}
	qr, err := k.QR()
	if err != nil {
		return nil, err
	}
	return &TOTPEnrolment{Secret: k.SecretText, URL: k.URL, QR: qr}, nil
}

// BeginTOTP starts the actor's TOTP enrolment with a fresh secret, stored
// pending until ConfirmTOTP accepts a first code; it replaces a pending
// one. If the actor's TOTP is already confirmed it is refused (conflict):
// turn it off first, so that a stolen session cannot swap the
// authenticator without a code from the current one.
func (a *App) BeginTOTP(ctx context.Context, actor Actor) (*TOTPEnrolment, error) {
	f, err := a.factorStore()
	if err != nil {
		return nil, err
	}
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return nil, err
	}
	switch t, err := f.TOTP(ctx, u.ID); {
	case err == nil && t.Confirmed:
		return nil, errTOTPEnabled
	case err != nil && !errors.Is(err, users.ErrNotFound):
		return nil, err
	}
	k, err := users.NewTOTPKey(a.totpIssuer, u.Username)
	if err != nil {
		return nil, err
	}
	if err := f.PutTOTP(ctx, &users.TOTP{UserID: u.ID, Secret: k.Secret, CreatedAt: a.now().UTC().Truncate(time.Microsecond)}); err != nil {
		return nil, err
	}
	return a.enrolment(u, k.Secret)
}

// PendingTOTP returns the actor's TOTP enrolment in progress, to show it
// again (a page after a mistyped code); not found if there is none.
func (a *App) PendingTOTP(ctx context.Context, actor Actor) (*TOTPEnrolment, error) {
	f, err := a.factorStore()
	if err != nil {
		return nil, err
	}
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return nil, err
	}
	t, err := f.TOTP(ctx, u.ID)
	switch {
	case errors.Is(err, users.ErrNotFound) || (err == nil && t.Confirmed):
		return nil, errNoPending
	case err != nil:
		return nil, err
	}
	return a.enrolment(u, t.Secret)
}

// TOTPPending reports whether the actor has a TOTP enrolment waiting for
// its first code.
func (a *App) TOTPPending(ctx context.Context, actor Actor) (bool, error) {
	f, err := a.factorStore()
	if err != nil {
		return false, err
	}
	t, err := f.TOTP(ctx, actor.ID)
	switch {
	case errors.Is(err, users.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return !t.Confirmed, nil
}

// ConfirmTOTP completes the actor's pending TOTP enrolment with a code
// from the authenticator (within one time step of the present), which
// turns two-step verification on. A wrong code is ErrWrongCode and counts
// against the sign-in throttle. The code proves the authenticator as a
// sign-in's second step would, so with rotate the actor's session is
// raised to AAL2 with a new token (see raise), and returned.
func (a *App) ConfirmTOTP(ctx context.Context, actor Actor, code string, rotate RotateFunc) (*session.Session, error) {
	if err := a.confirmTOTP(ctx, actor, code); err != nil {
		return nil, err
	}
	if rotate == nil || actor.SessionID == "" {
		return nil, nil
	}
	return a.raise(ctx, actor, []string{session.AMROTP}, rotate)
}

// confirmTOTP is ConfirmTOTP without raising the session.
func (a *App) confirmTOTP(ctx context.Context, actor Actor, code string) error {
	f, err := a.factorStore()
	if err != nil {
		return err
	}
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return err
	}
	t, err := f.TOTP(ctx, u.ID)
	switch {
	case errors.Is(err, users.ErrNotFound):
		return errNoPending
	case err != nil:
		return err
	case t.Confirmed:
		return errTOTPEnabled
	}
	at, wait := a.throttle.begin(u.Username, actor.Client.IP, a.now())
	if wait > 0 {
		return rateLimited(wait)
	}
	if err := a.useTOTP(ctx, f, t, code, true); err != nil {
		if !errors.Is(err, ErrWrongCode) {
			at.succeeded() // a technical failure is no guess
		}
		return err
	}
	at.succeeded()
	// A BeginTOTP between the read above and the confirmation replaced
	// the secret the code was checked against: the confirmation marked
	// the new one, which no code has proven. Put it back pending.
	switch cur, err := f.TOTP(ctx, u.ID); {
	case err != nil && !errors.Is(err, users.ErrNotFound):
		return err
	case err == nil && !bytes.Equal(cur.Secret, t.Secret):
		if err := f.PutTOTP(ctx, &users.TOTP{UserID: u.ID, Secret: cur.Secret, CreatedAt: cur.CreatedAt}); err != nil {
			return err
		}
		return errTOTPRestarted
	}
	a.recordBy(ctx, actor, audit.TOTPEnabled, u, "")
	return nil
}

// useTOTP checks code against the enrolment t and records its time step,
// confirming the enrolment with confirm. A malformed, wrong or already
// used code is ErrWrongCode.
func (a *App) useTOTP(ctx context.Context, f users.Factors, t *users.TOTP, code string, confirm bool) error {
	code, ok := users.ParseTOTPCode(code)
	if !ok {
		return ErrWrongCode
	}
	step, ok := users.MatchTOTP(t.Secret, code, a.now(), t.LastStep)
	if !ok {
		return ErrWrongCode
	}
	switch err := f.UseTOTPStep(ctx, t.UserID, step, confirm); {
	case errors.Is(err, users.ErrReplay), errors.Is(err, users.ErrNotFound):
		return ErrWrongCode // used meanwhile, or the enrolment is gone
	case err != nil:
		return err
	}
	return nil
}

// DisableTOTP turns the actor's two-step verification off (or drops a
// pending enrolment). It takes a code proving the factor: a current TOTP
// code, or one of the user's recovery codes (which it uses up), checked
// under the sign-in throttle. A password is not enough: the second factor
// is there for when the password is known to someone else, and a session
// thief who has phished it must not be able to remove it. A user with
// neither the authenticator nor a recovery code asks an admin to reset
// the factors. A pending enrolment is dropped without a code.
func (a *App) DisableTOTP(ctx context.Context, actor Actor, code string) error {
	f, err := a.factorStore()
	if err != nil {
		return err
	}
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return err
	}
	t, err := f.TOTP(ctx, u.ID)
	switch {
	case errors.Is(err, users.ErrNotFound):
		return errNoTOTP
	case err != nil:
		return err
	}
	if t.Confirmed {
		totp, recovery := code, ""
		if _, ok := users.ParseTOTPCode(code); !ok {
			totp, recovery = "", code
		}
		if _, err := a.verifySecondFactor(ctx, u, totp, recovery, actor.Client); err != nil {
			return err
		}
	}
	switch err := f.DeleteTOTP(ctx, u.ID); {
	case errors.Is(err, users.ErrNotFound):
		return errNoTOTP
	case err != nil:
		return err
	}
	if t.Confirmed {
		a.recordBy(ctx, actor, audit.TOTPDisabled, u, "")
	}
	return nil
}

// errProveSecondFactor refuses an action on second factors to a session
// that has not proven one, of a user who has one.
var errProveSecondFactor = Errorf(CodeSecondFactorRequired, "Confirm it is you with your second factor first.")

// needsSecondFactor returns errProveSecondFactor if u has a second factor
// and the actor's session has not proven one (AAL1): a stolen session
// that began with the password alone must not be a way to mint factors.
func (a *App) needsSecondFactor(ctx context.Context, actor Actor, u *users.User) error {
	if actor.SessionID == "" || actor.AAL >= 2 {
		return nil
	}
	methods, err := a.methods(ctx, u)
	if err != nil {
		return err
	}
	if methods != nil {
		return errProveSecondFactor
	}
	return nil
}

// NewRecoveryCodes gives the actor a new set of recovery codes, which
// voids the previous set, and returns them: they are shown this once and
// stored only as hashes. A user who has a second factor must have proven
// it in this session (errProveSecondFactor otherwise).
func (a *App) NewRecoveryCodes(ctx context.Context, actor Actor) ([]string, error) {
	f, err := a.factorStore()
	if err != nil {
		return nil, err
	}
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return nil, err
	}
	if err := a.needsSecondFactor(ctx, actor, u); err != nil {
		return nil, err
	}
	codes := users.NewRecoveryCodes()
	hashes := make([][]byte, len(codes))
	for i, c := range codes {
		n, _ := users.NormalizeRecoveryCode(c)
		hashes[i] = users.HashRecoveryCode(u.ID, n)
	}
	if err := f.SetRecoveryCodes(ctx, u.ID, hashes); err != nil {
		return nil, err
	}
	a.recordBy(ctx, actor, audit.RecoveryCodesGenerated, u, "")
	return codes, nil
}

// Factors returns what second factors the actor has.
func (a *App) Factors(ctx context.Context, actor Actor) (users.FactorSummary, error) {
	f, err := a.factorStore()
	if err != nil {
		return users.FactorSummary{}, err
	}
	m, err := f.FactorSummaries(ctx, []string{actor.ID})
	if err != nil {
		return users.FactorSummary{}, err
	}
	return m[actor.ID], nil
}

// UserFactors returns what second factors each of list has, by user ID,
// for the admin's views.
func (a *App) UserFactors(ctx context.Context, actor Actor, list []*users.User) (map[string]users.FactorSummary, error) {
	if !actor.Admin {
		return nil, ErrForbidden
	}
	f, err := a.factorStore()
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(list))
	for i, u := range list {
		ids[i] = u.ID
	}
	return f.FactorSummaries(ctx, ids)
}

// ResetSecondFactors removes every second factor of the user ref names
// (TOTP, recovery codes, passkeys), as an admin does for a user who lost
// them, and ends every session of theirs: the reset is stored (raising
// the account's version, so a login in flight is undone) before the
// sessions end. It returns the user and how many sessions ended.
func (a *App) ResetSecondFactors(ctx context.Context, actor Actor, ref string) (*users.User, int, error) {
	f, err := a.factorStore()
	if err != nil {
		return nil, 0, err
	}
	return a.changeUser(ctx, actor, ref, audit.SecondFactorsReset, func(u *users.User) error {
		return f.ResetFactors(ctx, u)
	})
}

// rateLimited is the error of a check the throttle holds back.
func rateLimited(wait time.Duration) *Error {
	return &Error{Code: CodeRateLimited, Message: "Too many attempts; wait and try again.", RetryAfter: wait}
}

// verifySecondFactor checks u's second factor, sent from client: a TOTP
// code (accepted once, within one time step of the present, from a
// confirmed enrolment) or else a recovery code (used up). It runs under
// the sign-in throttle for (u's username, the client network): a wrong
// code counts as a failure, a right one refunds it. It audits the use of a
// recovery code, and returns the RFC 8176 methods proven (["otp"]). A
// wrong, malformed, used or absent code, or a method the user has not
// enrolled, is ErrWrongCode; both codes at once is a bad request.
func (a *App) verifySecondFactor(ctx context.Context, u *users.User, totp, recoveryCode string, client session.Client) (amr []string, err error) {
	f, err := a.factorStore()
	if err != nil {
		return nil, err
	}
	switch {
	case totp != "" && recoveryCode != "":
		return nil, errBothCodes
	case totp == "" && recoveryCode == "":
		return nil, ErrWrongCode
	}
	client = boundClient(client)
	at, wait := a.throttle.begin(u.Username, client.IP, a.now())
	if wait > 0 {
		return nil, rateLimited(wait)
	}
	if totp != "" {
		err = a.checkTOTP(ctx, f, u, totp)
	} else {
		err = a.checkRecoveryCode(ctx, f, u, recoveryCode, client)
	}
	if err != nil {
		if !errors.Is(err, ErrWrongCode) {
			at.succeeded() // a technical failure is no guess
		}
		return nil, err
	}
	at.succeeded()
	// A recovery code is a one-time password too (NIST SP 800-63B calls
	// it a look-up secret); RFC 8176 registers no closer value.
	return []string{session.AMROTP}, nil
}

// checkTOTP checks and uses u's TOTP code.
func (a *App) checkTOTP(ctx context.Context, f users.Factors, u *users.User, code string) error {
	t, err := f.TOTP(ctx, u.ID)
	switch {
	case errors.Is(err, users.ErrNotFound):
		return ErrWrongCode
	case err != nil:
		return err
	case !t.Confirmed:
		return ErrWrongCode // a pending enrolment proves nothing yet
	}
	return a.useTOTP(ctx, f, t, code, false)
}

// checkRecoveryCode uses up u's recovery code and audits it.
func (a *App) checkRecoveryCode(ctx context.Context, f users.Factors, u *users.User, code string, client session.Client) error {
	n, ok := users.NormalizeRecoveryCode(code)
	if !ok {
		return ErrWrongCode
	}
	switch err := f.UseRecoveryCode(ctx, u.ID, users.HashRecoveryCode(u.ID, n)); {
	case errors.Is(err, users.ErrNotFound):
		return ErrWrongCode
	case err != nil:
		return err
	}
	reason := ""
	if left, err := f.RecoveryCodesLeft(ctx, u.ID); err == nil {
		reason = fmt.Sprintf("%d left", left)
	}
	a.record(ctx, audit.Event{Type: audit.RecoveryCodeUsed, UserID: u.ID, Username: u.Username, Actor: u.ID, Reason: reason, IP: client.IP, UserAgent: client.UserAgent})
	return nil
}
