package users_test

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"testing"

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
