//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The tests in this file drive a real headless Chromium through sessiond's
// web pages, each against its own sessiond started by Main on 127.0.0.1:0.
// They need Debian's chromium: on a machine without it they skip, in CI
// (CI=true) they fail.
//
// Browsers treat http://127.0.0.1 as a secure context, so the Secure
// __Host-sid cookie works there without TLS, as it would in production
// over HTTPS.

// chromiumPath returns the path of Chromium, skipping the test (failing
// it in CI) when there is none.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if isExecutable("/usr/bin/chromium") {
		return "/usr/bin/chromium"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed, and CI must test the web pages in a real browser: .ci/run installs it with apt-get")
	}
	t.Skip("chromium is not installed: skipping the browser tests of the web pages (install it, e.g. apt-get install chromium)")
	return ""
}

// browser is one headless Chromium process with a profile of its own: two
// browsers are two devices, with separate cookie jars.
type browser struct {
	ctx context.Context // its first tab, which keeps the process alive
}

// newBrowsers starts n Chromium processes at once, for the rest of the
// test. extra adds allocator options (a user agent for the screenshots).
func newBrowsers(t *testing.T, n int, extra ...chromedp.ExecAllocatorOption) []*browser {
	t.Helper()
	path := chromiumPath(t)
	bs, errs := make([]*browser, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range bs {
		// A fresh profile, with network prediction off: Chromium would
		// open speculative connections that send no request, and a server
		// shutting down waits 5 seconds for those.
		profile := t.TempDir()
		prefs := filepath.Join(profile, "Default", "Preferences")
		if err := os.MkdirAll(filepath.Dir(prefs), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(prefs, []byte(`{"net":{"network_prediction_options":2}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		opts := append([]chromedp.ExecAllocatorOption{
			chromedp.ExecPath(path),
			chromedp.Headless,
			chromedp.NoSandbox, // the tests may run as root
			chromedp.DisableGPU,
			chromedp.NoFirstRun,
			chromedp.NoDefaultBrowserCheck,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.Flag("disable-extensions", true),
			chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
			chromedp.UserDataDir(profile),
			chromedp.WindowSize(1280, 900),
		}, extra...)
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(alloc)
		t.Cleanup(func() { cancel(); cancelAlloc() })
		bs[i] = &browser{ctx: ctx}
		wg.Go(func() { errs[i] = chromedp.Do(ctx) }) // starts the process, with no timeout
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return bs
}

// tab is one browser tab used by one test against one sessiond.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string // sessiond's URL
}

// open opens a tab on in, after dropping every cookie the browser holds
// (from an earlier test's sessiond: cookies do not depend on the port).
func (b *browser) open(t *testing.T, in *instance) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	// The tab lives as long as the context of its first action: that one
	// must have no deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	tb := &tab{t: t, ctx: ctx, base: in.URL}
	tb.call(func(ctx context.Context) error {
		_, err := chromedp.Call(ctx, network.ClearBrowserCookies, struct{}{})
		return err
	})
	return tb
}

// call runs f with a deadline, failing the test on an error.
func (tb *tab) call(f func(ctx context.Context) error) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := f(ctx); err != nil {
		tb.t.Fatal(err)
	}
}

// do runs actions in the tab.
func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	tb.call(func(ctx context.Context) error { return chromedp.Do(ctx, actions...) })
}

// navigate loads path (or an absolute URL) and returns the final response,
// after any redirects.
func (tb *tab) navigate(path string) *network.Response {
	tb.t.Helper()
	if strings.HasPrefix(path, "/") {
		path = tb.base + path
	}
	var res *network.Response
	tb.call(func(ctx context.Context) (err error) {
		res, err = chromedp.Run(ctx, chromedp.NavigateResponse(path))
		return err
	})
	return res
}

// click clicks the element sel, a button that submits a form or a link,
// and returns the response of the page it leads to, after redirects.
func (tb *tab) click(sel string) *network.Response {
	tb.t.Helper()
	var res *network.Response
	tb.call(func(ctx context.Context) (err error) {
		res, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
		if err != nil {
			err = fmt.Errorf("clicking %s on %s: %w", sel, tb.location(), err)
		}
		return err
	})
	return res
}

// fill sets the form fields, by CSS selector.
func (tb *tab) fill(fields map[string]string) {
	tb.t.Helper()
	for sel, v := range fields {
		tb.do(chromedp.SetValue(chromedp.CSS(sel), v))
	}
}

// value is the value of the form field sel.
func (tb *tab) value(sel string) string {
	tb.t.Helper()
	var v string
	tb.call(func(ctx context.Context) (err error) {
		v, err = chromedp.Run(ctx, chromedp.Value(chromedp.CSS(sel)))
		return err
	})
	return v
}

// location is the tab's URL, without sessiond's origin.
func (tb *tab) location() string {
	tb.t.Helper()
	var loc string
	tb.call(func(ctx context.Context) (err error) {
		loc, err = chromedp.Run(ctx, chromedp.Location())
		return err
	})
	return strings.TrimPrefix(loc, tb.base)
}

// text is the visible text of the first element sel selects.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	var s string
	tb.call(func(ctx context.Context) (err error) {
		s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		return err
	})
	return strings.Join(strings.Fields(s), " ")
}

// count is the number of elements sel selects.
func (tb *tab) count(sel string) int {
	tb.t.Helper()
	var n int
	tb.call(func(ctx context.Context) (err error) {
		n, err = chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
		return err
	})
	return n
}

// expect fails the test unless the tab shows path (with query) and sel's
// text contains want.
func (tb *tab) expect(path, sel, want string) {
	tb.t.Helper()
	if loc := tb.location(); loc != path {
		tb.t.Fatalf("the browser is at %s, want %s (page: %q)", loc, path, tb.text("main"))
	}
	if got := tb.text(sel); !strings.Contains(got, want) {
		tb.t.Fatalf("at %s, %s reads %q, want it to contain %q", path, sel, got, want)
	}
}

// expectSignedOut visits path and fails the test unless the tab lands on
// the login page, asked to return to path, with no reason given: the
// browser holds no session cookie.
func (tb *tab) expectSignedOut(path string) {
	tb.t.Helper()
	tb.navigate(path)
	tb.expect("/login?rd="+url.QueryEscape(path), "h1", "Sign in")
	if n := tb.count("[role=status]"); n != 0 {
		tb.t.Errorf("the login page gives a reason, with no session cookie: %q", tb.text("[role=status]"))
	}
}

// expectEnded visits path and fails the test unless the tab, whose
// session was ended elsewhere, lands on the login page, asked to return to
// path, and is told its session ended.
func (tb *tab) expectEnded(path string) {
	tb.t.Helper()
	tb.navigate(path)
	tb.expect("/login?rd="+url.QueryEscape(path)+"&why=ended", "[role=status]", "Your session has ended")
}

// login signs in through the login page the tab is on, or /login.
func (tb *tab) login(username, password string, remember bool) *network.Response {
	tb.t.Helper()
	if loc := tb.location(); !strings.HasPrefix(loc, "/login") {
		tb.navigate("/login")
	}
	tb.do(
		chromedp.Clear(chromedp.CSS("#username")), // a failed login refills it
		chromedp.SendKeys(chromedp.CSS("#username"), username),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
	)
	if remember {
		tb.do(chromedp.Click(chromedp.CSS("#remember")))
	}
	return tb.click("main form button[type=submit]")
}

// cookie returns the browser's session cookie for sessiond, nil if none.
func (tb *tab) cookie() *network.Cookie {
	tb.t.Helper()
	var res network.GetCookiesResult
	tb.call(func(ctx context.Context) (err error) {
		res, err = chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{tb.base + "/"}})
		return err
	})
	for _, c := range res.Cookies {
		if c.Name == "__Host-sid" {
			return c
		}
	}
	return nil
}

// status fails the test unless res has the status want.
func status(t *testing.T, res *network.Response, want int) {
	t.Helper()
	if res == nil || int(res.Status) != want {
		got := -1
		if res != nil {
			got = int(res.Status)
		}
		t.Fatalf("%s: status %d, want %d", responseURL(res), got, want)
	}
}

func responseURL(res *network.Response) string {
	if res == nil {
		return "(no response)"
	}
	return res.URL
}

// TestBrowser drives the pages in two browsers, A and B, which every
// subtest shares: two devices of one user, or an admin and a user.
func TestBrowser(t *testing.T) {
	ab := newBrowsers(t, 2)
	a, b := ab[0], ab[1]

	t.Run("SignInAndOut", func(t *testing.T) {
		in := start(t)
		admin := in.login("admin", adminPassword)
		in.addUser(admin, "alice", "alice-password-1")
		p := a.open(t, in)

		// Signed out, a page sends the browser to the login page, which
		// brings it back after the login.
		status(t, p.navigate("/account"), 200)
		p.expect("/login?rd=%2Faccount", "h1", "Sign in")
		status(t, p.login("alice", "alice-password-1", false), 200)
		p.expect("/account", "h1", "Your account")
		if got := p.text("tr.current th"); !strings.Contains(got, "Headless Chrome") || !strings.Contains(got, "on Linux") || !strings.Contains(got, "This device") {
			t.Errorf("this session's row reads %q, want the browser, the OS and \"This device\"", got)
		}
		if got := p.text("tr.current td[data-label='IP address']"); got != "127.0.0.1" {
			t.Errorf("IP address %q, want 127.0.0.1", got)
		}

		// The cookie: set over http://127.0.0.1 with the __Host- prefix
		// and Secure, HttpOnly (no script sees it), SameSite=Lax, and a
		// session cookie without "remember me".
		c := p.cookie()
		if c == nil {
			t.Fatal("no __Host-sid cookie in the browser after signing in")
		}
		if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteLax || c.Path != "/" || !c.Session {
			t.Errorf("cookie HttpOnly=%v Secure=%v SameSite=%q Path=%q Session=%v, want HttpOnly, Secure, Lax, /, a session cookie", c.HTTPOnly, c.Secure, c.SameSite, c.Path, c.Session)
		}
		var jsCookies string
		p.call(func(ctx context.Context) (err error) {
			jsCookies, err = chromedp.Run(ctx, chromedp.Evaluate[string]("document.cookie"))
			return err
		})
		if strings.Contains(jsCookies, "sid") || strings.Contains(jsCookies, c.Value) {
			t.Errorf("document.cookie = %q: the session cookie is visible to scripts", jsCookies)
		}
		if !in.resolves(c.Value) {
			t.Fatal("the browser's cookie does not resolve")
		}

		// Sign out from the header: the session ends on the server.
		status(t, p.click("header form.signout button"), 200)
		p.expect("/login?done=signed-out", "[role=status]", "You are signed out.")
		if p.cookie() != nil {
			t.Error("the cookie is still in the browser after signing out")
		}
		if in.resolves(c.Value) {
			t.Error("the session still resolves after signing out in the browser")
		}
		p.expectSignedOut("/account")

		// "Remember me" makes the cookie outlive the browser, until the
		// session's absolute deadline.
		status(t, p.login("alice", "alice-password-1", true), 200)
		c = p.cookie()
		if c == nil || c.Session || time.Unix(int64(c.Expires), 0).Before(time.Now().Add(24*time.Hour)) {
			t.Errorf("remembered cookie %+v: want a persistent cookie", c)
		}
		if got := p.text("tr.current th"); !strings.Contains(got, "Remembered") {
			t.Errorf("this session's row reads %q, want it marked remembered", got)
		}
		// The last way out: "Sign out" on this device's own row.
		status(t, p.click("tr.current button"), 200)
		p.expect("/login?done=signed-out", "h1", "Sign in")
		if in.resolves(c.Value) {
			t.Error("the session still resolves after signing this device out from its row")
		}
	})

	t.Run("LoginMessages", func(t *testing.T) {
		in := start(t)
		admin := in.login("admin", adminPassword)
		in.addUser(admin, "bob", "bob-password-1")
		in.addUser(admin, "carol", "carol-password-1")
		if r := in.do(req{method: "POST", path: "/api/v1/admin/users/carol/disable", cookie: admin}); r.StatusCode != 200 {
			t.Fatalf("disable carol: %d %s", r.StatusCode, r.body)
		}
		p := a.open(t, in)

		// A wrong password and an unknown user read the same.
		status(t, p.login("bob", "wrong-password", false), 401)
		p.expect("/login", "[role=alert]", "Wrong username or password.")
		if got := p.value("#username"); got != "bob" {
			t.Errorf("the username field holds %q after a failed login, want it kept", got)
		}
		wrong := p.text("main")
		p.navigate("/login")
		status(t, p.login("nobody", "wrong-password", false), 401)
		if got := strings.ReplaceAll(p.text("main"), "nobody", "bob"); got != wrong {
			t.Errorf("an unknown username reads %q, a wrong password %q: the page tells which usernames exist", got, wrong)
		}
		// A disabled account is named only to someone with its password.
		p.navigate("/login")
		status(t, p.login("carol", "wrong-password", false), 401)
		p.expect("/login", "[role=alert]", "Wrong username or password.")
		p.navigate("/login")
		status(t, p.login("carol", "carol-password-1", false), 403)
		p.expect("/login", "[role=alert]", "This account is disabled.")
		// (The rate-limit message: server/pages_test.go, with a low limit.)
	})

	t.Run("ReturnTo", func(t *testing.T) {
		in := start(t)
		p := a.open(t, in)
		p.expectSignedOut("/admin/audit?type=login.")
		status(t, p.login("admin", adminPassword, false), 200)
		p.expect("/admin/audit?type=login.", "h1", "Audit log")
		// Another origin is no place to return to.
		p.navigate("/login?rd=" + url.QueryEscape("https://evil.example/"))
		status(t, p.login("admin", adminPassword, false), 200)
		p.expect("/account", "h1", "Your account")
	})

	t.Run("SignOutOtherSessions", func(t *testing.T) {
		in := start(t)
		admin := in.login("admin", adminPassword)
		in.addUser(admin, "dora", "dora-password-1")
		pa, pb := a.open(t, in), b.open(t, in)
		pa.login("dora", "dora-password-1", false)
		pb.login("dora", "dora-password-1", false)
		pb.expect("/account", "h1", "Your account")

		pa.navigate("/account")
		if n := pa.count("table.sessions tbody tr"); n != 2 {
			t.Fatalf("A lists %d sessions, want 2", n)
		}
		if n := pa.count("tr.current"); n != 1 {
			t.Fatalf("%d rows are marked as this device, want 1", n)
		}
		status(t, pa.click("form[action='/account/sessions/revoke-others'] button"), 200)
		pa.expect("/account?done=signed-out-others&n=1", "[role=status]", "Signed out of 1 other session.")
		if n := pa.count("table.sessions tbody tr"); n != 1 {
			t.Errorf("A lists %d sessions after signing out the others, want 1", n)
		}

		// B's next navigation lands on the login page, which says why.
		pb.expectEnded("/account")
		// A is still signed in.
		pa.navigate("/account")
		pa.expect("/account", "h1", "Your account")

		// One session at a time: B signs in again, A signs it out.
		pb.login("dora", "dora-password-1", false)
		pa.navigate("/account")
		status(t, pa.click("table.sessions tbody tr:not(.current) button"), 200)
		pa.expect("/account?done=signed-out", "[role=status]", "Signed out of that session.")
		pb.expectEnded("/account")
	})

	t.Run("ChangePassword", func(t *testing.T) {
		in := start(t)
		admin := in.login("admin", adminPassword)
		in.addUser(admin, "dave", "dave-password-1")
		pa, pb := a.open(t, in), b.open(t, in)
		pa.login("dave", "dave-password-1", false)
		pb.login("dave", "dave-password-1", false)
		before := pa.cookie().Value

		pa.navigate("/account")
		pa.fill(map[string]string{"#current_password": "dave-password-1", "#new_password": "dave-password-2", "#confirm_password": "dave-password-3"})
		status(t, pa.click("form[action='/account/password'] button"), 200)
		pa.expect("/account?error=password-mismatch", "[role=alert]", "The new password and its confirmation differ.")
		pa.navigate("/account")
		pa.fill(map[string]string{"#current_password": "not-my-password", "#new_password": "dave-password-2", "#confirm_password": "dave-password-2"})
		status(t, pa.click("form[action='/account/password'] button"), 200)
		pa.expect("/account?error=password-wrong", "[role=alert]", "The current password is wrong.")
		pa.navigate("/account")
		pa.fill(map[string]string{"#current_password": "dave-password-1", "#new_password": "short", "#confirm_password": "short"})
		// A value set by script passes the field's minlength: the server's
		// own check answers.
		status(t, pa.click("form[action='/account/password'] button"), 200)
		pa.expect("/account?error=password-short", "[role=alert]", "Password must be at least 8 characters.")

		pa.navigate("/account")
		pa.fill(map[string]string{"#current_password": "dave-password-1", "#new_password": "dave-password-2", "#confirm_password": "dave-password-2"})
		status(t, pa.click("form[action='/account/password'] button"), 200)
		pa.expect("/account?done=password&n=1", "[role=status]", "Password changed. 1 other session was signed out.")
		// This browser has a new cookie; the old token is dead.
		after := pa.cookie()
		if after == nil || after.Value == before {
			t.Fatal("the session cookie did not change with the password")
		}
		if in.resolves(before) {
			t.Error("the token from before the password change still resolves")
		}
		pa.navigate("/account")
		pa.expect("/account", "h1", "Your account")

		// B is signed out, and only the new password works.
		pb.expectEnded("/account")
		status(t, pb.login("dave", "dave-password-1", false), 401)
		pb.navigate("/login")
		status(t, pb.login("dave", "dave-password-2", false), 200)
		pb.expect("/account", "h1", "Your account")
	})

	t.Run("AdminConsole", func(t *testing.T) {
		in := start(t)
		pa, pb := a.open(t, in), b.open(t, in)
		pa.login("admin", adminPassword, false)
		status(t, pa.navigate("/admin"), 200)
		pa.expect("/admin", "h1", "Users")
		if got := pa.text("table.users tbody"); !strings.Contains(got, "admin") || !strings.Contains(got, "You") {
			t.Errorf("the users table reads %q, want the admin marked as you", got)
		}

		// Create a user: a taken name is refused with the form kept.
		pa.fill(map[string]string{"#new-username": "admin", "#new-password": "erin-password-1", "#new-roles": "editor"})
		status(t, pa.click("form[action='/admin/users'] button"), 409)
		pa.expect("/admin/users", "[role=alert]", "That username is taken.")
		if got := pa.value("#new-roles"); got != "editor" {
			t.Errorf("the roles field holds %q after a failed post, want it kept", got)
		}
		pa.fill(map[string]string{"#new-username": "erin", "#new-password": "erin-password-1", "#new-roles": "editor"})
		status(t, pa.click("form[action='/admin/users'] button"), 200)
		if !strings.HasPrefix(pa.location(), "/admin/users/u_") {
			t.Fatalf("after creating a user the browser is at %s, want the user's page", pa.location())
		}
		erinPage := strings.TrimSuffix(pa.location(), "?done=created")
		pa.expect(erinPage+"?done=created", "[role=status]", "User created.")
		if got := pa.text("h1"); got != "erin" {
			t.Errorf("the user's page is titled %q", got)
		}

		// erin is no admin: the console answers 403 with a page.
		pb.login("erin", "erin-password-1", false)
		status(t, pb.navigate("/admin"), 403)
		pb.expect("/admin", "[role=alert]", "needs the admin role")
		if n := pb.count("header a[href='/admin']"); n != 0 {
			t.Error("a user without the admin role is shown the console in the menu")
		}

		// Roles: the change ends erin's sessions; signed in again, she
		// has the console.
		pa.navigate(erinPage)
		pa.fill(map[string]string{"#roles": "editor, admin"})
		status(t, pa.click("form[action$='/roles'] button"), 200)
		pa.expect(erinPage+"?done=roles&n=1", "[role=status]", "Roles saved. The user was signed out of 1 session")
		if got := pa.text(".facts"); !strings.Contains(got, "admin, editor") {
			t.Errorf("the user's facts read %q after the change", got)
		}
		pb.expectEnded("/account")
		pb.login("erin", "erin-password-1", false)
		status(t, pb.navigate("/admin"), 200)
		pa.navigate(erinPage)
		pa.fill(map[string]string{"#roles": "Not A Role!"})
		status(t, pa.click("form[action$='/roles'] button"), 200)
		pa.expect(erinPage+"?error=roles-invalid", "[role=alert]", "must be 1 to 32 lowercase letters")

		// The admin ends erin's sessions: her browser lands on the login page.
		pa.navigate(erinPage)
		if n := pa.count("table.sessions tbody tr"); n != 1 {
			t.Fatalf("erin's page lists %d sessions, want 1", n)
		}
		if got := pa.text("table.sessions tbody th"); !strings.Contains(got, "Headless Chrome") {
			t.Errorf("erin's session reads %q, want her browser", got)
		}
		status(t, pa.click("form[action$='/revoke'] button.danger"), 200)
		pa.expect(erinPage+"/revoke", "h1", "End every session of erin?")
		if n := pa.count("table.sessions tbody tr"); n != 0 {
			t.Error("the confirmation page is not a confirmation")
		}
		status(t, pa.click("form.row button.danger"), 200)
		pa.expect(erinPage+"?done=revoked-all&n=1", "[role=status]", "The user's only session ended.")
		pb.expectEnded("/admin")

		// One session: "End session" on its row.
		pb.login("erin", "erin-password-1", false)
		pa.navigate(erinPage)
		status(t, pa.click("table.sessions tbody button"), 200)
		pa.expect(erinPage+"?done=revoked", "[role=status]", "Session ended.")
		pb.expectEnded("/account")

		// Disable, then enable.
		pb.login("erin", "erin-password-1", false)
		pa.navigate(erinPage)
		status(t, pa.click("form[action$='/disable'] button"), 200)
		pa.expect(erinPage+"/disable", "h1", "Disable erin?")
		status(t, pa.click("form.row button.danger"), 200)
		pa.expect(erinPage+"?done=disabled&n=1", "[role=status]", "User disabled and signed out of 1 session.")
		pb.expectEnded("/account")
		status(t, pb.login("erin", "erin-password-1", false), 403)
		pb.expect("/login", "[role=alert]", "This account is disabled.")
		status(t, pa.click("form[action$='/enable'] button"), 200)
		pa.expect(erinPage+"?done=enabled", "[role=status]", "User enabled.")
		pb.navigate("/login")
		status(t, pb.login("erin", "erin-password-1", false), 200)
		pb.expect("/account", "h1", "Your account")

		// The audit log, filtered by user and by event.
		pa.navigate("/admin/audit")
		pa.fill(map[string]string{"#user": "erin"})
		pa.do(chromedp.SetValue(chromedp.CSS("#type"), "user."))
		status(t, pa.click("form.filters button"), 200)
		pa.expect("/admin/audit?user=erin&type=user.", "h1", "Audit log")
		got := pa.text("table.audit tbody")
		for _, want := range []string{"User created", "User disabled", "User enabled"} {
			if !strings.Contains(got, want) {
				t.Errorf("the audit log of erin's account events reads %q, want %q in it", got, want)
			}
		}
		if strings.Contains(got, "Signed in") || strings.Contains(got, "Roles changed") {
			t.Errorf("the account-event filter lets other events through: %q", got)
		}
		if n := pa.count("table.audit tbody tr"); n != 3 {
			t.Errorf("%d account events of erin, want 3", n)
		}
		if got := pa.text("table.audit tbody td[data-label='Time'] time"); !regexp.MustCompile(`^\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2}:\d{2} UTC$`).MatchString(got) {
			t.Errorf("an audit event's time reads %q, want it to the second, in UTC", got)
		}
		pa.navigate("/admin/audit?type=roles.changed")
		if got := pa.text("table.audit tbody"); !strings.Contains(got, "Roles changed") || !strings.Contains(got, "erin") || !strings.Contains(got, "admin") {
			t.Errorf("the roles.changed events read %q, want erin's role change by admin", got)
		}
		status(t, pa.navigate("/admin/audit?user=nobody"), 404)
		pa.expect("/admin/audit?user=nobody", "[role=alert]", "No such user.")

		// Reset erin's password: her sessions end, the new one works.
		pa.navigate(erinPage)
		pa.fill(map[string]string{"#reset-password": "erin-password-2", "#reset-confirm": "erin-password-2"})
		status(t, pa.click("form[action$='/password'] button"), 200)
		pa.expect(erinPage+"?done=password-reset&n=1", "[role=status]", "Password reset. The user was signed out of 1 session.")
		pb.expectEnded("/account")
		status(t, pb.login("erin", "erin-password-2", false), 200)

		// Delete asks first; Cancel goes back; confirmed, erin is gone
		// and signed out.
		status(t, pa.click("form[action$='/delete'] button"), 200)
		pa.expect(erinPage+"/delete", "h1", "Delete erin?")
		status(t, pa.click("form.row a.button"), 200)
		pa.expect(erinPage, "h1", "erin")
		status(t, pa.click("form[action$='/delete'] button"), 200)
		status(t, pa.click("form.row button.danger"), 200)
		pa.expect("/admin?done=deleted&n=1", "[role=status]", "User deleted and signed out of 1 session.")
		pb.expectEnded("/account")
	})

	t.Run("CrossOriginFormsRefused", func(t *testing.T) {
		in := start(t)
		admin := in.login("admin", adminPassword)
		in.addUser(admin, "frank", "frank-password-1")
		pa, pb := a.open(t, in), b.open(t, in)
		pa.login("admin", adminPassword, false)
		pb.login("admin", adminPassword, false)
		other := pb.cookie().Value

		// Another origin on the same site (127.0.0.1, another port): the
		// browser sends the SameSite=Lax cookie with its form posts, so
		// the refusal is CrossOriginProtection's (Sec-Fetch-Site: same-site).
		forms := []struct{ action, fields string }{
			{"/account/sessions/revoke-others", ""},
			{"/admin/users/frank/disable", ""},
			{"/admin/users", `<input name="username" value="mallory"><input name="password" value="mallory-password-1"><input name="roles" value="admin">`},
			{"/logout", ""},
			{"/login", `<input name="username" value="frank"><input name="password" value="frank-password-1">`},
		}
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f := forms[0]
			for _, x := range forms {
				if r.URL.Query().Get("to") == x.action {
					f = x
				}
			}
			fmt.Fprintf(w, `<!doctype html><title>Win a prize</title><form method="post" action="%s%s">%s<button id="go">Claim</button></form>`, in.URL, f.action, f.fields)
		}))
		t.Cleanup(evil.Close)
		for _, f := range forms {
			pa.navigate(evil.URL + "/?to=" + url.QueryEscape(f.action))
			res := pa.click("#go")
			status(t, res, 403)
			if body := pa.text("body"); !strings.Contains(body, "cross_origin") && !strings.Contains(body, "sent from another site") {
				t.Errorf("POST %s from another origin: the answer reads %q", f.action, body)
			}
		}
		if !in.resolves(other) || !in.resolves(pa.cookie().Value) {
			t.Error("a cross-origin form post ended a session")
		}
		pa.navigate("/admin")
		if got := pa.text("table.users tbody"); strings.Contains(got, "mallory") || strings.Contains(got, "Disabled") {
			t.Errorf("a cross-origin form post changed the users: %q", got)
		}
		// The same form from sessiond's own origin works: the refusal
		// above was the origin's doing.
		pa.navigate("/account")
		status(t, pa.click("form[action='/account/sessions/revoke-others'] button"), 200)
		if in.resolves(other) {
			t.Error("the same-origin sign-out of other sessions did not work")
		}
	})

	t.Run("PagesNeedASession", func(t *testing.T) {
		in := start(t)
		p := a.open(t, in)
		for path, want := range map[string]string{
			"/account":           "/login?rd=%2Faccount",
			"/admin":             "/login?rd=%2Fadmin",
			"/admin/users/admin": "/login?rd=%2Fadmin%2Fusers%2Fadmin",
			"/":                  "/login?rd=%2Faccount",
		} {
			status(t, p.navigate(path), 200)
			p.expect(want, "h1", "Sign in")
		}
	})
}

// TestScreenshots writes screenshots of every page, at desktop and phone
// width, to the directory in SESSIOND_SCREENSHOTS (README: "Web pages"):
//
//	SESSIOND_SCREENSHOTS=docs/screenshots go test -run TestScreenshots ./cmd/sessiond/
//
// Without the variable it skips.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("SESSIOND_SCREENSHOTS")
	if dir == "" {
		t.Skip("set SESSIOND_SCREENSHOTS to a directory to write screenshots of the pages there")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", "..", dir) // the test runs in cmd/sessiond
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const (
		chromeLinux = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
		firefoxWin  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
		safariPhone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
		edgeMac     = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0"
	)
	br := newBrowsers(t, 1, chromedp.UserAgent(chromeLinux))[0]
	in := start(t, "--trusted-proxies", "127.0.0.1")
	admin := in.login("admin", adminPassword)
	in.addUser(admin, "alice", "alice-password-1", "editor")
	in.addUser(admin, "bob", "bob-password-1", "editor", "admin")
	in.addUser(admin, "carol", "carol-password-1")
	in.do(req{method: "POST", path: "/api/v1/admin/users/carol/disable", cookie: admin})
	// alice's other devices, signed in from elsewhere (documentation
	// addresses, through the trusted proxy).
	for _, d := range []struct{ ua, ip string }{{firefoxWin, "198.51.100.23"}, {safariPhone, "203.0.113.7"}, {edgeMac, "192.0.2.44"}} {
		in.do(req{method: "POST", path: "/login", header: map[string]string{"User-Agent": d.ua, "X-Forwarded-For": d.ip}, json: map[string]any{"username": "alice", "password": "alice-password-1"}})
	}
	in.do(req{method: "POST", path: "/login", header: map[string]string{"User-Agent": firefoxWin, "X-Forwarded-For": "198.51.100.99"}, json: map[string]any{"username": "alice", "password": "not-her-password"}})

	p := br.open(t, in)
	shots := []struct {
		name, path string
		user       string
	}{
		{"login", "/login", ""},
		{"account", "/account", "alice"},
		{"admin-users", "/admin", "admin"},
		{"admin-user", "/admin/users/alice", "admin"},
		{"audit", "/admin/audit", "admin"},
	}
	signedIn := ""
	for _, s := range shots {
		if s.user != signedIn {
			p.do(chromedp.EmulateReset())
			p.call(func(ctx context.Context) error {
				_, err := chromedp.Call(ctx, network.ClearBrowserCookies, struct{}{})
				return err
			})
			if s.user != "" {
				pw := map[string]string{"alice": "alice-password-1", "admin": adminPassword}[s.user]
				p.navigate("/login")
				status(t, p.login(s.user, pw, false), 200)
			}
			signedIn = s.user
		}
		for _, size := range []struct {
			name          string
			width, height int64
			maxHeight     int // of the picture, in CSS pixels
			opts          []chromedp.EmulateViewportOption
		}{
			{"desktop", 1280, 800, 2400, nil},
			{"phone", 375, 812, 1400, []chromedp.EmulateViewportOption{chromedp.EmulateScale(2), chromedp.EmulateMobile}},
		} {
			p.do(chromedp.EmulateViewport(size.width, size.height, size.opts...))
			status(t, p.navigate(s.path), 200)
			var png []byte
			p.call(func(ctx context.Context) error {
				h, err := chromedp.Run(ctx, chromedp.Evaluate[int]("document.documentElement.scrollHeight"))
				if err != nil {
					return err
				}
				shot, err := chromedp.Call(ctx, page.CaptureScreenshot, page.CaptureScreenshotParams{
					Clip:                  &page.Viewport{Width: float64(size.width), Height: float64(min(h, size.maxHeight)), Scale: 1},
					CaptureBeyondViewport: new(true),
					FromSurface:           new(true),
				})
				png = shot.Data
				return err
			})
			file := filepath.Join(dir, s.name+"-"+size.name+".png")
			if err := os.WriteFile(file, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s (%d KB)", file, len(png)>>10)
		}
	}
}
