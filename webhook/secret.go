package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// SecretPrefix begins every secret in Standard Webhooks' format.
const SecretPrefix = "whsec_"

// The bounds on a secret's decoded length, in bytes.
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// ErrSecret is returned by ParseSecret for a string that is not a secret.
// Its message never quotes the string.
var ErrSecret = errors.New("webhook: a secret is whsec_ followed by the standard base64 of 24 to 64 bytes (make one with `sessiond webhooks secret`)")

// ParseSecret decodes a secret in Standard Webhooks' format: "whsec_" and
// the standard (padded) base64 encoding of 24 to 64 random bytes. It
// returns the bytes that sign. Its error never holds s.
func ParseSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	// The longest valid encoding is that of MaxSecretBytes; refuse more
	// before decoding anything.
	if !ok || len(rest) > base64.StdEncoding.EncodedLen(MaxSecretBytes) {
		return nil, ErrSecret
	}
	key, err := base64.StdEncoding.Strict().DecodeString(rest)
	// The decoder skips line breaks; only the canonical text is a secret.
	if err != nil || len(key) < MinSecretBytes || len(key) > MaxSecretBytes || base64.StdEncoding.EncodeToString(key) != rest {
		return nil, ErrSecret
	}
	return key, nil
}

// NewSecret returns a fresh secret of 32 random bytes, in Standard
// Webhooks' format.
func NewSecret() string {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand)
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// Sign returns the value of the webhook-signature header of a message
// with ID id, sent at unix time ts with body body, under key (a secret's
// decoded bytes): "v1," and the standard base64 of HMAC-SHA256 over
// "{id}.{ts}.{body}", as Standard Webhooks specify.
func Sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
