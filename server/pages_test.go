package server

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// The web pages in a real browser: cmd/sessiond/browser_test.go. The tests
// here check, over plain HTTP, what holds for every page and every form.

// pageServer is a Server on httptest with an admin ("root") and a user
// ("ivy"), with cheap password hashing.
type pageServer struct {
	t     *testing.T
	url   string
	srv   *Server
	audit audit.Log
}

func newPageServer(t *testing.T, cfg Config, throttle app.ThrottleConfig, opts ...func(*Deps)) *pageServer {
	t.Helper()
	dir, err := sqliteusers.Open(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	acc := users.NewAccounts(dir, users.Params{Memory: 64, Time: 1, Threads: 1})
	d := Deps{Store: memstore.New(), Accounts: acc, Audit: dir, Throttle: throttle}
	for _, o := range opts {
		o(&d)
	}
	srv, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, u := range []struct {
		name  string
		roles []string
	}{{"root", []string{"admin"}}, {"ivy", nil}} {
		if _, err := acc.Add(ctx, u.name, u.name+"-password", u.roles); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &pageServer{t: t, url: hs.URL, srv: srv, audit: dir}
}

var client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// do sends a request with the session token as cookie (if not "") and a
// form body (if not nil), and returns the response and its body.
func (ps *pageServer) do(method, path, token string, form url.Values, header map[string]string) (*http.Response, string) {
	ps.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r, err := http.NewRequest(method, ps.url+path, body)
	if err != nil {
		ps.t.Fatal(err)
	}
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: token})
	}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	res, err := client.Do(r)
	if err != nil {
		ps.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// login signs username in through the login form and returns the token.
func (ps *pageServer) login(username string) string {
	ps.t.Helper()
	res, body := ps.do("POST", "/login", "", url.Values{"username": {username}, "password": {username + "-password"}}, nil)
	for _, c := range res.Cookies() {
		if c.Name == "__Host-sid" && c.Value != "" {
			return c.Value
		}
	}
	ps.t.Fatalf("login %s: %d %s", username, res.StatusCode, body)
	return ""
}

// valid reports whether token names a live session.
func (ps *pageServer) valid(token string) bool {
	ps.t.Helper()
	_, err := ps.srv.Sessions().Validate(ps.t.Context(), token, session.Client{})
	return err == nil
}

var postForm = regexp.MustCompile(`<form method="post" action="([^"]+)"`)

// forms returns the actions of the post forms on the pages an admin sees.
func (ps *pageServer) forms(token string) []string {
	ps.t.Helper()
	var actions []string
	for _, page := range []string{"/account", "/admin", "/admin/users/ivy", "/admin/users/root", "/admin/audit"} {
		res, body := ps.do("GET", page, token, nil, nil)
		if res.StatusCode != 200 {
			ps.t.Fatalf("GET %s: %d", page, res.StatusCode)
		}
		for _, m := range postForm.FindAllStringSubmatch(body, -1) {
			if a := m[1]; !slices.Contains(actions, a) {
				actions = append(actions, a)
			}
		}
	}
	return actions
}

// TestPageFormsRefuseCrossOrigin posts every form of every page from
// another origin, with a valid session cookie: each is refused with 403
// and changes nothing.
func TestPageFormsRefuseCrossOrigin(t *testing.T) {
	ps := newPageServer(t, Config{}, app.ThrottleConfig{})
	admin, other, ivy := ps.login("root"), ps.login("root"), ps.login("ivy")
	actions := ps.forms(admin)
	// Every kind of form: one session, the others, password, logout, and
	// the console's create, roles, disable, revoke one, revoke all.
	for _, want := range []string{"/account/sessions/revoke-others", "/account/password", "/logout", "/admin/users", "/admin/users/{user}/roles", "/admin/users/{user}/disable", "/admin/users/{user}/revoke", "/admin/users/{user}/sessions/{id}/revoke", "/account/sessions/{id}/revoke"} {
		re := regexp.MustCompile("^" + strings.NewReplacer(`\{user\}`, "u_[^/]+", `\{id\}`, "[^/]+").Replace(regexp.QuoteMeta(want)) + "$")
		if !slices.ContainsFunc(actions, re.MatchString) {
			t.Errorf("no form posts to %s; the pages' forms: %q", want, actions)
		}
	}
	form := url.Values{
		"username": {"mallory"}, "password": {"mallory-password"}, "roles": {"admin"},
		"current_password": {"root-password"}, "new_password": {"pwned-password"}, "confirm_password": {"pwned-password"},
	}
	for _, action := range actions {
		for _, h := range []map[string]string{
			{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
			{"Sec-Fetch-Site": "same-site", "Origin": "https://other.127.0.0.1.example"},
			{"Origin": "https://evil.example"}, // an older browser: Origin only
		} {
			if res, body := ps.do("POST", action, admin, form, h); res.StatusCode != http.StatusForbidden {
				t.Errorf("cross-origin POST %s (%v): %d %.200s, want 403", action, h, res.StatusCode, body)
			}
		}
		// A browser is told in a page, an API client in JSON.
		browser := map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Accept": "text/html", "Origin": "https://evil.example"}
		if res, body := ps.do("POST", action, admin, form, browser); !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "sent from another site") {
			t.Errorf("cross-origin form POST %s from a browser: %d %s %.200s, want an error page", action, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
		if res, body := ps.do("POST", action, admin, form, map[string]string{"Sec-Fetch-Site": "cross-site"}); res.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, `"cross_origin"`) {
			t.Errorf("cross-origin POST %s from a program: %s %.200s, want a JSON error", action, res.Header.Get("Content-Type"), body)
		}
	}
	for name, tok := range map[string]string{"this": admin, "another": other, "ivy's": ivy} {
		if !ps.valid(tok) {
			t.Errorf("a cross-origin form post ended %s session", name)
		}
	}
	if _, err := ps.srv.app.Accounts().Lookup(t.Context(), "mallory"); err == nil {
		t.Error("a cross-origin form post created a user")
	}
	if u, _ := ps.srv.app.Accounts().Lookup(t.Context(), "ivy"); u.Disabled || len(u.Roles) != 0 {
		t.Errorf("a cross-origin form post changed ivy: %+v", u)
	}
	if ps.login("root") == "" { // the password is unchanged
		t.Error("the password changed")
	}
}

// TestPageFormsNeedASession posts every form without a session: each
// sends the browser to the login page, to come back to the form's page.
func TestPageFormsNeedASession(t *testing.T) {
	ps := newPageServer(t, Config{}, app.ThrottleConfig{})
	admin := ps.login("root")
	for _, action := range ps.forms(admin) {
		if action == "/logout" || action == "/login" {
			continue
		}
		res, _ := ps.do("POST", action, "", url.Values{"roles": {"admin"}}, map[string]string{"Sec-Fetch-Site": "same-origin"})
		want := "/login?rd=" + url.QueryEscape(formPage(action))
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != want {
			t.Errorf("POST %s without a session: %d Location %q, want 303 %q", action, res.StatusCode, res.Header.Get("Location"), want)
		}
	}
}

// TestAdminPagesNeedTheRole: a signed-in user without role admin gets a
// 403 page from every console route, and changes nothing.
func TestAdminPagesNeedTheRole(t *testing.T) {
	ps := newPageServer(t, Config{}, app.ThrottleConfig{})
	ivy := ps.login("ivy")
	for _, r := range []struct{ method, path string }{
		{"GET", "/admin"}, {"GET", "/admin/audit"}, {"GET", "/admin/users/root"},
		{"POST", "/admin/users"}, {"POST", "/admin/users/ivy/roles"}, {"POST", "/admin/users/root/disable"},
		{"POST", "/admin/users/root/revoke"}, {"GET", "/admin/webhooks"}, {"POST", "/admin/webhooks/0123456789abcdef/retry"},
	} {
		var form url.Values
		if r.method == "POST" {
			form = url.Values{"username": {"mallory"}, "password": {"mallory-password"}, "roles": {"admin"}}
		}
		res, body := ps.do(r.method, r.path, ivy, form, nil)
		if res.StatusCode != http.StatusForbidden || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "needs the admin role") {
			t.Errorf("%s %s as a user: %d %s, want the 403 page", r.method, r.path, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	if u, _ := ps.srv.app.Accounts().Lookup(t.Context(), "ivy"); len(u.Roles) != 0 {
		t.Errorf("ivy gave herself roles %v", u.Roles)
	}
	if _, err := ps.srv.app.Accounts().Lookup(t.Context(), "mallory"); err == nil {
		t.Error("a user without role admin created a user")
	}
}

// inline finds what a strict CSP blocks: scripts, event handler
// attributes, inline styles, javascript: URLs.
var inline = regexp.MustCompile(`(?i)<script|<style|\s(on[a-z]+|style)\s*=|javascript:`)

// TestPagesHeaders: every page has the strict CSP, is never cached, and
// holds no script and no inline style (the CSP would block them).
func TestPagesHeaders(t *testing.T) {
	ps := newPageServer(t, Config{}, app.ThrottleConfig{})
	admin := ps.login("root")
	for _, page := range []struct{ path, token string }{
		{"/login", ""}, {"/account", admin}, {"/admin", admin}, {"/admin/users/ivy", admin},
		{"/admin/audit", admin}, {"/admin/users/nobody", admin}, {"/admin/audit?user=nobody", admin}, {"/admin/webhooks", admin},
	} {
		res, body := ps.do("GET", page.path, page.token, nil, nil)
		h := res.Header
		if h.Get("Content-Security-Policy") != contentSecurityPolicy || h.Get("Cache-Control") != "no-store" || h.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("GET %s: CSP %q, Cache-Control %q, Content-Type %q", page.path, h.Get("Content-Security-Policy"), h.Get("Cache-Control"), h.Get("Content-Type"))
		}
		if m := inline.FindString(body); m != "" {
			t.Errorf("GET %s holds script or inline style: %q", page.path, m)
		}
		for _, need := range []string{`<html lang="en">`, `<main id="main"`, `href="#main"`, "<h1>", `name="viewport"`} {
			if !strings.Contains(body, need) {
				t.Errorf("GET %s lacks %s", page.path, need)
			}
		}
	}
	for _, bad := range []string{"script-src", "unsafe-inline", "unsafe-eval", "*"} {
		if strings.Contains(contentSecurityPolicy, bad) {
			t.Errorf("the CSP allows %q", bad)
		}
	}
}

// TestLoginPageMessages: the login form's answers, in words that do not
// tell which usernames exist.
func TestLoginPageMessages(t *testing.T) {
	ps := newPageServer(t, Config{}, app.ThrottleConfig{Pair: app.Backoff{Free: 3, Base: time.Hour, Max: time.Hour}})
	post := func(user, pw string) (*http.Response, string) {
		return ps.do("POST", "/login", "", url.Values{"username": {user}, "password": {pw}, "rd": {"/admin"}}, nil)
	}
	wrong, wrongBody := post("ivy", "guess")
	unknown, unknownBody := post("nobody", "guess")
	if wrong.StatusCode != 401 || unknown.StatusCode != 401 || !strings.Contains(wrongBody, "Wrong username or password.") {
		t.Errorf("wrong password %d, unknown user %d, want 401 with the same words", wrong.StatusCode, unknown.StatusCode)
	}
	if strings.ReplaceAll(unknownBody, "nobody", "ivy") != wrongBody {
		t.Error("the page for an unknown username differs from the one for a wrong password")
	}
	if !strings.Contains(wrongBody, `name="rd" value="/admin"`) {
		t.Error("a failed login loses rd")
	}
	post("ivy", "guess")
	post("ivy", "guess")
	res, body := post("ivy", "ivy-password")
	if res.StatusCode != 429 || !strings.Contains(body, "Too many sign-in attempts.") || res.Header.Get("Retry-After") == "" {
		t.Errorf("login over the per-account limit: %d Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
	// Disabled: only with the right password.
	ivy, _ := ps.srv.app.Accounts().Lookup(t.Context(), "ivy")
	ps.srv.app.Accounts().SetDisabled(t.Context(), ivy, true)
	ps.srv.app.Accounts().Add(t.Context(), "jo", "jo-password", nil)
	jo, _ := ps.srv.app.Accounts().Lookup(t.Context(), "jo")
	ps.srv.app.Accounts().SetDisabled(t.Context(), jo, true)
	if res, body := post("jo", "guess"); res.StatusCode != 401 || strings.Contains(body, "disabled") {
		t.Errorf("a wrong password for a disabled account: %d, and the page tells it is disabled: %v", res.StatusCode, strings.Contains(body, "disabled"))
	}
	if res, body := post("jo", "jo-password"); res.StatusCode != 403 || !strings.Contains(body, "This account is disabled.") {
		t.Errorf("the right password for a disabled account: %d", res.StatusCode)
	}
}

// TestNotice: each notice with a count is worded for none, one and many,
// and without a count (or a bad one) says no number; no text comes from
// the URL.
func TestNotice(t *testing.T) {
	for _, tt := range []struct{ query, want string }{
		{"done=signed-out", "Signed out of that session."},
		{"done=signed-out-others&n=0", "No other session was signed in."},
		{"done=signed-out-others&n=1", "Signed out of 1 other session."},
		{"done=signed-out-others&n=3", "Signed out of 3 other sessions."},
		{"done=signed-out-others", "Signed out of every other session."},
		{"done=signed-out-others&n=-1", "Signed out of every other session."},
		{"done=signed-out-others&n=<b>", "Signed out of every other session."},
		{"done=password&n=0", "Password changed. No other session was signed in."},
		{"done=password&n=1", "Password changed. 1 other session was signed out."},
		{"done=password&n=2", "Password changed. 2 other sessions were signed out."},
		{"done=roles&n=0", "Roles saved. The user was not signed in, so the new roles apply from their next sign-in."},
		{"done=disabled&n=1", "User disabled and signed out of 1 session."},
		{"done=revoked-all&n=0", "This user had no session to end."},
		{"done=revoked-all&n=1", "The user's only session ended."},
		{"done=revoked-all&n=4", "All 4 sessions of this user ended."},
		{"done=password-reset&n=0", "Password reset. The user was not signed in anywhere."},
		{"done=deleted&n=5", "User deleted and signed out of 5 sessions."},
		{"done=created&n=5", "User created."},
		{"done=You+won+a+prize", ""},
		{"", ""},
	} {
		q, _ := url.ParseQuery(tt.query)
		if got := notice(q); got != tt.want {
			t.Errorf("notice(%q) = %q, want %q", tt.query, got, tt.want)
		}
	}
	for done, c := range countedNotices {
		if c.none == "" || c.one == "" || c.unknown == "" || strings.Count(c.many, "%d") != 1 || strings.Contains(c.one+c.none+c.unknown, "%") {
			t.Errorf("counted notice %q: %+v, want every wording, and %%d once in many", done, c)
		}
		for _, n := range []string{"0", "1", "2", "", "x"} {
			if got := notice(url.Values{"done": {done}, "n": {n}}); strings.Contains(got, "(") || strings.Contains(got, " 0 ") || strings.Contains(got, "1 sessions") {
				t.Errorf("notice %q with n=%q reads %q", done, n, got)
			}
		}
	}
	for done := range notices {
		if _, ok := countedNotices[done]; ok {
			t.Errorf("notice %q is both counted and not", done)
		}
	}
}

// TestCountedNoticesAfterForms: the forms that end sessions redirect with
// the count, and the page words it, none included.
func TestCountedNoticesAfterForms(t *testing.T) {
	ps := newPageServer(t, Config{}, app.ThrottleConfig{})
	same := map[string]string{"Sec-Fetch-Site": "same-origin"}
	ivy := ps.login("ivy")
	for _, tt := range []struct {
		name, action, token string
		form                url.Values
		setup               func()
		want                string
	}{
		{"no other session", "/account/sessions/revoke-others", ivy, url.Values{}, nil, "No other session was signed in."},
		{"one other session", "/account/sessions/revoke-others", ivy, url.Values{}, func() { ps.login("ivy") }, "Signed out of 1 other session."},
		{"two other sessions", "/account/sessions/revoke-others", ivy, url.Values{}, func() { ps.login("ivy"); ps.login("ivy") }, "Signed out of 2 other sessions."},
		{"end all, one", "/admin/users/ivy/revoke", "", url.Values{"confirm": {"yes"}}, nil, "The user's only session ended."},
		{"end all, none", "/admin/users/ivy/revoke", "", url.Values{"confirm": {"yes"}}, nil, "This user had no session to end."},
		{"end all, two", "/admin/users/ivy/revoke", "", url.Values{"confirm": {"yes"}}, func() { ps.login("ivy"); ps.login("ivy") }, "All 2 sessions of this user ended."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token
			if tok == "" {
				tok = ps.login("root")
			}
			if tt.setup != nil {
				tt.setup()
			}
			res, _ := ps.do("POST", tt.action, tok, tt.form, same)
			loc := res.Header.Get("Location")
			if res.StatusCode != http.StatusSeeOther || loc == "" {
				t.Fatalf("POST %s: %d, want 303", tt.action, res.StatusCode)
			}
			if _, body := ps.do("GET", loc, tok, nil, nil); !strings.Contains(body, `role="status">`+html.EscapeString(tt.want)+"<") {
				t.Errorf("after POST %s, %s lacks the notice %q", tt.action, loc, tt.want)
			}
		})
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "just now"}, {-time.Minute, "just now"}, {59 * time.Second, "just now"},
		{time.Minute, "1 minute ago"}, {59 * time.Minute, "59 minutes ago"},
		{time.Hour, "1 hour ago"}, {47 * time.Hour, "47 hours ago"},
		{48 * time.Hour, "2 days ago"}, {30 * 24 * time.Hour, "30 days ago"},
	} {
		if got := ago(now.Add(-tt.d), now); got != tt.want {
			t.Errorf("ago(now - %v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestFormPage(t *testing.T) {
	for path, want := range map[string]string{
		"/account/password":                    "/account",
		"/account/sessions/abc/revoke":         "/account",
		"/admin/users":                         "/admin",
		"/admin/users/u_1/roles":               "/admin/users/u_1",
		"/admin/users/u_1/sessions/abc/revoke": "/admin/users/u_1",
		"/admin/users//roles":                  "/admin",
	} {
		if got := formPage(path); got != want {
			t.Errorf("formPage(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestSplitRoles(t *testing.T) {
	for in, want := range map[string][]string{
		"editor, admin": {"editor", "admin"},
		" a,b  c,,":     {"a", "b", "c"},
		"":              {},
		" , ":           {},
	} {
		if got := splitRoles(in); !slices.Equal(got, want) || got == nil {
			t.Errorf("splitRoles(%q) = %#v, want %#v", in, got, want)
		}
	}
}

// TestSessionRows: this device first, then the most recently active.
func TestSessionRows(t *testing.T) {
	now := time.Now()
	s := &Server{cfg: Config{Now: func() time.Time { return now }}}
	list := []*session.Session{
		{ID: "old", LastSeenAt: now.Add(-3 * time.Hour), LastUserAgent: "curl/8.0"},
		{ID: "recent", LastSeenAt: now.Add(-time.Minute)},
		{ID: "me", LastSeenAt: now.Add(-2 * time.Hour)},
	}
	rows := s.sessionRows(list, "me")
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	if want := []string{"me", "recent", "old"}; !slices.Equal(ids, want) {
		t.Errorf("order %v, want %v", ids, want)
	}
	if !rows[0].Current || rows[1].Current || rows[2].Device != "curl 8" || rows[1].LastActive != "1 minute ago" {
		t.Errorf("rows %+v", rows)
	}
}

// TestAuditPagePaging: the audit page shows auditPageSize events, newest
// first, and links to the older ones, keeping the filters.
func TestAuditPagePaging(t *testing.T) {
	ps := newPageServer(t, Config{}, app.ThrottleConfig{})
	admin := ps.login("root")
	ivy, _ := ps.srv.app.Accounts().Lookup(t.Context(), "ivy")
	for i := range auditPageSize + 5 {
		if err := ps.audit.Append(t.Context(), &audit.Event{Time: time.Now(), Type: audit.UserEnabled, UserID: ivy.ID, Username: ivy.Username, Reason: fmt.Sprintf("r%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	res, body := ps.do("GET", "/admin/audit?user=ivy&type=user.", admin, nil, nil)
	rows := strings.Count(body, "<tr>") - 1 // the header row
	if res.StatusCode != 200 || rows != auditPageSize || !strings.Contains(body, "r054") || strings.Contains(body, "r004") {
		t.Fatalf("first page: %d, %d rows", res.StatusCode, rows)
	}
	older := regexp.MustCompile(`<a href="(/admin/audit\?[^"]+)">Older events</a>`).FindStringSubmatch(body)
	if older == nil {
		t.Fatal("no link to older events")
	}
	link := strings.ReplaceAll(older[1], "&amp;", "&")
	if q, _ := url.ParseQuery(link[strings.Index(link, "?")+1:]); q.Get("user") != "ivy" || q.Get("type") != "user." || q.Get("before") == "" {
		t.Errorf("the older-events link %q loses the filters", link)
	}
	_, body = ps.do("GET", link, admin, nil, nil)
	if rows := strings.Count(body, "<tr>") - 1; rows != 5 || !strings.Contains(body, "r000") || strings.Contains(body, "Older events") {
		t.Errorf("second page: %d rows, want the 5 oldest and no further link", rows)
	}
}

// TestDestructiveActionsAskFirst: disabling, deleting and ending every
// session of a user from the console show a confirmation page and change
// nothing until it is confirmed; the confirmation posts to the same
// action.
func TestDestructiveActionsAskFirst(t *testing.T) {
	ps := newPageServer(t, Config{}, app.ThrottleConfig{})
	admin := ps.login("root")
	ivySession := ps.login("ivy")
	same := map[string]string{"Sec-Fetch-Site": "same-origin"}
	for _, action := range []string{"/admin/users/ivy/revoke", "/admin/users/ivy/disable", "/admin/users/ivy/delete"} {
		res, body := ps.do("POST", action, admin, url.Values{}, same)
		if res.StatusCode != http.StatusOK || !strings.Contains(body, `action="`+action+`"`) || !strings.Contains(body, `name="confirm" value="yes"`) {
			t.Fatalf("POST %s unconfirmed: %d, want the confirmation page posting to it:\n%.400s", action, res.StatusCode, body)
		}
		if !ps.valid(ivySession) {
			t.Fatalf("an unconfirmed %s ended ivy's session", action)
		}
		if u, err := ps.srv.app.Accounts().Lookup(t.Context(), "ivy"); err != nil || u.Disabled {
			t.Fatalf("an unconfirmed %s changed ivy: %+v %v", action, u, err)
		}
	}
	res, _ := ps.do("POST", "/admin/users/ivy/disable", admin, url.Values{"confirm": {"yes"}}, same)
	if res.StatusCode != http.StatusSeeOther || ps.valid(ivySession) {
		t.Fatalf("a confirmed disable: %d, ivy's session live: %v", res.StatusCode, ps.valid(ivySession))
	}
	res, _ = ps.do("POST", "/admin/users/ivy/delete", admin, url.Values{"confirm": {"yes"}}, same)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") == "" {
		t.Fatalf("a confirmed delete: %d", res.StatusCode)
	}
	if _, err := ps.srv.app.Accounts().Lookup(t.Context(), "ivy"); err == nil {
		t.Fatal("ivy still exists after a confirmed delete")
	}
}

// TestConsoleResetsPasswords: an admin sets a user's password, typed
// twice; the user's sessions end and the new password signs in.
func TestConsoleResetsPasswords(t *testing.T) {
	ps := newPageServer(t, Config{}, app.ThrottleConfig{})
	admin := ps.login("root")
	ivySession := ps.login("ivy")
	same := map[string]string{"Sec-Fetch-Site": "same-origin"}
	res, _ := ps.do("POST", "/admin/users/ivy/password", admin, url.Values{"password": {"a new passphrase"}, "confirm_password": {"another one"}}, same)
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || loc != "/admin/users/ivy?error=password-mismatch" || !ps.valid(ivySession) {
		t.Fatalf("a mistyped reset: %d to %q", res.StatusCode, loc)
	}
	if _, body := ps.do("GET", "/admin/users/ivy?error=password-mismatch", admin, nil, nil); !strings.Contains(body, `role="alert">The new password and its confirmation differ.<`) {
		t.Fatal("the user's page does not say the passwords differ")
	}
	res, _ = ps.do("POST", "/admin/users/ivy/password", admin, url.Values{"password": {"a new passphrase"}, "confirm_password": {"a new passphrase"}}, same)
	if res.StatusCode != http.StatusSeeOther || ps.valid(ivySession) {
		t.Fatalf("a reset: %d, the old session live: %v", res.StatusCode, ps.valid(ivySession))
	}
	res, _ = ps.do("POST", "/login", "", url.Values{"username": {"ivy"}, "password": {"a new passphrase"}}, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("signing in with the new password: %d", res.StatusCode)
	}
}

// TestLoginPageSaysWhy: a browser whose session ended, however it ended,
// is sent to the login page with why=ended, which says so; one signed out
// by sessiond itself gets done=signed-out; one that never had a session,
// or brings a malformed cookie, gets neither. Only fixed texts show.
func TestLoginPageSaysWhy(t *testing.T) {
	now := time.Now()
	var clock atomic.Int64
	ps := newPageServer(t, Config{Now: func() time.Time { return now.Add(time.Duration(clock.Load())) }}, app.ThrottleConfig{})
	same := map[string]string{"Sec-Fetch-Site": "same-origin"}
	ended := "/login?rd=%2Faccount&why=ended"
	for _, tt := range []struct {
		name string
		end  func(ivy string) // ends ivy's session ivy
	}{
		{"signed out by an administrator", func(string) {
			ps.do("POST", "/admin/users/ivy/revoke", ps.login("root"), url.Values{"confirm": {"yes"}}, same)
		}},
		{"signed out everywhere else on another device", func(string) {
			ps.do("POST", "/account/sessions/revoke-others", ps.login("ivy"), url.Values{}, same)
		}},
		{"password changed on another device", func(string) {
			ps.do("POST", "/account/password", ps.login("ivy"), url.Values{"current_password": {"ivy-password"}, "new_password": {"ivy-password-2"}, "confirm_password": {"ivy-password-2"}}, same)
			ps.srv.app.Accounts().SetPassword(t.Context(), mustLookup(t, ps, "ivy"), "ivy-password")
		}},
		{"idle timeout", func(string) { clock.Add(int64(31 * time.Minute)) }},
		{"absolute timeout", func(ivy string) {
			for range 25 { // used every 29 minutes, for 12 hours
				clock.Add(int64(29 * time.Minute))
				ps.do("GET", "/account", ivy, nil, nil)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ivy := ps.login("ivy")
			tt.end(ivy)
			if ps.valid(ivy) {
				t.Fatal("the session is still live")
			}
			res, _ := ps.do("GET", "/account", ivy, nil, nil)
			if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || loc != ended {
				t.Errorf("GET /account with the ended session's cookie: %d to %q, want 303 to %q", res.StatusCode, loc, ended)
			}
			res, _ = ps.do("GET", "/resolve", ivy, nil, map[string]string{"Accept": "text/html", "X-Original-URL": "https://app.example/x"})
			if loc := res.Header.Get("Location"); res.StatusCode != http.StatusUnauthorized || !strings.HasSuffix(loc, "&why=ended") {
				t.Errorf("/resolve for a browser with the ended session's cookie: %d Location %q, want why=ended", res.StatusCode, loc)
			}
		})
	}
	if _, body := ps.do("GET", ended, "", nil, nil); !strings.Contains(body, `role="status">`+html.EscapeString(endedNotice)+"<") {
		t.Errorf("GET %s lacks %q", ended, endedNotice)
	}

	// No session, or a cookie not shaped like a token: no reason given. (A
	// well-formed token that names no session reads as ended: which it is
	// cannot be told without a trace of ended sessions.)
	for _, cookie := range []string{"", "not-a-token", strings.Repeat("A", 42)} {
		res, _ := ps.do("GET", "/account", cookie, nil, nil)
		if loc := res.Header.Get("Location"); loc != "/login?rd=%2Faccount" {
			t.Errorf("GET /account with cookie %q: Location %q, want no reason", cookie, loc)
		}
	}

	// sessiond's own sign-outs: done=signed-out, on the page that words it.
	res, _ := ps.do("POST", "/logout", ps.login("ivy"), url.Values{}, same)
	if loc := res.Header.Get("Location"); loc != "/login?done=signed-out" {
		t.Errorf("POST /logout: Location %q", loc)
	}
	ivy := ps.login("ivy")
	list, _ := ps.srv.Sessions().List(t.Context(), mustLookup(t, ps, "ivy").ID)
	res, _ = ps.do("POST", "/account/sessions/"+list[0].ID+"/revoke", ivy, url.Values{}, same)
	if loc := res.Header.Get("Location"); loc != "/login?done=signed-out" {
		t.Errorf("signing out this session from its row: Location %q", loc)
	}
	if _, body := ps.do("GET", "/login?done=signed-out&why=ended", "", nil, nil); !strings.Contains(body, signedOutNotice) || strings.Contains(body, "has ended") {
		t.Error("the login page after a sign-out does not say signed out (and only that)")
	}

	// Words from the URL never reach the page.
	for _, q := range []string{"why=You+won+a+prize", "done=You+won+a+prize", "why=<b>ended</b>", "why=Ended"} {
		if _, body := ps.do("GET", "/login?"+q, "", nil, nil); strings.Contains(body, `role="status"`) || strings.Contains(body, "prize") {
			t.Errorf("GET /login?%s shows a notice", q)
		}
	}
}

func mustLookup(t *testing.T, ps *pageServer, name string) *users.User {
	t.Helper()
	u, err := ps.srv.app.Accounts().Lookup(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestFailedFormsStayOnThePage: a form post refused for what was typed
// redirects back to the page it is on with an error code, and the page
// words it as the API does; the browser's URL never rests on the form's
// action.
func TestFailedFormsStayOnThePage(t *testing.T) {
	ps := newPageServer(t, Config{}, app.ThrottleConfig{})
	same := map[string]string{"Sec-Fetch-Site": "same-origin"}
	ivy, root := ps.login("ivy"), ps.login("root")
	pw := func(current, next, confirm string) url.Values {
		return url.Values{"current_password": {current}, "new_password": {next}, "confirm_password": {confirm}}
	}
	for _, tt := range []struct {
		name, action, token string
		form                url.Values
		page, code          string
	}{
		{"mismatch", "/account/password", ivy, pw("ivy-password", "a new passphrase", "another one"), "/account", "password-mismatch"},
		{"wrong current", "/account/password", ivy, pw("guess", "a new passphrase", "a new passphrase"), "/account", "password-wrong"},
		{"too short", "/account/password", ivy, pw("ivy-password", "short", "short"), "/account", "password-short"},
		{"same", "/account/password", ivy, pw("ivy-password", "ivy-password", "ivy-password"), "/account", "password-same"},
		{"common", "/account/password", ivy, pw("ivy-password", "password123", "password123"), "/account", "password-common"},
		{"the service's name", "/account/password", ivy, pw("ivy-password", "sessiond", "sessiond"), "/account", "password-service"},
		{"too long", "/account/password", ivy, pw("ivy-password", strings.Repeat("x", users.MaxPasswordLen+1), strings.Repeat("x", users.MaxPasswordLen+1)), "/account", "password-long"},
		{"not UTF-8", "/account/password", ivy, pw("ivy-password", "\xff\xfe-password", "\xff\xfe-password"), "/account", "password-encoding"},
		{"no such session", "/account/sessions/nope/revoke", ivy, url.Values{}, "/account", "not-found"},
		{"reset mismatch", "/admin/users/ivy/password", root, url.Values{"password": {"a new passphrase"}, "confirm_password": {"another"}}, "/admin/users/ivy", "password-mismatch"},
		{"reset too short", "/admin/users/ivy/password", root, url.Values{"password": {"short"}, "confirm_password": {"short"}}, "/admin/users/ivy", "password-short"},
		{"bad role", "/admin/users/ivy/roles", root, url.Values{"roles": {"Bad Role!"}}, "/admin/users/ivy", "roles-invalid"},
		{"too many roles", "/admin/users/ivy/roles", root, url.Values{"roles": {strings.Repeat("r,", 33) + "s"}}, "/admin/users/ivy", "roles-too-many"},
		{"last admin", "/admin/users/root/roles", root, url.Values{"roles": {""}}, "/admin/users/root", "last-admin"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := ps.do("POST", tt.action, tt.token, tt.form, same)
			loc := res.Header.Get("Location")
			page, q, _ := strings.Cut(loc, "?")
			code := strings.TrimPrefix(q, "error=")
			if res.StatusCode != http.StatusSeeOther || page != tt.page || formErrors[code] == "" || code != tt.code {
				t.Fatalf("POST %s: %d to %q, want 303 to %s?error=%s", tt.action, res.StatusCode, loc, tt.page, tt.code)
			}
			_, body := ps.do("GET", loc, tt.token, nil, nil)
			if !strings.Contains(body, `role="alert">`+html.EscapeString(formErrors[code])+"<") {
				t.Errorf("GET %s lacks the error %q", loc, formErrors[code])
			}
		})
	}
	if !ps.valid(ivy) || !ps.valid(root) || ps.login("ivy") == "" {
		t.Error("a refused form changed a session or the password")
	}
	// The page says what the API says for the same password.
	for _, next := range []string{"short", "password123", "ivy-password", "sessiond"} {
		r, _ := http.NewRequest("POST", ps.url+"/api/v1/password", strings.NewReader(`{"current_password":"ivy-password","new_password":"`+next+`"}`))
		r.Header.Set("Content-Type", "application/json")
		r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: ivy})
		apiRes, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error struct{ Message string } }
		json.NewDecoder(apiRes.Body).Decode(&e)
		apiRes.Body.Close()
		code, ok := formErrorCode(app.Errorf(app.CodeInvalid, "%s", e.Error.Message))
		if !ok || formErrors[code] != e.Error.Message {
			t.Errorf("new password %q: the API says %q, the page %q", next, e.Error.Message, formErrors[code])
		}
	}
}

// TestAuditTimesHaveSeconds: the audit page gives each event's time to
// the second, in UTC, in a <time> element with the RFC 3339 time.
func TestAuditTimesHaveSeconds(t *testing.T) {
	ps := newPageServer(t, Config{}, app.ThrottleConfig{})
	admin := ps.login("root")
	at := time.Date(2026, 5, 1, 14, 0, 7, 0, time.FixedZone("CEST", 2*3600))
	if err := ps.audit.Append(t.Context(), &audit.Event{Time: at, Type: audit.UserEnabled}); err != nil {
		t.Fatal(err)
	}
	_, body := ps.do("GET", "/admin/audit?type=user.enabled", admin, nil, nil)
	if want := `<time datetime="2026-05-01T12:00:07Z">1 May 2026, 12:00:07 UTC</time>`; !strings.Contains(body, want) {
		t.Errorf("the audit page lacks %s", want)
	}
}

func TestSignedInWith(t *testing.T) {
	for _, tt := range []struct {
		amr  []string
		want string
	}{
		{nil, ""},
		{[]string{"pwd"}, "Password"},
		{[]string{"pwd", "otp", "mfa"}, "Password and code"},
		{[]string{"hwk", "user", "mfa"}, "Passkey"},
		{[]string{"swk", "user", "mfa"}, "Passkey"},
		{[]string{"pwd", "hwk", "mfa"}, "Password and passkey"},
	} {
		if got := signedInWith(tt.amr); got != tt.want {
			t.Errorf("signedInWith(%q) = %q, want %q", tt.amr, got, tt.want)
		}
	}
}
