package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/store/memstore"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// factorServer is a pageServer whose server and app log, JSON, to logs.
type factorServer struct {
	*pageServer
	logs *testenv.SyncBuffer
}

func newFactorServer(t *testing.T) *factorServer {
	t.Helper()
	dir, err := sqliteusers.Open(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey || a.Key == "duration" { // digits that could hold a 6-digit code by chance
			return slog.Attr{}
		}
		return a
	}}))
	acc := users.NewAccounts(dir, users.Params{Memory: 64, Time: 1, Threads: 1})
	srv, err := New(Config{}, Deps{Store: memstore.New(), Accounts: acc, Audit: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct {
		name  string
		roles []string
	}{{"root", []string{"admin"}}, {"ivy", nil}} {
		if _, err := acc.Add(t.Context(), u.name, u.name+"-password", u.roles); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &factorServer{&pageServer{t: t, url: hs.URL, srv: srv, audit: dir}, logs}
}

// api sends a JSON request with a bearer token and returns the status and
// the decoded body.
func (fs *factorServer) api(method, path, token, body string) (int, map[string]any) {
	fs.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, fs.url+path, rd)
	if err != nil {
		fs.t.Fatal(err)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(r)
	if err != nil {
		fs.t.Fatal(err)
	}
	defer res.Body.Close()
	var v map[string]any
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &v); err != nil {
		fs.t.Fatalf("%s %s: %d %q: not JSON", method, path, res.StatusCode, b)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		fs.t.Errorf("%s %s: Cache-Control %q, want no-store", method, path, cc)
	}
	return res.StatusCode, v
}

// token signs username in for a bearer token.
func (fs *factorServer) token(username string) string {
	fs.t.Helper()
	r, _ := http.NewRequest("POST", fs.url+"/api/v1/tokens", strings.NewReader(`{"username":"`+username+`","password":"`+username+`-password"}`))
	r.Header.Set("Content-Type", "application/json")
	res, err := client.Do(r)
	if err != nil {
		fs.t.Fatal(err)
	}
	defer res.Body.Close()
	var v struct{ Token string }
	json.NewDecoder(res.Body).Decode(&v)
	if v.Token == "" {
		fs.t.Fatalf("token for %s: %d", username, res.StatusCode)
	}
	return v.Token
}

// errCode is the code of a JSON error body.
func errCode(v map[string]any) string {
	e, _ := v["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// totpCode is the current code of a base32 secret, as an authenticator
// app computes it.
func totpCode(t *testing.T, secret string) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFactorsAPI walks the second-factor API: enrol, confirm (wrong, then
// right), recovery codes, disable with a recovery code, and an admin's
// reset, which ends the user's sessions; with strict decoding and bounded
// bodies.
func TestFactorsAPI(t *testing.T) {
	fs := newFactorServer(t)
	ivy, root := fs.token("ivy"), fs.token("root")

	if st, v := fs.api("GET", "/api/v1/mfa", ivy, ""); st != 200 || v["totp"] != false || v["passkeys"] != 0.0 || v["recovery_codes"] != 0.0 {
		t.Fatalf("GET /api/v1/mfa: %d %v", st, v)
	}
	if st, v := fs.api("GET", "/api/v1/mfa", "", ""); st != 401 || errCode(v) != "unauthenticated" {
		t.Errorf("GET /api/v1/mfa without a session: %d %v", st, v)
	}
	st, v := fs.api("POST", "/api/v1/mfa/totp", ivy, "")
	secret, _ := v["secret"].(string)
	otpauth, _ := v["otpauth_url"].(string)
	if st != 201 || secret == "" || !strings.HasPrefix(otpauth, "otpauth://totp/sessiond:ivy?") || !strings.Contains(otpauth, "secret="+secret) {
		t.Fatalf("POST /api/v1/mfa/totp: %d %v", st, v)
	}

	// Strict, bounded decoding.
	for _, bad := range []struct {
		body, code string
		status     int
	}{
		{`{"code":"123456","extra":1}`, "bad_request", 400},
		{`{"code":123456}`, "bad_request", 400},
		{`{"code":"1"} {"code":"2"}`, "bad_request", 400},
		{`{"code":"` + strings.Repeat("1", 70<<10) + `"}`, "too_large", 413},
		{`not json`, "bad_request", 400},
	} {
		if st, v := fs.api("POST", "/api/v1/mfa/totp/confirm", ivy, bad.body); st != bad.status || errCode(v) != bad.code {
			t.Errorf("confirm with %.40q: %d %v, want %d %s", bad.body, st, v, bad.status, bad.code)
		}
	}
	r, _ := http.NewRequest("POST", fs.url+"/api/v1/mfa/totp/confirm", strings.NewReader("code=123456"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Authorization", "Bearer "+ivy)
	if res, err := client.Do(r); err != nil || res.StatusCode != 415 {
		t.Errorf("confirm as a form: %v %v, want 415", res.StatusCode, err)
	}
	wrong := "000000"
	if wrong == totpCode(t, secret) {
		wrong = "111111"
	}
	if st, v := fs.api("POST", "/api/v1/mfa/totp/confirm", ivy, `{"code":"`+wrong+`"}`); st != 401 || errCode(v) != "wrong_code" {
		t.Errorf("confirm with a wrong code: %d %v, want 401 wrong_code", st, v)
	}
	code := totpCode(t, secret)
	st, v = fs.api("POST", "/api/v1/mfa/totp/confirm", ivy, `{"code":"`+code+`"}`)
	raised, _ := v["token"].(string)
	if sess, _ := v["session"].(map[string]any); st != 200 || v["totp"] != true || raised == "" || raised == ivy || sess["aal"] != 2.0 {
		t.Fatalf("confirm with the right code: %d %v; want TOTP on and the session raised to AAL2 with a new token", st, v)
	}
	if st, _ := fs.api("GET", "/api/v1/mfa", ivy, ""); st != 401 {
		t.Errorf("the token before the confirmation: %d, want 401 (rotated)", st)
	}
	ivy = raised
	if st, v := fs.api("POST", "/api/v1/mfa/totp", ivy, ""); st != 409 || errCode(v) != "conflict" {
		t.Errorf("POST /api/v1/mfa/totp with TOTP on: %d %v, want 409", st, v)
	}

	st, v = fs.api("POST", "/api/v1/mfa/recovery-codes", ivy, "")
	raw, _ := v["codes"].([]any)
	if st != 201 || len(raw) != 10 {
		t.Fatalf("POST /api/v1/mfa/recovery-codes: %d %v", st, v)
	}
	var codes []string
	for _, c := range raw {
		codes = append(codes, c.(string))
	}
	if st, v := fs.api("GET", "/api/v1/mfa", ivy, ""); st != 200 || v["totp"] != true || v["recovery_codes"] != 10.0 {
		t.Errorf("GET /api/v1/mfa: %d %v", st, v)
	}

	// Turning TOTP off takes a code.
	if st, v := fs.api("DELETE", "/api/v1/mfa/totp", ivy, ""); st != 401 || errCode(v) != "wrong_code" {
		t.Errorf("DELETE /api/v1/mfa/totp without a code: %d %v, want 401 wrong_code", st, v)
	}
	if st, v := fs.api("DELETE", "/api/v1/mfa/totp", ivy, `{"code":"`+code+`"}`); st != 401 || errCode(v) != "wrong_code" {
		t.Errorf("DELETE /api/v1/mfa/totp with a used code: %d %v, want 401 wrong_code", st, v)
	}
	if st, v := fs.api("DELETE", "/api/v1/mfa/totp", ivy, `{"code":"`+codes[0]+`"}`); st != 200 || v["totp"] != false || v["recovery_codes"] != 9.0 {
		t.Errorf("DELETE /api/v1/mfa/totp with a recovery code: %d %v", st, v)
	}
	if st, v := fs.api("DELETE", "/api/v1/mfa/totp", ivy, ""); st != 404 || errCode(v) != "not_found" {
		t.Errorf("DELETE /api/v1/mfa/totp with TOTP off: %d %v, want 404", st, v)
	}

	// The admin's view and reset.
	if st, v := fs.api("POST", "/api/v1/admin/users/root/second-factors/reset", ivy, ""); st != 403 || errCode(v) != "forbidden" {
		t.Errorf("a reset by a non-admin: %d %v, want 403", st, v)
	}
	st, v = fs.api("GET", "/api/v1/admin/users", root, "")
	list, _ := v["users"].([]any)
	var ivyView map[string]any
	for _, u := range list {
		if m := u.(map[string]any); m["username"] == "ivy" {
			ivyView = m
		}
	}
	if want := map[string]any{"totp": false, "passkeys": 0.0, "recovery_codes": 9.0}; st != 200 || !jsonEqual(ivyView["second_factors"], want) {
		t.Errorf("ivy in the admin's list: %d %v, want second_factors %v", st, ivyView, want)
	}
	st, v = fs.api("POST", "/api/v1/admin/users/ivy/second-factors/reset", root, "")
	if st != 200 || v["revoked"] != 1.0 {
		t.Fatalf("the admin's reset: %d %v, want revoked 1", st, v)
	}
	if st, _ := fs.api("GET", "/api/v1/mfa", ivy, ""); st != 401 {
		t.Errorf("ivy's token after the reset: %d, want 401", st)
	}
	if st, v := fs.api("GET", "/api/v1/mfa", fs.token("ivy"), ""); st != 200 || v["recovery_codes"] != 0.0 {
		t.Errorf("ivy's factors after the reset: %d %v", st, v)
	}
	if st, v := fs.api("POST", "/api/v1/admin/users/nobody/second-factors/reset", root, ""); st != 404 {
		t.Errorf("a reset of an unknown user: %d %v, want 404", st, v)
	}

	// Nothing secret in the logs.
	for _, s := range append([]string{secret, code, strings.ToLower(secret)}, codes...) {
		if strings.Contains(fs.logs.String(), s) {
			t.Errorf("the log holds %q", s)
		}
	}
	if !strings.Contains(fs.logs.String(), `"route":"POST /api/v1/mfa/totp/confirm"`) {
		t.Errorf("no access log line of the confirmation:\n%s", fs.logs.String())
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

var (
	totpSecretRE = regexp.MustCompile(`<code class="secret" id="totp-secret">([A-Z2-7 ]+)</code>`)
	recoveryRE   = regexp.MustCompile(`<li><code>([0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4})</code></li>`)
)

// TestAccountPageTOTP enrols TOTP from the account page: the enrolment
// page shows a QR code drawn by the server and the secret, with no script;
// a wrong code stays on it with the error; the right one turns TOTP on;
// recovery codes are shown once, never cached; turning TOTP off takes a
// code.
func TestAccountPageTOTP(t *testing.T) {
	fs := newFactorServer(t)
	ivy := fs.login("ivy")
	same := map[string]string{"Sec-Fetch-Site": "same-origin"}

	res, body := fs.do("GET", "/account", ivy, nil, nil)
	if res.StatusCode != 200 || !strings.Contains(body, "Two-step verification") || !strings.Contains(body, `action="/account/totp"`) {
		t.Fatalf("GET /account: %d, want the two-step section with the set-up form", res.StatusCode)
	}
	if res, _ := fs.do("GET", "/account/totp", ivy, nil, nil); res.StatusCode != 303 || res.Header.Get("Location") != "/account?error=totp-pending" {
		t.Errorf("GET /account/totp before any: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	res, _ = fs.do("POST", "/account/totp", ivy, url.Values{}, same)
	if res.StatusCode != 303 || res.Header.Get("Location") != "/account/totp" {
		t.Fatalf("POST /account/totp: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	res, body = fs.do("GET", "/account/totp", ivy, nil, nil)
	m := totpSecretRE.FindStringSubmatch(body)
	if res.StatusCode != 200 || m == nil {
		t.Fatalf("GET /account/totp: %d, no secret:\n%s", res.StatusCode, body)
	}
	secret := strings.ReplaceAll(m[1], " ", "")
	if h := res.Header; h.Get("Cache-Control") != "no-store" || h.Get("Content-Security-Policy") != contentSecurityPolicy {
		t.Errorf("the enrolment page: Cache-Control %q, CSP %q", h.Get("Cache-Control"), h.Get("Content-Security-Policy"))
	}
	if m := inline.FindString(body); m != "" {
		t.Errorf("the enrolment page holds script or inline style: %q", m)
	}
	if !strings.Contains(body, `<svg class="qr"`) || !strings.Contains(body, `<path fill="#000" d="M4 4h7v1h-7z`) || strings.Contains(body, "<img") {
		t.Errorf("the enrolment page has no server-drawn QR code (a finder pattern's top row at the quiet zone):\n%.600s", body)
	}

	wrong := "000000"
	if wrong == totpCode(t, secret) {
		wrong = "111111"
	}
	res, _ = fs.do("POST", "/account/totp/confirm", ivy, url.Values{"code": {wrong}}, same)
	if res.StatusCode != 303 || res.Header.Get("Location") != "/account/totp?error=code-wrong" {
		t.Errorf("a wrong code: %d %q, want back to /account/totp with code-wrong", res.StatusCode, res.Header.Get("Location"))
	}
	if _, body := fs.do("GET", "/account/totp?error=code-wrong", ivy, nil, nil); !strings.Contains(body, "The code is wrong or was already used.") || !totpSecretRE.MatchString(body) {
		t.Error("the enrolment page after a wrong code lacks the error or the secret")
	}
	code := totpCode(t, secret)
	res, _ = fs.do("POST", "/account/totp/confirm", ivy, url.Values{"code": {code[:3] + " " + code[3:]}}, same)
	if res.StatusCode != 303 || res.Header.Get("Location") != "/account?done=totp-enabled" {
		t.Fatalf("the right code: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	ivy = newCookie(t, res) // the code raised the session, with a new token
	_, body = fs.do("GET", "/account?done=totp-enabled", ivy, nil, nil)
	if !strings.Contains(body, "Two-step verification is on.") || !strings.Contains(body, `action="/account/totp/disable"`) {
		t.Error("the account page does not show TOTP on")
	}

	// Recovery codes: shown on the answer to the post, never cached.
	res, body = fs.do("POST", "/account/recovery-codes", ivy, url.Values{}, same)
	codes := recoveryRE.FindAllStringSubmatch(body, -1)
	if res.StatusCode != 200 || len(codes) != 10 || res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("POST /account/recovery-codes: %d, %d codes, Cache-Control %q", res.StatusCode, len(codes), res.Header.Get("Cache-Control"))
	}
	if _, body := fs.do("GET", "/account", ivy, nil, nil); !strings.Contains(body, "<strong>10</strong> unused recovery codes") || recoveryRE.MatchString(body) {
		t.Error("the account page does not count 10 codes, or shows them again")
	}

	// Off takes a code: a wrong one stays, a recovery code works.
	res, _ = fs.do("POST", "/account/totp/disable", ivy, url.Values{"code": {"wxyz-wxyz-wxyz"}}, same)
	if res.StatusCode != 303 || res.Header.Get("Location") != "/account?error=code-wrong" {
		t.Errorf("off with a wrong code: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	res, _ = fs.do("POST", "/account/totp/disable", ivy, url.Values{"code": {codes[4][1]}}, same)
	if res.StatusCode != 303 || res.Header.Get("Location") != "/account?done=totp-disabled" {
		t.Errorf("off with a recovery code: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if s, _ := fs.srv.app.Factors(t.Context(), app.Actor{ID: mustLookup(t, fs.pageServer, "ivy").ID}); s.TOTP || s.RecoveryCodes != 9 {
		t.Errorf("after turning off: %+v", s)
	}
	// Nothing secret in the logs.
	for _, c := range codes {
		if strings.Contains(fs.logs.String(), c[1]) {
			t.Errorf("the log holds the recovery code %q", c[1])
		}
	}
	for _, s := range []string{secret, code} {
		if strings.Contains(fs.logs.String(), s) {
			t.Errorf("the log holds %q", s)
		}
	}
}

// TestConsoleResetsSecondFactors: the console lists each user's second
// factors, and resetting them asks first, then removes them and ends the
// user's sessions.
func TestConsoleResetsSecondFactors(t *testing.T) {
	fs := newFactorServer(t)
	admin, ivySession := fs.login("root"), fs.login("ivy")
	same := map[string]string{"Sec-Fetch-Site": "same-origin"}
	ivy := mustLookup(t, fs.pageServer, "ivy")
	if _, err := fs.srv.app.NewRecoveryCodes(t.Context(), app.Actor{ID: ivy.ID}); err != nil {
		t.Fatal(err)
	}
	if _, body := fs.do("GET", "/admin", admin, nil, nil); !strings.Contains(body, `<td data-label="Two-step"><span class="badge quiet">Off</span> · 10 recovery codes</td>`) {
		t.Errorf("the users page does not show ivy's codes:\n%s", body)
	}
	_, body := fs.do("GET", "/admin/users/ivy", admin, nil, nil)
	action := "/admin/users/" + ivy.ID + "/second-factors/reset"
	if !strings.Contains(body, `action="`+action+`"`) {
		t.Fatalf("the user page has no reset form:\n%s", body)
	}
	res, body := fs.do("POST", action, admin, url.Values{}, same)
	if res.StatusCode != 200 || !strings.Contains(body, `name="confirm" value="yes"`) || !fs.valid(ivySession) {
		t.Fatalf("an unconfirmed reset: %d, ivy's session live %v", res.StatusCode, fs.valid(ivySession))
	}
	if s, _ := fs.srv.app.Factors(t.Context(), app.Actor{ID: ivy.ID}); s.RecoveryCodes != 10 {
		t.Fatalf("an unconfirmed reset removed codes: %+v", s)
	}
	res, _ = fs.do("POST", action, admin, url.Values{"confirm": {"yes"}}, same)
	if res.StatusCode != 303 || !strings.Contains(res.Header.Get("Location"), "done=second-factors-reset&n=1") {
		t.Fatalf("a confirmed reset: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if fs.valid(ivySession) {
		t.Error("ivy's session outlives the reset")
	}
	if s, _ := fs.srv.app.Factors(t.Context(), app.Actor{ID: ivy.ID}); s != (users.FactorSummary{}) {
		t.Errorf("ivy's factors after the reset: %+v", s)
	}
	_, body = fs.do("GET", res.Header.Get("Location"), admin, nil, nil)
	if !strings.Contains(body, "Two-step verification reset. The user was signed out of 1 session.") || !strings.Contains(body, "has no second factor") {
		t.Errorf("the user page after the reset lacks the notice or the state")
	}
	// The audit page names the event.
	if _, body := fs.do("GET", "/admin/audit?type=second_factors.reset", admin, nil, nil); !strings.Contains(body, "Two-step verification reset") {
		t.Error("the audit page does not list the reset")
	}
	// Not for a user without the role.
	if res, _ := fs.do("POST", "/admin/users/root/second-factors/reset", fs.login("ivy"), url.Values{"confirm": {"yes"}}, same); res.StatusCode != 403 {
		t.Errorf("a reset by a non-admin: %d, want 403", res.StatusCode)
	}
}

// TestQRSVG draws a known pattern: each run of dark modules is one
// rectangle, offset by the quiet zone.
func TestQRSVG(t *testing.T) {
	got := string(qrSVG([][]bool{{true, true, false}, {false, true, false}, {true, false, true}}))
	for _, want := range []string{`viewBox="0 0 11 11"`, `d="M4 4h2v1h-2zM5 5h1v1h-1zM4 6h1v1h-1zM6 6h1v1h-1z"`, `role="img"`} {
		if !strings.Contains(got, want) {
			t.Errorf("qrSVG: %s lacks %s", got, want)
		}
	}
	if m := inline.FindString(got); m != "" {
		t.Errorf("qrSVG holds script or inline style: %q", m)
	}
}

// TestFactorsAPIThrottle: after five wrong codes from one client, the
// next attempt, even with the right code, is a 429 with Retry-After.
func TestFactorsAPIThrottle(t *testing.T) {
	fs := newFactorServer(t)
	ivy := fs.token("ivy")
	_, v := fs.api("POST", "/api/v1/mfa/totp", ivy, "")
	secret := v["secret"].(string)
	wrong := "000000"
	if wrong == totpCode(t, secret) {
		wrong = "111111"
	}
	for i := range 5 {
		if st, v := fs.api("POST", "/api/v1/mfa/totp/confirm", ivy, `{"code":"`+wrong+`"}`); st != 401 || errCode(v) != "wrong_code" {
			t.Fatalf("wrong code %d: %d %v", i+1, st, v)
		}
	}
	r, _ := http.NewRequest("POST", fs.url+"/api/v1/mfa/totp/confirm", strings.NewReader(`{"code":"`+totpCode(t, secret)+`"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+ivy)
	res, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Errorf("the right code after 5 wrong ones: %d, Retry-After %q; want 429 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if s, _ := fs.srv.app.Factors(t.Context(), app.Actor{ID: mustLookup(t, fs.pageServer, "ivy").ID}); s.TOTP {
		t.Error("a throttled confirmation turned TOTP on")
	}
}

// newCookie returns the new session token res sets, failing without one.
func newCookie(t *testing.T, res *http.Response) string {
	t.Helper()
	for _, c := range res.Cookies() {
		if c.Name == "__Host-sid" && c.Value != "" {
			return c.Value
		}
	}
	t.Fatalf("%s %s set no new session cookie", res.Request.Method, res.Request.URL.Path)
	return ""
}
