package users

import (
	"crypto/rand"
	"crypto/sha256"
	"strings"
)

// Recovery codes let a user sign in once each when the authenticator is
// lost. A set is RecoveryCodeCount codes; each is RecoveryCodeLen
// characters of Crockford's base32 alphabet (digits and lowercase letters
// but i, l, o and u), so 60 bits from crypto/rand, shown as
// "xxxx-xxxx-xxxx".
const (
	RecoveryCodeCount = 10
	RecoveryCodeLen   = 12
)

// recoveryAlphabet is Crockford's base32 alphabet, in lowercase.
const recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// NewRecoveryCodes returns a fresh set of recovery codes, formatted for
// typing.
func NewRecoveryCodes() []string {
	codes := make([]string, RecoveryCodeCount)
	for i := range codes {
		var raw [RecoveryCodeLen]byte
		rand.Read(raw[:])
		var b strings.Builder
		for j, r := range raw {
			if j > 0 && j%4 == 0 {
				b.WriteByte('-')
			}
			b.WriteByte(recoveryAlphabet[r&31]) // 256 is a multiple of 32: no bias
		}
		codes[i] = b.String()
	}
	return codes
}

// NormalizeRecoveryCode returns a recovery code as a user typed it in its
// canonical form (RecoveryCodeLen characters of the alphabet, without
// dashes), or false if it cannot be one. It ignores case, spaces and
// dashes, and reads o as 0 and i and l as 1, as Crockford's base32 does,
// so that a code copied by hand still counts. Input longer than 64 bytes
// is refused unread.
func NormalizeRecoveryCode(s string) (string, bool) {
	if len(s) > 64 {
		return "", false
	}
	var b [RecoveryCodeLen]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		switch c {
		case ' ', '-', '\t':
			continue
		case 'o':
			c = '0'
		case 'i', 'l':
			c = '1'
		}
		if strings.IndexByte(recoveryAlphabet, c) < 0 || n == RecoveryCodeLen {
			return "", false
		}
		b[n] = c
		n++
	}
	if n != RecoveryCodeLen {
		return "", false
	}
	return string(b[:]), true
}

// HashRecoveryCode returns what a Factors store keeps of userID's recovery
// code (in the canonical form NormalizeRecoveryCode returns): SHA-256 of
// the user ID and the code. A fast hash suffices, unlike for passwords,
// because a code is 60 random bits, not something a person chose: finding
// one from its hash takes about 2^59 hashes, and the user ID in the hash
// makes each guess good for one user only. Online guesses are throttled.
func HashRecoveryCode(userID, code string) []byte {
	h := sha256.New()
	h.Write([]byte("sessiond recovery code\x00"))
	h.Write([]byte(userID))
	h.Write([]byte{0})
	h.Write([]byte(code))
	return h.Sum(nil)
}
