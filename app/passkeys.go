package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"golang.org/x/time/rate"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// Passkeys are WebAuthn credentials (discoverable, "resident" keys): a
// user registers one from a signed-in session and then signs in with it
// without a password, proves a second factor with it after the password,
// or re-authenticates with it.
//
// A ceremony runs in two requests: Begin stores the ceremony's state
// (go-webauthn's SessionData: the challenge, the relying party, the user
// verification asked for) in a users.Challenge with a random ID of 130
// bits and a five-minute expiry, and the transport hands that ID to the
// browser; Finish takes the challenge (single use: of two requests that
// present one ID, one at most proceeds) and verifies the browser's answer
// against it. Any instance can finish a ceremony another began.
//
// An anonymous client can make the server store a challenge (the sign-in
// ceremony starts before anyone is known), so ceremonies are limited, per
// instance: per client network (an IPv4 address or IPv6 /64), 20 at once,
// then one more per 10 s, with waits of 1 s doubling up to a minute
// (a ceremony that succeeds is given back); and across every network,
// 20 a second with bursts of 200. A challenge lives 5 minutes, so one
// instance keeps at most about 6,200 live challenges of at most a few
// hundred bytes each (the state holds no credential list), and the store
// sweeps expired ones as it writes new ones.

// The challenge kinds (users.Challenge.Kind) of the passkey ceremonies.
const (
	KindPasskeyRegister = "passkey-register"
	KindPasskeyLogin    = "passkey-login"
	// KindPasskeyVerify is a ceremony for a known user: a second factor
	// after the password, or a re-authentication.
	KindPasskeyVerify = "passkey-verify"
)

// PasskeyCeremonyTTL is how long a ceremony may take from Begin to Finish.
const PasskeyCeremonyTTL = 5 * time.Minute

// PasskeyRecentAuth is how recently a session must have authenticated to
// register a passkey: a stolen session cookie must not be a way to plant
// a credential that outlives the session and a password change.
const PasskeyRecentAuth = 10 * time.Minute

// RelyingParty is whom passkeys are registered with (WebAuthn's relying
// party): ID is the host name users reach sessiond at, and Origin its
// origin ("https://login.example.com"). The transport derives both from
// its configuration, never from a client's Host header.
type RelyingParty struct {
	ID, Origin string
	// Name is shown by the browser while it asks for a passkey; default
	// "sessiond".
	Name string
}

// Ceremony is a WebAuthn ceremony begun by the server.
type Ceremony struct {
	// ID names the ceremony in its Finish call. The transport hands it to
	// the browser (in a cookie) and never to another party.
	ID string
	// Options are for the browser's navigator.credentials.create() or
	// .get(): a *protocol.CredentialCreation or *protocol.CredentialAssertion,
	// as JSON {"publicKey":{…}}.
	Options any
	// ExpiresAt is when the ceremony can no longer be finished.
	ExpiresAt time.Time
}

// The errors of the passkey ceremonies.
var (
	// ErrPasskeyRejected is a browser's answer that does not verify: a
	// forged or replayed response, an unknown credential, a cloned
	// authenticator. It says nothing of which.
	ErrPasskeyRejected = Errorf(CodeBadCredentials, "That passkey was not accepted.")
	// ErrCeremonyGone is a Finish whose ceremony does not exist: expired,
	// already finished, or never begun here.
	ErrCeremonyGone    = Errorf(CodeBadRequest, "This passkey request expired or was already used; try again.")
	errPasskeysOff     = Errorf(CodeNotFound, "Passkeys are not available here: the server needs its public URL (--public-url).")
	errNoPasskey       = Errorf(CodeNotFound, "No such passkey.")
	errRecentAuth      = Errorf(CodeReauthRequired, "Sign in again to add a passkey: that needs a sign-in within the last 10 minutes.")
	errTooManyPasskeys = Errorf(CodeConflict, "You have as many passkeys as an account may hold (16): remove one first.")
	errPasskeyExists   = Errorf(CodeConflict, "This passkey is registered already.")
	errCeremonyLimit   = Errorf(CodeRateLimited, "Too many passkey requests; wait and try again.")
)

// passkeyLimits bounds the ceremonies clients can begin (see Passkeys).
type passkeyLimits struct {
	network *failures
	all     *rate.Limiter
}

func newPasskeyLimits(maxKeys int) *passkeyLimits {
	return &passkeyLimits{
		network: newFailures(Backoff{Free: 20, Base: time.Second, Max: time.Minute, Decay: 10 * time.Second}, maxKeys),
		all:     rate.NewLimiter(20, 200),
	}
}

// begin counts a ceremony begun from client, or says how long to wait.
func (l *passkeyLimits) begin(client string, now time.Time) error {
	key := ClientNetwork(client)
	if wait := l.network.wait(key, now); wait > 0 {
		return &Error{Code: CodeRateLimited, Message: errCeremonyLimit.Message, RetryAfter: wait}
	}
	if !l.all.AllowN(now, 1) {
		return &Error{Code: CodeRateLimited, Message: errCeremonyLimit.Message, RetryAfter: time.Second}
	}
	l.network.fail(key, now)
	return nil
}

// finished gives back a ceremony of client's that succeeded, so that
// people who sign in do not run into the limit.
func (l *passkeyLimits) finished(client string) { l.network.refund(ClientNetwork(client)) }

// passkeyStore is the users.Factors of the App's directory, or
// errPasskeysOff if it keeps none.
func (a *App) passkeyStore() (users.Factors, error) {
	if a.factors == nil {
		return nil, errPasskeysOff
	}
	return a.factors, nil
}

// passkeyParty returns the go-webauthn relying party of rp and the store
// of passkeys, or errPasskeysOff if either is not set up.
func (a *App) passkeyParty(rp RelyingParty) (*webauthn.WebAuthn, users.Factors, error) {
	wa, err := relyingParty(rp)
	if err != nil {
		return nil, nil, err
	}
	f, err := a.passkeyStore()
	if err != nil {
		return nil, nil, err
	}
	return wa, f, nil
}

// relyingParty is the go-webauthn relying party of rp: attestation is not
// asked for (sessiond keeps no list of trusted authenticator models), and
// every ceremony expires with its challenge.
func relyingParty(rp RelyingParty) (*webauthn.WebAuthn, error) {
	if rp.ID == "" || rp.Origin == "" {
		return nil, errPasskeysOff
	}
	name := rp.Name
	if name == "" {
		name = "sessiond"
	}
	timeout := webauthn.TimeoutConfig{Enforce: true, Timeout: PasskeyCeremonyTTL, TimeoutUVD: PasskeyCeremonyTTL}
	return webauthn.New(&webauthn.Config{
		RPID:                  rp.ID,
		RPDisplayName:         name,
		RPOrigins:             []string{rp.Origin},
		AttestationPreference: protocol.PreferNoAttestation,
		Timeouts:              webauthn.TimeoutsConfig{Login: timeout, Registration: timeout},
	})
}

// webauthnUser is a user as go-webauthn sees one: the user handle is the
// user ID.
type webauthnUser struct {
	u    *users.User
	keys []*users.Passkey
}

func (w webauthnUser) WebAuthnID() []byte          { return []byte(w.u.ID) }
func (w webauthnUser) WebAuthnName() string        { return w.u.Username }
func (w webauthnUser) WebAuthnDisplayName() string { return w.u.Username }
func (w webauthnUser) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, 0, len(w.keys))
	for _, p := range w.keys {
		out = append(out, credentialOf(p))
	}
	return out
}

func credentialOf(p *users.Passkey) webauthn.Credential {
	tr := make([]protocol.AuthenticatorTransport, 0, len(p.Transports))
	for _, t := range p.Transports {
		tr = append(tr, protocol.AuthenticatorTransport(t))
	}
	return webauthn.Credential{
		ID: p.CredentialID, PublicKey: p.PublicKey, AttestationType: p.AttestationType, Transport: tr,
		Flags:         webauthn.CredentialFlags{UserPresent: true, UserVerified: p.UserVerified, BackupEligible: p.BackupEligible, BackupState: p.BackupState},
		Authenticator: webauthn.Authenticator{AAGUID: p.AAGUID, SignCount: p.SignCount},
	}
}

// PasskeyAMR is what a passkey proves, as RFC 8176 "amr" values: "hwk"
// for a key bound to one authenticator, "swk" for a synced one (backup
// eligible: its private key is copied between devices by a cloud
// keychain, so possession is of a software-protected key); "user" for
// the presence test every assertion carries; and, with user verification
// (a PIN or biometric on the authenticator), "mfa": the key and what
// unlocks it are two factors (NIST SP 800-63B: a multi-factor
// cryptographic authenticator, AAL2).
func PasskeyAMR(backupEligible, userVerified bool) []string {
	key := session.AMRHardwareKey
	if backupEligible {
		key = session.AMRSoftwareKey
	}
	if userVerified {
		return []string{key, session.AMRUserPresence, session.AMRMultiFactor}
	}
	return []string{key, session.AMRUserPresence}
}

// putCeremony stores the ceremony state sd of kind for userID.
func (a *App) putCeremony(ctx context.Context, f users.Factors, kind, userID string, sd *webauthn.SessionData, options any) (*Ceremony, error) {
	sd.AllowedCredentialIDs = nil // the finish checks the user's own; keeps the state small
	data, err := json.Marshal(sd)
	if err != nil {
		return nil, err
	}
	c := &users.Challenge{ID: rand.Text(), Kind: kind, UserID: userID, Data: data, ExpiresAt: a.now().Add(PasskeyCeremonyTTL)}
	if err := f.PutChallenge(ctx, c); err != nil {
		return nil, err
	}
	return &Ceremony{ID: c.ID, Options: options, ExpiresAt: c.ExpiresAt}, nil
}

// takeCeremony takes the ceremony id of kind, once.
func takeCeremony(ctx context.Context, f users.Factors, id, kind string) (*users.Challenge, *webauthn.SessionData, error) {
	if id == "" || len(id) > 256 {
		return nil, nil, ErrCeremonyGone
	}
	c, err := f.TakeChallenge(ctx, id, kind)
	switch {
	case errors.Is(err, users.ErrNotFound):
		return nil, nil, ErrCeremonyGone
	case err != nil:
		return nil, nil, err
	}
	var sd webauthn.SessionData
	if err := json.Unmarshal(c.Data, &sd); err != nil {
		return nil, nil, ErrCeremonyGone
	}
	return c, &sd, nil
}

// BeginPasskeyRegistration begins registering a passkey for the actor,
// whose session must have authenticated within PasskeyRecentAuth
// (authenticatedAt). The passkey must be discoverable and verify its
// user; the actor's passkeys are excluded, so one authenticator is
// registered once.
func (a *App) BeginPasskeyRegistration(ctx context.Context, actor Actor, authenticatedAt time.Time, rp RelyingParty) (*Ceremony, error) {
	wa, f, err := a.passkeyParty(rp)
	if err != nil {
		return nil, err
	}
	if a.now().Sub(authenticatedAt) > PasskeyRecentAuth {
		return nil, errRecentAuth
	}
	if err := a.passkeyLimits.begin(boundClient(actor.Client).IP, a.now()); err != nil {
		return nil, err
	}
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return nil, err
	}
	keys, err := f.Passkeys(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	if len(keys) >= users.MaxPasskeys {
		return nil, errTooManyPasskeys
	}
	wu := webauthnUser{u, keys}
	creation, sd, err := wa.BeginRegistration(wu,
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationRequired,
		}),
		webauthn.WithExclusions(webauthn.Credentials(wu.WebAuthnCredentials()).CredentialDescriptors()),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation),
	)
	if err != nil {
		return nil, err
	}
	return a.putCeremony(ctx, f, KindPasskeyRegister, u.ID, sd, creation)
}

// FinishPasskeyRegistration verifies response, the browser's answer to
// the registration ceremony id, and stores the passkey for the actor
// under name (a default one from the date if empty). A response that
// does not verify is ErrPasskeyRejected.
func (a *App) FinishPasskeyRegistration(ctx context.Context, actor Actor, rp RelyingParty, id, name string, response []byte) (*users.Passkey, error) {
	wa, f, err := a.passkeyParty(rp)
	if err != nil {
		return nil, err
	}
	name, err = passkeyName(name, a.now())
	if err != nil {
		return nil, err
	}
	c, sd, err := takeCeremony(ctx, f, id, KindPasskeyRegister)
	if err != nil {
		return nil, err
	}
	if c.UserID != actor.ID {
		return nil, ErrCeremonyGone
	}
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return nil, ErrPasskeyRejected
	}
	cred, err := wa.CreateCredential(webauthnUser{u: u}, *sd, parsed)
	if err != nil {
		a.log.InfoContext(ctx, "passkey registration refused", "user_id", u.ID, "err", err)
		return nil, ErrPasskeyRejected
	}
	p := &users.Passkey{
		CredentialID: cred.ID, UserID: u.ID, Name: name, PublicKey: cred.PublicKey,
		AttestationType: cred.AttestationType, AAGUID: cred.Authenticator.AAGUID, SignCount: cred.Authenticator.SignCount,
		UserVerified: cred.Flags.UserVerified, BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState,
		CreatedAt: a.now().UTC().Truncate(time.Microsecond),
	}
	for _, t := range cred.Transport {
		if len(p.Transports) < users.MaxTransports && t != "" && len(t) <= 32 {
			p.Transports = append(p.Transports, string(t))
		}
	}
	if err := f.AddPasskey(ctx, p); err != nil {
		switch {
		case errors.Is(err, users.ErrExists):
			return nil, errPasskeyExists
		case errors.Is(err, users.ErrInvalid):
			if n, _ := f.Passkeys(ctx, u.ID); len(n) >= users.MaxPasskeys {
				return nil, errTooManyPasskeys
			}
			return nil, ErrPasskeyRejected
		}
		return nil, err
	}
	a.passkeyLimits.finished(boundClient(actor.Client).IP)
	a.recordBy(ctx, actor, audit.PasskeyAdded, u, p.Name)
	return p, nil
}

// passkeyName is name as stored: spaces at either end and control
// characters dropped, at most users.MaxPasskeyNameLen characters; an
// empty one is named after the date.
func passkeyName(name string, now time.Time) (string, error) {
	name = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, name))
	if name == "" {
		return "Passkey of " + now.UTC().Format("2 Jan 2006"), nil
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > users.MaxPasskeyNameLen {
		return "", Errorf(CodeInvalid, "A passkey's name is at most %d characters.", users.MaxPasskeyNameLen)
	}
	return name, nil
}

// BeginPasskeyLogin begins a sign-in with a passkey, for anyone: the
// browser offers the passkeys it holds for rp, and the one chosen names
// its user. User verification is required, so that the passkey alone is
// two factors.
func (a *App) BeginPasskeyLogin(ctx context.Context, rp RelyingParty, client session.Client) (*Ceremony, error) {
	wa, f, err := a.passkeyParty(rp)
	if err != nil {
		return nil, err
	}
	if err := a.passkeyLimits.begin(boundClient(client).IP, a.now()); err != nil {
		return nil, err
	}
	assertion, sd, err := wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, err
	}
	return a.putCeremony(ctx, f, KindPasskeyLogin, "", sd, assertion)
}

// FinishPasskeyLogin verifies response, the browser's answer to the
// sign-in ceremony id, and starts a session for the passkey's user with
// start (startSession: the account is read again once the session is
// stored, and the login is audited with the methods proven). It returns the user and the session, or:
//   - ErrCeremonyGone for an expired, used or unknown ceremony;
//   - ErrPasskeyRejected for an answer that does not verify (forged,
//     from another origin, an unknown credential, a user handle that is
//     not the credential's user, no user verification), and for a
//     credential whose sign count went backwards though it is bound to
//     one authenticator (a clone);
//   - users.ErrDisabled for a disabled account (told only to the
//     holder of its passkey).
//
// Every outcome but a technical failure is audited.
func (a *App) FinishPasskeyLogin(ctx context.Context, rp RelyingParty, id string, response []byte, remember bool, client session.Client, start StartFunc) (*users.User, *session.Session, error) {
	client = boundClient(client)
	wa, f, err := a.passkeyParty(rp)
	if err != nil {
		return nil, nil, err
	}
	_, sd, err := takeCeremony(ctx, f, id, KindPasskeyLogin)
	if err != nil {
		return nil, nil, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		a.passkeyFailed(ctx, nil, audit.ReasonBadPasskey, client)
		return nil, nil, ErrPasskeyRejected
	}
	var u *users.User
	var key *users.Passkey
	var lookupErr error
	handler := func(rawID, userHandle []byte) (webauthn.User, error) {
		key, lookupErr = f.PasskeyByID(ctx, rawID)
		if lookupErr != nil {
			return nil, lookupErr
		}
		if key.UserID != string(userHandle) {
			lookupErr = users.ErrNotFound
			return nil, lookupErr
		}
		if u, lookupErr = a.accounts.Directory().ByID(ctx, key.UserID); lookupErr != nil {
			return nil, lookupErr
		}
		return webauthnUser{u, []*users.Passkey{key}}, nil
	}
	_, cred, err := wa.ValidatePasskeyLogin(handler, *sd, parsed)
	if lookupErr != nil && !errors.Is(lookupErr, users.ErrNotFound) {
		return nil, nil, lookupErr // the store failed: no verdict on the passkey
	}
	if err != nil {
		a.passkeyFailed(ctx, u, audit.ReasonBadPasskey, client)
		return nil, nil, ErrPasskeyRejected
	}
	if err := a.usePasskey(ctx, f, u, key, cred, parsed, client); err != nil {
		return nil, nil, err
	}
	if u.Disabled {
		a.passkeyFailed(ctx, u, audit.ReasonDisabled, client)
		return nil, nil, users.ErrDisabled
	}
	sess, err := a.startSession(ctx, u, PasskeyAMR(key.BackupEligible, true), remember, client, start)
	if err != nil {
		if errors.Is(err, users.ErrBadCredentials) || errors.Is(err, users.ErrDisabled) {
			a.passkeyFailed(ctx, u, audit.ReasonDisabled, client)
		}
		return nil, nil, err
	}
	a.passkeyLimits.finished(client.IP)
	return u, sess, nil
}

// usePasskey settles a verified assertion of key: a sign count that did
// not go up, for a passkey bound to one authenticator (not backup
// eligible, whose count is kept by that authenticator alone), means the
// key was copied out of it, and is refused and audited; otherwise the new
// count, backup state and time of use are stored.
func (a *App) usePasskey(ctx context.Context, f users.Factors, u *users.User, key *users.Passkey, cred *webauthn.Credential, parsed *protocol.ParsedCredentialAssertionData, client session.Client) error {
	count := parsed.Response.AuthenticatorData.Counter
	if cred.Authenticator.CloneWarning && !key.BackupEligible {
		a.passkeyFailed(ctx, u, audit.ReasonClonedAuthenticator, client)
		return ErrPasskeyRejected
	}
	return f.UsePasskey(ctx, key.CredentialID, count, cred.Flags.BackupState, a.now().UTC().Truncate(time.Microsecond))
}

// passkeyFailed audits a failed passkey sign-in or check by u (nil if
// the passkey named no known user).
func (a *App) passkeyFailed(ctx context.Context, u *users.User, reason string, client session.Client) {
	e := audit.Event{Type: audit.LoginFailed, Reason: reason, IP: client.IP, UserAgent: client.UserAgent}
	if u != nil {
		e.UserID, e.Username, e.Actor = u.ID, u.Username, u.ID
	}
	a.record(ctx, e)
}

// BeginPasskeyCheck begins a ceremony in which the user userID (known
// from a session or from a sign-in waiting for its second factor) proves
// possession of one of their passkeys: a second factor, or a
// re-authentication. User verification is preferred, not required: the
// methods proven say whether it happened (PasskeyAMR). A user without
// passkeys gets errNoPasskey.
func (a *App) BeginPasskeyCheck(ctx context.Context, userID string, rp RelyingParty, client session.Client) (*Ceremony, error) {
	wa, f, err := a.passkeyParty(rp)
	if err != nil {
		return nil, err
	}
	if err := a.passkeyLimits.begin(boundClient(client).IP, a.now()); err != nil {
		return nil, err
	}
	u, err := a.accounts.Directory().ByID(ctx, userID)
	if err != nil {
		return nil, err
	}
	keys, err := f.Passkeys(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errNoPasskey
	}
	assertion, sd, err := wa.BeginLogin(webauthnUser{u, keys}, webauthn.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		return nil, err
	}
	return a.putCeremony(ctx, f, KindPasskeyVerify, u.ID, sd, assertion)
}

// verifyPasskey checks response, u's answer to the ceremony id that
// BeginPasskeyCheck began for u, and returns the methods it proves
// (PasskeyAMR). It fails with ErrCeremonyGone, or ErrPasskeyRejected
// (audited) for an answer that does not verify, a credential of another
// user, or a cloned authenticator.
func (a *App) verifyPasskey(ctx context.Context, u *users.User, rp RelyingParty, id string, response []byte, client session.Client) ([]string, error) {
	client = boundClient(client)
	wa, f, err := a.passkeyParty(rp)
	if err != nil {
		return nil, err
	}
	c, sd, err := takeCeremony(ctx, f, id, KindPasskeyVerify)
	if err != nil {
		return nil, err
	}
	if c.UserID != u.ID {
		return nil, ErrCeremonyGone
	}
	keys, err := f.Passkeys(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		a.passkeyFailed(ctx, u, audit.ReasonBadPasskey, client)
		return nil, ErrPasskeyRejected
	}
	cred, err := wa.ValidateLogin(webauthnUser{u, keys}, *sd, parsed)
	if err != nil {
		a.passkeyFailed(ctx, u, audit.ReasonBadPasskey, client)
		return nil, ErrPasskeyRejected
	}
	var key *users.Passkey
	for _, k := range keys {
		if bytes.Equal(k.CredentialID, cred.ID) {
			key = k
		}
	}
	if key == nil { // ValidateLogin found it among keys
		return nil, ErrPasskeyRejected
	}
	if err := a.usePasskey(ctx, f, u, key, cred, parsed, client); err != nil {
		return nil, err
	}
	a.passkeyLimits.finished(client.IP)
	return PasskeyAMR(key.BackupEligible, parsed.Response.AuthenticatorData.Flags.HasUserVerified()), nil
}

// ReauthenticateWithPasskey checks the actor's answer to a ceremony of
// BeginPasskeyCheck and, if it verifies, gives the actor's session a new
// token with rotate, its authentication time refreshed and the methods
// the passkey proved added.
func (a *App) ReauthenticateWithPasskey(ctx context.Context, actor Actor, rp RelyingParty, id string, response []byte, rotate RotateFunc) (*session.Session, error) {
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		return nil, err
	}
	amr, err := a.verifyPasskey(ctx, u, rp, id, response, actor.Client)
	if err != nil {
		return nil, err
	}
	return a.raise(ctx, actor, amr, rotate)
}

// MyPasskeys returns the actor's passkeys, oldest first.
func (a *App) MyPasskeys(ctx context.Context, actor Actor) ([]*users.Passkey, error) {
	f, err := a.passkeyStore()
	if err != nil {
		return nil, err
	}
	return f.Passkeys(ctx, actor.ID)
}

// RenamePasskey renames the actor's passkey id; another user's is "no
// such passkey".
func (a *App) RenamePasskey(ctx context.Context, actor Actor, id []byte, name string) (*users.Passkey, error) {
	f, err := a.passkeyStore()
	if err != nil {
		return nil, err
	}
	if name, err = passkeyName(name, a.now()); err != nil {
		return nil, err
	}
	if err := f.RenamePasskey(ctx, actor.ID, id, name); err != nil {
		if errors.Is(err, users.ErrNotFound) {
			return nil, errNoPasskey
		}
		return nil, err
	}
	return a.myPasskey(ctx, f, actor, id)
}

// myPasskey is the actor's passkey id.
func (a *App) myPasskey(ctx context.Context, f users.Factors, actor Actor, id []byte) (*users.Passkey, error) {
	p, err := f.PasskeyByID(ctx, id)
	switch {
	case errors.Is(err, users.ErrNotFound) || err == nil && p.UserID != actor.ID:
		return nil, errNoPasskey
	case err != nil:
		return nil, err
	}
	return p, nil
}

// MyPasskey returns the actor's passkey id; another user's is "no such
// passkey".
func (a *App) MyPasskey(ctx context.Context, actor Actor, id []byte) (*users.Passkey, error) {
	f, err := a.passkeyStore()
	if err != nil {
		return nil, err
	}
	return a.myPasskey(ctx, f, actor, id)
}

// RemovePasskey removes the actor's passkey id; another user's is "no
// such passkey". It needs no recent authentication: removing a key gives
// whoever holds the session no access it did not have, and an owner who
// lost an authenticator must be able to remove it at once.
func (a *App) RemovePasskey(ctx context.Context, actor Actor, id []byte) (*users.Passkey, error) {
	f, err := a.passkeyStore()
	if err != nil {
		return nil, err
	}
	p, err := a.myPasskey(ctx, f, actor, id)
	if err != nil {
		return nil, err
	}
	if err := f.DeletePasskey(ctx, actor.ID, id); err != nil {
		if errors.Is(err, users.ErrNotFound) {
			return nil, errNoPasskey
		}
		return nil, err
	}
	u, err := a.accounts.Directory().ByID(ctx, actor.ID)
	if err != nil {
		u = &users.User{ID: actor.ID}
	}
	a.recordBy(ctx, actor, audit.PasskeyRemoved, u, p.Name)
	return p, nil
}

// BeginPasskeySecondFactor begins a passkey check for the user of the
// pending sign-in ticket names (see SignIn): the passkey as the second
// factor after the password.
func (a *App) BeginPasskeySecondFactor(ctx context.Context, ticket string, rp RelyingParty, client session.Client) (*Ceremony, error) {
	u, _, err := a.pending(ctx, ticket)
	if err != nil {
		return nil, err
	}
	return a.BeginPasskeyCheck(ctx, u.ID, rp, client)
}

// CompleteSecondFactorWithPasskey completes the pending sign-in ticket
// names with response, the answer to the passkey check id that
// BeginPasskeySecondFactor began, and starts the session with start: at
// AAL2, the password and the passkey being two factors whether or not
// the authenticator verified its user. A refused passkey leaves the
// pending sign-in for another try.
func (a *App) CompleteSecondFactorWithPasskey(ctx context.Context, ticket string, rp RelyingParty, id string, response []byte, client session.Client, start StartFunc) (*users.User, *session.Session, error) {
	u, sess, err := a.completePending(ctx, ticket, client, start, func(u *users.User) ([]string, error) {
		return a.verifyPasskey(ctx, u, rp, id, response, client)
	})
	return u, sess, err
}
