package users

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
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
	// MaxPasswordLen bounds the passwords accepted, so that a megabyte
	// "password" cannot be used to burn CPU.
	MaxPasswordLen = 1024
	// MinPasswordLen is the shortest password accepted for new passwords
	// (NIST SP 800-63B §5.1.1.2: at least 8 characters).
	MinPasswordLen = 8
)

var errBadHash = errors.New("users: malformed password hash")

// HashPassword returns the argon2id hash of password with a fresh salt, in
// the PHC string format ($argon2id$v=19$m=...,t=...,p=...$salt$key).
func HashPassword(password string, p Params) string {
	salt := make([]byte, saltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads, b64(salt), b64(key))
}

// VerifyPassword reports whether password matches hash, comparing in
// constant time. It returns an error only for a malformed hash.
func VerifyPassword(password, hash string) (bool, error) {
	p, salt, key, err := parseHash(hash)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
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
