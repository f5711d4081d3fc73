package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessiond/sessiond/internal/testenv"
)

func TestLoginResolveLogout(t *testing.T) {
	in := start(t)
	r := in.do(req{method: "POST", path: "/login", json: map[string]any{"username": "admin", "password": adminPassword}})
	if r.StatusCode != 200 {
		t.Fatalf("login: %d %s", r.StatusCode, r.body)
	}
	tok := r.sessionCookie()
	set := r.Header.Get("Set-Cookie")
	for _, want := range []string{"__Host-sid=", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"} {
		if !strings.Contains(set, want) {
			t.Errorf("Set-Cookie %q lacks %s", set, want)
		}
	}
	if strings.Contains(set, "Domain") || strings.Contains(set, "Max-Age") {
		t.Errorf("Set-Cookie %q has Domain or Max-Age", set)
	}
	if bytes.Contains(r.body, []byte(tok)) {
		t.Fatal("the login response body holds the token")
	}
	body := r.json(t)
	sess, user := body["session"].(map[string]any), body["user"].(map[string]any)
	for _, k := range []string{"id", "user_id", "created_at", "authenticated_at", "last_seen_at", "expires_at", "idle_expires_at", "ip", "user_agent", "current"} {
		if _, ok := sess[k]; !ok {
			t.Errorf("session object lacks %q: %v", k, sess)
		}
	}
	if user["username"] != "admin" || user["disabled"] != false || fmt.Sprint(user["roles"]) != "[admin]" {
		t.Errorf("user object %v", user)
	}
	if _, err := time.Parse(time.RFC3339, sess["expires_at"].(string)); err != nil {
		t.Errorf("expires_at is not RFC 3339: %v", err)
	}

	res := in.do(req{method: "GET", path: "/resolve", cookie: tok})
	if res.StatusCode != 200 {
		t.Fatalf("resolve: %d %s", res.StatusCode, res.body)
	}
	for k, want := range map[string]string{"Remote-User": "admin", "Remote-Groups": "admin", "X-User-Id": user["id"].(string), "X-Session-Id": sess["id"].(string), "Cache-Control": "no-store"} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("resolve %s: got %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"X-Session-Expires-At", "X-Session-Absolute-Expires-At", "X-Session-Authenticated-At"} {
		if _, err := time.Parse(time.RFC3339, res.Header.Get(k)); err != nil {
			t.Errorf("resolve %s %q: %v", k, res.Header.Get(k), err)
		}
	}
	for k, vs := range res.Header {
		if strings.Contains(strings.Join(vs, " "), tok) {
			t.Errorf("resolve header %s carries the token", k)
		}
	}

	who := in.do(req{method: "GET", path: "/api/v1/session", cookie: tok})
	if who.StatusCode != 200 || who.json(t)["user"].(map[string]any)["username"] != "admin" {
		t.Errorf("whoami: %d %s", who.StatusCode, who.body)
	}

	out := in.do(req{method: "POST", path: "/logout", cookie: tok})
	if out.StatusCode != 204 || out.Header.Get("Clear-Site-Data") != `"cookies"` {
		t.Errorf("logout: %d, Clear-Site-Data %q", out.StatusCode, out.Header.Get("Clear-Site-Data"))
	}
	if in.resolves(tok) {
		t.Fatal("the session still resolves after logout")
	}
}

func TestFormLoginRedirects(t *testing.T) {
	in := start(t)
	for rd, want := range map[string]string{
		"/app/page?x=1":                "/app/page?x=1",
		"":                             "/account",
		"https://evil.example/":        "/account",
		"//evil.example/":              "/account",
		"/\\evil.example":              "/account",
		"javascript:alert(1)":          "/account",
		"http://" + in.URL[7:] + "/ok": "http://" + in.URL[7:] + "/ok",
	} {
		form := url.Values{"username": {"admin"}, "password": {adminPassword}, "rd": {rd}}
		r := in.do(req{method: "POST", path: "/login", form: form.Encode()})
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != want {
			t.Errorf("rd=%q: %d Location %q, want 303 %q", rd, r.StatusCode, r.Header.Get("Location"), want)
		}
		if r.sessionCookie() == "" {
			t.Errorf("rd=%q: no cookie", rd)
		}
	}
	bad := in.do(req{method: "POST", path: "/login", form: "username=admin&password=wrong"})
	if bad.StatusCode != 401 || !strings.Contains(string(bad.body), "Wrong username or password") || bad.sessionCookie() != "" {
		t.Errorf("bad form login: %d %s", bad.StatusCode, bad.body)
	}
	page := in.do(req{method: "GET", path: "/login?rd=/x"})
	if page.StatusCode != 200 || !strings.Contains(page.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("login page: %d CSP %q", page.StatusCode, page.Header.Get("Content-Security-Policy"))
	}
}

func TestResolveDenies(t *testing.T) {
	in := start(t, "--trusted-proxies", "127.0.0.1")
	r := in.do(req{method: "GET", path: "/resolve"})
	if r.StatusCode != 401 || r.errorCode(t) != "unauthenticated" || r.Header.Get("Location") != "" {
		t.Errorf("API client without a session: %d Location %q", r.StatusCode, r.Header.Get("Location"))
	}
	browser := map[string]string{"Accept": "text/html", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example", "X-Forwarded-Uri": "/docs?a=b"}
	r = in.do(req{method: "GET", path: "/resolve", header: browser})
	if want := "/login?rd=" + url.QueryEscape("https://app.example/docs?a=b"); r.StatusCode != 401 || r.Header.Get("Location") != want {
		t.Errorf("browser: %d Location %q, want 401 %q", r.StatusCode, r.Header.Get("Location"), want)
	}
	r = in.do(req{method: "GET", path: "/resolve?redirect=1", header: map[string]string{"Accept": "text/html", "X-Original-URL": "https://app.example/x"}})
	if r.StatusCode != 302 || !strings.HasSuffix(r.Header.Get("Location"), url.QueryEscape("https://app.example/x")) {
		t.Errorf("redirect mode: %d Location %q", r.StatusCode, r.Header.Get("Location"))
	}
	// Without --trusted-proxies, forwarded headers from loopback are still
	// believed: a proxy on the same host. (From other peers they are not:
	// TestForwardedHeadersBelievedFromLoopbackAndTrustedProxies in server.)
	loopback := start(t)
	r = loopback.do(req{method: "GET", path: "/resolve", header: browser})
	if want := "/login?rd=" + url.QueryEscape("https://app.example/docs?a=b"); r.StatusCode != 401 || r.Header.Get("Location") != want {
		t.Errorf("browser, forwarded from loopback without --trusted-proxies: %d Location %q, want 401 %q", r.StatusCode, r.Header.Get("Location"), want)
	}
	// Envoy's ext_authz: the original path follows /resolve, Host is the app's.
	r = in.do(req{method: "GET", path: "/resolve/docs/page?a=b", header: map[string]string{"Accept": "text/html", "X-Forwarded-Proto": "https"}})
	if want := "/login?rd=" + url.QueryEscape("https://"+in.URL[len("http://"):]+"/docs/page?a=b"); r.StatusCode != 401 || r.Header.Get("Location") != want {
		t.Errorf("envoy-style path: %d Location %q, want %q", r.StatusCode, r.Header.Get("Location"), want)
	}
	tok := in.login("admin", adminPassword)
	if r := in.do(req{method: "GET", path: "/resolve/any/path", cookie: tok}); r.StatusCode != 200 || r.Header.Get("Remote-User") != "admin" {
		t.Errorf("envoy-style path with a session: %d", r.StatusCode)
	}
	for _, tok := range []string{"garbage", strings.Repeat("A", 43), "' OR 1=1 --"} {
		if in.resolves(tok) {
			t.Errorf("token %q resolved", tok)
		}
	}
}

func TestBearerClients(t *testing.T) {
	in := start(t)
	tok, id := in.token("admin", adminPassword)
	r := in.do(req{method: "GET", path: "/resolve", bearer: tok})
	if r.StatusCode != 200 || r.Header.Get("X-Session-Id") != id {
		t.Fatalf("bearer resolve: %d %s", r.StatusCode, r.Header.Get("X-Session-Id"))
	}
	if r := in.do(req{method: "POST", path: "/api/v1/tokens", json: map[string]any{"username": "admin", "password": "nope"}}); r.StatusCode != 401 || r.errorCode(t) != "bad_credentials" {
		t.Errorf("wrong password: %d %s", r.StatusCode, r.body)
	}
	cookie := in.login("admin", adminPassword)
	list := in.do(req{method: "GET", path: "/api/v1/sessions", bearer: tok}).json(t)["sessions"].([]any)
	if len(list) != 2 {
		t.Fatalf("sessions: %v", list)
	}
	for _, s := range list {
		s := s.(map[string]any)
		if (s["id"] == id) != (s["current"] == true) {
			t.Errorf("current flag wrong: %v", s)
		}
	}
	if r := in.do(req{method: "POST", path: "/api/v1/sessions/revoke-others", bearer: tok}); r.StatusCode != 200 || r.json(t)["revoked"] != 1.0 {
		t.Errorf("revoke-others: %d %s", r.StatusCode, r.body)
	}
	if in.resolves(cookie) {
		t.Error("revoke-others left the other session")
	}
	if r := in.do(req{method: "POST", path: "/logout", bearer: tok}); r.StatusCode != 204 {
		t.Errorf("bearer logout: %d", r.StatusCode)
	}
	if r := in.do(req{method: "GET", path: "/resolve", bearer: tok}); r.StatusCode != 401 {
		t.Errorf("bearer token after logout: %d", r.StatusCode)
	}
}

func TestFixation(t *testing.T) {
	in := start(t)
	planted := strings.Repeat("Q", 43)
	r := in.do(req{method: "POST", path: "/login", cookie: planted, json: map[string]any{"username": "admin", "password": adminPassword}})
	if got := r.sessionCookie(); got == "" || got == planted {
		t.Fatalf("login kept the client's cookie: %q", got)
	}
	if in.resolves(planted) {
		t.Fatal("a client-chosen token became a session")
	}
}

func TestOwnSessions(t *testing.T) {
	in := start(t)
	admin := in.login("admin", adminPassword)
	in.addUser(admin, "bob", "bob-password-1")
	bob1, bob2 := in.login("bob", "bob-password-1"), in.login("bob", "bob-password-1")
	list := in.do(req{method: "GET", path: "/api/v1/sessions", cookie: bob1}).json(t)["sessions"].([]any)
	var other string
	for _, s := range list {
		if s := s.(map[string]any); s["current"] != true {
			other = s["id"].(string)
		}
	}
	adminSession := in.do(req{method: "GET", path: "/api/v1/session", cookie: admin}).json(t)["session"].(map[string]any)["id"].(string)
	if r := in.do(req{method: "DELETE", path: "/api/v1/sessions/" + adminSession, cookie: bob1}); r.StatusCode != 404 || !in.resolves(admin) {
		t.Errorf("bob ended the admin's session: %d", r.StatusCode)
	}
	if r := in.do(req{method: "DELETE", path: "/api/v1/sessions/" + other, cookie: bob1}); r.StatusCode != 200 {
		t.Errorf("delete own other session: %d %s", r.StatusCode, r.body)
	}
	if in.resolves(bob2) || !in.resolves(bob1) {
		t.Error("DELETE ended the wrong session")
	}
}

func TestPasswordChange(t *testing.T) {
	in := start(t)
	admin := in.login("admin", adminPassword)
	in.addUser(admin, "carol", "carol-password-1")
	other := in.login("carol", "carol-password-1")
	tok, _ := in.token("carol", "carol-password-1")

	wrong := in.do(req{method: "POST", path: "/api/v1/password", bearer: tok, json: map[string]any{"current_password": "nope", "new_password": "carol-password-2"}})
	if wrong.StatusCode != 403 || wrong.errorCode(t) != "wrong_password" {
		t.Errorf("wrong current password: %d %s", wrong.StatusCode, wrong.body)
	}
	short := in.do(req{method: "POST", path: "/api/v1/password", bearer: tok, json: map[string]any{"current_password": "carol-password-1", "new_password": "short"}})
	if short.StatusCode != 400 || short.errorCode(t) != "invalid" {
		t.Errorf("short new password: %d %s", short.StatusCode, short.body)
	}
	r := in.do(req{method: "POST", path: "/api/v1/password", bearer: tok, json: map[string]any{"current_password": "carol-password-1", "new_password": "carol-password-2"}})
	if r.StatusCode != 200 {
		t.Fatalf("password change: %d %s", r.StatusCode, r.body)
	}
	body := r.json(t)
	newTok, _ := body["token"].(string)
	if newTok == "" || newTok == tok || body["revoked"] != 1.0 {
		t.Fatalf("password change answer %v", body)
	}
	if in.do(req{method: "GET", path: "/resolve", bearer: tok}).StatusCode != 401 {
		t.Error("the pre-change token still works")
	}
	if in.do(req{method: "GET", path: "/resolve", bearer: newTok}).StatusCode != 200 {
		t.Error("the rotated token does not work")
	}
	if in.resolves(other) {
		t.Error("the password change left another session alive")
	}
	if r := in.do(req{method: "POST", path: "/login", json: map[string]any{"username": "carol", "password": "carol-password-1"}}); r.StatusCode != 401 {
		t.Error("the old password still logs in")
	}
	in.login("carol", "carol-password-2")

	// By cookie: a new cookie replaces the old one.
	c := in.login("carol", "carol-password-2")
	r = in.do(req{method: "POST", path: "/api/v1/password", cookie: c, json: map[string]any{"current_password": "carol-password-2", "new_password": "carol-password-3"}})
	if r.StatusCode != 200 || r.sessionCookie() == "" || r.sessionCookie() == c || bytes.Contains(r.body, []byte(r.sessionCookie())) {
		t.Fatalf("cookie password change: %d cookie %q body %s", r.StatusCode, r.sessionCookie(), r.body)
	}
	if in.resolves(c) || !in.resolves(r.sessionCookie()) {
		t.Error("cookie rotation on password change failed")
	}
}

func TestAdminActionsTakeEffectAtOnce(t *testing.T) {
	in := start(t)
	admin := in.login("admin", adminPassword)
	id := in.addUser(admin, "dave", "dave-password-1", "user")
	s1 := in.login("dave", "dave-password-1")
	s1ID := in.do(req{method: "GET", path: "/api/v1/session", cookie: s1}).json(t)["session"].(map[string]any)["id"].(string)

	if r := in.do(req{method: "GET", path: "/api/v1/admin/users", cookie: s1}); r.StatusCode != 403 || r.errorCode(t) != "forbidden" {
		t.Errorf("non-admin on the admin API: %d", r.StatusCode)
	}
	list := in.do(req{method: "GET", path: "/api/v1/admin/users/dave/sessions", cookie: admin}).json(t)["sessions"].([]any)
	if len(list) != 1 {
		t.Fatalf("admin list of dave's sessions: %v", list)
	}
	if r := in.do(req{method: "DELETE", path: "/api/v1/admin/sessions/" + s1ID, cookie: admin}); r.StatusCode != 200 || in.resolves(s1) {
		t.Fatalf("admin revoke one: %d; still resolves: %v", r.StatusCode, in.resolves(s1))
	}
	s2, s3 := in.login("dave", "dave-password-1"), in.login("dave", "dave-password-1")
	if r := in.do(req{method: "POST", path: "/api/v1/admin/users/" + id + "/revoke", cookie: admin}); r.StatusCode != 200 || r.json(t)["revoked"] != 2.0 || in.resolves(s2) || in.resolves(s3) {
		t.Fatalf("admin revoke all: %d %s", r.StatusCode, r.body)
	}
	s4 := in.login("dave", "dave-password-1")
	r := in.do(req{method: "PUT", path: "/api/v1/admin/users/dave/roles", cookie: admin, json: map[string]any{"roles": []string{"user", "editor"}}})
	if r.StatusCode != 200 || in.resolves(s4) {
		t.Fatalf("role change: %d %s; old session still resolves: %v", r.StatusCode, r.body, in.resolves(s4))
	}
	s5 := in.login("dave", "dave-password-1")
	if got := in.do(req{method: "GET", path: "/resolve", cookie: s5}).Header.Get("Remote-Groups"); got != "editor,user" {
		t.Errorf("Remote-Groups after the role change: %q", got)
	}
	if r := in.do(req{method: "POST", path: "/api/v1/admin/users/dave/disable", cookie: admin}); r.StatusCode != 200 || in.resolves(s5) {
		t.Fatalf("disable: %d; session still resolves: %v", r.StatusCode, in.resolves(s5))
	}
	if r := in.do(req{method: "POST", path: "/login", json: map[string]any{"username": "dave", "password": "dave-password-1"}}); r.StatusCode != 403 || r.errorCode(t) != "account_disabled" {
		t.Errorf("disabled login: %d %s", r.StatusCode, r.body)
	}
	if r := in.do(req{method: "POST", path: "/login", json: map[string]any{"username": "dave", "password": "wrong"}}); r.StatusCode != 401 {
		t.Errorf("disabled with a wrong password must look like any wrong password: %d", r.StatusCode)
	}

	ev := in.do(req{method: "GET", path: "/api/v1/admin/audit?user=dave", cookie: admin}).json(t)["events"].([]any)
	types := map[string]bool{}
	for _, e := range ev {
		e := e.(map[string]any)
		types[e["type"].(string)] = true
		if e["type"] == "session.revoked" && (e["actor"] == "" || e["reason"] == "") {
			t.Errorf("revocation without actor or reason: %v", e)
		}
	}
	for _, want := range []string{"user.created", "login.succeeded", "login.failed", "session.created", "session.revoked", "roles.changed", "user.disabled"} {
		if !types[want] {
			t.Errorf("audit log lacks %s (has %v)", want, types)
		}
	}
	if r := in.do(req{method: "GET", path: "/api/v1/admin/audit?user=dave&type=login.", cookie: admin}); len(r.json(t)["events"].([]any)) == 0 {
		t.Error("type filter found nothing")
	}
}

// TestTimeouts: a session used every 500ms outlives the idle timeout and
// ends at the absolute one; a session left alone ends at the idle one.
// The active session has 2 seconds or more to spare on each deadline
// (idle 2.5s, a request every 0.5s; absolute 6s, the last request at
// 3.5s), so that a loaded machine (a request slowed by a second under
// the race detector) does not end it early.
func TestTimeouts(t *testing.T) {
	in := start(t, "--idle-timeout", "2500ms", "--absolute-timeout", "6s")
	idle := in.login("admin", adminPassword)
	active := in.login("admin", adminPassword)
	for range 7 { // 3.5s: alive past the idle timeout
		time.Sleep(500 * time.Millisecond)
		if !in.resolves(active) {
			t.Fatal("an active session hit the idle timeout")
		}
	}
	if in.resolves(idle) {
		t.Fatal("an idle session outlived the idle timeout")
	}
	for in.resolves(active) {
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if in.resolves(active) {
		t.Fatal("session resolved after its absolute timeout")
	}
}

func TestPerUserLimit(t *testing.T) {
	in := start(t, "--max-sessions-per-user", "3")
	var wg sync.WaitGroup
	for range 8 { // under the per-account login rate limit of 10
		wg.Go(func() {
			in.do(req{method: "POST", path: "/api/v1/tokens", json: map[string]any{"username": "admin", "password": adminPassword}})
		})
	}
	wg.Wait()
	admin := in.login("admin", adminPassword)
	if n := len(in.do(req{method: "GET", path: "/api/v1/sessions", cookie: admin}).json(t)["sessions"].([]any)); n != 3 {
		t.Errorf("after 9 concurrent logins with a limit of 3 the user holds %d sessions", n)
	}
}

func TestCrossOriginRefused(t *testing.T) {
	in := start(t)
	tok := in.login("admin", adminPassword)
	cross := map[string]string{"Sec-Fetch-Site": "cross-site"}
	for _, r := range []req{
		{method: "POST", path: "/logout", cookie: tok, header: cross},
		{method: "POST", path: "/api/v1/sessions/revoke-others", cookie: tok, header: cross},
		{method: "POST", path: "/login", header: cross, json: map[string]any{"username": "admin", "password": adminPassword}},
		{method: "POST", path: "/login", header: map[string]string{"Origin": "https://evil.example"}, form: "username=admin&password=" + adminPassword},
	} {
		res := in.do(r)
		if res.StatusCode != 403 || res.sessionCookie() != "" {
			t.Errorf("cross-origin %s %s: %d", r.method, r.path, res.StatusCode)
		}
	}
	if !in.resolves(tok) {
		t.Error("a cross-origin logout ended the session")
	}
}

func TestRateLimits(t *testing.T) {
	in := start(t)
	var last resp
	for range 11 {
		last = in.do(req{method: "POST", path: "/login", json: map[string]any{"username": "admin", "password": "guess"}})
	}
	if last.StatusCode != 429 || last.errorCode(t) != "rate_limited" || last.Header.Get("Retry-After") == "" {
		t.Errorf("11th wrong password: %d %s Retry-After %q", last.StatusCode, last.body, last.Header.Get("Retry-After"))
	}
	var flood resp
	for i := range 102 {
		flood = in.do(req{method: "GET", path: "/resolve", bearer: fmt.Sprintf("%043d", i)})
	}
	if flood.StatusCode != 429 || flood.Header.Get("Retry-After") == "" {
		t.Errorf("invalid-token flood: %d", flood.StatusCode)
	}
}

func TestBadInputGetsClearErrors(t *testing.T) {
	in := start(t)
	admin := in.login("admin", adminPassword)
	for _, c := range []struct {
		r      req
		status int
		code   string
	}{
		{req{method: "POST", path: "/api/v1/tokens", header: map[string]string{"Content-Type": "text/plain"}}, 415, "unsupported_media"},
		{req{method: "POST", path: "/api/v1/tokens", json: "not an object"}, 400, "bad_request"},
		{req{method: "POST", path: "/api/v1/tokens", json: map[string]any{"username": "admin", "password": "x", "extra": 1}}, 400, "bad_request"},
		{req{method: "POST", path: "/api/v1/tokens", json: map[string]any{"username": "admin"}}, 400, "invalid"},
		{req{method: "POST", path: "/api/v1/tokens", json: map[string]any{"username": "admin", "password": strings.Repeat("x", 70_000)}}, 413, "too_large"},
		{req{method: "GET", path: "/api/v1/tokens"}, 405, "method_not_allowed"},
		{req{method: "GET", path: "/api/v1/nothing"}, 404, "not_found"},
		{req{method: "GET", path: "/api/v1/sessions"}, 401, "unauthenticated"},
		{req{method: "POST", path: "/api/v1/admin/users", cookie: admin, json: map[string]any{"username": "admin", "password": "long-enough-1", "roles": []string{}}}, 409, "conflict"},
		{req{method: "POST", path: "/api/v1/admin/users", cookie: admin, json: map[string]any{"username": "bad name", "password": "long-enough-1"}}, 400, "invalid"},
		{req{method: "POST", path: "/api/v1/admin/users", cookie: admin, json: map[string]any{"username": "x", "password": "long-enough-1", "roles": []string{"BAD ROLE"}}}, 400, "invalid"},
		{req{method: "GET", path: "/api/v1/admin/users/nobody/sessions", cookie: admin}, 404, "not_found"},
		{req{method: "DELETE", path: "/api/v1/admin/sessions/nope", cookie: admin}, 404, "not_found"},
		{req{method: "GET", path: "/api/v1/admin/audit?limit=0", cookie: admin}, 400, "invalid"},
	} {
		r := in.do(c.r)
		if r.StatusCode != c.status || r.errorCode(t) != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.r.method, c.r.path, r.StatusCode, r.body, c.status, c.code)
		}
	}
	if r := in.do(req{method: "GET", path: "/api/v1/tokens"}); r.Header.Get("Allow") != "POST" {
		t.Errorf("405 without Allow: %q", r.Header.Get("Allow"))
	}
}

func TestNoTokenInLogsOrStore(t *testing.T) {
	in := start(t)
	var tokens []string
	for range 3 {
		tokens = append(tokens, in.login("admin", adminPassword))
		tok, _ := in.token("admin", adminPassword)
		tokens = append(tokens, tok)
	}
	in.do(req{method: "GET", path: "/resolve", bearer: tokens[1]})
	in.do(req{method: "POST", path: "/logout", cookie: tokens[0]})
	in.do(req{method: "GET", path: "/resolve", cookie: tokens[0]})
	in.do(req{method: "GET", path: "/api/v1/admin/audit", cookie: tokens[2]})
	data, logs := in.dataFiles(), in.logs.String()
	if !strings.Contains(logs, "session.revoked") {
		t.Fatalf("the logs do not show the events; the check would prove nothing:\n%s", logs)
	}
	for _, tok := range tokens {
		if strings.Contains(logs, tok) || bytes.Contains(data, []byte(tok)) {
			t.Fatal("a token appears in the logs or the data files")
		}
	}
	if bytes.Contains(data, []byte(adminPassword)) || strings.Contains(logs, adminPassword) {
		t.Fatal("the password appears in the logs or the data files")
	}
}

func TestUpstreamProxy(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user=%s groups=%s name=%q cookie=%q auth=%q", r.Header.Get("Remote-User"), r.Header.Get("Remote-Groups"), r.Header.Get("Remote-Name"), r.Header.Get("Cookie"), r.Header.Get("Authorization"))
	}))
	defer app.Close()
	in := start(t, "--upstream", app.URL)
	r := in.do(req{method: "GET", path: "/app/page", header: map[string]string{"Accept": "text/html", "Remote-User": "admin"}})
	if r.StatusCode != 302 || r.Header.Get("Location") != "/login?rd="+url.QueryEscape("/app/page") {
		t.Fatalf("anonymous browser: %d Location %q body %s", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	if r := in.do(req{method: "GET", path: "/app/page", header: map[string]string{"Remote-User": "admin"}}); r.StatusCode != 401 {
		t.Fatalf("anonymous API client with a spoofed Remote-User: %d", r.StatusCode)
	}
	spoofed := map[string]string{"Remote-User": "mallory", "Remote-Groups": "root", "Remote-Name": "Mallory", "Cookie": "theme=dark"}
	tok := in.login("admin", adminPassword)
	r = in.do(req{method: "GET", path: "/app/page", cookie: tok, header: spoofed})
	if want := `user=admin groups=admin name="" cookie="theme=dark" auth=""`; r.StatusCode != 200 || string(r.body) != want {
		t.Fatalf("signed-in request reached the app as %d %s, want %s", r.StatusCode, r.body, want)
	}
	bearer, _ := in.token("admin", adminPassword)
	r = in.do(req{method: "GET", path: "/app/page", bearer: bearer, header: spoofed})
	if want := `user=admin groups=admin name="" cookie="theme=dark" auth=""`; r.StatusCode != 200 || string(r.body) != want {
		t.Fatalf("bearer request reached the app as %d %s, want %s", r.StatusCode, r.body, want)
	}
}

func TestConfigSources(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sessiond.conf")
	os.WriteFile(cfg, []byte("# comment\nidle-timeout = 5m\nmax-sessions-per-user = 7\ncookie-name = \"file-sid\"\n"), 0o600)
	env := map[string]string{"SESSIOND_CONFIG": cfg, "SESSIOND_MAX_SESSIONS_PER_USER": "9"}
	o, _, err := parseOptions("t", []string{"--cookie-name", "flag-sid"}, func(k string) string { return env[k] }, &bytes.Buffer{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.idleTimeout != 5*time.Minute || o.maxSessionsPerUser != 9 || o.cookieName != "flag-sid" {
		t.Errorf("file < env < flag: idle %v (file 5m), max %d (env 9), cookie %q (flag)", o.idleTimeout, o.maxSessionsPerUser, o.cookieName)
	}

	for name, args := range map[string][]string{
		"idle above absolute": {"--idle-timeout", "13h"},
		"__Host- with domain": {"--cookie-domain", "example.com"},
		"insecure __Host-":    {"--dev-insecure-cookie"},
		"bad proxy":           {"--trusted-proxies", "not-an-ip"},
		"bad store":           {"--store", "mysql://x"},
		"bad upstream":        {"--upstream", "ftp://x"},
		"unknown flag":        {"--no-such-flag"},
	} {
		var out bytes.Buffer
		code := Main(t.Context(), append([]string{"serve", "--listen", "127.0.0.1:0", "--store", "sqlite:" + filepath.Join(dir, "x.db")}, args...), func(string) string { return "" }, nil, &out, &out)
		if code == 0 || out.Len() == 0 {
			t.Errorf("%s: exit %d, message %q", name, code, out.String())
		}
	}
}

func TestCLIAgainstRunningServer(t *testing.T) {
	in := start(t)
	run := func(stdin string, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		code := Main(t.Context(), append(args, "--store", "sqlite:"+in.db), func(k string) string { return "" }, strings.NewReader(stdin), &out, &errOut)
		if code != 0 {
			t.Fatalf("sessiond %v: exit %d: %s", args, code, errOut.String())
		}
		return out.String()
	}
	run("erin-password-1\n", "users", "add", "erin", "--roles", "user")
	tok := in.login("erin", "erin-password-1")
	if out := run("", "users", "list"); !strings.Contains(out, "erin") || !strings.Contains(out, "admin") {
		t.Errorf("users list: %s", out)
	}
	if out := run("", "sessions", "list", "erin"); strings.Count(out, "\n") != 2 {
		t.Errorf("sessions list: %s", out)
	}
	run("", "users", "roles", "erin", "user,editor")
	if in.resolves(tok) {
		t.Error("a role change from the CLI left the session alive")
	}
	tok = in.login("erin", "erin-password-1")
	run("", "sessions", "revoke", "--user", "erin")
	if in.resolves(tok) {
		t.Error("sessions revoke --user left the session alive")
	}
	run("erin-password-2\n", "users", "passwd", "erin")
	tok = in.login("erin", "erin-password-2")
	enrolTOTP(t, in.do, tok)
	if r := in.do(req{method: "POST", path: "/login", json: map[string]any{"username": "erin", "password": "erin-password-2"}}); r.sessionCookie() != "" {
		t.Fatal("with TOTP on, the password alone gave a session")
	}
	if out := run("", "users", "reset-second-factors", "erin"); !strings.Contains(out, "ended 1 session") {
		t.Errorf("users reset-second-factors: %q", out)
	}
	tok = in.login("erin", "erin-password-2") // the password alone is enough again
	run("", "users", "disable", "erin")
	if in.resolves(tok) {
		t.Error("disable left the session alive")
	}
	if out := run("", "version"); !strings.HasPrefix(out, "sessiond ") {
		t.Errorf("version: %q", out)
	}
}

func TestHealthReadinessMetrics(t *testing.T) {
	in := start(t)
	if r := in.do(req{method: "GET", path: "/healthz"}); r.StatusCode != 200 {
		t.Errorf("healthz: %d", r.StatusCode)
	}
	if r := in.do(req{method: "GET", path: "/readyz"}); r.StatusCode != 200 {
		t.Errorf("readyz: %d", r.StatusCode)
	}
	tok := in.login("admin", adminPassword)
	in.resolves(tok)
	in.resolves("nope")
	m := string(in.do(req{method: "GET", path: "/metrics"}).body)
	for _, want := range []string{`sessiond_resolve_total{outcome="ok"} 1`, `sessiond_resolve_total{outcome="unauthenticated"} 1`, `sessiond_session_events_total{type="created"} 1`, "sessiond_resolve_duration_seconds_bucket", "sessiond_store_errors_total 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestShutdownDrainsInFlightRequests(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		w.Write([]byte("done"))
	}))
	defer app.Close()
	in := start(t, "--upstream", app.URL)
	tok := in.login("admin", adminPassword)
	got := make(chan resp, 1)
	go func() { got <- in.do(req{method: "GET", path: "/slow", cookie: tok}) }()
	<-arrived // in flight: through sessiond, at the app
	stopped := make(chan int, 1)
	go func() { stopped <- in.stop() }()
	time.Sleep(200 * time.Millisecond)
	close(release)
	if r := <-got; r.StatusCode != 200 || string(r.body) != "done" {
		t.Errorf("in-flight request during shutdown: %d %s", r.StatusCode, r.body)
	}
	if code := <-stopped; code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// TestSecurityHeaders checks the headers that keep browsers from sniffing,
// framing or leaking sessiond's responses: on pages, API answers, errors
// and resolve's refusals (which a proxy may pass to the browser), and
// HSTS on every answer when serving TLS is configured. A resolve 200
// answers a proxy, which keeps only the identity headers; it must not be
// cached.
func TestSecurityHeaders(t *testing.T) {
	in := start(t)
	tok := in.login("admin", adminPassword)
	browserHeaders := map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
	for _, r := range []req{
		{method: "GET", path: "/login"},
		{method: "GET", path: "/account", cookie: tok},
		{method: "GET", path: "/api/v1/session", cookie: tok},
		{method: "GET", path: "/api/v1/nothing-here"},
		{method: "GET", path: "/resolve"},
		{method: "GET", path: "/resolve", header: map[string]string{"Accept": "text/html"}},
		{method: "GET", path: "/resolve/app/page", cookie: strings.Repeat("A", 43)},
	} {
		got := in.do(r)
		for k, v := range browserHeaders {
			if got.Header.Get(k) != v {
				t.Errorf("%s %s (%d): %s = %q, want %q", r.method, r.path, got.StatusCode, k, got.Header.Get(k), v)
			}
		}
	}
	r := in.do(req{method: "GET", path: "/resolve", cookie: tok})
	if r.StatusCode != 200 || r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Remote-User") != "admin" {
		t.Errorf("resolve with a session: %d, Cache-Control %q, Remote-User %q", r.StatusCode, r.Header.Get("Cache-Control"), r.Header.Get("Remote-User"))
	}
}

// TestTLS serves HTTPS from a certificate file and key: every answer, a
// resolve 200 included, then carries HSTS, and the session cookie works
// over it.
func TestTLS(t *testing.T) {
	pki := testenv.WritePKI(t, t.TempDir(), "127.0.0.1")
	in := start(t, "--tls-cert", pki.CertFile, "--tls-key", pki.KeyFile)
	if !strings.HasPrefix(in.URL, "https://") {
		t.Fatalf("listening on %s, want https", in.URL)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Roots}}, Timeout: 10 * time.Second}

	res, err := client.Post(in.URL+"/login", "application/json", strings.NewReader(`{"username":"admin","password":"`+adminPassword+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var tok string
	for _, c := range res.Cookies() {
		if c.Name == "__Host-sid" {
			tok = c.Value
		}
	}
	if res.StatusCode != 200 || tok == "" {
		t.Fatalf("login over TLS: %d, cookie %t", res.StatusCode, tok != "")
	}
	for _, path := range []string{"/login", "/resolve", "/api/v1/session"} {
		r, _ := http.NewRequest("GET", in.URL+path, nil)
		r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: tok})
		res, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Strict-Transport-Security"), "max-age=") {
			t.Errorf("GET %s over TLS: %d, Strict-Transport-Security %q", path, res.StatusCode, res.Header.Get("Strict-Transport-Security"))
		}
	}
}

// TestStoreThatStopsAnswering locks the PostgreSQL session table, so that
// every lookup waits, and checks that /resolve answers 503 once
// --store-timeout has passed (never 200, never an unbounded wait), and 200
// again once the lock goes. The store's cache is off: with it, a session
// looked up before is answered from the cache while the listening
// connection vouches that nothing changed (a lock is no change), which
// store/pgstore's tests of a stalled listener cover.
func TestStoreThatStopsAnswering(t *testing.T) {
	pg := testenv.PostgresSchema(t)
	sep := "?"
	if strings.Contains(pg, "?") {
		sep = "&"
	}
	in := start(t, "--store", pg+sep+"cache=off", "--store-timeout", "300ms")
	tok := in.login("admin", adminPassword)
	if !in.resolves(tok) {
		t.Fatal("a fresh session does not resolve")
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE sessiond_sessions IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := in.do(req{method: "GET", path: "/resolve", cookie: tok})
	if took := time.Since(start); r.StatusCode != 503 || r.errorCode(t) != "store_unavailable" || took > 2*time.Second {
		t.Errorf("resolve with the table locked: %d %s after %v; want 503 after about 300ms", r.StatusCode, r.body, took)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if !in.resolves(tok) {
		t.Error("the session does not resolve after the lock went")
	}
}
