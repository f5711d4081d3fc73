package users

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultParams are OWASP's Password Storage Cheat Sheet recommendation for
// argon2id: 19 MiB of memory, 2 passes, 1 thread.
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
	// MaxPasswordLen bounds the bytes of the passwords accepted, as typed
	// and in NFKC form, so that a megabyte "password" cannot be used to
	// burn CPU. It allows 256 characters or more in any script, above the
	// 64 that NIST SP 800-63B asks verifiers to permit.
	MaxPasswordLen = 1024
	// MinPasswordLen is the fewest characters a new password has: Unicode
	// code points of its NFKC form, so that "é" counts once however it
	// was typed (NIST SP 800-63B-4 §3.1.1.2, rev. 3 §5.1.1.2: at least 8).
	MinPasswordLen = 8
)

var errBadHash = errors.New("users: malformed password hash")

// HashPassword returns the argon2id hash of password in Unicode
// Normalization Form KC (NFKC, as ValidatePassword and VerifyPassword
// take it) with a fresh salt, in the PHC string format
// ($argon2id$v=19$m=...,t=...,p=...$salt$key).
func HashPassword(password string, p Params) string {
	salt := make([]byte, saltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(normalizePassword(password)), salt, p.Time, p.Memory, p.Threads, keyLen)
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads, b64(salt), b64(key))
}

// VerifyPassword reports whether password matches hash, comparing in
// constant time. It returns an error only for a malformed hash, and then
// before any hashing.
//
// It hashes the NFKC form of password, as HashPassword does, so that a
// password matches however its characters were composed or typed. A hash
// of the exact bytes of a password that is not in NFKC form (one made
// without normalization) matches those bytes too: when password differs
// from its NFKC form, VerifyPassword hashes both forms, whatever the first
// one gave. Its cost thus depends on password alone, one argon2id run if
// it is in NFKC form and two if not, never on hash or on which form
// matched, so that the time taken tells nothing about the account (an
// unknown username, verified against a fake hash, takes the same time).
func VerifyPassword(password, hash string) (bool, error) {
	p, salt, key, err := parseHash(hash)
	if err != nil {
		return false, err
	}
	normalized := normalizePassword(password)
	ok := hashMatches(normalized, p, salt, key)
	if normalized != password {
		raw := hashMatches(password, p, salt, key)
		ok = ok || raw
	}
	return ok, nil
}

// hashMatches reports whether the argon2id hash of password with p and
// salt is key, comparing in constant time.
func hashMatches(password string, p Params, salt, key []byte) bool {
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

// normalizePassword returns password in Unicode Normalization Form KC,
// the form in which passwords are hashed, verified and measured. NIST SP
// 800-63B-4 §3.1.1.2 (rev. 3 §5.1.1.2) recommends NFKC or NFKD, so that
// one password typed on different systems is one password: "é" as U+00E9
// or as "e" and U+0301, full-width digits from an input method as ASCII
// digits, the ligature "ﬁ" as "fi". It is idempotent, and returns valid
// UTF-8 for valid UTF-8.
func normalizePassword(password string) string {
	return norm.NFKC.String(password)
}

// passwordKey returns the form in which ValidatePassword compares a
// password in NFKC form with the blocklist, the username and the
// context-specific words: lower case, so that "PassWord1" is "password1".
func passwordKey(normalized string) string {
	return strings.ToLower(normalized)
}

// ValidatePassword reports whether password is acceptable as a new
// password, following NIST SP 800-63B-4 §3.1.1.2 (rev. 3 §5.1.1.2). It
// must be valid UTF-8, of at most MaxPasswordLen bytes as typed and in
// NFKC form, and of at least MinPasswordLen characters in NFKC form; and,
// compared in NFKC form and case-insensitively, be neither on the
// blocklist of common and breached passwords shipped with sessiond nor a
// context-specific word ("sessiond"). There are no composition rules: no
// required digits, symbols or mixed case. The error wraps ErrInvalid and
// its message, fit to show the user, says what is wrong.
//
// ValidatePasswordFor also refuses the username.
func ValidatePassword(password string) error {
	return ValidatePasswordFor("", password)
}

// ValidatePasswordFor reports whether password is acceptable as the new
// password of the user username: it applies ValidatePassword's rules, and
// refuses a password that is the username, compared as the blocklist is
// (NIST SP 800-63B-4 §3.1.1.2 names the username as a context-specific
// word). An empty username is no user: ValidatePasswordFor("", p) is
// ValidatePassword(p).
func ValidatePasswordFor(username, password string) error {
	if len(password) > MaxPasswordLen {
		return fmt.Errorf("%w: password must be at most %d bytes", ErrInvalid, MaxPasswordLen)
	}
	if !utf8.ValidString(password) {
		return fmt.Errorf("%w: password must be valid UTF-8 text", ErrInvalid)
	}
	normalized := normalizePassword(password)
	if len(normalized) > MaxPasswordLen {
		return fmt.Errorf("%w: password must be at most %d bytes", ErrInvalid, MaxPasswordLen)
	}
	if utf8.RuneCountInString(normalized) < MinPasswordLen {
		return fmt.Errorf("%w: password must be at least %d characters", ErrInvalid, MinPasswordLen)
	}
	key := passwordKey(normalized)
	if username != "" && key == passwordKey(normalizePassword(username)) {
		return fmt.Errorf("%w: password must not be the username", ErrInvalid)
	}
	for _, w := range contextWords {
		if key == w {
			return fmt.Errorf("%w: password is the name of this service; choose another", ErrInvalid)
		}
	}
	if isCommonPassword(key) {
		return fmt.Errorf("%w: password is too common; choose another", ErrInvalid)
	}
	return nil
}

// parseHash splits a PHC argon2id string. It bounds the parameters (at most
// 256 MiB, 16 passes, 16 threads) so that a tampered hash cannot make
// verification allocate gigabytes.
func parseHash(hash string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errBadHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, errBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, errBadHash
	}
	if p.Memory < 8 || p.Memory > 256<<10 || p.Time < 1 || p.Time > 16 || p.Threads < 1 || p.Threads > 16 {
		return p, nil, nil, errBadHash
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, errBadHash
	}
	return p, salt, key, nil
}
