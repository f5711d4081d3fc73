// Package users keeps sessiond's accounts: usernames, stable IDs, argon2id
// password hashes, roles and a disabled flag, in a Directory, and checks
// credentials without telling which usernames exist. Beside a Directory, a
// Factors store keeps each user's second factors (TOTP enrolments,
// recovery code hashes, passkeys) and short-lived sign-in challenges; this
// package makes and checks TOTP codes (RFC 6238) and recovery codes.
package users

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

var (
	// ErrNotFound means there is no such user, or (from Factors) no such
	// enrolment, recovery code, passkey or live challenge.
	ErrNotFound = errors.New("users: no such user")
	// ErrExists means the username is taken, or (from Factors) the
	// passkey credential ID or challenge ID.
	ErrExists = errors.New("users: username taken")
	// ErrBadCredentials means the username or the password is wrong; which
	// one is deliberately not told.
	ErrBadCredentials = errors.New("users: wrong username or password")
	// ErrDisabled means the credentials are right but the account is
	// disabled.
	ErrDisabled = errors.New("users: account disabled")
	// ErrBusy means too many password checks are already running; the
	// caller should answer 503 and let the client retry.
	ErrBusy = errors.New("users: too many logins in progress")
	// ErrInvalid is wrapped by errors about bad input (a username or
	// password that breaks the rules), whose message says what is wrong.
	ErrInvalid = errors.New("users: invalid")
	// ErrConflict means the user changed since it was read: its stored
	// Version is not the one the change was made from. Read it again and
	// redo the change.
	ErrConflict = errors.New("users: account changed concurrently")
	// ErrLastAdmin means the change would leave no enabled user with the
	// admin role, which nobody could then undo but from the command line.
	ErrLastAdmin = errors.New("users: the last admin must stay an enabled admin")
)

// RoleAdmin is the role that may use the admin API and console. A
// Directory keeps at least one enabled user with it once there is one.
const RoleAdmin = "admin"

// User is an account.
type User struct {
	// ID is stable and random; sessions and audit events refer to it.
	ID string
	// Username is what the user types to log in: 1–64 characters of
	// letters, digits and ._@-.
	Username string
	// Roles name what the user may do; "admin" may use the admin API.
	Roles []string
	// Disabled accounts cannot log in and hold no sessions.
	Disabled bool
	// PasswordHash is the argon2id hash in PHC format.
	PasswordHash string
	// CreatedAt is when the account was added.
	CreatedAt time.Time
	// UpdatedAt is when the account last changed (password, roles or
	// disabled flag).
	UpdatedAt time.Time
	// Version counts the changes to the account: Create stores 1, and
	// every Update one more. A login compares it before and after it
	// creates a session, so that no session outlives a change made
	// meanwhile; Update compares it to refuse a change made from a stale
	// read.
	Version int64
}

// IsActiveAdmin reports whether u counts as an admin for the last-admin
// rule: enabled and holding RoleAdmin.
func (u *User) IsActiveAdmin() bool { return !u.Disabled && u.HasRole(RoleAdmin) }

// HasRole reports whether u has role.
func (u *User) HasRole(role string) bool { return slices.Contains(u.Roles, role) }

// Directory stores accounts. Implementations must be safe for concurrent
// use, by several processes sharing one storage too; a username is unique,
// compared exactly. Packages sqliteusers and pgusers keep one in SQLite
// and PostgreSQL; users/directorytest is the suite every one passes.
type Directory interface {
	// Create adds u with Version 1 (it sets u.Version), or returns
	// ErrExists if its username is taken.
	Create(ctx context.Context, u *User) error
	// ByID and ByUsername return the user, or ErrNotFound.
	ByID(ctx context.Context, id string) (*User, error)
	ByUsername(ctx context.Context, username string) (*User, error)
	// List returns every user, ordered by username.
	List(ctx context.Context) ([]*User, error)
	// Update replaces the stored user u.ID with u if the stored Version
	// is u.Version, and sets the stored and u's Version to one more. It
	// returns ErrNotFound if there is no such user, ErrConflict if the
	// Version differs (nothing is written), ErrExists if u's username is
	// another user's, and ErrLastAdmin if the stored user is an enabled
	// admin and u is not, while no other enabled admin exists. The check
	// and the write are atomic: two changes that each remove one of the
	// last two admins cannot both succeed.
	Update(ctx context.Context, u *User) error
	// Delete removes the stored user u.ID if its Version is u.Version,
	// with the errors of Update (ErrLastAdmin for the last enabled
	// admin). Audit events about the user stay.
	Delete(ctx context.Context, u *User) error
	// Count returns the number of users.
	Count(ctx context.Context) (int, error)
}

// Accounts checks credentials and manages users in a Directory.
type Accounts struct {
	dir    Directory
	params Params
	// slots bounds concurrent password hashing, so that a login flood
	// cannot take every core from request handling.
	slots chan struct{}
	// wait is how long a login waits for a hashing slot before ErrBusy.
	wait time.Duration
	// fake is a real hash of a random password, verified for unknown
	// usernames so that they cost the same time as known ones.
	fake string
	now  func() time.Time
}

// NewAccounts returns Accounts over dir hashing with p; each zero field of p
// takes its value from DefaultParams.
func NewAccounts(dir Directory, p Params) *Accounts {
	if p.Memory == 0 {
		p.Memory = DefaultParams.Memory
	}
	if p.Time == 0 {
		p.Time = DefaultParams.Time
	}
	if p.Threads == 0 {
		p.Threads = DefaultParams.Threads
	}
	return &Accounts{
		dir:    dir,
		params: p,
		slots:  make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1)),
		wait:   2 * time.Second,
		fake:   HashPassword(rand.Text(), p),
		now:    time.Now,
	}
}

// Directory returns the Directory the Accounts use.
func (a *Accounts) Directory() Directory { return a.dir }

// Authenticate returns the user whose username and password these are. It
// returns ErrBadCredentials for an unknown username or a wrong password,
// in the same time (an unknown username is checked against a fake hash),
// ErrDisabled for a disabled account with the right password, ErrBusy when
// the machine is saturated with logins, and another error only for a
// technical failure.
func (a *Accounts) Authenticate(ctx context.Context, username, password string) (*User, error) {
	if len(password) > MaxPasswordLen {
		return nil, ErrBadCredentials
	}
	u, err := a.dir.ByUsername(ctx, username)
	hash := a.fake
	switch {
	case err == nil:
		hash = u.PasswordHash
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	ok, err := a.verify(ctx, password, hash)
	switch {
	case err != nil:
		return nil, err
	case !ok || u == nil:
		return nil, ErrBadCredentials
	case u.Disabled:
		return nil, ErrDisabled
	}
	return u, nil
}

// CheckPassword reports whether password is u's current password.
func (a *Accounts) CheckPassword(ctx context.Context, u *User, password string) (bool, error) {
	if len(password) > MaxPasswordLen {
		return false, nil
	}
	return a.verify(ctx, password, u.PasswordHash)
}

// verify runs VerifyPassword in a hashing slot.
func (a *Accounts) verify(ctx context.Context, password, hash string) (bool, error) {
	release, err := a.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	ok, err := VerifyPassword(password, hash)
	if errors.Is(err, errBadHash) {
		return false, fmt.Errorf("users: stored hash unreadable: %w", err)
	}
	return ok, err
}

// hash runs HashPassword in a hashing slot.
func (a *Accounts) hash(ctx context.Context, password string) (string, error) {
	release, err := a.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return HashPassword(password, a.params), nil
}

func (a *Accounts) acquire(ctx context.Context) (func(), error) {
	t := time.NewTimer(a.wait)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, nil
	case <-t.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

var usernameRE = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// ValidateUsername reports whether name is an acceptable username: 1 to 64
// letters, digits or ._@-, and not shaped like a user ID (see IsUserID), so
// that no username can be read as another user's ID.
func ValidateUsername(name string) error {
	if !usernameRE.MatchString(name) {
		return fmt.Errorf("%w: username must be 1 to 64 letters, digits or . _ @ -", ErrInvalid)
	}
	if IsUserID(name) {
		return fmt.Errorf("%w: username must not have the form of a user ID (u_ and 16 characters)", ErrInvalid)
	}
	return nil
}

// userIDLen is the length of a user ID: "u_" and 16 base64url characters.
const userIDLen = 2 + 16

// IsUserID reports whether ref has the form of a user ID.
func IsUserID(ref string) bool {
	if len(ref) != userIDLen || !strings.HasPrefix(ref, "u_") {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(ref[2:])
	return err == nil
}

var roleRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// normalizeRoles checks roles and returns them sorted without duplicates.
func normalizeRoles(roles []string) ([]string, error) {
	out := slices.Clone(roles)
	for _, r := range out {
		if !roleRE.MatchString(r) {
			return nil, fmt.Errorf("%w: role %q must be 1 to 32 lowercase letters, digits, _ or -", ErrInvalid, r)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Add creates a user with a fresh ID.
func (a *Accounts) Add(ctx context.Context, username, password string, roles []string) (*User, error) {
	if err := ValidateUsername(username); err != nil {
		return nil, err
	}
	if err := ValidatePasswordFor(username, password); err != nil {
		return nil, err
	}
	roles, err := normalizeRoles(roles)
	if err != nil {
		return nil, err
	}
	hash, err := a.hash(ctx, password)
	if err != nil {
		return nil, err
	}
	now := a.now().UTC().Truncate(time.Microsecond)
	u := &User{ID: newUserID(), Username: username, Roles: roles, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	if err := a.dir.Create(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// SetPassword replaces u's password.
func (a *Accounts) SetPassword(ctx context.Context, u *User, password string) error {
	if err := ValidatePasswordFor(u.Username, password); err != nil {
		return err
	}
	hash, err := a.hash(ctx, password)
	if err != nil {
		return err
	}
	u.PasswordHash = hash
	return a.save(ctx, u)
}

// SetRoles replaces u's roles.
func (a *Accounts) SetRoles(ctx context.Context, u *User, roles []string) error {
	roles, err := normalizeRoles(roles)
	if err != nil {
		return err
	}
	u.Roles = roles
	return a.save(ctx, u)
}

// SetDisabled disables or re-enables u.
func (a *Accounts) SetDisabled(ctx context.Context, u *User, disabled bool) error {
	u.Disabled = disabled
	return a.save(ctx, u)
}

func (a *Accounts) save(ctx context.Context, u *User) error {
	u.UpdatedAt = a.now().UTC().Truncate(time.Microsecond)
	return a.dir.Update(ctx, u)
}

// Lookup returns the user ref names: by ID if ref has the form of one
// (IsUserID), else by username. A username never has that form, so ref
// is never read as both.
func (a *Accounts) Lookup(ctx context.Context, ref string) (*User, error) {
	if IsUserID(ref) {
		return a.dir.ByID(ctx, ref)
	}
	return a.dir.ByUsername(ctx, ref)
}

func newUserID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "u_" + base64.RawURLEncoding.EncodeToString(b)
}
