package session

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewTokenIsRandomAndHashed(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		tok, h := newToken()
		if len(tok) != TokenLen {
			t.Fatalf("token length %d, want %d", len(tok), TokenLen)
		}
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(raw) < 32 {
			t.Fatalf("token does not carry 256 bits: %d bytes, %v", len(raw), err)
		}
		if h != sha256.Sum256(raw) {
			t.Fatal("hash is not SHA-256 of the token's bytes")
		}
		if seen[tok] {
			t.Fatal("the same token was minted twice")
		}
		seen[tok] = true
		if got, err := ParseToken(tok); err != nil || got != h {
			t.Fatalf("ParseToken(minted token) = %x, %v; want %x", got, err, h)
		}
	}
}

func TestNewIDIsNotAToken(t *testing.T) {
	id := newID()
	if _, err := ParseToken(id); err == nil {
		t.Errorf("a public session ID %q parses as a token", id)
	}
	if newID() == id {
		t.Error("the same ID was minted twice")
	}
}

func TestParseTokenRejectsMalformed(t *testing.T) {
	good, _ := newToken()
	for name, s := range map[string]string{
		"empty":                "",
		"short":                good[:42],
		"long":                 good + "A",
		"padded":               good + "=",
		"standard alphabet":    "+" + good[1:],
		"slash":                "/" + good[1:],
		"space":                " " + good[1:],
		"non-ASCII":            "é" + good[2:],
		"NUL":                  "\x00" + good[1:],
		"non-canonical ending": good[:42] + "B", // low bits of the last character must be zero
		"cookie injection":     good[:40] + ";a=",
	} {
		if _, err := ParseToken(s); err == nil {
			t.Errorf("ParseToken accepted %s input %q", name, s)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	good, _ := newToken()
	for _, s := range []string{good, "", good[:42] + "B", good + "=", strings.Repeat("A", 43), strings.Repeat("_", 43)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseToken(s)
		if err != nil {
			return
		}
		raw, derr := base64.RawURLEncoding.DecodeString(s)
		if derr != nil || len(raw) != 32 || base64.RawURLEncoding.EncodeToString(raw) != s {
			t.Fatalf("ParseToken accepted %q, which is not a canonical 32-byte token", s)
		}
		if h != sha256.Sum256(raw) {
			t.Fatalf("ParseToken(%q) returned the wrong hash", s)
		}
	})
}
