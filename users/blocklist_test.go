package users

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestBlocklistData checks the form that isCommonPassword relies on: one
// password a line, in the form passwordKey returns, at least
// MinPasswordLen characters long (shorter ones are refused for their
// length), sorted by byte value without duplicates (for the binary
// search), and a size that keeps the binary small.
func TestBlocklistData(t *testing.T) {
	if !strings.HasSuffix(blocklistData, "\n") {
		t.Errorf("blocklist.txt does not end in a newline")
	}
	if n := len(blocklistData); n > 300<<10 {
		t.Errorf("blocklist.txt: got %d bytes, want at most 300 KiB", n)
	}
	list := blocklist()
	if n := len(list); n < 10_000 || n > 100_000 {
		t.Errorf("blocklist: got %d passwords, want 10,000 to 100,000", n)
	}
	for i, w := range list {
		if key := passwordKey(normalizePassword(w)); key != w {
			t.Errorf("blocklist line %d: got %q, want it in the form passwordKey returns, %q", i+1, w, key)
		}
		if n := utf8.RuneCountInString(w); n < MinPasswordLen {
			t.Errorf("blocklist line %d: got %q, %d characters, want at least MinPasswordLen (%d)", i+1, w, n, MinPasswordLen)
		}
		if i > 0 && list[i-1] >= w {
			t.Errorf("blocklist lines %d and %d: got %q then %q, want strictly increasing", i, i+1, list[i-1], w)
		}
	}
	for _, w := range contextWords {
		if key := passwordKey(normalizePassword(w)); key != w {
			t.Errorf("context word: got %q, want it in the form passwordKey returns, %q", w, key)
		}
	}
}

func TestIsCommonPassword(t *testing.T) {
	list := blocklist()
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{list[0], true},
		{list[len(list)/2], true},
		{list[len(list)-1], true},
		{"password", true},
		{"letmein1", true},
		{"", false},
		{list[0][:len(list[0])-1], false},
		{list[len(list)-1] + "z", false},
		{"correct horse battery staple", false},
		{"PASSWORD", false}, // not in the form passwordKey returns
	} {
		if got := isCommonPassword(tc.key); got != tc.want {
			t.Errorf("isCommonPassword(%q): got %v, want %v", tc.key, got, tc.want)
		}
	}
}

func BenchmarkIsCommonPassword(b *testing.B) {
	blocklist()
	for _, bc := range []struct{ name, key string }{
		{"found", "iloveyou1"},
		{"not found", "correct horse battery staple"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				isCommonPassword(bc.key)
			}
		})
	}
}

// fuzzParams are the cheapest argon2id parameters, for hashing in a fuzz
// target.
var fuzzParams = Params{Memory: 8, Time: 1, Threads: 1}

// FuzzValidatePassword feeds arbitrary passwords and usernames through
// normalization and validation. It checks that nothing panics; that
// normalizePassword is idempotent and keeps valid UTF-8 valid; that a
// password and its NFKC form are accepted or refused alike; that an
// accepted password meets every rule (length of its NFKC form, not on the
// blocklist, not the username or a context word); and that the hash of an
// accepted password verifies both it and its NFKC form. The seed corpus
// is in testdata/fuzz/FuzzValidatePassword.
func FuzzValidatePassword(f *testing.F) {
	f.Add("correct horse battery staple", "alice")
	f.Fuzz(func(t *testing.T, password, username string) {
		normalized := normalizePassword(password)
		if again := normalizePassword(normalized); again != normalized {
			t.Fatalf("normalizePassword(%q) = %q, and normalizing that gives %q", password, normalized, again)
		}
		if utf8.ValidString(password) && !utf8.ValidString(normalized) {
			t.Fatalf("normalizePassword(%q) = %q, not valid UTF-8", password, normalized)
		}

		err := ValidatePasswordFor(username, password)
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("ValidatePasswordFor(%q, %q) = %v, which does not wrap ErrInvalid", username, password, err)
		}
		if len(password) <= MaxPasswordLen && utf8.ValidString(password) {
			if errN := ValidatePasswordFor(username, normalized); (err == nil) != (errN == nil) {
				t.Fatalf("ValidatePasswordFor(%q, %q) = %v, but for its NFKC form %q: %v", username, password, err, normalized, errN)
			}
		}
		if err != nil {
			return
		}
		key := passwordKey(normalized)
		switch {
		case len(password) > MaxPasswordLen || len(normalized) > MaxPasswordLen:
			t.Fatalf("ValidatePasswordFor accepted %q of %d bytes, %d in NFKC form", password, len(password), len(normalized))
		case utf8.RuneCountInString(normalized) < MinPasswordLen:
			t.Fatalf("ValidatePasswordFor accepted %q, %d characters in NFKC form", password, utf8.RuneCountInString(normalized))
		case isCommonPassword(key):
			t.Fatalf("ValidatePasswordFor accepted %q, on the blocklist as %q", password, key)
		case slices.Contains(contextWords, key):
			t.Fatalf("ValidatePasswordFor accepted %q, a context word", password)
		case username != "" && key == passwordKey(normalizePassword(username)):
			t.Fatalf("ValidatePasswordFor accepted %q, the username %q", password, username)
		}
		if err := ValidatePassword(password); err != nil {
			t.Fatalf("ValidatePasswordFor(%q, %q) accepts, ValidatePassword refuses: %v", username, password, err)
		}

		hash := HashPassword(password, fuzzParams)
		for _, p := range []string{password, normalized} {
			if ok, err := VerifyPassword(p, hash); !ok || err != nil {
				t.Fatalf("VerifyPassword(%q, hash of %q) = %v, %v, want true, nil", p, password, ok, err)
			}
		}
	})
}
