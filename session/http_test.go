package session_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
)

// loginCookie logs user in through Manager.Login and returns the cookie set.
func (f *fixture) loginCookie(t *testing.T, r *http.Request, l session.Login) *http.Cookie {
	t.Helper()
	w := httptest.NewRecorder()
	if _, err := f.m.Login(w, r, l); err != nil {
		t.Fatalf("Login: %v", err)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("Login set %d cookies, want 1", len(cookies))
	}
	return cookies[0]
}

func TestCookieAttributes(t *testing.T) {
	f := newFixture(t, session.Config{})
	w := httptest.NewRecorder()
	if _, err := f.m.Login(w, httptest.NewRequest("POST", "/login", nil), session.Login{UserID: "alice"}); err != nil {
		t.Fatal(err)
	}
	header := w.Header().Get("Set-Cookie")
	for _, attr := range []string{"__Host-sid=", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"} {
		if !strings.Contains(header, attr) {
			t.Errorf("Set-Cookie %q lacks %s", header, attr)
		}
	}
	for _, attr := range []string{"Domain", "Max-Age", "Expires"} {
		if strings.Contains(header, attr) {
			t.Errorf("Set-Cookie %q has %s: the cookie would outlive the browser or leave the host", header, attr)
		}
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control on a token-bearing response: %q, want no-store", got)
	}

	c := f.loginCookie(t, httptest.NewRequest("POST", "/login", nil), session.Login{UserID: "alice", Remember: true})
	if want := int((30 * 24 * time.Hour).Seconds()); c.MaxAge != want {
		t.Errorf("remember-me cookie Max-Age %d, want %d", c.MaxAge, want)
	}
}

func TestTokenOnlyFromCookieOrBearer(t *testing.T) {
	f := newFixture(t, session.Config{})
	_, tok := f.login(t, "alice")
	for name, r := range map[string]*http.Request{
		"query":        httptest.NewRequest("GET", "/?token="+tok+"&sid="+tok+"&__Host-sid="+tok, nil),
		"form":         formRequest(url.Values{"token": {tok}, "__Host-sid": {tok}}),
		"other header": headerRequest("X-Session-Token", tok),
		"basic auth":   headerRequest("Authorization", "Basic "+tok),
		"wrong cookie": cookieRequest("sid", tok),
	} {
		if got, _ := f.m.TokenFromRequest(r); got != "" {
			t.Errorf("token read from the %s", name)
		}
		if s, _ := f.m.Load(r); s != nil {
			t.Errorf("session loaded from a token in the %s", name)
		}
	}
	for name, r := range map[string]*http.Request{
		"cookie":           cookieRequest("__Host-sid", tok),
		"bearer":           headerRequest("Authorization", "Bearer "+tok),
		"lowercase bearer": headerRequest("Authorization", "bearer "+tok),
	} {
		if s, err := f.m.Load(r); err != nil || s.UserID != "alice" {
			t.Errorf("%s: Load = %v, %v", name, s, err)
		}
	}
	r := cookieRequest("__Host-sid", "not-a-token")
	r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: tok})
	if got, fromCookie := f.m.TokenFromRequest(r); got != tok || !fromCookie {
		t.Error("a malformed first cookie hid the well-formed second one")
	}
}

// ctxStore is a memstore that keeps the context of the last ByHash.
type ctxStore struct {
	*memstore.Store
	last context.Context
}

func (s *ctxStore) ByHash(ctx context.Context, h session.Hash) (*session.Session, error) {
	s.last = ctx
	return s.Store.ByHash(ctx, h)
}

// TestLoadContext: LoadContext reads the token from the request but calls
// the store with the context it is given, and Load with the request's.
func TestLoadContext(t *testing.T) {
	st := &ctxStore{Store: memstore.New()}
	m, err := session.New(st, session.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := m.Create(ctx, session.Login{UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	type key struct{}
	r := headerRequest("Authorization", "Bearer "+tok)
	given := context.WithValue(ctx, key{}, "given")
	if s, err := m.LoadContext(given, r); err != nil || s.UserID != "alice" {
		t.Fatalf("LoadContext = %v, %v", s, err)
	}
	if st.last != given {
		t.Error("LoadContext called the store with another context than the one it was given")
	}
	if _, err := m.Load(r); err != nil || st.last != r.Context() {
		t.Errorf("Load: %v; store called with the request's context: %v", err, st.last == r.Context())
	}
}

func formRequest(v url.Values) *http.Request {
	r := httptest.NewRequest("POST", "/", strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func headerRequest(k, v string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set(k, v)
	return r
}

func cookieRequest(name, value string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: name, Value: value})
	return r
}

func TestLoginNeverAdoptsAPlantedToken(t *testing.T) {
	f := newFixture(t, session.Config{})
	planted := strings.Repeat("Q", session.TokenLen) // attacker-chosen, well-formed
	c := f.loginCookie(t, cookieRequest("__Host-sid", planted), session.Login{UserID: "alice"})
	if c.Value == planted {
		t.Fatal("Login adopted the token the client brought (session fixation)")
	}
	if f.valid(t, planted) {
		t.Fatal("the planted token became a session")
	}
	if !f.valid(t, c.Value) {
		t.Fatal("the issued token does not validate")
	}
}

func TestLoginEndsThePreviousSession(t *testing.T) {
	f := newFixture(t, session.Config{})
	_, before := f.login(t, "alice")
	c := f.loginCookie(t, cookieRequest("__Host-sid", before), session.Login{UserID: "alice"})
	if c.Value == before || f.valid(t, before) {
		t.Error("the pre-login token survived the login")
	}
}

func TestLogout(t *testing.T) {
	f := newFixture(t, session.Config{})
	_, tok := f.login(t, "alice")
	w := httptest.NewRecorder()
	if err := f.m.Logout(w, cookieRequest("__Host-sid", tok)); err != nil {
		t.Fatal(err)
	}
	if f.valid(t, tok) {
		t.Fatal("token still validates after logout: the session was not ended server-side")
	}
	c := w.Result().Cookies()
	if len(c) != 1 || c[0].MaxAge >= 0 || c[0].Value != "" {
		t.Errorf("logout cookie %+v does not expire the session cookie", c)
	}
	if got := w.Header().Get("Clear-Site-Data"); got != `"cookies"` {
		t.Errorf("Clear-Site-Data %q", got)
	}
	if ev, _ := f.events.last(session.EventRevoked); ev.Reason != session.ReasonLogout || ev.Actor != "alice" {
		t.Errorf("logout event %+v", ev)
	}
	if err := f.m.Logout(httptest.NewRecorder(), httptest.NewRequest("POST", "/", nil)); err != nil {
		t.Errorf("logout without a session: %v", err)
	}
}

// serve runs r through the Handler (or Require) around an app that echoes
// the user.
func serve(m *session.Manager, wrap func(http.Handler) http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := session.FromContext(r.Context()); s != nil {
			io.WriteString(w, "user="+s.UserID)
			return
		}
		io.WriteString(w, "anonymous")
	})).ServeHTTP(w, r)
	return w
}

func TestHandler(t *testing.T) {
	f := newFixture(t, session.Config{})
	_, tok := f.login(t, "alice")

	w := serve(f.m, f.m.Handler, cookieRequest("__Host-sid", tok))
	if w.Body.String() != "user=alice" {
		t.Fatalf("body %q", w.Body)
	}
	if w.Header().Get("Cache-Control") != "no-store" || !strings.Contains(strings.Join(w.Header().Values("Vary"), ","), "Cookie") {
		t.Errorf("authenticated response headers: Cache-Control %q, Vary %q", w.Header().Get("Cache-Control"), w.Header().Values("Vary"))
	}

	w = serve(f.m, f.m.Handler, httptest.NewRequest("GET", "/", nil))
	if w.Body.String() != "anonymous" || w.Code != 200 {
		t.Errorf("anonymous request: %d %q", w.Code, w.Body)
	}

	stale := strings.Repeat("A", session.TokenLen)
	w = serve(f.m, f.m.Handler, cookieRequest("__Host-sid", stale))
	if c := w.Result().Cookies(); w.Body.String() != "anonymous" || len(c) != 1 || c[0].MaxAge >= 0 {
		t.Errorf("a dead cookie was not expired: body %q cookies %v", w.Body, c)
	}

	w = serve(f.m, f.m.Require, httptest.NewRequest("GET", "/", nil))
	if w.Code != http.StatusUnauthorized || errorCode(t, w) != "unauthenticated" {
		t.Errorf("Require without a session: %d %s", w.Code, w.Body)
	}
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Message == "" {
		t.Fatalf("error body %q is not {\"error\":{\"code\",\"message\"}}: %v", w.Body, err)
	}
	return body.Error.Code
}

func TestHandlerFailsClosed(t *testing.T) {
	m, _ := session.New(downStore{memstore.New()}, session.Config{})
	w := serve(m, m.Handler, cookieRequest("__Host-sid", strings.Repeat("A", session.TokenLen)))
	if w.Code != http.StatusServiceUnavailable || errorCode(t, w) != "store_unavailable" {
		t.Errorf("store down: %d %s, want 503 store_unavailable", w.Code, w.Body)
	}
}

func TestCrossOriginStateChangeRefused(t *testing.T) {
	f := newFixture(t, session.Config{})
	_, tok := f.login(t, "alice")
	post := func(site string) *http.Request {
		r := httptest.NewRequest("POST", "/transfer", nil)
		r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: tok})
		r.Header.Set("Sec-Fetch-Site", site)
		return r
	}
	if w := serve(f.m, f.m.Handler, post("cross-site")); w.Code != http.StatusForbidden {
		t.Errorf("cross-site POST with the cookie: %d, want 403", w.Code)
	}
	if w := serve(f.m, f.m.Handler, post("same-origin")); w.Code != 200 || w.Body.String() != "user=alice" {
		t.Errorf("same-origin POST: %d %q", w.Code, w.Body)
	}
	r := post("cross-site")
	r.Method = "GET"
	if w := serve(f.m, f.m.Handler, r); w.Code != 200 {
		t.Errorf("cross-site GET (a link): %d, want 200", w.Code)
	}
	if _, err := f.m.Login(httptest.NewRecorder(), post("cross-site"), session.Login{UserID: "mallory"}); !errors.Is(err, session.ErrCrossOrigin) {
		t.Errorf("cross-site login: got %v, want ErrCrossOrigin", err)
	}
	if err := f.m.Logout(httptest.NewRecorder(), post("cross-site")); !errors.Is(err, session.ErrCrossOrigin) || !f.valid(t, tok) {
		t.Errorf("cross-site logout: got %v, want ErrCrossOrigin and the session kept", err)
	}
}

func TestPeriodicRotation(t *testing.T) {
	f := newFixture(t, session.Config{RotationInterval: 10 * time.Minute, RotationGrace: 30 * time.Second})
	_, old := f.login(t, "alice")
	f.clock.Advance(11 * time.Minute)

	w := serve(f.m, f.m.Handler, cookieRequest("__Host-sid", old))
	c := w.Result().Cookies()
	if len(c) != 1 || c[0].Value == old || c[0].Value == "" {
		t.Fatalf("no new cookie after the rotation interval: %v", c)
	}
	fresh := c[0].Value

	// A request already in flight with the old token still works...
	f.clock.Advance(10 * time.Second)
	if w := serve(f.m, f.m.Handler, cookieRequest("__Host-sid", old)); w.Body.String() != "user=alice" || len(w.Result().Cookies()) != 0 {
		t.Fatalf("old token within the grace window: %q, cookies %v", w.Body, w.Result().Cookies())
	}
	// ...but after the grace window it is a stolen copy: the session ends.
	f.clock.Advance(time.Minute)
	if w := serve(f.m, f.m.Handler, cookieRequest("__Host-sid", old)); w.Body.String() != "anonymous" {
		t.Fatalf("old token after the grace window: %q", w.Body)
	}
	if f.valid(t, fresh) {
		t.Error("reuse of a rotated token did not revoke the session")
	}
	if _, ok := f.events.last(session.EventTheftSuspected); !ok {
		t.Error("no theft event")
	}

	// Bearer clients cannot take a new cookie: they are never rotated.
	_, tok := f.login(t, "bob")
	f.clock.Advance(11 * time.Minute)
	if w := serve(f.m, f.m.Handler, headerRequest("Authorization", "Bearer "+tok)); len(w.Result().Cookies()) != 0 || w.Body.String() != "user=bob" {
		t.Errorf("bearer request got %v", w.Result().Cookies())
	}
}

func TestRenewOnPrivilegeChange(t *testing.T) {
	f := newFixture(t, session.Config{})
	_, old := f.login(t, "alice")
	var renewed *http.Cookie
	h := f.m.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := f.m.Renew(w, r, session.Change{Roles: []string{"admin"}}); err != nil {
			t.Fatal(err)
		}
	}))
	w := httptest.NewRecorder()
	r := cookieRequest("__Host-sid", old)
	r.Method = "POST"
	h.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		renewed = c
	}
	if renewed == nil || renewed.Value == old || f.valid(t, old) || !f.valid(t, renewed.Value) {
		t.Fatal("Renew did not replace the token")
	}
}

func TestTokensNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	down, _ := session.New(downStore{memstore.New()}, session.Config{Logger: logger})
	f := newFixture(t, session.Config{Logger: logger, RotationInterval: time.Minute, RotationGrace: time.Second})
	_, tok := f.login(t, "alice")
	f.clock.Advance(2 * time.Minute)
	serve(f.m, f.m.Handler, cookieRequest("__Host-sid", tok)) // rotates
	f.clock.Advance(time.Minute)
	serve(f.m, f.m.Handler, cookieRequest("__Host-sid", tok)) // theft: logged
	_, err := down.Validate(ctx, tok, session.Client{})       // store failure: logged
	if logs.Len() == 0 {
		t.Fatal("nothing was logged; the test checks nothing")
	}
	if strings.Contains(logs.String(), tok) || strings.Contains(err.Error(), tok) {
		t.Fatal("a token appeared in a log line or an error")
	}
}

func FuzzTokenFromRequest(f *testing.F) {
	m, _ := session.New(memstore.New(), session.Config{})
	f.Add("__Host-sid="+strings.Repeat("A", 43), "Bearer "+strings.Repeat("A", 43))
	f.Add("a=b; __Host-sid=x; __Host-sid="+strings.Repeat("Q", 43), "")
	f.Add("", "bearer  "+strings.Repeat("w", 43)+" ")
	f.Add("__Host-sid=\"quoted\"", "Basic dXNlcjpwYXNz")
	f.Fuzz(func(t *testing.T, cookie, authorization string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", cookie)
		r.Header.Set("Authorization", authorization)
		tok, fromCookie := m.TokenFromRequest(r)
		if tok == "" {
			return
		}
		if _, err := session.ParseToken(tok); err != nil {
			t.Fatalf("returned malformed token %q", tok)
		}
		if src := map[bool]string{true: cookie, false: authorization}[fromCookie]; !strings.Contains(src, tok) {
			t.Fatalf("token %q is not in the header it is said to come from", tok)
		}
	})
}

// TestWriteError: the middleware's refusals (401 from Require, 403 for a
// cross-origin request, 503 for a store failure) go through
// Config.WriteError when it is set, with their status and code.
func TestWriteError(t *testing.T) {
	var got []string
	writeErr := func(w http.ResponseWriter, r *http.Request, status int, code, message string) {
		got = append(got, fmt.Sprintf("%d %s", status, code))
		w.WriteHeader(status)
		io.WriteString(w, "<p>"+message)
	}
	f := newFixture(t, session.Config{WriteError: writeErr})
	_, tok := f.login(t, "alice")
	serve(f.m, f.m.Require, httptest.NewRequest("GET", "/", nil))
	cross := httptest.NewRequest("POST", "/transfer", nil)
	cross.AddCookie(&http.Cookie{Name: "__Host-sid", Value: tok})
	cross.Header.Set("Sec-Fetch-Site", "cross-site")
	serve(f.m, f.m.Handler, cross)
	down, _ := session.New(downStore{memstore.New()}, session.Config{WriteError: writeErr})
	w := serve(down, down.Handler, cookieRequest("__Host-sid", strings.Repeat("A", session.TokenLen)))
	if want := []string{"401 unauthenticated", "403 cross_origin", "503 store_unavailable"}; !slices.Equal(got, want) || !strings.HasPrefix(w.Body.String(), "<p>") {
		t.Errorf("WriteError calls %q (last body %q), want %q", got, w.Body, want)
	}
}

// rawCookieRequest returns a GET request whose Cookie header fields are
// lines, as sent, with no sanitizing of names.
func rawCookieRequest(lines ...string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header["Cookie"] = lines
	return r
}

// deadToken returns a well-formed token, distinct for each i, that names
// no session.
func deadToken(i int) string {
	tok := fmt.Sprintf("%0*dA", session.TokenLen-1, i) // "A": canonical base64url ends in one of AEIMQUYcgkosw048
	if _, err := session.ParseToken(tok); err != nil {
		panic("deadToken made a malformed token: " + tok)
	}
	return tok
}

// wantCleared fails the test unless w's response expires the session
// cookie (want) or sets no cookie at all (!want).
func wantCleared(t *testing.T, w *httptest.ResponseRecorder, want bool) {
	t.Helper()
	cookies := w.Result().Cookies()
	cleared := len(cookies) == 1 && cookies[0].Name == "__Host-sid" && cookies[0].MaxAge < 0
	switch {
	case want && !cleared:
		t.Errorf("the session cookie was not expired: Set-Cookie %q", w.Header().Values("Set-Cookie"))
	case !want && len(cookies) != 0:
		t.Errorf("Set-Cookie %q, want none: the valid session cookie would be lost", w.Header().Values("Set-Cookie"))
	}
}

// lookAlikeNames are cookie names a browser holds apart from "__Host-sid"
// (the __Host- prefix does not bind them, so a sibling subdomain can set
// them) or that no browser sends, and that are therefore not the session
// cookie.
var lookAlikeNames = map[string]string{
	"en quad before":             "\u2000__Host-sid",
	"no-break space before":      "\u00a0__Host-sid",
	"ideographic space before":   "\u3000__Host-sid",
	"byte order mark before":     "\ufeff__Host-sid",
	"vertical tab before":        "\v__Host-sid",
	"form feed before":           "\f__Host-sid",
	"no-break space after":       "__Host-sid\u00a0",
	"tab before =":               "__Host-sid\t",
	"space before =":             "__Host-sid ",
	"_ for -":                    "__Host_sid",
	"one more _":                 "___Host-sid",
	"lowercase":                  "__host-sid",
	"uppercase":                  "__HOST-SID",
	"uppercase after prefix":     "__Host-SID",
	"longer":                     "__Host-sid2",
	"shorter":                    "__Host-si",
	"prefix without the name":    "__Host-",
	"name without the prefix":    "sid",
	"letter before":              "x__Host-sid",
	"quoted":                     `"__Host-sid"`,
	"percent-encoded -":          "__Host%2Dsid",
	"no-break space inside":      "__Host-\u00a0sid",
	"en quad and no-break space": "\u2000\u00a0__Host-sid",
}

func TestOnlyTheExactCookieNameCounts(t *testing.T) {
	f := newFixture(t, session.Config{})
	_, tok := f.login(t, "alice")
	for desc, name := range lookAlikeNames {
		for _, header := range []string{name + "=" + tok, "a=b; " + name + "=" + tok, "a=b;" + name + "=" + tok} {
			r := rawCookieRequest(header)
			if got, _ := f.m.TokenFromRequest(r); got != "" {
				t.Errorf("%s (%q): TokenFromRequest read the token", desc, header)
			}
			if s, err := f.m.Load(r); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s (%q): Load = %v, %v; want ErrNotFound", desc, header, s, err)
			}
			if n := f.m.PresentedCredentials(r); n != 0 {
				t.Errorf("%s (%q): PresentedCredentials = %d, want 0", desc, header, n)
			}
			w := serve(f.m, f.m.Handler, r)
			if w.Body.String() != "anonymous" {
				t.Errorf("%s (%q): authenticated as %q", desc, header, w.Body)
			}
			wantCleared(t, w, false)
		}
	}
	// Spaces and horizontal tabs around a pair are separators, not part of
	// the name (RFC 6265 §4.2.1, §5.4); a quoted value is the value.
	for _, header := range []string{
		"__Host-sid=" + tok,
		" __Host-sid=" + tok + " ",
		"a=b;\t__Host-sid=" + tok,
		"a=b;  __Host-sid=" + tok + "\t; c=d",
		`__Host-sid="` + tok + `"`,
	} {
		if s, err := f.m.Load(rawCookieRequest(header)); err != nil || s.UserID != "alice" {
			t.Errorf("%q: Load = %v, %v; want alice's session", header, s, err)
		}
	}
}

func TestLookAlikeCookieNeitherHidesNorClearsTheSessionCookie(t *testing.T) {
	f := newFixture(t, session.Config{})
	_, tok := f.login(t, "alice")
	_, mallory := f.login(t, "mallory")
	for desc, name := range lookAlikeNames {
		for _, planted := range []string{mallory, deadToken(1)} {
			r := rawCookieRequest(name + "=" + planted + "; __Host-sid=" + tok)
			w := serve(f.m, f.m.Handler, r)
			if w.Body.String() != "user=alice" {
				t.Errorf("%s first: %q, want user=alice", desc, w.Body)
			}
			wantCleared(t, w, false)
			if got, fromCookie := f.m.TokenFromRequest(r); got != tok || !fromCookie {
				t.Errorf("%s first: TokenFromRequest returned the planted token or none", desc)
			}
		}
	}
}

func TestEverySessionCookieIsTriedInOrder(t *testing.T) {
	f := newFixture(t, session.Config{})
	_, tok := f.login(t, "alice")
	_, bob := f.login(t, "bob")
	for desc, tc := range map[string]struct {
		r    *http.Request
		want string
	}{
		"dead first":                   {rawCookieRequest("__Host-sid=" + deadToken(1) + "; __Host-sid=" + tok), "alice"},
		"malformed and dead first":     {rawCookieRequest("__Host-sid=junk; __Host-sid=" + deadToken(1) + "; __Host-sid=" + tok), "alice"},
		"dead first, in another field": {rawCookieRequest("__Host-sid="+deadToken(1), "a=b; __Host-sid="+tok), "alice"},
		"live after live":              {rawCookieRequest("__Host-sid=" + bob + "; __Host-sid=" + tok), "bob"},
		"dead bearer beside": {func() *http.Request {
			r := rawCookieRequest("__Host-sid=" + tok)
			r.Header.Set("Authorization", "Bearer "+deadToken(2))
			return r
		}(), "alice"},
	} {
		w := serve(f.m, f.m.Handler, tc.r)
		if w.Body.String() != "user="+tc.want {
			t.Errorf("%s: %q, want user=%s", desc, w.Body, tc.want)
		}
		wantCleared(t, w, false)
		if s, err := f.m.Load(tc.r); err != nil || s.UserID != tc.want {
			t.Errorf("%s: Load = %v, %v", desc, s, err)
		}
	}

	// The session found by a cookie behind a bearer token that names
	// nothing is cookie-authenticated: the cross-origin check applies.
	r := rawCookieRequest("__Host-sid=" + tok)
	r.Method = "POST"
	r.Header.Set("Authorization", "Bearer "+deadToken(2))
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	if w := serve(f.m, f.m.Handler, r); w.Code != http.StatusForbidden {
		t.Errorf("cross-site POST authenticated by the cookie behind a dead bearer token: %d, want 403", w.Code)
	}
}

func TestSessionCookieClearedOnlyWhenNoneIsLive(t *testing.T) {
	f := newFixture(t, session.Config{})
	for desc, header := range map[string]string{
		"one dead":           "__Host-sid=" + deadToken(1),
		"two dead":           "__Host-sid=" + deadToken(1) + "; __Host-sid=" + deadToken(2),
		"malformed":          "__Host-sid=junk",
		"empty":              "__Host-sid=",
		"dead and malformed": "__Host-sid=" + deadToken(1) + "; x=y; __Host-sid=junk",
	} {
		w := serve(f.m, f.m.Handler, rawCookieRequest(header))
		if w.Body.String() != "anonymous" {
			t.Errorf("%s: %q", desc, w.Body)
		}
		wantCleared(t, w, true)
	}
	w := serve(f.m, f.m.Handler, rawCookieRequest("sid="+deadToken(1)))
	wantCleared(t, w, false)
}

func TestSessionCookieCandidatesAreBounded(t *testing.T) {
	f := newFixture(t, session.Config{})
	_, tok := f.login(t, "alice")
	cookies := func(dead int) string {
		var b strings.Builder
		for i := range dead {
			fmt.Fprintf(&b, "__Host-sid=%s; ", deadToken(i))
		}
		return b.String() + "__Host-sid=" + tok
	}

	r := rawCookieRequest(cookies(session.MaxSessionCookies - 1))
	if w := serve(f.m, f.m.Handler, r); w.Body.String() != "user=alice" {
		t.Errorf("live cookie at place %d of %d: %q", session.MaxSessionCookies, session.MaxSessionCookies, w.Body)
	}

	r = rawCookieRequest(cookies(session.MaxSessionCookies))
	before := f.store.byHash.Load()
	w := serve(f.m, f.m.Handler, r)
	if w.Body.String() != "anonymous" {
		t.Errorf("live cookie past the first %d was tried: %q", session.MaxSessionCookies, w.Body)
	}
	if n := f.store.byHash.Load() - before; n != session.MaxSessionCookies {
		t.Errorf("%d store lookups for %d cookies, want %d", n, session.MaxSessionCookies+1, session.MaxSessionCookies)
	}
	wantCleared(t, w, false) // the untried one may be live
	if got, _ := f.m.TokenFromRequest(rawCookieRequest(strings.Repeat("__Host-sid=junk; ", session.MaxSessionCookies) + "__Host-sid=" + tok)); got != "" {
		t.Error("TokenFromRequest read a cookie past the first MaxSessionCookies")
	}
	if n := f.m.PresentedCredentials(r); n != session.MaxSessionCookies+1 {
		t.Errorf("PresentedCredentials = %d, want %d: the untried cookie counts too", n, session.MaxSessionCookies+1)
	}
}

func TestPresentedCredentials(t *testing.T) {
	f := newFixture(t, session.Config{})
	_, tok := f.login(t, "alice")
	withAuth := func(r *http.Request, values ...string) *http.Request {
		r.Header["Authorization"] = values
		return r
	}
	for desc, tc := range map[string]struct {
		r    *http.Request
		want int
	}{
		"nothing":                 {httptest.NewRequest("GET", "/", nil), 0},
		"other cookies":           {rawCookieRequest("a=b; sid=" + tok), 0},
		"a look-alike cookie":     {rawCookieRequest("\u2000__Host-sid=" + tok), 0},
		"a name without a value":  {rawCookieRequest("__Host-sid"), 0},
		"the session cookie":      {rawCookieRequest("__Host-sid=" + tok), 1},
		"an empty session cookie": {rawCookieRequest("__Host-sid="), 1},
		"a bearer token":          {withAuth(httptest.NewRequest("GET", "/", nil), "Bearer "+tok), 1},
		"a malformed header":      {withAuth(httptest.NewRequest("GET", "/", nil), "Basic dXNlcjpwYXNz"), 1},
		"an empty header":         {withAuth(httptest.NewRequest("GET", "/", nil), ""), 0},
		"two headers":             {withAuth(httptest.NewRequest("GET", "/", nil), "Bearer x", "Bearer y"), 2},
		"fifty bad cookies":       {rawCookieRequest(strings.Repeat("__Host-sid=junk; ", 49) + "__Host-sid=" + deadToken(1)), 50},
		"bearer and cookies in two fields": {
			withAuth(rawCookieRequest("__Host-sid=junk; a=b", "__Host-sid="+tok+"; __Host-sid=\"x\""), "Bearer "+tok), 4,
		},
	} {
		if got := f.m.PresentedCredentials(tc.r); got != tc.want {
			t.Errorf("%s: PresentedCredentials = %d, want %d", desc, got, tc.want)
		}
	}
}

func TestLogoutAndLoginEndTheSessionThatValidates(t *testing.T) {
	f := newFixture(t, session.Config{})
	for desc, planted := range map[string]func(bob string) string{
		"look-alike first": func(bob string) string { return "\u2000__Host-sid=" + bob },
		"dead first":       func(string) string { return "__Host-sid=" + deadToken(1) },
		"malformed first":  func(string) string { return "__Host-sid=junk" },
	} {
		_, alice := f.login(t, "alice")
		_, bob := f.login(t, "bob")
		r := rawCookieRequest(planted(bob) + "; __Host-sid=" + alice)
		if err := f.m.Logout(httptest.NewRecorder(), r); err != nil {
			t.Fatal(err)
		}
		if f.valid(t, alice) {
			t.Errorf("%s: Logout left the session the request was authenticated by", desc)
		}
		if !f.valid(t, bob) {
			t.Errorf("%s: Logout ended the look-alike cookie's session", desc)
		}

		_, alice = f.login(t, "alice")
		r = rawCookieRequest(planted(bob) + "; __Host-sid=" + alice)
		f.loginCookie(t, r, session.Login{UserID: "alice"})
		if f.valid(t, alice) {
			t.Errorf("%s: Login left the session the request carried", desc)
		}
		if !f.valid(t, bob) {
			t.Errorf("%s: Login ended the look-alike cookie's session", desc)
		}
	}

	// A forged logout is refused whatever session cookie it carries: it
	// would expire the cookie of a session the browser holds.
	for _, header := range []string{"__Host-sid=" + deadToken(1), "__Host-sid=junk", "__Host-sid="} {
		r := rawCookieRequest(header)
		r.Method = "POST"
		r.Header.Set("Sec-Fetch-Site", "cross-site")
		if err := f.m.Logout(httptest.NewRecorder(), r); !errors.Is(err, session.ErrCrossOrigin) {
			t.Errorf("cross-site logout with %q: %v, want ErrCrossOrigin", header, err)
		}
	}
}

// cookieValues is the test's own reading of Cookie header fields: the
// values of the pairs named exactly name, split at ";" and stripped of
// spaces and horizontal tabs (RFC 6265 §4.2.1, §5.4), without the quotes
// of a quoted value.
func cookieValues(lines []string, name string) []string {
	var vals []string
	for _, line := range lines {
		for _, pair := range strings.Split(line, ";") {
			n, v, ok := strings.Cut(strings.Trim(pair, " \t"), "=")
			if !ok || n != name {
				continue
			}
			if len(v) >= 2 && strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`) {
				v = v[1 : len(v)-1]
			}
			vals = append(vals, v)
		}
	}
	return vals
}

// FuzzSessionCookieHeader: whatever two Cookie header fields say, only
// cookies named exactly "__Host-sid", among the first MaxSessionCookies of
// them, authenticate the request or get the cookie expired, and
// PresentedCredentials counts exactly those cookies. "{live}" in an input
// stands for the token of a live session.
func FuzzSessionCookieHeader(f *testing.F) {
	now := time.Now()
	m, err := session.New(memstore.New(), session.Config{Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	_, live, err := m.Create(ctx, session.Login{UserID: "alice"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		lines := []string{strings.ReplaceAll(line1, "{live}", live), strings.ReplaceAll(line2, "{live}", live)}
		r := rawCookieRequest(lines...)
		vals := cookieValues(lines, "__Host-sid")
		tried := vals[:min(len(vals), session.MaxSessionCookies)]

		if n := m.PresentedCredentials(r); n != len(vals) {
			t.Fatalf("PresentedCredentials = %d; the header holds %d cookies named __Host-sid", n, len(vals))
		}
		var firstWellFormed string
		for _, v := range tried {
			if _, err := session.ParseToken(v); err == nil {
				firstWellFormed = v
				break
			}
		}
		if tok, fromCookie := m.TokenFromRequest(r); tok != firstWellFormed || (tok != "" && !fromCookie) {
			t.Fatalf("TokenFromRequest = %q, %v; want %q, the first well-formed of %q", tok, fromCookie, firstWellFormed, tried)
		}

		w := serve(m, m.Handler, r)
		authenticated := slices.Contains(tried, live)
		if got := w.Body.String() == "user=alice"; got != authenticated {
			t.Fatalf("authenticated %v, want %v: cookies named __Host-sid tried: %q", got, authenticated, tried)
		}
		cleared := len(w.Result().Cookies()) > 0
		if want := !authenticated && len(vals) > 0 && len(vals) <= session.MaxSessionCookies; cleared != want {
			t.Fatalf("cookie expired %v, want %v: cookies named __Host-sid: %q", cleared, want, vals)
		}
	})
}

// TestRequireSendsBrowsersToLoginURL: with Config.LoginURL, only a
// browser's GET or HEAD for HTML is redirected, with rd a path on this
// origin; everything else gets the 401, and a session passes.
func TestRequireSendsBrowsersToLoginURL(t *testing.T) {
	const html = "text/html,application/xhtml+xml,*/*;q=0.8"
	for _, tt := range []struct {
		name, loginURL, method, target, accept string
		want                                   string // Location, or "" for the 401
	}{
		{"browser GET", "/login", "GET", "/orders?page=2", html, "/login?rd=%2Forders%3Fpage%3D2"},
		{"browser HEAD", "/login", "HEAD", "/orders", html, "/login?rd=%2Forders"},
		{"login URL with a query", "/sso?app=shop", "GET", "/orders", html, "/sso?app=shop&rd=%2Forders"},
		{"absolute login URL", "https://login.example/start", "GET", "/a%2Fb", html, "https://login.example/start?rd=%2Fa%252Fb"},
		{"path that reads as a host", "/login", "GET", "//evil.example/x", html, "/login"},
		{"form post", "/login", "POST", "/orders", html, ""},
		{"API client", "/login", "GET", "/orders", "application/json", ""},
		{"no Accept", "/login", "GET", "/orders", "", ""},
		{"no LoginURL", "", "GET", "/orders", html, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, session.Config{LoginURL: tt.loginURL})
			r := httptest.NewRequest(tt.method, "http://app.example"+tt.target, nil)
			if tt.accept != "" {
				r.Header.Set("Accept", tt.accept)
			}
			w := serve(f.m, f.m.Require, r)
			if tt.want == "" {
				if w.Code != http.StatusUnauthorized || w.Header().Get("Location") != "" {
					t.Errorf("%d Location %q, want 401", w.Code, w.Header().Get("Location"))
				}
				return
			}
			if w.Code != http.StatusSeeOther || w.Header().Get("Location") != tt.want || w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("%d Location %q Cache-Control %q, want 303 to %q, no-store", w.Code, w.Header().Get("Location"), w.Header().Get("Cache-Control"), tt.want)
			}
		})
	}
	f := newFixture(t, session.Config{LoginURL: "/login"})
	_, tok := f.login(t, "alice")
	r := cookieRequest("__Host-sid", tok)
	r.Header.Set("Accept", html)
	if w := serve(f.m, f.m.Require, r); w.Code != 200 || w.Body.String() != "user=alice" {
		t.Errorf("with a session: %d %q, want the app", w.Code, w.Body.String())
	}
}
