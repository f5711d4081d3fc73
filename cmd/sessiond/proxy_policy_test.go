//go:build unix

package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestProxyNginxPolicies runs docs/proxies/nginx.conf, with its example
// locations that ask more of a session (/billing/: aal=2 and max_age;
// /ops/: role ops or admin), in a real nginx. A session signed in with a
// password alone is led to the second-factor step and back; one whose
// sign-in is too old, to re-authenticate and back; a user without the
// role gets 403 and goes nowhere; API clients get 401 or 403. The test
// changes one thing in the file besides addresses: max_age, from 900 to 2
// seconds, so that a sign-in goes stale within the test.
func TestProxyNginxPolicies(t *testing.T) {
	bin := proxyBinary(t, "nginx")
	e := newEdge(t)
	in := start(t, "--public-url", e.origin)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sessiond logs:\n%s", in.logs)
		}
	})
	e.sessiond = strings.TrimPrefix(in.URL, "http://")
	startNginx(e, bin, map[string]string{`"aal=2&max_age=900"`: `"aal=2&max_age=2"`})

	admin, _ := e.login("admin", adminPassword)
	for _, u := range []struct {
		name  string
		roles []string
	}{{"bob", []string{}}, {"olga", []string{"ops"}}} {
		if r := e.do(req{method: "POST", path: "/api/v1/admin/users", cookie: admin, json: map[string]any{"username": u.name, "password": u.name + "-password-1", "roles": u.roles}}); r.StatusCode != 201 {
			t.Fatalf("create %s: %d %s", u.name, r.StatusCode, r.body)
		}
	}
	bob, _ := e.login("bob", "bob-password-1")
	olga, _ := e.login("olga", "olga-password-1")
	browser := map[string]string{"Accept": "text/html"}
	back := func(path string) string { return url.QueryEscape(e.origin + path) }

	// Bob sets up TOTP in another session; this one stays AAL1.
	other, _ := e.login("bob", "bob-password-1")
	codeAt, _ := enrolTOTP(t, e.do, other)

	hits := e.app.hits.Load()
	t.Run("aal=2: a password alone leads to the second factor, and back", func(t *testing.T) {
		r := e.do(req{method: "GET", path: "/billing/invoice?n=7", cookie: bob, header: browser})
		want := "/login/second-factor?rd=" + back("/billing/invoice?n=7")
		if r.StatusCode != http.StatusFound || r.Header.Get("Location") != e.origin+want {
			t.Fatalf("AAL1 browser: %d Location %q, want 302 %q", r.StatusCode, r.Header.Get("Location"), e.origin+want)
		}
		if r := e.do(req{method: "GET", path: want, cookie: bob, header: browser}); r.StatusCode != 200 || !strings.Contains(string(r.body), `name="code"`) {
			t.Fatalf("the second-factor page through the proxy: %d", r.StatusCode)
		}
		r = e.do(req{method: "POST", path: "/login/second-factor", cookie: bob, header: map[string]string{"Origin": e.origin},
			form: url.Values{"code": {codeAt(time.Now())}, "rd": {e.origin + "/billing/invoice?n=7"}}.Encode()})
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != e.origin+"/billing/invoice?n=7" || r.sessionCookie() == "" {
			t.Fatalf("the code: %d Location %q: %s", r.StatusCode, r.Header.Get("Location"), r.body)
		}
		bob = r.sessionCookie()
		got := e.appSaw(t, e.do(req{method: "GET", path: "/billing/invoice?n=7", cookie: bob, header: browser}))
		if got.Header.Get("X-Session-AAL") != "2" || got.Header.Get("X-Session-AMR") != "pwd,otp,mfa" {
			t.Errorf("the app got X-Session-AAL %q, X-Session-AMR %q", got.Header.Get("X-Session-AAL"), got.Header.Get("X-Session-AMR"))
		}
		if r := e.do(req{method: "GET", path: "/billing/", cookie: olga}); r.StatusCode != 401 || !strings.Contains(string(r.body), "unauthenticated") {
			t.Errorf("AAL1 API client: %d %s, want 401", r.StatusCode, r.body)
		}
	})

	t.Run("role=ops,admin: 403 for others, no redirect", func(t *testing.T) {
		r := e.do(req{method: "GET", path: "/ops/panel", cookie: bob, header: browser})
		if r.StatusCode != http.StatusForbidden || r.Header.Get("Location") != "" {
			t.Errorf("bob: %d Location %q, want 403 and no Location", r.StatusCode, r.Header.Get("Location"))
		}
		for name, token := range map[string]string{"olga (ops)": olga, "admin": admin} {
			if got := e.appSaw(t, e.do(req{method: "GET", path: "/ops/panel", cookie: token})); got.Path != "/ops/panel" {
				t.Errorf("%s: the app got %q", name, got.Path)
			}
		}
	})

	t.Run("max_age: a stale sign-in leads to re-authentication, and back", func(t *testing.T) {
		time.Sleep(2500 * time.Millisecond)
		r := e.do(req{method: "GET", path: "/billing/invoice?n=8", cookie: bob, header: browser})
		want := "/login/reauth?rd=" + back("/billing/invoice?n=8")
		if r.StatusCode != http.StatusFound || r.Header.Get("Location") != e.origin+want {
			t.Fatalf("stale browser: %d Location %q, want 302 %q", r.StatusCode, r.Header.Get("Location"), e.origin+want)
		}
		if r := e.do(req{method: "GET", path: want, cookie: bob, header: browser}); r.StatusCode != 200 || !strings.Contains(string(r.body), `name="password"`) {
			t.Fatalf("the re-authentication page through the proxy: %d", r.StatusCode)
		}
		r = e.do(req{method: "POST", path: "/login/reauth", cookie: bob, header: map[string]string{"Origin": e.origin},
			form: url.Values{"password": {"bob-password-1"}, "rd": {e.origin + "/billing/invoice?n=8"}}.Encode()})
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != e.origin+"/billing/invoice?n=8" || r.sessionCookie() == "" {
			t.Fatalf("the password: %d Location %q: %s", r.StatusCode, r.Header.Get("Location"), r.body)
		}
		if got := e.appSaw(t, e.do(req{method: "GET", path: "/billing/invoice?n=8", cookie: r.sessionCookie(), header: browser})); got.Path != "/billing/invoice?n=8" {
			t.Errorf("the app got %q", got.Path)
		}
	})

	if stray := e.app.stray(); len(stray) != 0 {
		t.Errorf("requests for sessiond's pages reached the app: %v", stray)
	}
	t.Logf("the app answered %d requests", e.app.hits.Load()-hits)
}
