package users_test

import (
	"bytes"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/sessiond/sessiond/users"
)

// rfcSecret is the SHA-1 key of RFC 6238's test vectors.
var rfcSecret = []byte("12345678901234567890")

// TestTOTPCodeRFC6238 checks codes against RFC 6238 Appendix B (SHA-1),
// whose 8-digit codes end in the 6-digit ones.
func TestTOTPCodeRFC6238(t *testing.T) {
	for _, v := range []struct {
		unix int64
		code string
	}{
		{59, "94287082"},
		{1111111109, "07081804"},
		{1111111111, "14050471"},
		{1234567890, "89005924"},
		{2000000000, "69279037"},
		{20000000000, "65353130"},
	} {
		got, err := users.TOTPCode(rfcSecret, users.TOTPStep(time.Unix(v.unix, 0)))
		if err != nil {
			t.Fatal(err)
		}
		if want := v.code[2:]; got != want {
			t.Errorf("TOTPCode at %d: got %q, want %q", v.unix, got, want)
		}
	}
}

func TestNewTOTPKey(t *testing.T) {
	k, err := users.NewTOTPKey("", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Secret) != users.TOTPSecretSize {
		t.Errorf("secret: got %d bytes, want %d", len(k.Secret), users.TOTPSecretSize)
	}
	k2, _ := users.NewTOTPKey("", "alice@example.com")
	if bytes.Equal(k.Secret, k2.Secret) {
		t.Error("two keys share a secret")
	}
	u, err := url.Parse(k.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/sessiond:alice@example.com" {
		t.Errorf("URL %q: want otpauth://totp/sessiond:alice@example.com", k.URL)
	}
	for param, want := range map[string]string{"secret": k.SecretText, "issuer": "sessiond", "algorithm": "SHA1", "digits": "6", "period": "30"} {
		if got := q.Get(param); got != want {
			t.Errorf("URL parameter %s: got %q, want %q", param, got, want)
		}
	}
	// The app's view: a code from the URL's secret is the one sessiond
	// expects.
	now := time.Now()
	code, err := totp.GenerateCode(k.SecretText, now)
	if err != nil {
		t.Fatal(err)
	}
	if step, ok := users.MatchTOTP(k.Secret, code, now, 0); !ok || step != users.TOTPStep(now) {
		t.Errorf("MatchTOTP of the app's code: got %d, %v, want %d", step, ok, users.TOTPStep(now))
	}
	// A configured issuer, and the same secret again.
	k3, err := users.TOTPKeyFor(k.Secret, "Example Corp", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if k3.SecretText != k.SecretText || !strings.Contains(k3.URL, "issuer=Example") || !strings.Contains(k3.URL, "/Example%20Corp:alice") {
		t.Errorf("TOTPKeyFor: got %+v", k3)
	}
}

func TestMatchTOTPSkew(t *testing.T) {
	now := time.Unix(1_800_000_015, 0)
	cur := users.TOTPStep(now)
	codeAt := func(step int64) string {
		c, err := users.TOTPCode(rfcSecret, step)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tt := range []struct {
		name  string
		step  int64
		after int64
		ok    bool
	}{
		{"this step", cur, 0, true},
		{"one step late", cur - 1, 0, true},
		{"one step early", cur + 1, 0, true},
		{"two steps late", cur - 2, 0, false},
		{"two steps early", cur + 2, 0, false},
		{"this step, used", cur, cur, false},
		{"one step late after this one", cur - 1, cur, false},
		{"one step early after this one", cur + 1, cur, true},
	} {
		step, ok := users.MatchTOTP(rfcSecret, codeAt(tt.step), now, tt.after)
		if ok != tt.ok || (ok && step != tt.step) {
			t.Errorf("%s: got step %d, %v, want %d, %v", tt.name, step, ok, tt.step, tt.ok)
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, ok := users.MatchTOTP(rfcSecret, bad, now, 0); ok {
			t.Errorf("MatchTOTP(%q) matched", bad)
		}
	}
	// Another secret's code does not match (but for a one-in-a-million
	// coincidence, which these fixed values do not hit).
	if _, ok := users.MatchTOTP([]byte("another secret!!!!!!"), codeAt(cur), now, 0); ok {
		t.Error("a code of another secret matched")
	}
}

func TestParseTOTPCode(t *testing.T) {
	for in, want := range map[string]string{
		"123456":                           "123456",
		" 123 456 ":                        "123456",
		"123-456":                          "123456",
		"000000":                           "000000",
		"12345":                            "",
		"1234567":                          "",
		"12345a":                           "",
		"１２３４５６":                           "",
		"":                                 "",
		"123456\x00":                       "",
		"+123456":                          "",
		strings.Repeat(" ", 40) + "123456": "",
	} {
		got, ok := users.ParseTOTPCode(in)
		if got != want || ok != (want != "") {
			t.Errorf("ParseTOTPCode(%q): got %q, %v, want %q", in, got, ok, want)
		}
	}
}

func FuzzParseTOTPCode(f *testing.F) {
	for _, s := range []string{"123456", " 123 456", "12-34-56", "", "１２３", "1234567"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		code, ok := users.ParseTOTPCode(s)
		if !ok {
			if code != "" {
				t.Errorf("refused %q but returned %q", s, code)
			}
			return
		}
		if len(code) != users.TOTPDigits || strings.Trim(code, "0123456789") != "" {
			t.Errorf("ParseTOTPCode(%q) = %q: not %d digits", s, code, users.TOTPDigits)
		}
		if again, ok := users.ParseTOTPCode(code); !ok || again != code {
			t.Errorf("ParseTOTPCode(%q) = %q, %v: not stable", code, again, ok)
		}
		// Only the digits of s, in order.
		if digits := strings.Map(func(r rune) rune {
			if '0' <= r && r <= '9' {
				return r
			}
			return -1
		}, s); digits != code {
			t.Errorf("ParseTOTPCode(%q) = %q, want the digits %q", s, code, digits)
		}
	})
}

func TestTOTPKeyQR(t *testing.T) {
	k, err := users.NewTOTPKey("", "alice")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := k.QR()
	if err != nil {
		t.Fatal(err)
	}
	n := len(rows)
	if n < 21 || (n-21)%4 != 0 {
		t.Fatalf("QR code of %d rows: not a QR version's size", n)
	}
	// The three finder patterns: a dark 7×7 ring around a light ring
	// around a dark 3×3 square.
	finder := func(x0, y0 int) {
		t.Helper()
		for y := range 7 {
			for x := range 7 {
				ring := max(abs(x-3), abs(y-3))
				want := ring != 2
				if got := rows[y0+y][x0+x]; got != want {
					t.Fatalf("finder at (%d,%d): module (%d,%d) dark=%v, want %v", x0, y0, x, y, got, want)
				}
			}
		}
	}
	finder(0, 0)
	finder(n-7, 0)
	finder(0, n-7)
}

func abs(x int) int { return max(x, -x) }

var recoveryCodeRE = regexp.MustCompile(`^[0-9abcdefghjkmnpqrstvwxyz]{4}-[0-9abcdefghjkmnpqrstvwxyz]{4}-[0-9abcdefghjkmnpqrstvwxyz]{4}$`)

func TestNewRecoveryCodes(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		codes := users.NewRecoveryCodes()
		if len(codes) != users.RecoveryCodeCount {
			t.Fatalf("got %d codes, want %d", len(codes), users.RecoveryCodeCount)
		}
		for _, c := range codes {
			if !recoveryCodeRE.MatchString(c) {
				t.Fatalf("code %q: want xxxx-xxxx-xxxx in the unambiguous alphabet", c)
			}
			if seen[c] {
				t.Fatalf("code %q issued twice", c)
			}
			seen[c] = true
			if n, ok := users.NormalizeRecoveryCode(c); !ok || n != strings.ReplaceAll(c, "-", "") {
				t.Errorf("NormalizeRecoveryCode(%q): got %q, %v", c, n, ok)
			}
		}
	}
}

func TestNormalizeRecoveryCode(t *testing.T) {
	for in, want := range map[string]string{
		"abcd-efgh-jk01":          "abcdefghjk01",
		"ABCD EFGH JK01":          "abcdefghjk01",
		" abcdefghjk01 ":          "abcdefghjk01",
		"a-b-c-d-e-f-g-h-j-k-0-1": "abcdefghjk01",
		"abcd-efgh-jkOI":          "abcdefghjk01", // O as 0, I as 1
		"abcd-efgh-jkol":          "abcdefghjk01",
		"abcd-efgh-jk0":           "",
		"abcd-efgh-jk011":         "",
		"abcd-efgh-jku1":          "", // u is not in the alphabet
		"abcd-efgh-jk0!":          "",
		"":                        "",
		"abcd-efgh-jk01" + strings.Repeat(" ", 60): "",
	} {
		got, ok := users.NormalizeRecoveryCode(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeRecoveryCode(%q): got %q, %v, want %q", in, got, ok, want)
		}
	}
}

func FuzzNormalizeRecoveryCode(f *testing.F) {
	for _, s := range []string{"abcd-efgh-jk01", "ABCD EFGH JKOI", "", "abcd", "ü-abcd-efgh-jk0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := users.NormalizeRecoveryCode(s)
		if !ok {
			if n != "" {
				t.Errorf("refused %q but returned %q", s, n)
			}
			return
		}
		if len(n) != users.RecoveryCodeLen || strings.Trim(n, "0123456789abcdefghjkmnpqrstvwxyz") != "" {
			t.Errorf("NormalizeRecoveryCode(%q) = %q: not %d characters of the alphabet", s, n, users.RecoveryCodeLen)
		}
		if again, ok := users.NormalizeRecoveryCode(n); !ok || again != n {
			t.Errorf("NormalizeRecoveryCode(%q) = %q, %v: not stable", n, again, ok)
		}
		if upper, ok := users.NormalizeRecoveryCode(strings.ToUpper(s)); len(s) == len(strings.ToUpper(s)) && (!ok || upper != n) {
			t.Errorf("the upper case of %q normalizes to %q, %v, want %q", s, upper, ok, n)
		}
	})
}

func TestHashRecoveryCode(t *testing.T) {
	a := users.HashRecoveryCode("u_alice", "abcdefghjk01")
	if len(a) != 32 {
		t.Errorf("hash of %d bytes, want 32", len(a))
	}
	if !bytes.Equal(a, users.HashRecoveryCode("u_alice", "abcdefghjk01")) {
		t.Error("the hash of one code differs")
	}
	if bytes.Equal(a, users.HashRecoveryCode("u_bob", "abcdefghjk01")) {
		t.Error("two users' hashes of one code are equal")
	}
	if bytes.Equal(a, users.HashRecoveryCode("u_alice", "abcdefghjk02")) {
		t.Error("two codes hash alike")
	}
	if bytes.Contains(a, []byte("abcdefghjk01")) {
		t.Error("the hash holds the code")
	}
}
