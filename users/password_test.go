package users_test

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"

	"github.com/sessiond/sessiond/users"
)

// testParams are cheap argon2id parameters, so that tests hash quickly.
var testParams = users.Params{Memory: 64, Time: 1, Threads: 1}

func TestDefaultParamsAreOWASP(t *testing.T) {
	// OWASP Password Storage Cheat Sheet: argon2id with 19 MiB of memory,
	// an iteration count of 2 and 1 degree of parallelism.
	want := users.Params{Memory: 19 * 1024, Time: 2, Threads: 1}
	if users.DefaultParams != want {
		t.Errorf("DefaultParams: got %+v, want %+v", users.DefaultParams, want)
	}
	// Zero Params mean DefaultParams.
	acc := users.NewAccounts(openDir(t), users.Params{})
	u, err := acc.Add(ctx, "alice", "correct horse", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash with zero Params: got %q, want m=19456,t=2,p=1", u.PasswordHash)
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	for _, password := range []string{"correct horse battery staple", "", "пароль-密码-🔑", strings.Repeat("x", users.MaxPasswordLen)} {
		hash := users.HashPassword(password, testParams)
		if ok, err := users.VerifyPassword(password, hash); !ok || err != nil {
			t.Errorf("VerifyPassword(%q, its hash): got %v, %v, want true, nil", password, ok, err)
		}
		for _, other := range []string{password + "x", strings.ToUpper(password) + "!", password[:len(password)/2] + "?"} {
			if ok, err := users.VerifyPassword(other, hash); ok || err != nil {
				t.Errorf("VerifyPassword(%q, hash of %q): got %v, %v, want false, nil", other, password, ok, err)
			}
		}
	}
	// A fresh salt each time: the same password hashes differently.
	if a, b := users.HashPassword("pw", testParams), users.HashPassword("pw", testParams); a == b {
		t.Errorf("two hashes of one password are equal: %q", a)
	}
}

func TestHashPasswordFormat(t *testing.T) {
	// PHC string format: $argon2id$v=19$m=<KiB>,t=<passes>,p=<threads>$<salt>$<key>,
	// salt (16 bytes) and key (32 bytes) in unpadded standard base64.
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if hash := users.HashPassword("pw", testParams); !phc.MatchString(hash) {
		t.Errorf("HashPassword: got %q, want it to match %s", hash, phc)
	}
	hash := users.HashPassword("pw", users.Params{Memory: 128, Time: 3, Threads: 2})
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=128,t=3,p=2$") {
		t.Errorf("HashPassword with m=128,t=3,p=2: got %q", hash)
	}
}

// malformedHashes are hashes VerifyPassword must reject, cheaply: broken
// strings, and well-formed ones whose cost parameters would make
// verification take gigabytes or minutes.
var malformedHashes = map[string]string{
	"empty":                "",
	"dollar":               "$",
	"bcrypt":               "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
	"argon2i":              "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"argon2d":              "$argon2d$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"version 16":           "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"no version":           "$argon2id$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"extra field":          "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw$x",
	"no leading dollar":    "argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"params reordered":     "$argon2id$v=19$t=1,m=64,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"memory zero":          "$argon2id$v=19$m=0,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"memory negative":      "$argon2id$v=19$m=-64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"memory 1 GiB + 1 KiB": "$argon2id$v=19$m=1048577,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"memory 4 TiB":         "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"memory overflows":     "$argon2id$v=19$m=99999999999999999999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"time zero":            "$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"time 17":              "$argon2id$v=19$m=64,t=17,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"time huge":            "$argon2id$v=19$m=64,t=4294967295,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"threads zero":         "$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"threads 17":           "$argon2id$v=19$m=64,t=1,p=17$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"threads 256":          "$argon2id$v=19$m=64,t=1,p=256$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"salt not base64":      "$argon2id$v=19$m=64,t=1,p=1$c2Fsd!NhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
	"salt padded":          "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5aw",
	"salt 7 bytes":         "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbA$a2V5a2V5a2V5a2V5a2V5aw",
	"salt empty":           "$argon2id$v=19$m=64,t=1,p=1$$a2V5a2V5a2V5a2V5a2V5aw",
	"key not base64":       "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a-",
	"key 15 bytes":         "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
	"key 65 bytes":         "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 87),
	"key of 768 KiB":       "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 1<<20),
	"key empty":            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$",
}

func TestVerifyPasswordRejectsMalformed(t *testing.T) {
	for name, hash := range malformedHashes {
		var ok bool
		var err error
		alloc := allocated(func() { ok, err = users.VerifyPassword("password", hash) })
		if ok || err == nil {
			t.Errorf("%s: VerifyPassword: got %v, %v, want false and an error", name, ok, err)
		}
		// Rejecting a hash must not cost what verifying it would: at most
		// a copy or two of the hash string itself, never the memory its
		// parameters ask for.
		if limit := uint64(64<<10 + 4*len(hash)); alloc > limit {
			t.Errorf("%s: VerifyPassword allocated %d bytes, want at most %d", name, alloc, limit)
		}
	}
}

// allocated returns the number of bytes the heap grew by while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// FuzzVerifyPassword feeds arbitrary strings to the hash parser, through
// VerifyPassword. It checks that nothing panics; that a hash the parser
// accepts has cost parameters, salt and key within the documented bounds,
// so that no stored hash can make verification allocate more than 1 GiB
// or run more than 16 passes; and, for the hashes cheap enough to verify,
// that VerifyPassword agrees with the parser. The seed corpus is in
// testdata/fuzz/FuzzVerifyPassword.
func FuzzVerifyPassword(f *testing.F) {
	f.Add(users.HashPassword("password", testParams))
	f.Fuzz(func(t *testing.T, hash string) {
		p, salt, key, err := users.ParseHash(hash)
		if err != nil {
			if ok, verr := users.VerifyPassword("password", hash); ok || verr == nil {
				t.Fatalf("ParseHash rejects %q (%v), VerifyPassword returns %v, %v", hash, err, ok, verr)
			}
			return
		}
		if p.Memory < 8 || p.Memory > 1<<20 || p.Time < 1 || p.Time > 16 || p.Threads < 1 || p.Threads > 16 {
			t.Fatalf("ParseHash(%q) accepted the parameters %+v", hash, p)
		}
		if len(salt) < 8 || len(key) < 16 || len(key) > 64 {
			t.Fatalf("ParseHash(%q) accepted a salt of %d bytes and a key of %d", hash, len(salt), len(key))
		}
		// The same values, written canonically, parse the same.
		canon := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.Memory, p.Time, p.Threads, b64(salt), b64(key))
		if p2, salt2, key2, err := users.ParseHash(canon); err != nil || p2 != p || string(salt2) != string(salt) || string(key2) != string(key) {
			t.Fatalf("ParseHash(%q) = %+v; its canonical form %q parses to %+v, %v", hash, p, canon, p2, err)
		}
		if p.Memory*p.Time <= 1024 {
			if _, err := users.VerifyPassword("password", hash); err != nil {
				t.Fatalf("ParseHash accepts %q, VerifyPassword fails: %v", hash, err)
			}
		}
	})
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// Error messages of ValidatePassword, as the user sees them.
const (
	tooShort  = "users: invalid: password must be at least 8 characters"
	tooLong   = "users: invalid: password must be at most 1024 bytes"
	notUTF8   = "users: invalid: password must be valid UTF-8 text"
	tooCommon = "users: invalid: password is too common; choose another"
	service   = "users: invalid: password is the name of this service; choose another"
	username  = "users: invalid: password must not be the username"
)

// errorText returns err's message, or "" for nil.
func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// validatePasswordCases are passwords and the message ValidatePassword
// refuses them with ("" for accepted), following NIST SP 800-63B-4
// §3.1.1.2: length in characters of the NFKC form, no composition rules,
// a blocklist compared in NFKC form and case-insensitively, and no
// context-specific words.
var validatePasswordCases = []struct {
	name, password, want string
}{
	{"passphrase", "correct horse battery staple", ""},
	{"8 characters, no composition rules", "tq8-vm3k", ""},
	{"only lowercase letters", "quietlymarbled", ""},
	{"8 multibyte characters", "密码密码密码密码", ""},
	{"long random", rand.Text() + rand.Text() + rand.Text(), ""},
	{"longest", strings.Repeat("x", users.MaxPasswordLen), ""},
	{"longest in 2-byte characters", strings.Repeat("é", users.MaxPasswordLen/2), ""},
	{"spaces and symbols", "  ⌘ ¿qué? 🔑  ", ""},
	{"4 ligatures are 8 characters in NFKC", "ﬁﬁﬁﬁ", ""},

	{"empty", "", tooShort},
	{"7 characters", "tq8-vm3", tooShort},
	{"7 multibyte characters", "密码密码密码密", tooShort},
	{"8 code points as typed, 6 characters composed", "re\u0301sume\u0301", tooShort},
	{"over-long", strings.Repeat("x", users.MaxPasswordLen+1), tooLong},
	{"over-long once normalized", strings.Repeat("\ufdfa", 100), tooLong},
	{"not UTF-8", "tq8-vm3k\xff", notUTF8},

	{"password", "password", tooCommon},
	{"12345678", "12345678", tooCommon},
	{"qwertyuiop", "qwertyuiop", tooCommon},
	{"iloveyou1", "iloveyou1", tooCommon},
	{"11111111", "11111111", tooCommon},
	{"password1", "password1", tooCommon},
	{"letmein1", "letmein1", tooCommon},
	{"trustno1", "trustno1", tooCommon},
	{"baseball1", "baseball1", tooCommon},
	{"upper case", "PASSWORD", tooCommon},
	{"mixed case", "LetMeIn1", tooCommon},
	{"full-width digits", "１２３４５６７８", tooCommon},
	{"full-width letters", "ｐａｓｓｗｏｒｄ１", tooCommon},
	{"full-width upper case", "ＱＷＥＲＴＹＵＩＯＰ", tooCommon},

	{"the service's name", "sessiond", service},
	{"the service's name in another case", "SessionD", service},
	{"the service's name in full width", "ｓｅｓｓｉｏｎｄ", service},
}

func TestValidatePassword(t *testing.T) {
	for _, tc := range validatePasswordCases {
		t.Run(tc.name, func(t *testing.T) {
			err := users.ValidatePassword(tc.password)
			if got := errorText(err); got != tc.want {
				t.Errorf("ValidatePassword(%q): got %q, want %q", tc.password, got, tc.want)
			}
			if err != nil && !errors.Is(err, users.ErrInvalid) {
				t.Errorf("ValidatePassword(%q): got %v, want an error wrapping users.ErrInvalid", tc.password, err)
			}
			// Without a username, ValidatePasswordFor is ValidatePassword.
			if got := errorText(users.ValidatePasswordFor("", tc.password)); got != tc.want {
				t.Errorf("ValidatePasswordFor(\"\", %q): got %q, want %q", tc.password, got, tc.want)
			}
		})
	}
}

func TestValidatePasswordFor(t *testing.T) {
	for _, tc := range []struct {
		name, username, password, want string
	}{
		{"the username", "alice.smith", "alice.smith", username},
		{"the username in upper case", "alice.smith", "ALICE.SMITH", username},
		{"the username in full width", "alice.smith", "ａｌｉｃｅ．ｓｍｉｔｈ", username},
		{"the username, given in another case", "Alice.Smith", "alice.smith", username},
		{"a username too short to be a password", "alice", "alice", tooShort},
		{"the username and more", "alice.smith", "alice.smith and her cat", ""},
		{"another user's name", "bob.jones", "alice.smith", ""},
		{"common, whoever sets it", "bob.jones", "password1", tooCommon},
		{"the service's name, whoever sets it", "bob.jones", "sessiond", service},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := users.ValidatePasswordFor(tc.username, tc.password)
			if got := errorText(err); got != tc.want {
				t.Errorf("ValidatePasswordFor(%q, %q): got %q, want %q", tc.username, tc.password, got, tc.want)
			}
			if err != nil && !errors.Is(err, users.ErrInvalid) {
				t.Errorf("ValidatePasswordFor(%q, %q): got %v, want an error wrapping users.ErrInvalid", tc.username, tc.password, err)
			}
		})
	}
}

// TestPasswordFormsMatch checks that one password typed in two forms that
// NFKC makes equal is one password: the hash of either verifies the other.
func TestPasswordFormsMatch(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
	}{
		{"é composed and decomposed", "cr\u00e8me br\u00fbl\u00e9e", "cre\u0300me bru\u0302le\u0301e"},
		{"Hangul syllables and jamo", "\ud55c\uad6d\uc5b4 \ube44\ubc00\ubc88\ud638", norm.NFD.String("\ud55c\uad6d\uc5b4 \ube44\ubc00\ubc88\ud638")},
		{"full-width and ASCII", "ｔａｂｌｅ　ｆｏｒ　４２", "table for 42"},
		{"ligature and letters", "ﬁne ﬂour 2kg", "fine flour 2kg"},
		{"Angstrom sign and letter", "\u212bngstr\u00f6m units", "\u00c5ngstr\u00f6m units"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.a == tc.b {
				t.Fatalf("the two forms are the same bytes %q", tc.a)
			}
			for _, pair := range [][2]string{{tc.a, tc.b}, {tc.b, tc.a}} {
				hash := users.HashPassword(pair[0], testParams)
				if ok, err := users.VerifyPassword(pair[1], hash); !ok || err != nil {
					t.Errorf("VerifyPassword(%q, hash of %q): got %v, %v, want true, nil", pair[1], pair[0], ok, err)
				}
				if ok, err := users.VerifyPassword(pair[1]+"x", hash); ok || err != nil {
					t.Errorf("VerifyPassword(%q, hash of %q): got %v, %v, want false, nil", pair[1]+"x", pair[0], ok, err)
				}
			}
			if a, b := users.ValidatePassword(tc.a), users.ValidatePassword(tc.b); errorText(a) != errorText(b) {
				t.Errorf("ValidatePassword(%q): got %q; of %q: got %q; want the same", tc.a, errorText(a), tc.b, errorText(b))
			}
		})
	}
}

// TestVerifyPasswordAcceptsUnnormalizedHash checks that hashes of the exact
// bytes of passwords not in NFKC form, as HashPassword made them before it
// normalized, still verify those bytes.
func TestVerifyPasswordAcceptsUnnormalizedHash(t *testing.T) {
	for _, tc := range []struct {
		name, password, hash string
	}{
		{"decomposed accents", "cre\u0300me bru\u0302le\u0301e", "$argon2id$v=19$m=64,t=1,p=1$tVGwXj1rMPnhnForYbXSfg$4QRPFbIXXdlrEaapyr5q4HftZhoZZzTChiOYeHyd5yM"},
		{"full-width", "ｔａｂｌｅ　ｆｏｒ　４２", "$argon2id$v=19$m=64,t=1,p=1$ZfAnucCO6lzyK3iPswzaFw$wrUHJkToxIhcTCVS6R4HYXUv7izSNdHVv/lZesAt+r0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ok, err := users.VerifyPassword(tc.password, tc.hash); !ok || err != nil {
				t.Errorf("VerifyPassword(%q, its stored hash): got %v, %v, want true, nil", tc.password, ok, err)
			}
			// Only those bytes: the hash was not made from the NFKC form.
			for _, other := range []string{norm.NFKC.String(tc.password), tc.password + "x", "wrong password"} {
				if ok, err := users.VerifyPassword(other, tc.hash); ok || err != nil {
					t.Errorf("VerifyPassword(%q, stored hash of %q): got %v, %v, want false, nil", other, tc.password, ok, err)
				}
			}
		})
	}
}

func ExampleValidatePassword() {
	for _, password := range []string{"correct horse battery staple", "LetMeIn1", "１２３４５６７８", "sessiond", "short"} {
		fmt.Println(users.ValidatePassword(password))
	}
	fmt.Println(users.ValidatePasswordFor("alice.smith", "Alice.Smith"))
	// Output:
	// <nil>
	// users: invalid: password is too common; choose another
	// users: invalid: password is too common; choose another
	// users: invalid: password is the name of this service; choose another
	// users: invalid: password must be at least 8 characters
	// users: invalid: password must not be the username
}

func BenchmarkValidatePassword(b *testing.B) {
	for _, bc := range []struct{ name, password string }{
		{"accepted", "correct horse battery staple"},
		{"common", "password1"},
		{"full-width", "ｔａｂｌｅ　ｆｏｒ　４２"},
		{"longest", strings.Repeat("x", users.MaxPasswordLen)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				users.ValidatePassword(bc.password)
			}
		})
	}
}
