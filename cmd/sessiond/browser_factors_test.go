//go:build unix

package main

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
)

// TestBrowserTOTPEnrolment enrols an authenticator app from /account in a
// headless Chromium, the way a person does: the QR code and the key on a
// page with no script, a mistyped code, the right code (computed here as
// an authenticator app does), recovery codes shown once, and turning it off
// with one of them. Nothing secret reaches sessiond's log.
func TestBrowserTOTPEnrolment(t *testing.T) {
	b := newBrowsers(t, 1)[0]
	in := start(t)
	admin := in.login("admin", adminPassword)
	in.addUser(admin, "dora", "dora-password-1")
	p := b.open(t, in)
	status(t, p.login("dora", "dora-password-1", false), 200)
	p.expect("/account", "section[aria-labelledby=mfa]", "Off")

	status(t, p.click(`form[action="/account/totp"] button`), 200)
	p.expect("/account/totp", "h1", "Set up an authenticator app")
	if n := p.count("svg.qr path"); n != 1 {
		t.Errorf("the enrolment page has %d QR code paths, want 1", n)
	}
	if n := p.count("script, img"); n != 0 {
		t.Errorf("the enrolment page has %d scripts or images, want none", n)
	}
	var qrSize float64
	p.call(func(ctx context.Context) (err error) {
		qrSize, err = chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector("svg.qr").getBoundingClientRect().width`))
		return err
	})
	if qrSize < 200 {
		t.Errorf("the QR code is drawn %vpx wide, want at least 200 to scan", qrSize)
	}
	secret := strings.ReplaceAll(p.text("#totp-secret"), " ", "")
	if len(secret) != 32 {
		t.Fatalf("the key reads %q, want 32 base32 characters", secret)
	}
	code := func() string {
		c, err := totp.GenerateCode(secret, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	// A mistyped code keeps the page, with the error.
	wrong := "000000"
	if wrong == code() {
		wrong = "111111"
	}
	p.fill(map[string]string{"#code": wrong})
	status(t, p.click(`form[action="/account/totp/confirm"] button`), 200)
	p.expect("/account/totp?error=code-wrong", "[role=alert]", "The code is wrong or was already used.")
	if got := strings.ReplaceAll(p.text("#totp-secret"), " ", ""); got != secret {
		t.Errorf("the key after a wrong code reads %q, want the same %q", got, secret)
	}

	first := code()
	p.fill(map[string]string{"#code": first})
	status(t, p.click(`form[action="/account/totp/confirm"] button`), 200)
	p.expect("/account?done=totp-enabled", "[role=status]", "Two-step verification is on.")
	p.expect("/account?done=totp-enabled", "section[aria-labelledby=mfa]", "On")

	// Recovery codes: shown on this page only, never cached.
	res := p.click(`form[action="/account/recovery-codes"] button`)
	status(t, res, 200)
	p.expect("/account/recovery-codes", "h1", "Your recovery codes")
	if cc, _ := res.Headers["Cache-Control"].(string); cc != "no-store" {
		t.Errorf("the recovery codes page: Cache-Control %q, want no-store", cc)
	}
	if n := p.count("ul.codes li"); n != 10 {
		t.Fatalf("%d recovery codes shown, want 10", n)
	}
	recovery := p.text("ul.codes li:first-child")
	status(t, p.click(`main a.button`), 200)
	p.expect("/account", "section[aria-labelledby=mfa]", "You have 10 unused recovery codes left.")
	if n := p.count("ul.codes"); n != 0 {
		t.Error("the account page shows the recovery codes again")
	}
	r := in.do(req{method: "GET", path: "/api/v1/mfa", cookie: p.cookie().Value})
	if v := r.json(t); v["totp"] != true || v["recovery_codes"] != 10.0 {
		t.Errorf("GET /api/v1/mfa: %v", v)
	}

	// Off, with a recovery code.
	p.fill(map[string]string{"#disable-code": recovery})
	status(t, p.click(`form[action="/account/totp/disable"] button`), 200)
	p.expect("/account?done=totp-disabled", "[role=status]", "off")
	p.expect("/account?done=totp-disabled", "section[aria-labelledby=mfa]", "9 unused recovery codes")

	logs := in.logs.String()
	for _, s := range []string{secret, recovery, strings.ReplaceAll(recovery, "-", "")} {
		if strings.Contains(logs, s) {
			t.Errorf("sessiond's log holds %q", s)
		}
	}
	// The 6-digit code, but not as the digits of a time or a duration.
	if regexp.MustCompile(`(^|[^0-9.])` + first + `($|[^0-9])`).MatchString(logs) {
		t.Errorf("sessiond's log holds the code %s", first)
	}
}

// TestBrowserSignInWithASecondFactor signs in through the pages in a
// headless Chromium as a user with TOTP and recovery codes: the password
// leads to the second-factor step, a wrong code keeps the user there, the
// right one signs in and returns to the page asked for; the same code a
// second time is refused (no replay); a recovery code works once.
func TestBrowserSignInWithASecondFactor(t *testing.T) {
	b := newBrowsers(t, 1)[0]
	in := start(t)
	admin := in.login("admin", adminPassword)
	in.addUser(admin, "eli", "eli-password-1")

	cookie := in.login("eli", "eli-password-1")
	codeAt, cookie := enrolTOTP(t, in.do, cookie)
	r := in.do(req{method: "POST", path: "/api/v1/mfa/recovery-codes", cookie: cookie})
	codes, _ := r.json(t)["codes"].([]any)
	if len(codes) != 10 {
		t.Fatalf("recovery codes: %d %s", r.StatusCode, r.body)
	}
	recovery := codes[0].(string)

	p := b.open(t, in)
	p.navigate("/account?from=test")
	status(t, p.login("eli", "eli-password-1", false), 200)
	rd := "/login/second-factor?rd=" + url.QueryEscape("/account?from=test")
	p.expect(rd, "h1", "Two-step verification")
	if p.cookie() != nil {
		t.Fatal("the password alone gave the browser a session cookie")
	}
	wrong := "000000"
	if wrong == codeAt(time.Now()) {
		wrong = "111111"
	}
	p.fill(map[string]string{"#code": wrong})
	status(t, p.click("main form button[type=submit]"), 401)
	p.expect("/login/second-factor", "[role=alert]", "wrong")

	used := codeAt(time.Now())
	p.fill(map[string]string{"#code": used})
	status(t, p.click("main form button[type=submit]"), 200)
	p.expect("/account?from=test", "table.sessions", "Password and code")

	// Signed out, the same code again: refused, whatever the clock did.
	status(t, p.click("form.signout button"), 200)
	status(t, p.login("eli", "eli-password-1", false), 200)
	p.fill(map[string]string{"#code": used})
	status(t, p.click("main form button[type=submit]"), 401)
	p.expect("/login/second-factor", "[role=alert]", "already used")

	// A recovery code, once.
	p.fill(map[string]string{"#code": recovery})
	status(t, p.click("main form button[type=submit]"), 200)
	p.expect("/account", "table.sessions", "Password and code")
	status(t, p.click("form.signout button"), 200)
	status(t, p.login("eli", "eli-password-1", false), 200)
	p.fill(map[string]string{"#code": recovery})
	status(t, p.click("main form button[type=submit]"), 401)
	p.expect("/login/second-factor", "[role=alert]", "already used")
	if p.cookie() != nil {
		t.Error("a used recovery code gave the browser a session cookie")
	}
}
