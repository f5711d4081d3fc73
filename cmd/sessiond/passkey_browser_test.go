//go:build unix

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// passkeyTab opens a tab on in at http://localhost:PORT (a passkey's
// relying party ID is a host name, never an IP address, and without
// --public-url sessiond offers passkeys to localhost only), with a
// virtual authenticator in it: a platform authenticator (CTAP2, internal
// transport) that keeps discoverable credentials and verifies its user.
func (b *browser) passkeyTab(t *testing.T, in *instance) *tab {
	t.Helper()
	local := *in
	local.URL = strings.Replace(in.URL, "://127.0.0.1:", "://localhost:", 1)
	tb := b.open(t, &local)
	tb.call(func(ctx context.Context) error {
		if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol:                    webauthn.AuthenticatorProtocolCtap2,
			Transport:                   webauthn.AuthenticatorTransportInternal,
			HasResidentKey:              true,
			HasUserVerification:         true,
			IsUserVerified:              true,
			AutomaticPresenceSimulation: true,
		}})
		return err
	})
	return tb
}

// press clicks sel, a control that runs a passkey ceremony in the page's
// script, and waits until the page is at a path that starts with want.
func (tb *tab) press(sel, want string) {
	tb.t.Helper()
	tb.do(chromedp.Click(chromedp.CSS(sel)))
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if strings.HasPrefix(tb.location(), want) {
			tb.do(chromedp.WaitReady(chromedp.CSS("main")))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.t.Fatalf("after clicking %s the browser is at %s, want %s (page: %q)", sel, tb.location(), want, tb.text("main"))
}

// TestBrowserPasskeys registers a passkey from /account in a real
// Chromium with a virtual authenticator, signs out, signs in with it
// without a password, signs in with the password and uses the passkey as
// the second factor, re-authenticates with it, removes it, and finds it
// refused afterwards.
func TestBrowserPasskeys(t *testing.T) {
	b := newBrowsers(t, 1)[0]
	in := start(t)
	admin := in.login("admin", adminPassword)
	in.addUser(admin, "alice", "alice-password-1")
	p := b.passkeyTab(t, in)

	// Without a passkey, the account page offers to add one.
	status(t, p.login("alice", "alice-password-1", false), 200)
	p.expect("/account", "#passkeys", "Passkeys")
	if got := p.text("section[aria-labelledby=passkeys]"); !strings.Contains(got, "You have no passkey yet.") {
		t.Errorf("the passkeys section reads %q", got)
	}
	p.fill(map[string]string{"#passkey-name": "Virtual key"})
	p.press("[data-passkey=create] [data-passkey-start]", "/account?done=passkey-added")
	p.expect("/account?done=passkey-added", "[role=status]", "Passkey added.")
	if got := p.text("table.passkeys tbody"); !strings.Contains(got, "Virtual key") || !strings.Contains(got, "Never") || !strings.Contains(got, "This device or key only") {
		t.Errorf("the passkey's row reads %q", got)
	}

	// Sign out, then in with the passkey alone.
	status(t, p.click("header form.signout button"), 200)
	p.expect("/login?done=signed-out", "h1", "Sign in")
	p.press("[data-passkey=get] [data-passkey-start]", "/account")
	p.expect("/account", ".lead", "alice")
	c := p.cookie()
	if c == nil || !in.resolves(c.Value) {
		t.Fatal("no live session after signing in with the passkey")
	}
	if got := p.text("table.passkeys tbody"); strings.Contains(got, "Never") {
		t.Errorf("the passkey's row after a sign-in with it reads %q, want a last use", got)
	}
	if got := p.assurance(); got != "2 hwk,user,mfa" {
		t.Errorf("a passkey sign-in's AAL and AMR: %s, want 2 hwk,user,mfa", got)
	}

	// The passkey as the second factor after the password: the password
	// alone leads to the second-factor step, where "Use a passkey"
	// completes the sign-in at AAL2.
	status(t, p.click("header form.signout button"), 200)
	status(t, p.login("alice", "alice-password-1", false), 200)
	p.expect("/login/second-factor?rd=%2Faccount", "h1", "Two-step verification")
	if p.cookie() != nil {
		t.Fatal("a session cookie after the password alone")
	}
	p.press("[data-passkey=get] [data-passkey-start]", "/account")
	p.expect("/account", ".lead", "alice")
	if got := p.assurance(); got != "2 pwd,hwk,user,mfa" {
		t.Errorf("after the password and the passkey, AAL and AMR: %s, want 2 pwd,hwk,user,mfa", got)
	}

	// Re-authentication with the passkey, from /login/reauth: a new
	// cookie, and back to the page that asked.
	c = p.cookie()
	p.navigate("/login/reauth?rd=%2Faccount%3Fagain")
	p.press("[data-passkey=get] [data-passkey-start]", "/account?again")
	if n := p.cookie(); n == nil || n.Value == c.Value || in.resolves(c.Value) || !in.resolves(n.Value) {
		t.Error("re-authentication with the passkey did not rotate the session cookie")
	}

	// The same check from a script of the page (a bearer-less API use).
	c = p.cookie()
	var res string
	p.call(func(ctx context.Context) (err error) {
		res, err = chromedp.Run(ctx, chromedp.Evaluate[string](reauthScript, chromedp.EvalAwaitPromise))
		return err
	})
	if res != "200" {
		t.Fatalf("re-authentication with the passkey answered %s", res)
	}
	if n := p.cookie(); n == nil || n.Value == c.Value || in.resolves(c.Value) {
		t.Error("the check with the passkey did not rotate the session cookie")
	}

	// Remove it, after confirming.
	p.navigate("/account")
	status(t, p.click("table.passkeys form[action$='/remove'] button"), 200)
	p.expect(p.location(), "h1", "Remove the passkey Virtual key?")
	status(t, p.click("main form button.danger"), 200)
	p.expect("/account?done=passkey-removed", "[role=status]", "Passkey removed.")

	// The authenticator still holds the credential; sessiond refuses it.
	status(t, p.click("header form.signout button"), 200)
	p.do(chromedp.Click(chromedp.CSS("[data-passkey=get] [data-passkey-start]")))
	p.do(chromedp.WaitVisible(chromedp.CSS("[data-passkey=get] [data-passkey-error]")))
	if got := p.text("[data-passkey=get] [data-passkey-error]"); !strings.Contains(got, "That passkey was not accepted.") {
		t.Errorf("signing in with a removed passkey shows %q", got)
	}
	if p.cookie() != nil {
		t.Error("a session cookie after signing in with a removed passkey")
	}
}

// assurance is the AAL and AMR of the tab's session ("2 hwk,user,mfa"),
// as GET /api/v1/session shows them.
func (tb *tab) assurance() string {
	tb.t.Helper()
	var s string
	tb.call(func(ctx context.Context) (err error) {
		s, err = chromedp.Run(ctx, chromedp.Evaluate[string](`fetch("/api/v1/session").then(r => r.json()).then(j => j.session.aal + " " + j.session.amr.join(","))`, chromedp.EvalAwaitPromise))
		return err
	})
	return s
}

// reauthScript runs a re-authentication ceremony from the page, as a
// page for it would with /static/passkey.js, and returns the finish's
// status.
const reauthScript = `(async () => {
  const b = s => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), c => c.charCodeAt(0)).buffer;
  const e = buf => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const post = (url, body) => fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const opts = await (await post("/login/passkey/reauth/begin", {})).json();
  opts.publicKey.challenge = b(opts.publicKey.challenge);
  opts.publicKey.allowCredentials = (opts.publicKey.allowCredentials || []).map(c => ({...c, id: b(c.id)}));
  const c = await navigator.credentials.get(opts);
  const r = c.response;
  const res = await post("/login/passkey/reauth/finish", {credential: {id: c.id, rawId: e(c.rawId), type: c.type, response: {
    clientDataJSON: e(r.clientDataJSON), authenticatorData: e(r.authenticatorData), signature: e(r.signature), userHandle: r.userHandle ? e(r.userHandle) : undefined}}});
  return String(res.status);
})()`
