package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/internal/passkeytest"
)

const passkeyOrigin = "https://login.example.com"

// newPasskeyServer is a pageServer whose public URL is passkeyOrigin.
func newPasskeyServer(t *testing.T) *pageServer {
	t.Helper()
	u, _ := url.Parse(passkeyOrigin + "/")
	return newPageServer(t, Config{PublicURL: u}, app.ThrottleConfig{})
}

// call sends a JSON request (body as is if it is []byte) with the session
// token and the ceremony cookie, if not "", and returns the response,
// its body, and the ceremony cookie it set, if any.
func (ps *pageServer) call(method, path, token, ceremony string, body any) (*http.Response, []byte, string) {
	ps.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			ps.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	r, err := http.NewRequest(method, ps.url+path, rd)
	if err != nil {
		ps.t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	if token != "" {
		r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: token})
	}
	if ceremony != "" {
		r.AddCookie(&http.Cookie{Name: passkeyCookie, Value: ceremony})
	}
	res, err := client.Do(r)
	if err != nil {
		ps.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	set := ""
	for _, c := range res.Cookies() {
		if c.Name == passkeyCookie && c.MaxAge > 0 {
			set = c.Value
		}
	}
	return res, b, set
}

// registerPasskey registers a passkey of a for the user of token.
func (ps *pageServer) registerPasskey(token string, a *passkeytest.Authenticator) {
	ps.t.Helper()
	res, opts, cer := ps.call("POST", passkeyRegisterBegin, token, "", nil)
	if res.StatusCode != 200 || cer == "" {
		ps.t.Fatalf("register/begin: %d %s (ceremony cookie %q)", res.StatusCode, opts, cer)
	}
	cred, err := a.Create(opts)
	if err != nil {
		ps.t.Fatal(err)
	}
	res, body, _ := ps.call("POST", passkeyRegisterFinish, token, cer, map[string]any{"credential": json.RawMessage(cred), "name": "Laptop"})
	if res.StatusCode != 201 {
		ps.t.Fatalf("register/finish: %d %s", res.StatusCode, body)
	}
}

// beginPasskey begins a ceremony at begin and returns a's answer and the
// ceremony cookie.
func (ps *pageServer) beginPasskey(begin, token string, a *passkeytest.Authenticator) ([]byte, string) {
	ps.t.Helper()
	res, opts, cer := ps.call("POST", begin, token, "", nil)
	if res.StatusCode != 200 || cer == "" {
		ps.t.Fatalf("%s: %d %s", begin, res.StatusCode, opts)
	}
	cred, err := a.Get(opts)
	if err != nil {
		ps.t.Fatal(err)
	}
	return cred, cer
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not a JSON error: %s", body)
	}
	return e.Error.Code
}

func TestPasskeyAPI(t *testing.T) {
	ps := newPasskeyServer(t)
	ivy := ps.login("ivy")
	a := passkeytest.New(passkeyOrigin)
	ps.registerPasskey(ivy, a)

	res, body, _ := ps.call("GET", "/api/v1/passkeys", ivy, "", nil)
	var list struct{ Passkeys []passkeyView }
	if err := json.Unmarshal(body, &list); err != nil || res.StatusCode != 200 || len(list.Passkeys) != 1 || list.Passkeys[0].Name != "Laptop" || list.Passkeys[0].LastUsedAt != nil {
		t.Fatalf("GET /api/v1/passkeys: %d %s", res.StatusCode, body)
	}
	id := list.Passkeys[0].ID

	// Sign in without a password: a cookie, never the token in the body.
	cred, cer := ps.beginPasskey(passkeyLoginBegin, "", a)
	res, body, _ = ps.call("POST", passkeyLoginFinish, "", cer, map[string]any{"credential": json.RawMessage(cred), "rd": "/somewhere"})
	if res.StatusCode != 200 {
		t.Fatalf("login/passkey/finish: %d %s", res.StatusCode, body)
	}
	var token string
	for _, c := range res.Cookies() {
		if c.Name == "__Host-sid" {
			token = c.Value
		}
	}
	if token == "" || !ps.valid(token) || bytes.Contains(body, []byte(token)) {
		t.Fatalf("passkey sign-in: cookie %q valid %v, body %s", token, ps.valid(token), body)
	}
	var got struct {
		Session struct {
			AMR []string
			AAL int
		}
		User     struct{ Username string }
		Redirect string
	}
	json.Unmarshal(body, &got)
	if got.User.Username != "ivy" || got.Redirect != "/somewhere" || strings.Join(got.Session.AMR, ",") != "hwk,user,mfa" || got.Session.AAL != 2 {
		t.Errorf("passkey sign-in answered %s, want ivy's session with amr hwk,user,mfa at AAL2, and the redirect", body)
	}

	// Re-authenticate the new session with the passkey: a new cookie.
	cred, cer = ps.beginPasskey(passkeyReauthBegin, token, a)
	res, body, _ = ps.call("POST", passkeyReauthFinish, token, cer, map[string]any{"credential": json.RawMessage(cred)})
	if res.StatusCode != 200 || ps.valid(token) {
		t.Fatalf("reauth: %d %s; the old token still valid: %v", res.StatusCode, body, ps.valid(token))
	}

	// A password session checked with the passkey, even one that does
	// not verify its user, adds the passkey's methods (with "pwd": two
	// factors, "mfa", AAL2), with a new cookie.
	want := []string{"pwd", "hwk", "user", "mfa"}
	a.UserVerified = false
	cred, cer = ps.beginPasskey(passkeyReauthBegin, ivy, a)
	res, body, _ = ps.call("POST", passkeyReauthFinish, ivy, cer, map[string]any{"credential": json.RawMessage(cred)})
	json.Unmarshal(body, &got)
	if res.StatusCode != 200 || !slices.Equal(got.Session.AMR, want) || got.Session.AAL != 2 || ps.valid(ivy) {
		t.Fatalf("a password session checked with the passkey: %d %s, want amr %q", res.StatusCode, body, want)
	}
	for _, c := range res.Cookies() {
		if c.Name == "__Host-sid" {
			ivy = c.Value
		}
	}
	a.UserVerified = true

	res, body, _ = ps.call("PATCH", "/api/v1/passkeys/"+id, ivy, "", map[string]string{"name": "Phone"})
	if res.StatusCode != 200 || !strings.Contains(string(body), `"name":"Phone"`) {
		t.Errorf("rename: %d %s", res.StatusCode, body)
	}
	root := ps.login("root")
	if res, body, _ := ps.call("DELETE", "/api/v1/passkeys/"+id, root, "", nil); res.StatusCode != 404 || errorCode(t, body) != "not_found" {
		t.Errorf("root removing ivy's passkey: %d %s", res.StatusCode, body)
	}
	if res, body, _ := ps.call("DELETE", "/api/v1/passkeys/"+id, ivy, "", nil); res.StatusCode != 200 {
		t.Errorf("remove: %d %s", res.StatusCode, body)
	}
	if _, body, _ := ps.call("GET", "/api/v1/passkeys", ivy, "", nil); string(bytes.TrimSpace(body)) != `{"passkeys":[]}` {
		t.Errorf("after removing it: %s", body)
	}
}

func TestPasskeyAPIRefusesBadInput(t *testing.T) {
	ps := newPasskeyServer(t)
	ivy, root := ps.login("ivy"), ps.login("root")
	a := passkeytest.New(passkeyOrigin)
	ps.registerPasskey(ivy, a)
	roots := passkeytest.New(passkeyOrigin)
	ps.registerPasskey(root, roots)

	finish := func(path, token, cer string, body any) (int, string) {
		t.Helper()
		res, b, _ := ps.call("POST", path, token, cer, body)
		return res.StatusCode, errorCode(t, b)
	}
	answer := func(cred []byte) map[string]any { return map[string]any{"credential": json.RawMessage(cred)} }

	// clientDataJSON from another origin (a phishing site relaying the
	// ceremony).
	a.Origin = "https://login.example.com.evil.test"
	cred, cer := ps.beginPasskey(passkeyLoginBegin, "", a)
	if st, code := finish(passkeyLoginFinish, "", cer, answer(cred)); st != 401 || code != "bad_credentials" {
		t.Errorf("another origin: %d %s, want 401 bad_credentials", st, code)
	}
	a.Origin = passkeyOrigin

	// A forged clientDataJSON: the right origin, the challenge changed.
	cred, cer = ps.beginPasskey(passkeyLoginBegin, "", a)
	var c map[string]any
	json.Unmarshal(cred, &c)
	resp := c["response"].(map[string]any)
	cd, _ := json.Marshal(map[string]any{"type": "webauthn.get", "challenge": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "origin": passkeyOrigin})
	resp["clientDataJSON"] = b64(cd)
	forged, _ := json.Marshal(c)
	if st, code := finish(passkeyLoginFinish, "", cer, answer(forged)); st != 401 || code != "bad_credentials" {
		t.Errorf("forged clientDataJSON: %d %s, want 401 bad_credentials", st, code)
	}

	// A replay: the same answer with the same ceremony cookie.
	cred, cer = ps.beginPasskey(passkeyLoginBegin, "", a)
	if st, _, _ := ps.call("POST", passkeyLoginFinish, "", cer, answer(cred)); st.StatusCode != 200 {
		t.Fatalf("a good sign-in: %d", st.StatusCode)
	}
	if st, code := finish(passkeyLoginFinish, "", cer, answer(cred)); st != 400 || code != "bad_request" {
		t.Errorf("a replayed ceremony: %d %s, want 400 bad_request", st, code)
	}
	// No ceremony cookie at all.
	if st, code := finish(passkeyLoginFinish, "", "", answer(cred)); st != 400 || code != "bad_request" {
		t.Errorf("no ceremony: %d %s, want 400 bad_request", st, code)
	}

	// Another user's credential: root re-authenticating with ivy's passkey.
	cred, cer = ps.beginPasskey(passkeyReauthBegin, root, roots)
	ivysCred, err := a.Get(optionsFor(t, cred))
	if err != nil {
		t.Fatal(err)
	}
	if st, code := finish(passkeyReauthFinish, root, cer, answer(ivysCred)); st != 401 || code != "bad_credentials" {
		t.Errorf("root re-authenticating with ivy's passkey: %d %s, want 401 bad_credentials", st, code)
	}
	if !ps.valid(root) {
		t.Error("root's session was rotated by a refused re-authentication")
	}

	// Bodies: too large, not JSON, unknown fields, no credential.
	_, cer = ps.beginPasskey(passkeyLoginBegin, "", a)
	huge := append([]byte(`{"credential":{"id":"`), bytes.Repeat([]byte("A"), maxPasskeyBody)...)
	huge = append(huge, `"}}`...)
	if st, code := finish(passkeyLoginFinish, "", cer, huge); st != 413 || code != "too_large" {
		t.Errorf("a body of %d bytes: %d %s, want 413 too_large", len(huge), st, code)
	}
	for _, bad := range []struct {
		body []byte
		st   int
		code string
	}{
		{[]byte(`{"credential":{},"extra":1}`), 400, "bad_request"},
		{[]byte(`{"name":"x"}`), 400, "invalid"},
		{[]byte(`{"credential":"text"}`), 400, "invalid"},
		{[]byte(`[]`), 400, "bad_request"},
		{[]byte(`{"credential":{"id":"x","type":"public-key"}}`), 401, "bad_credentials"},
	} {
		_, cer := ps.beginPasskey(passkeyLoginBegin, "", a)
		if st, code := finish(passkeyLoginFinish, "", cer, bad.body); st != bad.st || code != bad.code {
			t.Errorf("body %s: %d %s, want %d %s", bad.body, st, code, bad.st, bad.code)
		}
	}
	if res, body, _ := ps.call("PATCH", "/api/v1/passkeys/"+strings.Repeat("A", 2000), ivy, "", map[string]string{"name": "x"}); res.StatusCode != 404 || errorCode(t, body) != "not_found" {
		t.Errorf("PATCH an impossible ID: %d %s", res.StatusCode, body)
	}
	if res, body, _ := ps.call("PATCH", "/api/v1/passkeys/AAAA", ivy, "", map[string]string{"name": strings.Repeat("n", 65)}); res.StatusCode != 400 || errorCode(t, body) != "invalid" {
		t.Errorf("a name of 65 characters: %d %s", res.StatusCode, body)
	}
	// Without a session: no registration, list or re-authentication.
	for _, p := range []string{passkeyRegisterBegin, passkeyReauthBegin} {
		if res, body, _ := ps.call("POST", p, "", "", nil); res.StatusCode != 401 || errorCode(t, body) != "unauthenticated" {
			t.Errorf("POST %s without a session: %d %s", p, res.StatusCode, body)
		}
	}
}

// optionsFor rebuilds sign-in options around the challenge of cred, an
// answer to them.
func optionsFor(t *testing.T, cred []byte) []byte {
	t.Helper()
	var c struct {
		Response struct{ ClientDataJSON string }
	}
	json.Unmarshal(cred, &c)
	raw, err := decodeB64(c.Response.ClientDataJSON)
	if err != nil {
		t.Fatal(err)
	}
	var cd struct{ Challenge string }
	json.Unmarshal(raw, &cd)
	b, _ := json.Marshal(map[string]any{"publicKey": map[string]any{"challenge": cd.Challenge, "rpId": "login.example.com"}})
	return b
}

func TestPasskeyCeremoniesRefuseCrossOrigin(t *testing.T) {
	ps := newPasskeyServer(t)
	ivy := ps.login("ivy")
	for _, p := range []string{passkeyLoginBegin, passkeyLoginFinish, passkeyRegisterBegin, passkeyReauthBegin} {
		res, body := ps.do("POST", p, ivy, nil, map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"})
		if res.StatusCode != 403 || errorCode(t, []byte(body)) != "cross_origin" {
			t.Errorf("POST %s from another site: %d %s", p, res.StatusCode, body)
		}
	}
}

func TestPasskeyPagesLoadTheScript(t *testing.T) {
	ps := newPasskeyServer(t)
	ivy := ps.login("ivy")
	for _, page := range []struct{ path, token string }{{"/login", ""}, {"/account", ivy}} {
		res, body := ps.do("GET", page.path, page.token, nil, nil)
		if csp := res.Header.Get("Content-Security-Policy"); csp != contentSecurityPolicyScript {
			t.Errorf("GET %s: CSP %q, want %q", page.path, csp, contentSecurityPolicyScript)
		}
		if !strings.Contains(body, `<script src="/static/passkey.js" defer></script>`) || strings.Count(body, "<script") != 1 {
			t.Errorf("GET %s does not load the passkey script once", page.path)
		}
		if !strings.Contains(body, `data-passkey=`) || !strings.Contains(body, ` hidden>`) {
			t.Errorf("GET %s has no hidden passkey control", page.path)
		}
	}
	// The other pages stay script-free.
	res, body := ps.do("GET", "/admin/audit", ps.login("root"), nil, nil)
	if res.Header.Get("Content-Security-Policy") != contentSecurityPolicy || strings.Contains(body, "<script") {
		t.Errorf("GET /admin/audit: CSP %q, a script: %v", res.Header.Get("Content-Security-Policy"), strings.Contains(body, "<script"))
	}
	res, js := ps.do("GET", "/static/passkey.js", "", nil, nil)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/javascript; charset=utf-8" || !strings.Contains(js, "navigator.credentials") {
		t.Errorf("GET /static/passkey.js: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, bad := range []string{"script-src 'unsafe", "*", "eval"} {
		if strings.Contains(contentSecurityPolicyScript, bad) {
			t.Errorf("the passkey pages' CSP allows %q", bad)
		}
	}

	// Without a public URL (and not on localhost) passkeys are off: no
	// script, and the ceremonies answer 404.
	plain := newPageServer(t, Config{}, app.ThrottleConfig{})
	res, body = plain.do("GET", "/login", "", nil, nil)
	if res.Header.Get("Content-Security-Policy") != contentSecurityPolicy || strings.Contains(body, "<script") {
		t.Errorf("GET /login without a public URL: CSP %q", res.Header.Get("Content-Security-Policy"))
	}
	if res, body, _ := plain.call("POST", passkeyLoginBegin, "", "", nil); res.StatusCode != 404 || errorCode(t, body) != "not_found" {
		t.Errorf("POST %s without a public URL: %d %s", passkeyLoginBegin, res.StatusCode, body)
	}
}

func TestPasskeyAccountPage(t *testing.T) {
	ps := newPasskeyServer(t)
	ivy := ps.login("ivy")
	ps.registerPasskey(ivy, passkeytest.New(passkeyOrigin))
	_, body := ps.do("GET", "/account", ivy, nil, nil)
	if !strings.Contains(body, `<th scope="row" data-label="Name">Laptop</th>`) || !strings.Contains(body, "Never") || !strings.Contains(body, "This device or key only") {
		t.Fatalf("the account page does not list the passkey: %s", body)
	}
	_, list, _ := ps.call("GET", "/api/v1/passkeys", ivy, "", nil)
	var l struct{ Passkeys []passkeyView }
	json.Unmarshal(list, &l)
	id := l.Passkeys[0].ID

	res, _ := ps.do("POST", "/account/passkeys/"+id+"/rename", ivy, url.Values{"name": {"Work laptop"}}, nil)
	if loc := res.Header.Get("Location"); res.StatusCode != 303 || loc != "/account?done=passkey-renamed" {
		t.Errorf("rename: %d %s", res.StatusCode, loc)
	}
	// Removing asks first, then removes.
	res, body = ps.do("POST", "/account/passkeys/"+id+"/remove", ivy, url.Values{}, nil)
	if res.StatusCode != 200 || !strings.Contains(body, "Remove the passkey Work laptop?") {
		t.Fatalf("remove without confirmation: %d", res.StatusCode)
	}
	res, _ = ps.do("POST", "/account/passkeys/"+id+"/remove", ivy, url.Values{"confirm": {"yes"}}, nil)
	if loc := res.Header.Get("Location"); res.StatusCode != 303 || loc != "/account?done=passkey-removed" {
		t.Errorf("remove: %d %s", res.StatusCode, loc)
	}
	if _, body := ps.do("GET", "/account?done=passkey-removed", ivy, nil, nil); !strings.Contains(body, "Passkey removed.") || !strings.Contains(body, "You have no passkey yet.") {
		t.Error("the account page after removing the passkey")
	}
	res, _ = ps.do("POST", "/account/passkeys/"+id+"/remove", ivy, url.Values{"confirm": {"yes"}}, nil)
	if loc := res.Header.Get("Location"); loc != "/account?error=not-found" {
		t.Errorf("removing it again: %d %s", res.StatusCode, loc)
	}
}

// TestPasskeyAsTheSecondFactor: a user with a passkey who gives the right
// password is asked for the second factor, and the passkey completes the
// pending sign-in (its cookie) into an AAL2 session.
func TestPasskeyAsTheSecondFactor(t *testing.T) {
	ps := newPasskeyServer(t)
	a := passkeytest.New(passkeyOrigin)
	ps.registerPasskey(ps.login("ivy"), a)
	res, _ := ps.do("POST", "/login", "", url.Values{"username": {"ivy"}, "password": {"ivy-password"}, "rd": {"/app"}}, nil)
	var pending string
	for _, c := range res.Cookies() {
		if c.Name == ps.srv.pendingCookieName() {
			pending = c.Value
		}
		if c.Name == "__Host-sid" && c.Value != "" {
			t.Fatal("a session cookie after the password alone")
		}
	}
	if res.StatusCode != 303 || pending == "" || !strings.HasPrefix(res.Header.Get("Location"), passkeyOrigin+"/login/second-factor?") {
		t.Fatalf("the password of a user with a passkey: %d %s, pending cookie %q", res.StatusCode, res.Header.Get("Location"), pending)
	}
	// The page offers the passkey, with the script.
	r, _ := http.NewRequest("GET", ps.url+strings.TrimPrefix(res.Header.Get("Location"), passkeyOrigin), nil)
	r.AddCookie(&http.Cookie{Name: ps.srv.pendingCookieName(), Value: pending})
	page, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if !strings.Contains(string(body), `data-begin="/login/passkey/second-factor/begin"`) || page.Header.Get("Content-Security-Policy") != contentSecurityPolicyScript {
		t.Errorf("the second-factor page offers no passkey: %s", body)
	}

	step := func(path, ceremony string, v any) (*http.Response, []byte, string) {
		b, _ := json.Marshal(v)
		r, _ := http.NewRequest("POST", ps.url+path, bytes.NewReader(b))
		r.Header.Set("Content-Type", "application/json")
		r.AddCookie(&http.Cookie{Name: ps.srv.pendingCookieName(), Value: pending})
		if ceremony != "" {
			r.AddCookie(&http.Cookie{Name: passkeyCookie, Value: ceremony})
		}
		res, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		cer := ""
		for _, c := range res.Cookies() {
			if c.Name == passkeyCookie && c.MaxAge > 0 {
				cer = c.Value
			}
		}
		return res, out, cer
	}
	res, opts, cer := step(passkeyStepBegin, "", nil)
	if res.StatusCode != 200 || cer == "" {
		t.Fatalf("second-factor begin: %d %s", res.StatusCode, opts)
	}
	cred, err := a.Get(opts)
	if err != nil {
		t.Fatal(err)
	}
	res, out, _ := step(passkeyStepFinish, cer, map[string]any{"credential": json.RawMessage(cred), "rd": "/app"})
	var got struct {
		Session struct {
			AMR []string
			AAL int
		}
		Redirect string
	}
	json.Unmarshal(out, &got)
	if res.StatusCode != 200 || strings.Join(got.Session.AMR, ",") != "pwd,hwk,user,mfa" || got.Session.AAL != 2 || got.Redirect != "/app" {
		t.Fatalf("second-factor finish: %d %s", res.StatusCode, out)
	}
	var token string
	for _, c := range res.Cookies() {
		if c.Name == "__Host-sid" {
			token = c.Value
		}
	}
	if !ps.valid(token) {
		t.Error("no valid session cookie after the second factor")
	}
	// The pending sign-in is used up.
	if res, out, _ := step(passkeyStepBegin, "", nil); res.StatusCode != 401 {
		t.Errorf("second-factor begin again: %d %s", res.StatusCode, out)
	}
	// Its stale cookie beside a live session: the step raises the session.
	r, _ = http.NewRequest("POST", ps.url+passkeyStepBegin, nil)
	r.AddCookie(&http.Cookie{Name: ps.srv.pendingCookieName(), Value: pending})
	r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: token})
	res, err = client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("second-factor begin with a stale pending sign-in beside a session: %d, want the session's check", res.StatusCode)
	}
}

// TestPasskeyCheckButton: the button the second-factor and
// re-authentication pages show, for a user with a passkey, where
// passkeys work; hidden until the script shows it.
func TestPasskeyCheckButton(t *testing.T) {
	ps := newPasskeyServer(t)
	ivy, root := ps.login("ivy"), ps.login("root")
	ps.registerPasskey(ivy, passkeytest.New(passkeyOrigin))
	button := func(token string) *passkeyButton {
		r := httptest.NewRequest("GET", "/login/reauth", nil)
		r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: token})
		var b *passkeyButton
		ps.srv.sessions.Handler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { b = ps.srv.passkeyCheck(r) })).ServeHTTP(httptest.NewRecorder(), r)
		return b
	}
	b := button(ivy)
	if b == nil || b.Begin != passkeyReauthBegin || b.Finish != passkeyReauthFinish {
		t.Fatalf("ivy's check button: %+v", b)
	}
	if b := button(root); b != nil {
		t.Errorf("a check button for root, who has no passkey: %+v", b)
	}
	var out strings.Builder
	if err := pages.ExecuteTemplate(&out, "passkey-check", b); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, `data-passkey="get" data-begin="/login/passkey/reauth/begin" data-finish="/login/passkey/reauth/finish" hidden>`) || !strings.Contains(got, "Use a passkey") {
		t.Errorf("the passkey-check template: %s", got)
	}
}

func TestRelyingParty(t *testing.T) {
	pub, _ := url.Parse("https://Login.Example.com:8443/auth/")
	for _, c := range []struct {
		public       *url.URL
		host, remote string
		header       map[string]string
		want         app.RelyingParty
		ok           bool
	}{
		{pub, "evil.test", "203.0.113.9:1", nil, app.RelyingParty{ID: "login.example.com", Origin: "https://login.example.com:8443"}, true},
		{nil, "localhost:8080", "127.0.0.1:1", nil, app.RelyingParty{ID: "localhost", Origin: "http://localhost:8080"}, true},
		{nil, "app.localhost", "[::1]:1", nil, app.RelyingParty{ID: "app.localhost", Origin: "http://app.localhost"}, true},
		{nil, "localhost:8080", "203.0.113.9:1", nil, app.RelyingParty{}, false},
		{nil, "localhost:8080", "127.0.0.1:1", map[string]string{"X-Forwarded-Host": "evil.test"}, app.RelyingParty{}, false},
		{nil, "evil.test", "127.0.0.1:1", nil, app.RelyingParty{}, false},
		{nil, "127.0.0.1:8080", "127.0.0.1:1", nil, app.RelyingParty{}, false},
	} {
		s := &Server{cfg: Config{PublicURL: c.public}}
		r := httptest.NewRequest("GET", "/login", nil)
		r.Host, r.RemoteAddr = c.host, c.remote
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		got, ok := s.relyingParty(r)
		if got != c.want || ok != c.ok {
			t.Errorf("public URL %v, Host %s from %s %v: %+v %v, want %+v %v", c.public, c.host, c.remote, c.header, got, ok, c.want, c.ok)
		}
	}
}

// FuzzPasskeyAnswer feeds arbitrary bytes to what reads a ceremony's
// finish: the JSON body, then the credential, as a registration and as
// an assertion. None may panic; what readPasskeyAnswer refuses is a
// client error.
func FuzzPasskeyAnswer(f *testing.F) {
	a := passkeytest.New(passkeyOrigin)
	reg, _ := a.Create([]byte(`{"publicKey":{"challenge":"AAAAAAAAAAAAAAAAAAAAAA","rp":{"id":"login.example.com"},"user":{"id":"dV9hYmM"}}}`))
	get, _ := a.Get([]byte(`{"publicKey":{"challenge":"AAAAAAAAAAAAAAAAAAAAAA"}}`))
	for _, seed := range [][]byte{reg, get, []byte(`{}`), []byte(`{"credential":{"response":{"clientDataJSON":"e30"}}}`)} {
		f.Add(append(append([]byte(`{"credential":`), seed...), '}'))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", passkeyLoginFinish, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		ans, err := readPasskeyAnswer(w, r)
		if err != nil {
			if app.ErrorOf(err) == nil {
				t.Fatalf("readPasskeyAnswer(%q): %v, not a client error", body, err)
			}
			return
		}
		protocol.ParseCredentialCreationResponseBytes(ans.Credential)
		protocol.ParseCredentialRequestResponseBytes(ans.Credential)
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decodeB64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
