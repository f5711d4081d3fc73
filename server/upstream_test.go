package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
)

// appRequest is what the app behind sessiond received.
type appRequest struct {
	Method, Path string
	Header       http.Header
	BodyLen      int64
	BodySHA256   string
}

// upstreamApp is the app behind a Server in upstream mode, on loopback: it
// records every request it gets, reads the body whole, and answers 200
// "app" with the headers in respond, if set.
type upstreamApp struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []appRequest
	respond http.Header
}

func newUpstreamApp(t *testing.T) *upstreamApp {
	t.Helper()
	a := &upstreamApp{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.reqs = append(a.reqs, appRequest{r.Method, r.URL.RequestURI(), r.Header.Clone(), n, hex.EncodeToString(h.Sum(nil))})
		for k, v := range a.respond {
			w.Header()[k] = v
		}
		a.mu.Unlock()
		io.WriteString(w, "app")
	}))
	t.Cleanup(a.Close)
	return a
}

// requests returns the requests the app has received so far.
func (a *upstreamApp) requests() []appRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]appRequest(nil), a.reqs...)
}

// last returns the last request the app received, failing if it got none.
func (a *upstreamApp) last(t *testing.T) appRequest {
	t.Helper()
	reqs := a.requests()
	if len(reqs) == 0 {
		t.Fatal("the app received no request")
	}
	return reqs[len(reqs)-1]
}

// upstreamFixture is a Server in upstream mode in front of app, served on
// loopback at url, with a session of alice (role "member").
type upstreamFixture struct {
	*testServer
	app    *upstreamApp
	url    string
	token  string
	userID string
}

func newUpstreamFixture(t *testing.T, cfg Config) *upstreamFixture {
	t.Helper()
	f := &upstreamFixture{app: newUpstreamApp(t)}
	u, _ := url.Parse(f.app.URL)
	cfg.Upstream = u
	f.testServer = newTestServerWith(t, memstore.New(), cfg)
	srv := httptest.NewServer(f.Server)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	ctx := context.Background()
	alice, err := f.accounts.Add(ctx, "alice", "alice's long password", []string{"member"})
	if err != nil {
		t.Fatal(err)
	}
	f.userID = alice.ID
	_, f.token, err = f.maker.Create(ctx, session.Login{UserID: alice.ID, Roles: alice.Roles, Client: session.Client{IP: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// cookie is alice's session cookie.
func (f *upstreamFixture) cookie() string { return "__Host-sid=" + f.token }

// do sends a request to sessiond with header (keys as given, not
// canonicalized, so that any spelling reaches the wire) and returns the
// answer with its body read.
func (f *upstreamFixture) do(t *testing.T, method, path string, header map[string][]string, body io.Reader) (*http.Response, string) {
	t.Helper()
	r, err := http.NewRequest(method, f.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		r.Header[k] = v
	}
	res, err := noRedirects.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

// spellings returns name as written, in lower case, and in upper and mixed
// case with "_" for "-": the ways a client can send one header to a CGI,
// WSGI or Rack app, which all read them as the same HTTP_ variable.
func spellings(name string) []string {
	under := strings.ReplaceAll(name, "-", "_")
	return []string{name, strings.ToLower(name), strings.ToUpper(under), under}
}

// TestUpstreamStripsEverySpellingOfIdentityAndForwardingHeaders sends
// identity and client-address headers in every spelling: the app gets none
// of the client's values, only sessiond's identity and forwarding headers.
func TestUpstreamStripsEverySpellingOfIdentityAndForwardingHeaders(t *testing.T) {
	f := newUpstreamFixture(t, Config{})
	names := []string{
		"Remote-User", "Remote-Groups", "Remote-Email", "Remote-Name",
		"X-User-Id", "X-Session-Id", "X-Session-Expires-At", "X-Session-Absolute-Expires-At", "X-Session-Authenticated-At", "X-Session-Roles",
		"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups",
		"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups",
		"X-Remote-User", "X-Authenticated-User", "X-Webauth-User",
		"X-Real-IP", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
		"X-Forwarded-Prefix", "X-Forwarded-Uri", "Forwarded", "X-Client-IP", "True-Client-IP",
		"X-Original-URL", "X-Original-Forwarded-For", "CF-Connecting-IP",
	}
	for _, name := range names {
		for _, spelled := range spellings(name) {
			t.Run(spelled, func(t *testing.T) {
				header := map[string][]string{"Cookie": {f.cookie()}, spelled: {"mallory"}}
				if res, body := f.do(t, "GET", "/app/whoami", header, nil); res.StatusCode != 200 || body != "app" {
					t.Fatalf("%d %q, want the app's 200", res.StatusCode, body)
				}
				got := f.app.last(t)
				for k, vs := range got.Header {
					if strings.Contains(strings.Join(vs, ","), "mallory") {
						t.Errorf("the client's %s reached the app as %s: %q", spelled, k, vs)
					}
				}
				if u := got.Header["Remote-User"]; len(u) != 1 || u[0] != "alice" {
					t.Errorf("the app got Remote-User %q, want [alice]", u)
				}
				if id := got.Header.Get("X-User-Id"); id != f.userID {
					t.Errorf("the app got X-User-Id %q, want %q", id, f.userID)
				}
				if xff := got.Header["X-Forwarded-For"]; len(xff) != 1 || xff[0] != "127.0.0.1" {
					t.Errorf("the app got X-Forwarded-For %q, want [127.0.0.1] (the client, as sessiond saw it)", xff)
				}
			})
		}
	}
}

// TestUpstreamForwardingHeadersFromUntrustedPeers sends forwarding headers
// with well-formed addresses from a peer that is neither on loopback nor a
// trusted proxy: the app gets the peer's address and sessiond's own view
// of the request, and nothing the client claimed.
func TestUpstreamForwardingHeadersFromUntrustedPeers(t *testing.T) {
	f := newUpstreamFixture(t, Config{})
	r := httptest.NewRequest("POST", "http://app.example/upload", strings.NewReader("x"))
	r.RemoteAddr = "192.0.2.10:40000"
	r.Header.Set("Cookie", f.cookie())
	for k, v := range map[string]string{
		"X-Forwarded-For": "203.0.113.66", "X_Forwarded_For": "203.0.113.66", "X-Real-IP": "203.0.113.66",
		"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example", "Forwarded": "for=203.0.113.66;proto=https",
		"True-Client-IP": "203.0.113.66", "X-Original-URL": "https://evil.example/",
	} {
		r.Header[k] = []string{v}
	}
	w := httptest.NewRecorder()
	f.ServeHTTP(w, r)
	if w.Code != 200 || w.Body.String() != "app" {
		t.Fatalf("%d %q, want the app's 200", w.Code, w.Body)
	}
	got := f.app.last(t)
	for k, vs := range got.Header {
		if v := strings.Join(vs, ","); strings.Contains(v, "203.0.113.66") || strings.Contains(v, "evil.example") {
			t.Errorf("the client's claim reached the app as %s: %q", k, v)
		}
	}
	for k, want := range map[string]string{"X-Forwarded-For": "192.0.2.10", "X-Forwarded-Host": "app.example", "X-Forwarded-Proto": "http"} {
		if v := got.Header[k]; len(v) != 1 || v[0] != want {
			t.Errorf("the app got %s %q, want [%s]", k, v, want)
		}
	}
}

// TestUpstreamRefusesCrossOriginCookieRequests: a state-changing request
// from another site that a browser sent with the session cookie never
// reaches the app; safe methods, same-origin requests, non-browser
// clients and bearer tokens do.
func TestUpstreamRefusesCrossOriginCookieRequests(t *testing.T) {
	f := newUpstreamFixture(t, Config{})
	_, bearerToken, err := f.maker.Create(context.Background(), session.Login{UserID: f.userID, Roles: []string{"member"}})
	if err != nil {
		t.Fatal(err)
	}
	cookie := []string{f.cookie()}
	for _, c := range []struct {
		name    string
		method  string
		header  map[string][]string
		reaches bool
	}{
		{"cross-site POST", "POST", map[string][]string{"Cookie": cookie, "Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}, false},
		{"same-site POST from another host", "POST", map[string][]string{"Cookie": cookie, "Sec-Fetch-Site": {"same-site"}, "Origin": {"https://other.example"}}, false},
		{"cross-site DELETE", "DELETE", map[string][]string{"Cookie": cookie, "Sec-Fetch-Site": {"cross-site"}}, false},
		{"cross-origin PUT, Origin only", "PUT", map[string][]string{"Cookie": cookie, "Origin": {"https://evil.example"}}, false},
		{"cross-site GET", "GET", map[string][]string{"Cookie": cookie, "Sec-Fetch-Site": {"cross-site"}}, true},
		{"same-origin POST", "POST", map[string][]string{"Cookie": cookie, "Sec-Fetch-Site": {"same-origin"}}, true},
		{"POST from a non-browser client", "POST", map[string][]string{"Cookie": cookie}, true},
		{"cross-site POST with a bearer token", "POST", map[string][]string{"Authorization": {"Bearer " + bearerToken}, "Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}, true},
	} {
		before := len(f.app.requests())
		res, body := f.do(t, c.method, "/app/transfer", c.header, strings.NewReader("amount=1000"))
		reached := len(f.app.requests()) > before
		switch {
		case c.reaches && (!reached || res.StatusCode != 200):
			t.Errorf("%s: %d %q, reached the app: %t; want the app's 200", c.name, res.StatusCode, body, reached)
		case !c.reaches && (reached || res.StatusCode != http.StatusForbidden):
			t.Errorf("%s: %d %q, reached the app: %t; want 403 and the app never reached", c.name, res.StatusCode, body, reached)
		}
	}
}

// TestUpstreamStreamsLargeBodies uploads 5 MiB to the app, and a body that
// arrives slowly, for longer than the server's ReadTimeout: the app gets
// every byte. sessiond's own endpoints keep their bound.
func TestUpstreamStreamsLargeBodies(t *testing.T) {
	f := newUpstreamFixture(t, Config{})
	payload := make([]byte, 5<<20)
	rand.Read(payload)
	sum := sha256.Sum256(payload)
	res, body := f.do(t, "POST", "/app/upload", map[string][]string{"Cookie": {f.cookie()}, "Content-Type": {"application/octet-stream"}}, bytes.NewReader(payload))
	if res.StatusCode != 200 || body != "app" {
		t.Fatalf("5 MiB upload: %d %q, want the app's 200", res.StatusCode, body)
	}
	if got := f.app.last(t); got.BodyLen != int64(len(payload)) || got.BodySHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("the app got %d bytes (sha256 %s), want %d (%x)", got.BodyLen, got.BodySHA256, len(payload), sum)
	}

	form := "username=alice&password=" + strings.Repeat("x", 100<<10)
	if res, body := f.do(t, "POST", "/login", map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form)); res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 100 KiB login form: %d %q, want 413", res.StatusCode, body)
	}
}

// TestUpstreamSlowUploadOutlastsReadTimeout: on a server whose
// ReadTimeout is shorter than an upload takes, a proxied body that keeps
// arriving is read to its end.
func TestUpstreamSlowUploadOutlastsReadTimeout(t *testing.T) {
	f := newUpstreamFixture(t, Config{})
	slow := httptest.NewUnstartedServer(f.Server)
	slow.Config.ReadTimeout = 300 * time.Millisecond
	slow.Start()
	defer slow.Close()
	pr, pw := io.Pipe()
	go func() {
		for range 8 {
			pw.Write(bytes.Repeat([]byte("z"), 1024))
			time.Sleep(100 * time.Millisecond)
		}
		pw.Close()
	}()
	r, _ := http.NewRequest("POST", slow.URL+"/app/slow", pr)
	r.Header.Set("Cookie", f.cookie())
	sres, err := noRedirects.Do(r)
	if err != nil {
		t.Fatalf("slow upload: %v", err)
	}
	sres.Body.Close()
	if sres.StatusCode != 200 {
		t.Fatalf("slow upload: %d, want the app's 200", sres.StatusCode)
	}
	if got := f.app.last(t); got.Path != "/app/slow" || got.BodyLen != 8*1024 {
		t.Errorf("slow upload: the app got %s with %d bytes, want /app/slow with 8192", got.Path, got.BodyLen)
	}
}

// TestUpstreamPassesAppCookiesByteForByte: the app gets its own cookies
// exactly as the browser sent them, and never sessiond's (that exact name
// only).
func TestUpstreamPassesAppCookiesByteForByte(t *testing.T) {
	f := newUpstreamFixture(t, Config{})
	sid := f.cookie()
	for _, c := range []struct {
		sent []string
		want []string
	}{
		{[]string{`json={"a":1}; ` + sid + `; theme="dark"`}, []string{`json={"a":1}; theme="dark"`}},
		{[]string{sid + ";lang=en"}, []string{"lang=en"}},
		{[]string{"a=1;" + sid}, []string{"a=1"}},
		{[]string{"a=b=c;  " + sid + " ;x=%20y"}, []string{"a=b=c;x=%20y"}},
		{[]string{"__Host-sidx=keep; " + sid + "; __host-sid=keep2"}, []string{"__Host-sidx=keep; __host-sid=keep2"}},
		{[]string{`__Host-sid="` + f.token + `"; flag`}, []string{"flag"}},
		{[]string{"a=1; " + sid, "b=2"}, []string{"a=1", "b=2"}},
		{[]string{sid}, nil},
	} {
		res, body := f.do(t, "GET", "/app/c", map[string][]string{"Cookie": c.sent}, nil)
		if res.StatusCode != 200 {
			t.Errorf("Cookie %q: %d %q, want the app's 200", c.sent, res.StatusCode, body)
			continue
		}
		got := f.app.last(t).Header["Cookie"]
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") || len(got) != len(c.want) {
			t.Errorf("Cookie %q: the app got %q, want %q", c.sent, got, c.want)
		}
	}
}

// TestUpstreamLeavesAppResponseHeadersAlone: sessiond adds none of its
// own security headers to the app's answers (HSTS only, when serving TLS,
// and not over the app's own), while its own pages keep them.
func TestUpstreamLeavesAppResponseHeadersAlone(t *testing.T) {
	f := newUpstreamFixture(t, Config{TLS: true})
	f.app.respond = http.Header{"X-Frame-Options": {"SAMEORIGIN"}}
	res, _ := f.do(t, "GET", "/app/embeddable", map[string][]string{"Cookie": {f.cookie()}}, nil)
	if res.StatusCode != 200 {
		t.Fatalf("%d, want the app's 200", res.StatusCode)
	}
	if v := res.Header.Values("X-Frame-Options"); len(v) != 1 || v[0] != "SAMEORIGIN" {
		t.Errorf("X-Frame-Options %q, want the app's [SAMEORIGIN]", v)
	}
	for _, k := range []string{"Referrer-Policy", "X-Content-Type-Options"} {
		if v := res.Header.Values(k); len(v) != 0 {
			t.Errorf("%s %q added to the app's answer", k, v)
		}
	}
	if v := res.Header.Values("Strict-Transport-Security"); len(v) != 1 || !strings.HasPrefix(v[0], "max-age=") {
		t.Errorf("Strict-Transport-Security %q, want sessiond's one", v)
	}

	f.app.respond = http.Header{"Strict-Transport-Security": {"max-age=60"}}
	res, _ = f.do(t, "GET", "/app/own-hsts", map[string][]string{"Cookie": {f.cookie()}}, nil)
	if v := res.Header.Values("Strict-Transport-Security"); len(v) != 1 || v[0] != "max-age=60" {
		t.Errorf("Strict-Transport-Security %q, want the app's [max-age=60]", v)
	}

	res, _ = f.do(t, "GET", "/login", nil, nil)
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"} {
		if v := res.Header.Get(k); res.StatusCode != 200 || v != want {
			t.Errorf("sessiond's login page: %d, %s %q, want %q", res.StatusCode, k, v, want)
		}
	}
}

// TestUpstreamInternalEndpointsNotPublic: in upstream mode /metrics,
// /resolve, /healthz and /readyz are the app's paths like any other:
// refused without a session, proxied with one.
func TestUpstreamInternalEndpointsNotPublic(t *testing.T) {
	f := newUpstreamFixture(t, Config{})
	for _, path := range []string{"/metrics", "/resolve", "/resolve/app", "/healthz", "/readyz"} {
		before := len(f.app.requests())
		res, body := f.do(t, "GET", path, nil, nil)
		if res.StatusCode != 401 || strings.Contains(body, "sessiond_") || len(f.app.requests()) != before {
			t.Errorf("GET %s without a session: %d %.80q; want 401, nothing of sessiond's, the app not reached", path, res.StatusCode, body)
		}
		res, body = f.do(t, "GET", path, map[string][]string{"Cookie": {f.cookie()}}, nil)
		if res.StatusCode != 200 || body != "app" || f.app.last(t).Path != path {
			t.Errorf("GET %s with a session: %d %.80q; want the app's answer", path, res.StatusCode, body)
		}
	}
}

// TestUpstreamReservedPaths: sessiond's paths are answered by sessiond,
// even where it has no route, and every other path by the app.
func TestUpstreamReservedPaths(t *testing.T) {
	f := newUpstreamFixture(t, Config{})
	cookie := map[string][]string{"Cookie": {f.cookie()}}
	for _, path := range []string{"/login", "/account", "/account/nothing", "/admin", "/admin/users/alice", "/api/v1/session", "/api/v1/nothing", "/static/style.css", "/static/app.js"} {
		before := len(f.app.requests())
		res, body := f.do(t, "GET", path, cookie, nil)
		if len(f.app.requests()) != before || body == "app" {
			t.Errorf("GET %s: %d, the app answered; want sessiond", path, res.StatusCode)
		}
	}
	for _, path := range []string{"/", "/accounts", "/administration", "/api/v1", "/api/v2/x", "/loginx", "/static", "/app/static/x"} {
		res, body := f.do(t, "GET", path, cookie, nil)
		if res.StatusCode != 200 || body != "app" || f.app.last(t).Path != path {
			t.Errorf("GET %s: %d %.80q, want the app's answer", path, res.StatusCode, body)
		}
	}
}
