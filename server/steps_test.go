package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/sessiond/sessiond/app"
)

// stepsServer is a pageServer on a clock the test moves, with ivy's TOTP
// secret once enrolled.
type stepsServer struct {
	*pageServer
	mu     sync.Mutex
	now    time.Time
	secret string
}

func newStepsServer(t *testing.T, opts ...func(*Deps)) *stepsServer {
	ss := &stepsServer{now: time.Now()}
	ss.pageServer = newPageServer(t, Config{Now: ss.clock}, app.ThrottleConfig{}, opts...)
	return ss
}

func (ss *stepsServer) clock() time.Time {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.now
}

// next moves the clock one TOTP step on and returns the code of that step.
func (ss *stepsServer) next() string {
	ss.t.Helper()
	ss.mu.Lock()
	ss.now = ss.now.Add(30 * time.Second)
	ss.mu.Unlock()
	code, err := totp.GenerateCodeCustom(ss.secret, ss.clock(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		ss.t.Fatal(err)
	}
	return code
}

// enrol turns on TOTP for ivy through the account's API, signed in with
// token, and returns the session's new token: the first code raises it to
// AAL2.
func (ss *stepsServer) enrol(token string) string {
	ss.t.Helper()
	res, body := ss.do("POST", "/api/v1/mfa/totp", token, nil, nil)
	var e struct{ Secret string }
	if res.StatusCode != 201 || json.Unmarshal([]byte(body), &e) != nil {
		ss.t.Fatalf("begin TOTP: %d %s", res.StatusCode, body)
	}
	ss.secret = e.Secret
	res, body = ss.doJSON("POST", "/api/v1/mfa/totp/confirm", token, map[string]any{"code": ss.next()})
	c := cookieOf(res, "__Host-sid")
	if res.StatusCode/100 != 2 || c == nil || c.Value == "" {
		ss.t.Fatalf("confirm TOTP: %d %s", res.StatusCode, body)
	}
	return c.Value
}

// doJSON sends v as a JSON body, with the session token as cookie.
func (ss *stepsServer) doJSON(method, path, token string, v any) (*http.Response, string) {
	ss.t.Helper()
	req, _ := json.Marshal(v)
	r, err := http.NewRequest(method, ss.url+path, strings.NewReader(string(req)))
	if err != nil {
		ss.t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	if token != "" {
		r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: token})
	}
	res, err := client.Do(r)
	if err != nil {
		ss.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func cookieOf(res *http.Response, name string) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// postWithPending posts form to path carrying the pending sign-in cookie.
func (ss *stepsServer) postWithPending(path, ticket string, form url.Values) (*http.Response, string) {
	ss.t.Helper()
	r, _ := http.NewRequest("POST", ss.url+path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(&http.Cookie{Name: "__Host-sid-pending", Value: ticket})
	res, err := client.Do(r)
	if err != nil {
		ss.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestSignInFormWithASecondFactor: the password alone sets no session
// cookie but a pending one and leads to the second-factor step; a wrong
// code keeps the user there; the right one sets the session (AAL2) and
// returns to rd; the pending ticket then is used up.
func TestSignInFormWithASecondFactor(t *testing.T) {
	ss := newStepsServer(t)
	ss.enrol(ss.login("ivy"))

	rd := "/account?tab=1"
	res, _ := ss.do("POST", "/login", "", url.Values{"username": {"ivy"}, "password": {"ivy-password"}, "rd": {rd}}, nil)
	if res.StatusCode != 303 || res.Header.Get("Location") != "/login/second-factor?rd="+url.QueryEscape(rd) {
		t.Fatalf("password: %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	if c := cookieOf(res, "__Host-sid"); c != nil && c.Value != "" {
		t.Fatal("the password alone set a session cookie")
	}
	pending := cookieOf(res, "__Host-sid-pending")
	if pending == nil || !pending.HttpOnly || !pending.Secure || pending.SameSite != http.SameSiteStrictMode || pending.MaxAge != 300 || pending.Path != "/" {
		t.Fatalf("pending cookie %+v: want HttpOnly, Secure, SameSite=Strict, Max-Age 300, Path /", pending)
	}

	// The pending ticket is no session anywhere.
	r, _ := http.NewRequest("GET", ss.url+"/resolve", nil)
	r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: pending.Value})
	if res, err := client.Do(r); err != nil || res.StatusCode != 401 {
		t.Errorf("the ticket as a session cookie on /resolve: %v %v, want 401", res.StatusCode, err)
	}

	r, _ = http.NewRequest("GET", ss.url+"/login/second-factor?rd="+url.QueryEscape(rd), nil)
	r.AddCookie(pending)
	if res, err := client.Do(r); err != nil || res.StatusCode != 200 {
		t.Fatalf("the second-factor page: %v %v", res.StatusCode, err)
	}

	if res, body := ss.postWithPending("/login/second-factor", pending.Value, url.Values{"code": {"000000"}, "rd": {rd}}); res.StatusCode != 401 || !strings.Contains(body, "wrong") {
		t.Fatalf("a wrong code: %d %s", res.StatusCode, body)
	}
	res, body := ss.postWithPending("/login/second-factor", pending.Value, url.Values{"code": {ss.next()}, "rd": {rd}})
	sid := cookieOf(res, "__Host-sid")
	if res.StatusCode != 303 || res.Header.Get("Location") != rd || sid == nil || sid.Value == "" {
		t.Fatalf("the right code: %d, Location %q, session cookie %v: %s", res.StatusCode, res.Header.Get("Location"), sid, body)
	}
	if c := cookieOf(res, "__Host-sid-pending"); c == nil || c.MaxAge >= 0 {
		t.Errorf("the pending cookie was not deleted: %+v", c)
	}
	r, _ = http.NewRequest("GET", ss.url+"/resolve?aal=2", nil)
	r.AddCookie(sid)
	if res, err := client.Do(r); err != nil || res.StatusCode != 200 || res.Header.Get("X-Session-AMR") != "pwd,otp,mfa" {
		t.Errorf("resolve?aal=2 with the new session: %v, AMR %q, %v", res.StatusCode, res.Header.Get("X-Session-AMR"), err)
	}
	if res, _ := ss.postWithPending("/login/second-factor", pending.Value, url.Values{"code": {ss.next()}}); res.StatusCode != 303 || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
		t.Errorf("the used ticket again: %d, Location %q; want back to the login page", res.StatusCode, res.Header.Get("Location"))
	}
}

// TestSignInJSONWithASecondFactor: /login and /api/v1/tokens say what is
// missing; the tokens API takes the code with the password.
func TestSignInJSONWithASecondFactor(t *testing.T) {
	ss := newStepsServer(t)
	ss.enrol(ss.login("ivy"))

	res, body := ss.doJSON("POST", "/login", "", map[string]any{"username": "ivy", "password": "ivy-password"})
	if res.StatusCode != 200 || !strings.Contains(body, `"second_factor_required":true`) || !strings.Contains(body, `"methods":["totp"]`) || cookieOf(res, "__Host-sid-pending") == nil {
		t.Errorf("JSON /login: %d %s", res.StatusCode, body)
	}

	res, body = ss.doJSON("POST", "/api/v1/tokens", "", map[string]any{"username": "ivy", "password": "ivy-password"})
	if res.StatusCode != 401 || !strings.Contains(body, `"code":"second_factor_required"`) || !strings.Contains(body, `"second_factor_required":true`) || cookieOf(res, "__Host-sid-pending") != nil {
		t.Errorf("tokens without a code: %d %s", res.StatusCode, body)
	}
	res, body = ss.doJSON("POST", "/api/v1/tokens", "", map[string]any{"username": "ivy", "password": "ivy-password", "totp": "123456"})
	if res.StatusCode != 401 || !strings.Contains(body, `"code":"wrong_code"`) {
		t.Errorf("tokens with a wrong code: %d %s", res.StatusCode, body)
	}
	res, body = ss.doJSON("POST", "/api/v1/tokens", "", map[string]any{"username": "ivy", "password": "ivy-password", "totp": ss.next()})
	var tok struct {
		Token   string
		Session struct{ AAL int }
	}
	if res.StatusCode != 201 || json.Unmarshal([]byte(body), &tok) != nil || tok.Token == "" || tok.Session.AAL != 2 {
		t.Errorf("tokens with the right code: %d %s", res.StatusCode, body)
	}
}

// TestStepUpAndReauthThroughTheForms: a session begun with a password
// alone is raised to AAL2 at the second-factor step, and re-authenticated
// with the password; each gives it a new cookie and kills the old one.
func TestStepUpAndReauthThroughTheForms(t *testing.T) {
	ss := newStepsServer(t)
	token := ss.login("ivy") // AAL1, and it stays so: another session enrols
	if res, body := ss.do("GET", "/login/second-factor?rd=/account", token, nil, nil); res.StatusCode != 200 || !strings.Contains(body, `href="/account/totp"`) {
		t.Errorf("step-up page without a factor: %d, want a way to set one up: %s", res.StatusCode, body)
	}
	ss.enrol(ss.login("ivy"))
	if res, body := ss.do("GET", "/login/second-factor?rd=/account", token, nil, nil); res.StatusCode != 200 || !strings.Contains(body, `name="code"`) {
		t.Fatalf("step-up page: %d %s", res.StatusCode, body)
	}
	res, body := ss.do("POST", "/login/second-factor", token, url.Values{"code": {ss.next()}, "rd": {"/account"}}, nil)
	raised := cookieOf(res, "__Host-sid")
	if res.StatusCode != 303 || raised == nil || raised.Value == "" || raised.Value == token {
		t.Fatalf("step-up: %d, cookie %v: %s", res.StatusCode, raised, body)
	}
	if ss.valid(token) {
		t.Error("the token before the step-up still works")
	}
	if res, body := ss.do("GET", "/account", raised.Value, nil, nil); !strings.Contains(body, "Password and code") || !strings.Contains(body, "Two-step") {
		t.Errorf("the account page does not say how the session signed in: %d", res.StatusCode)
	}
	if res, _ := ss.do("GET", "/login/second-factor?rd=/account", raised.Value, nil, nil); res.StatusCode != 303 || res.Header.Get("Location") != "/account" {
		t.Errorf("the step page at AAL2: %d %q, want straight back", res.StatusCode, res.Header.Get("Location"))
	}

	if res, _ := ss.do("POST", "/login/reauth", raised.Value, url.Values{"password": {"wrong"}}, nil); res.StatusCode != 403 {
		t.Errorf("reauth with a wrong password: %d, want 403", res.StatusCode)
	}
	res, _ = ss.do("POST", "/login/reauth", raised.Value, url.Values{"password": {"ivy-password"}, "rd": {"https://evil.example/"}}, nil)
	again := cookieOf(res, "__Host-sid")
	if res.StatusCode != 303 || res.Header.Get("Location") != "/account" || again == nil || again.Value == raised.Value {
		t.Fatalf("reauth: %d, Location %q (an outside rd must not be followed), cookie %v", res.StatusCode, res.Header.Get("Location"), again)
	}
	r, _ := http.NewRequest("GET", ss.url+"/resolve?aal=2&max_age=60", nil)
	r.AddCookie(again)
	if res, err := client.Do(r); err != nil || res.StatusCode != 200 {
		t.Errorf("resolve?aal=2&max_age=60 after reauth: %v %v", res.StatusCode, err)
	}
}

// TestStepsRefuseCrossOrigin: the second-factor step and re-authentication
// refuse a form posted from another site.
func TestStepsRefuseCrossOrigin(t *testing.T) {
	ss := newStepsServer(t)
	token := ss.enrol(ss.login("ivy"))
	for _, path := range []string{"/login/second-factor", "/login/reauth"} {
		res, _ := ss.do("POST", path, token, url.Values{"code": {ss.next()}, "password": {"ivy-password"}}, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
		if res.StatusCode != 403 || cookieOf(res, "__Host-sid") != nil {
			t.Errorf("%s from another site: %d, want 403 and no new cookie", path, res.StatusCode)
		}
	}
	if !ss.valid(token) {
		t.Error("the session changed")
	}
}

// TestAdminNeedsTheSecondFactorItsRoleRequires: with a second factor
// required of admins, an admin signed in with a password alone is led to
// set one up, and the console and admin API refuse the session until it
// is raised to AAL2; a user's own account stays open.
func TestAdminNeedsTheSecondFactorItsRoleRequires(t *testing.T) {
	ss := newStepsServer(t, func(d *Deps) { d.SecondFactor = app.SecondFactorPolicy{Roles: []string{"admin"}} })
	res, _ := ss.do("POST", "/login", "", url.Values{"username": {"root"}, "password": {"root-password"}, "rd": {"/admin"}}, nil)
	token := cookieOf(res, "__Host-sid")
	if res.StatusCode != 303 || token == nil || res.Header.Get("Location") != "/login/second-factor?rd=%2Fadmin" {
		t.Fatalf("admin's password: %d, Location %q, cookie %v; want a session and the way to the second factor", res.StatusCode, res.Header.Get("Location"), token)
	}
	if res, body := ss.do("GET", "/login/second-factor?rd=%2Fadmin", token.Value, nil, nil); res.StatusCode != 200 || !strings.Contains(body, `href="/account/totp"`) {
		t.Errorf("the step page of an admin without a factor: %d, want a way to set one up", res.StatusCode)
	}
	if res, _ := ss.do("GET", "/admin", token.Value, nil, nil); res.StatusCode != 303 || res.Header.Get("Location") != "/login/second-factor?rd=%2Fadmin" {
		t.Errorf("console at AAL1: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if res, body := ss.do("GET", "/api/v1/admin/users", token.Value, nil, nil); res.StatusCode != 401 || !strings.Contains(body, "second_factor_required") {
		t.Errorf("admin API at AAL1: %d %s", res.StatusCode, body)
	}
	if res, _ := ss.do("POST", "/admin/users/ivy/disable", token.Value, url.Values{"confirm": {"1"}}, nil); res.StatusCode != 303 || !strings.HasPrefix(res.Header.Get("Location"), "/login/second-factor?rd=%2Fadmin%2Fusers%2Fivy") {
		t.Errorf("console form at AAL1: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if res, _ := ss.do("GET", "/account", token.Value, nil, nil); res.StatusCode != 200 {
		t.Errorf("own account at AAL1: %d, want 200", res.StatusCode)
	}

	// Set up TOTP as root: its first code raises the session, and the
	// console opens.
	res, body := ss.do("POST", "/api/v1/mfa/totp", token.Value, nil, nil)
	var e struct{ Secret string }
	if res.StatusCode != 201 || json.Unmarshal([]byte(body), &e) != nil {
		t.Fatalf("begin TOTP: %d %s", res.StatusCode, body)
	}
	ss.secret = e.Secret
	res, body = ss.doJSON("POST", "/api/v1/mfa/totp/confirm", token.Value, map[string]any{"code": ss.next()})
	raised := cookieOf(res, "__Host-sid")
	if res.StatusCode/100 != 2 || raised == nil {
		t.Fatalf("confirm TOTP: %d %s; want the session raised with a new cookie", res.StatusCode, body)
	}
	if res, _ := ss.do("GET", "/admin", raised.Value, nil, nil); res.StatusCode != 200 {
		t.Errorf("console at AAL2: %d", res.StatusCode)
	}
	if ivy := ss.login("ivy"); ivy == "" {
		t.Error("a user without the role cannot sign in with a password alone")
	} else if res, _ := ss.do("GET", "/account", ivy, nil, nil); res.StatusCode != 200 {
		t.Errorf("ivy's account: %d", res.StatusCode)
	}
}
