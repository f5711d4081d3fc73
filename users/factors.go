package users

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// ErrReplay means a TOTP code of this time step, or of a later one, was
// already accepted for the user: each code counts once.
var ErrReplay = errors.New("users: code already used")

// Bounds on what a Factors store keeps. Past them a write fails with an
// error that wraps ErrInvalid.
const (
	// MaxPasskeys is the number of passkeys a user may have.
	MaxPasskeys = 16
	// MaxCredentialIDLen is the length of the longest passkey credential
	// ID, in bytes (WebAuthn allows up to 1023).
	MaxCredentialIDLen = 1023
	// MaxPasskeyNameLen is the length of the longest passkey name, in
	// characters.
	MaxPasskeyNameLen = 64
	// MaxPublicKeyLen bounds a passkey's COSE public key, in bytes.
	MaxPublicKeyLen = 2048
	// MaxTransports bounds a passkey's transports, each of which is at
	// most 32 bytes long.
	MaxTransports = 8
	// MaxChallengeData is the size of the largest Challenge.Data.
	MaxChallengeData = 8 << 10
	// MaxRecoveryCodes is the size of the largest set of recovery codes,
	// and MaxRecoveryCodeHashLen the length of the longest hash of one.
	MaxRecoveryCodes       = 32
	MaxRecoveryCodeHashLen = 64
	// MaxTOTPSecretLen is the length of the longest TOTP secret, in
	// bytes.
	MaxTOTPSecretLen = 64
)

// Factors stores users' second factors and short-lived sign-in challenges.
// Like a Directory, it is safe for concurrent use, by several processes
// sharing one storage too; what a user has goes with the user when the
// user is deleted. Packages sqliteusers and pgusers implement it beside
// their Directory; users/directorytest checks it.
//
// Writes for a user that does not exist (PutTOTP, SetRecoveryCodes,
// AddPasskey) return ErrNotFound.
type Factors interface {
	// TOTP returns the user's TOTP enrolment, or ErrNotFound.
	TOTP(ctx context.Context, userID string) (*TOTP, error)
	// PutTOTP stores t, replacing the user's enrolment (pending or confirmed).
	PutTOTP(ctx context.Context, t *TOTP) error
	// UseTOTPStep records that a code of time step `step` was accepted for the user, atomically:
	// only if step > the stored LastStep (and, with confirm, marks the enrolment Confirmed);
	// otherwise ErrReplay. Of two concurrent uses of one step exactly one succeeds.
	// It returns ErrNotFound if the user has no enrolment.
	UseTOTPStep(ctx context.Context, userID string, step int64, confirm bool) error
	DeleteTOTP(ctx context.Context, userID string) error // ErrNotFound if none

	// SetRecoveryCodes replaces the user's set of recovery codes with these hashes.
	SetRecoveryCodes(ctx context.Context, userID string, hashes [][]byte) error
	// UseRecoveryCode deletes the user's unused code with this hash; ErrNotFound if none.
	// Of two concurrent uses of one code exactly one succeeds.
	UseRecoveryCode(ctx context.Context, userID string, hash []byte) error
	RecoveryCodesLeft(ctx context.Context, userID string) (int, error)

	AddPasskey(ctx context.Context, p *Passkey) error                       // ErrExists if the credential ID is stored; ErrInvalid past MaxPasskeys per user
	Passkeys(ctx context.Context, userID string) ([]*Passkey, error)        // oldest first
	PasskeyByID(ctx context.Context, credentialID []byte) (*Passkey, error) // ErrNotFound
	// UsePasskey records a successful assertion: the new sign count, backup state and time.
	UsePasskey(ctx context.Context, credentialID []byte, signCount uint32, backupState bool, at time.Time) error
	RenamePasskey(ctx context.Context, userID string, credentialID []byte, name string) error // ErrNotFound
	DeletePasskey(ctx context.Context, userID string, credentialID []byte) error              // ErrNotFound

	// FactorSummaries returns what second factors each of the users has.
	// The map has an entry for every ID asked for (all zero for a user
	// with none, or no such user).
	FactorSummaries(ctx context.Context, userIDs []string) (map[string]FactorSummary, error)
	// ResetFactors removes u's TOTP, recovery codes and passkeys and raises u.Version (stored and in u)
	// by one, if the stored Version is u.Version (ErrConflict otherwise; ErrNotFound), atomically.
	ResetFactors(ctx context.Context, u *User) error

	// PutChallenge stores c (ErrExists if its ID is taken). Challenge and TakeChallenge return
	// ErrNotFound for a missing or expired one or one of another Kind; TakeChallenge deletes it:
	// of concurrent takers exactly one gets it. Expired challenges are swept (on Put, bounded work).
	// Only a SHA-256 hash of the ID is stored, so that a copy of the storage completes no sign-in.
	PutChallenge(ctx context.Context, c *Challenge) error
	Challenge(ctx context.Context, id, kind string) (*Challenge, error)
	TakeChallenge(ctx context.Context, id, kind string) (*Challenge, error)
}

// TOTP is a user's enrolment in time-based one-time passwords (RFC 6238).
type TOTP struct {
	UserID    string
	Secret    []byte // the raw shared secret (20 bytes), stored as is; never logged
	Confirmed bool   // false until a first code is accepted
	LastStep  int64  // the last time step accepted; codes of this step or earlier are refused
	CreatedAt time.Time
}

// Passkey is a WebAuthn credential registered for a user.
type Passkey struct {
	CredentialID    []byte // ≤ 1023 bytes
	UserID          string
	Name            string // shown on the account page; ≤ 64 characters
	PublicKey       []byte // COSE key as go-webauthn gives it
	AttestationType string
	AAGUID          []byte
	SignCount       uint32
	Transports      []string
	UserVerified    bool // user verification at registration
	BackupEligible  bool
	BackupState     bool
	CreatedAt       time.Time
	LastUsedAt      time.Time // zero until the passkey is first used
}

// FactorSummary tells what second factors a user has.
type FactorSummary struct {
	TOTP          bool // a confirmed TOTP enrolment
	Passkeys      int
	RecoveryCodes int // unused codes left
}

// Challenge is a short-lived record of a sign-in step in progress.
type Challenge struct {
	ID        string // random, ≥ 128 bits, chosen by the caller; stored hashed
	Kind      string // what it is for, e.g. "second-factor", "passkey-register", "passkey-login"
	UserID    string // may be empty (a passkey login does not know the user yet)
	Data      []byte // opaque, ≤ 8 KiB (ErrInvalid beyond)
	ExpiresAt time.Time
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// ValidateTOTP checks what a Factors store requires of t.
func ValidateTOTP(t *TOTP) error {
	switch {
	case t.UserID == "":
		return invalid("TOTP enrolment without a user")
	case len(t.Secret) == 0 || len(t.Secret) > MaxTOTPSecretLen:
		return invalid("TOTP secret must be 1 to %d bytes", MaxTOTPSecretLen)
	case t.LastStep < 0:
		return invalid("TOTP last step must not be negative")
	}
	return nil
}

// ValidateRecoveryCodeHashes checks what a Factors store requires of a
// set of recovery code hashes.
func ValidateRecoveryCodeHashes(hashes [][]byte) error {
	if len(hashes) > MaxRecoveryCodes {
		return invalid("at most %d recovery codes", MaxRecoveryCodes)
	}
	for _, h := range hashes {
		if len(h) == 0 || len(h) > MaxRecoveryCodeHashLen {
			return invalid("a recovery code hash must be 1 to %d bytes", MaxRecoveryCodeHashLen)
		}
	}
	return nil
}

// ValidatePasskeyName checks a passkey's name: at most MaxPasskeyNameLen
// characters of valid UTF-8.
func ValidatePasskeyName(name string) error {
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxPasskeyNameLen {
		return invalid("passkey name must be at most %d characters", MaxPasskeyNameLen)
	}
	return nil
}

// ValidateCredentialID checks the length of a passkey credential ID.
func ValidateCredentialID(id []byte) error {
	if len(id) == 0 || len(id) > MaxCredentialIDLen {
		return invalid("credential ID must be 1 to %d bytes", MaxCredentialIDLen)
	}
	return nil
}

// ValidatePasskey checks what a Factors store requires of p (but not the
// number of the user's passkeys, which the store counts).
func ValidatePasskey(p *Passkey) error {
	if p.UserID == "" {
		return invalid("passkey without a user")
	}
	if err := ValidateCredentialID(p.CredentialID); err != nil {
		return err
	}
	if err := ValidatePasskeyName(p.Name); err != nil {
		return err
	}
	switch {
	case len(p.PublicKey) == 0 || len(p.PublicKey) > MaxPublicKeyLen:
		return invalid("passkey public key must be 1 to %d bytes", MaxPublicKeyLen)
	case len(p.AAGUID) > 16:
		return invalid("passkey AAGUID must be at most 16 bytes")
	case len(p.AttestationType) > 32:
		return invalid("passkey attestation type must be at most 32 bytes")
	case len(p.Transports) > MaxTransports:
		return invalid("at most %d passkey transports", MaxTransports)
	}
	for _, tr := range p.Transports {
		if tr == "" || len(tr) > 32 {
			return invalid("a passkey transport must be 1 to 32 bytes")
		}
	}
	return nil
}

// ValidateChallenge checks what a Factors store requires of c.
func ValidateChallenge(c *Challenge) error {
	switch {
	case len(c.ID) < 16 || len(c.ID) > 256:
		return invalid("challenge ID must be 16 to 256 bytes")
	case c.Kind == "" || len(c.Kind) > 64:
		return invalid("challenge kind must be 1 to 64 bytes")
	case len(c.UserID) > 64:
		return invalid("challenge user ID must be at most 64 bytes")
	case len(c.Data) > MaxChallengeData:
		return invalid("challenge data must be at most %d bytes", MaxChallengeData)
	case c.ExpiresAt.IsZero():
		return invalid("challenge without an expiry")
	}
	return nil
}
