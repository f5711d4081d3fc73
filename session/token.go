package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// tokenBytes is the entropy of a session token: 256 bits, twice the 128
// bits OWASP's Session Management Cheat Sheet asks for, so that guessing a
// live token stays hopeless however many sessions exist.
const tokenBytes = 32

// TokenLen is the length of a token in its text form: 32 bytes in unpadded
// base64url.
const TokenLen = 43

// Hash is the SHA-256 digest of a token. Stores index sessions by it and
// never see the token itself, so a dump of a store holds no usable
// credential.
type Hash [sha256.Size]byte

// IsZero reports whether h is the zero Hash (no token).
func (h Hash) IsZero() bool { return h == Hash{} }

// errMalformed is returned by ParseToken for anything that is not a token
// this package could have minted.
var errMalformed = errors.New("session: malformed token")

// newToken returns a fresh random token and its hash.
func newToken() (string, Hash) {
	var b [tokenBytes]byte
	rand.Read(b[:]) // never returns an error (crypto/rand docs); it crashes the program instead
	return base64.RawURLEncoding.EncodeToString(b[:]), sha256.Sum256(b[:])
}

// ParseToken checks that s has the exact shape of a token minted by this
// package (43 characters of canonical unpadded base64url) and returns its
// hash. It costs no store lookup, so malformed input from the network is
// rejected before it reaches a store.
func ParseToken(s string) (Hash, error) {
	if len(s) != TokenLen {
		return Hash{}, errMalformed
	}
	var src [TokenLen]byte
	copy(src[:], s) // a stack copy: converting s to []byte would allocate
	var b [tokenBytes]byte
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], src[:])
	if err != nil || n != tokenBytes {
		return Hash{}, errMalformed
	}
	return sha256.Sum256(b[:]), nil
}

// newID returns a random public session ID: 128 bits in unpadded base64url.
// It names a session in lists, logs and APIs and is never a credential.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
