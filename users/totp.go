package users

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"image/color"
	"time"

	"github.com/boombuler/barcode/qr"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// The TOTP parameters (RFC 6238) sessiond issues and checks: the ones
// every authenticator app supports, and Google Authenticator's only ones.
const (
	// TOTPPeriod is the length of a time step.
	TOTPPeriod = 30 * time.Second
	// TOTPDigits is the length of a code.
	TOTPDigits = 6
	// TOTPSkew is how many steps before and after the present a code may
	// be from, for clocks that drift and codes typed late.
	TOTPSkew = 1
	// TOTPSecretSize is the size of a secret in bytes: 160 bits, the
	// size of an HMAC-SHA-1 key (RFC 4226 §4 asks for at least 128).
	TOTPSecretSize = 20
	// DefaultTOTPIssuer names sessiond in authenticator apps when no
	// other issuer is configured.
	DefaultTOTPIssuer = "sessiond"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// TOTPKey is what a user's authenticator app needs to enrol: the secret,
// as base32 text to type, and the otpauth:// URL a QR code carries.
type TOTPKey struct {
	Secret     []byte
	SecretText string
	URL        string
}

// NewTOTPKey returns a key with a fresh secret from crypto/rand, for
// account (the username) at issuer ("" for DefaultTOTPIssuer).
func NewTOTPKey(issuer, account string) (*TOTPKey, error) {
	secret := make([]byte, TOTPSecretSize)
	rand.Read(secret)
	return TOTPKeyFor(secret, issuer, account)
}

// TOTPKeyFor returns the key for a stored secret.
func TOTPKeyFor(secret []byte, issuer, account string) (*TOTPKey, error) {
	if issuer == "" {
		issuer = DefaultTOTPIssuer
	}
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      uint(TOTPPeriod / time.Second),
		Secret:      secret,
		Digits:      otp.DigitsSix,
		Algorithm:   otp.AlgorithmSHA1,
	})
	if err != nil {
		return nil, fmt.Errorf("users: totp key: %w", err)
	}
	return &TOTPKey{Secret: secret, SecretText: k.Secret(), URL: k.URL()}, nil
}

// QR returns the QR code of the key's URL, as rows of modules (true for
// dark), without the quiet zone a renderer must leave around it. Medium
// error correction keeps it small enough to scan from a screen.
func (k *TOTPKey) QR() ([][]bool, error) {
	code, err := qr.Encode(k.URL, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("users: qr code: %w", err)
	}
	b := code.Bounds()
	rows := make([][]bool, b.Dy())
	for y := range rows {
		rows[y] = make([]bool, b.Dx())
		for x := range rows[y] {
			rows[y][x] = color.GrayModel.Convert(code.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y < 128
		}
	}
	return rows, nil
}

// ParseTOTPCode returns the TOTPDigits ASCII digits of a code as a user
// typed it, with any spaces or dashes (some apps show "123 456") taken
// out, or false if it is not one. Input longer than 32 bytes is refused
// unread.
func ParseTOTPCode(s string) (string, bool) {
	if len(s) > 32 {
		return "", false
	}
	var b [TOTPDigits]byte
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '-' || c == '\t':
		case '0' <= c && c <= '9' && n < TOTPDigits:
			b[n] = c
			n++
		default:
			return "", false
		}
	}
	if n != TOTPDigits {
		return "", false
	}
	return string(b[:]), true
}

// TOTPStep returns the time step t falls in.
func TOTPStep(t time.Time) int64 { return t.Unix() / int64(TOTPPeriod/time.Second) }

// TOTPCode returns the code of secret for time step step.
func TOTPCode(secret []byte, step int64) (string, error) {
	if step < 0 {
		return "", fmt.Errorf("users: totp step %d before 1970", step)
	}
	return hotp.GenerateCodeCustom(b32.EncodeToString(secret), uint64(step), hotp.ValidateOpts{
		Digits:    otp.DigitsSix,
		Algorithm: otp.AlgorithmSHA1,
	})
}

// MatchTOTP returns the earliest time step after `after`, within TOTPSkew
// steps of now, whose code of secret is code (as ParseTOTPCode returns
// it), or false if there is none. Codes are compared in constant time.
// The caller records the step (Factors.UseTOTPStep), so that the code, and
// every code of an earlier step, is refused from then on.
func MatchTOTP(secret []byte, code string, now time.Time, after int64) (int64, bool) {
	if len(code) != TOTPDigits {
		return 0, false
	}
	cur := TOTPStep(now)
	found, step := 0, int64(0)
	for s := cur + TOTPSkew; s >= cur-TOTPSkew; s-- { // every step, so the time does not tell which matched
		want, err := TOTPCode(secret, s)
		if err != nil {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && s > after {
			found, step = 1, s
		}
	}
	return step, found == 1
}
