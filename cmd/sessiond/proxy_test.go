//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/testenv"
)

// The tests in this file put a real nginx, Caddy and Traefik, configured
// with docs/proxies/nginx.conf, docs/proxies/Caddyfile and
// docs/proxies/traefik.yml, between a client and an app, with sessiond
// answering their forward-auth requests. sessiond runs as those files
// say, without --trusted-proxies: it believes the forwarded headers of a
// proxy on loopback. They need the nginx, caddy and traefik binaries (see
// proxyBinary and traefikBinary): on a machine without them they skip, in
// CI (CI=true) they fail.

// appHost is the app's host name in the docs' configs and in the tests.
const appHost = "app.example.com"

// TestProxyNginx runs docs/proxies/nginx.conf in a real nginx: an
// auth_request to /resolve, identity headers copied with
// auth_request_set, browsers sent to the login page from error_page 401.
func TestProxyNginx(t *testing.T) {
	bin := proxyBinary(t, "nginx")
	testBehindProxy(t, func(e *edge) { startNginx(e, bin, nil) })
}

// startNginx runs docs/proxies/nginx.conf in nginx as e's proxy, with the
// addresses and certificate paths changed to the test's, and the other
// changes of replace.
func startNginx(e *edge, bin string, replace map[string]string) {
	t := e.t
	changes := map[string]string{
		"server sessiond:8080;":                  "server " + e.sessiond + ";",
		"server app:3000;":                       "server " + e.app.Listener.Addr().String() + ";",
		"listen 443 ssl;":                        "listen 127.0.0.1:" + e.port + " ssl;",
		"/etc/ssl/app.example.com/fullchain.pem": e.certFile,
		"/etc/ssl/app.example.com/privkey.pem":   e.keyFile,
	}
	for old, new := range replace {
		changes[old] = new
	}
	site := e.fromDocs("nginx.conf", changes)
	// The main configuration the docs' file is included in, as in
	// /etc/nginx/nginx.conf, with everything nginx writes kept in the
	// test's directory.
	var main strings.Builder
	if os.Geteuid() == 0 { // as root, workers would run as nobody, who cannot enter t.TempDir
		g, err := user.LookupGroupId("0")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&main, "user root %s;\n", g.Name)
	}
	fmt.Fprintf(&main, `worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log /dev/stderr;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[2]s;
}
`, e.dir, site)
	conf := e.write("nginx-main.conf", main.String())
	e.run(exec.Command(bin, "-e", "stderr", "-p", e.dir, "-c", conf, "-g", "daemon off;"))
}

// TestProxyCaddy runs docs/proxies/Caddyfile in a real Caddy: forward_auth
// to /resolve?redirect=1, identity headers copied with copy_headers.
func TestProxyCaddy(t *testing.T) {
	bin := proxyBinary(t, "caddy")
	testBehindProxy(t, func(e *edge) {
		site := e.fromDocs("Caddyfile", map[string]string{
			"sessiond:8080": e.sessiond,
			"app:3000":      e.app.Listener.Addr().String(),
			// The site address: this port, the test's certificate.
			appHost + " {": fmt.Sprintf("https://%s:%s {\n\tbind 127.0.0.1\n\ttls %s %s", appHost, e.port, e.certFile, e.keyFile),
		})
		// Global options go first: no admin endpoint (it would take
		// port 2019), no port 80 for redirects, state in the test's
		// directory.
		global := fmt.Sprintf("{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system %s\n}\n\n", filepath.Join(e.dir, "data"))
		conf := e.write("Caddyfile", global+string(readFile(t, site)))
		cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+e.dir, "XDG_DATA_HOME="+e.dir, "XDG_CONFIG_HOME="+e.dir)
		e.run(cmd)
	})
}

// TestProxyTraefik runs docs/proxies/traefik.yml in a real Traefik, as the
// dynamic configuration of its file provider: a forwardAuth middleware to
// /resolve?redirect=1&app_cookie=1, identity headers and the Cookie header
// without the session cookie copied with authResponseHeaders. The static
// configuration is the one traefik.yml's comment shows, with the test's
// port, and the certificate is in a second file of the file provider.
func TestProxyTraefik(t *testing.T) {
	bin := traefikBinary(t)
	testBehindProxy(t, func(e *edge) { startTraefik(e, bin) })

	// sessiond without --public-url answers a relative Location, which
	// Traefik would resolve against the forwardAuth address (sessiond's
	// own) without preserveLocationHeader.
	t.Run("without --public-url the login redirect stays on the app's host", func(t *testing.T) {
		e := newEdge(t)
		e.sessiond = strings.TrimPrefix(start(t).URL, "http://")
		startTraefik(e, bin)
		r := e.do(req{method: "GET", path: "/app/page?x=1", header: map[string]string{"Accept": "text/html"}})
		want := "/login?rd=" + url.QueryEscape(e.origin+"/app/page?x=1")
		if r.StatusCode != http.StatusFound || r.Header.Get("Location") != want {
			t.Errorf("browser without a session: %d Location %q, want 302 %q", r.StatusCode, r.Header.Get("Location"), want)
		}
	})
}

// startTraefik runs docs/proxies/traefik.yml in Traefik as e's proxy, as
// the dynamic configuration of its file provider, with the static
// configuration traefik.yml's comment shows and the certificate in a
// second file of the file provider, and waits until it routes requests.
func startTraefik(e *edge, bin string) {
	t := e.t
	dynamic := filepath.Join(e.dir, "dynamic")
	if err := os.Mkdir(dynamic, 0o700); err != nil {
		t.Fatal(err)
	}
	site := e.fromDocs("traefik.yml", map[string]string{
		"http://sessiond:8080": "http://" + e.sessiond,
		"http://app:3000":      e.app.URL,
	})
	if err := os.Rename(site, filepath.Join(dynamic, "traefik.yml")); err != nil {
		t.Fatal(err)
	}
	e.write(filepath.Join("dynamic", "tls.yml"), fmt.Sprintf("tls:\n  certificates:\n    - certFile: %q\n      keyFile: %q\n", e.certFile, e.keyFile))
	conf := e.write("traefik-static.yml", fmt.Sprintf(`global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  websecure:
    address: "127.0.0.1:%s"
providers:
  file:
    directory: %q
    watch: false
log:
  level: DEBUG
  noColor: true
accessLog: {}
`, e.port, dynamic))
	cmd := exec.Command(bin, "--configFile="+conf)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "HOME="+e.dir)
	e.run(cmd)
	// Traefik listens before its file provider's routers and certificate
	// are in place, and until then ends TLS handshakes or answers 404.
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := e.client.Get(e.origin + "/login")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Traefik did not route /login to sessiond within 15s: %v %v", res, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// traefikVersion is the Traefik release .ci/traefik builds and
// traefikBinary looks for.
const traefikVersion = "v3.6.12"

// traefikBinary returns the path of the traefik binary: the one
// SESSIOND_TEST_TRAEFIK names, else the one .ci/traefik builds in the
// user's cache directory (${XDG_CACHE_HOME:-~/.cache}/sessiond-test/
// traefik-v3.6.12/traefik), else traefik in PATH. Without one the test
// skips, or fails in CI, which must test sessiond behind Traefik.
func traefikBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SESSIOND_TEST_TRAEFIK"); p != "" {
		if !isExecutable(p) {
			t.Fatalf("SESSIOND_TEST_TRAEFIK=%s is not an executable file", p)
		}
		return p
	}
	cached := ""
	if dir, err := os.UserCacheDir(); err == nil {
		cached = filepath.Join(dir, "sessiond-test", "traefik-"+traefikVersion, "traefik")
		if isExecutable(cached) {
			return cached
		}
	}
	if p, err := exec.LookPath("traefik"); err == nil {
		return p
	}
	how := "build it with `bash .ci/traefik` (Traefik " + traefikVersion + " from the Go module proxy, about 10 minutes; it lands in " + cached + "), or point SESSIOND_TEST_TRAEFIK at a traefik binary"
	if os.Getenv("CI") == "true" {
		t.Fatalf("traefik is not there, and CI must test sessiond behind it: %s", how)
	}
	t.Skipf("traefik is not there: skipping the end-to-end test behind a real Traefik; %s", how)
	return ""
}

// proxyBinary returns the path of the named proxy's binary. Without one
// the test skips, or fails in CI, which must test behind every proxy.
func proxyBinary(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := "/usr/sbin/" + name; isExecutable(p) { // not in PATH for every user
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed, and CI must test sessiond behind it: .ci/run installs it with apt-get", name)
	}
	t.Skipf("%s is not installed: skipping the end-to-end test behind a real %s (install it, e.g. apt-get install %s)", name, name, name)
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// edge is a proxy under test, in front of sessiond and an app, and a
// client that reaches it as https://app.example.com:port.
type edge struct {
	t        *testing.T
	dir      string // the proxy's configuration and state
	port     string // the proxy's port on 127.0.0.1
	origin   string // https://app.example.com:port
	certFile string // the proxy's certificate for appHost, PEM, signed by a CA of the test's own
	keyFile  string
	sessiond string // host:port
	app      *echoApp
	roots    *x509.CertPool // what the client trusts: the test's CA
	client   *http.Client
	clientIP string // the address the client connects from
}

// echoApp is the app behind the proxy: it answers every request with the
// path and headers it received, counts requests, and records those for
// sessiond's paths, which the proxy must never send it.
type echoApp struct {
	*httptest.Server
	hits atomic.Int64

	mu      sync.Mutex
	strayed []string // "METHOD /path" of requests for sessiond's paths
}

// sessiondPaths are the paths the proxy sends to sessiond: each of these
// and everything under it, and everything under /api/v1/ and /static/.
var sessiondPaths = []string{"/login", "/logout", "/account", "/admin"}

func isSessiondPath(path string) bool {
	for _, p := range sessiondPaths {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return strings.HasPrefix(path, "/api/v1/") || strings.HasPrefix(path, "/static/")
}

// stray returns the requests for sessiond's paths that reached the app.
func (a *echoApp) stray() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.strayed...)
}

// seen is what the app received.
type seen struct {
	Path   string
	Header http.Header
}

func newEchoApp(t *testing.T) *echoApp {
	a := &echoApp{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		if isSessiondPath(r.URL.Path) {
			a.mu.Lock()
			a.strayed = append(a.strayed, r.Method+" "+r.URL.RequestURI())
			a.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Test-App", "echo")
		json.NewEncoder(w).Encode(seen{Path: r.URL.RequestURI(), Header: r.Header})
	}))
	t.Cleanup(a.Close)
	return a
}

// testBehindProxy starts an app and sessiond, has startProxy start the
// proxy in front of them, and checks what a client of the proxy gets.
func testBehindProxy(t *testing.T, startProxy func(*edge)) {
	began := time.Now()
	e := newEdge(t)
	in := start(t, "--public-url", e.origin)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sessiond logs:\n%s", in.logs)
		}
	})
	e.sessiond = strings.TrimPrefix(in.URL, "http://")
	startProxy(e)
	t.Cleanup(func() { t.Logf("setup and checks behind the proxy took %v", time.Since(began).Round(time.Millisecond)) })

	// The login goes through the proxy: the cookie is for the app's host.
	admin, login := e.login("admin", adminPassword)
	adminID := login["user"].(map[string]any)["id"].(string)
	adminSession := login["session"].(map[string]any)["id"].(string)
	r := e.do(req{method: "POST", path: "/api/v1/admin/users", cookie: admin, json: map[string]any{"username": "bob", "password": "bob-password-1", "roles": []string{}}})
	if r.StatusCode != 201 {
		t.Fatalf("create bob through the proxy: %d %s", r.StatusCode, r.body)
	}
	bobID := r.json(t)["user"].(map[string]any)["id"].(string)

	t.Run("signed in: the app gets the identity", func(t *testing.T) {
		hits := e.app.hits.Load()
		r := e.do(req{method: "GET", path: "/app/page?x=1", cookie: admin})
		got := e.appSaw(t, r)
		if got.Path != "/app/page?x=1" {
			t.Errorf("the app got path %q, want %q", got.Path, "/app/page?x=1")
		}
		for k, want := range map[string]string{"Remote-User": "admin", "Remote-Groups": "admin", "X-User-Id": adminID, "X-Session-Id": adminSession} {
			if v := got.Header.Get(k); v != want {
				t.Errorf("the app got %s %q, want %q", k, v, want)
			}
		}
		for _, k := range []string{"X-Session-Expires-At", "X-Session-Absolute-Expires-At", "X-Session-Authenticated-At"} {
			if _, err := time.Parse(time.RFC3339, got.Header.Get(k)); err != nil {
				t.Errorf("the app got %s %q: %v", k, got.Header.Get(k), err)
			}
		}
		if exp, _ := time.Parse(time.RFC3339, got.Header.Get("X-Session-Expires-At")); !exp.After(time.Now()) {
			t.Errorf("X-Session-Expires-At %v is not in the future", exp)
		}
		if n := e.app.hits.Load() - hits; n != 1 {
			t.Errorf("the app got %d requests, want 1", n)
		}
		for k, vs := range got.Header {
			if strings.Contains(strings.Join(vs, " "), admin) {
				t.Errorf("the app got the session token in %s", k)
			}
		}
	})

	t.Run("the app never gets the session cookie, only its own", func(t *testing.T) {
		for cookie, want := range map[string]string{
			"theme=dark; __Host-sid=" + admin + "; lang=en": "theme=dark; lang=en",
			"__Host-sid=" + admin + "; lang=en":             "lang=en",
			"theme=dark; __Host-sid=" + admin:               "theme=dark",
			"__Host-sid=" + admin:                           "",
		} {
			got := e.appSaw(t, e.do(req{method: "GET", path: "/app/c", header: map[string]string{"Cookie": cookie}}))
			if c := strings.Join(got.Header.Values("Cookie"), "; "); c != want {
				t.Errorf("Cookie %q: the app got %q, want %q", strings.ReplaceAll(cookie, admin, "TOKEN"), strings.ReplaceAll(c, admin, "TOKEN"), want)
			}
		}
	})

	t.Run("spoofed identity headers never reach the app", func(t *testing.T) {
		bob, _ := e.login("bob", "bob-password-1") // no roles: sessiond sends an empty Remote-Groups
		spoof := map[string]string{
			"Remote-User":                   "mallory",
			"Remote-Groups":                 "admin",
			"Remote-Email":                  "mallory@example.net",
			"Remote-Name":                   "mallory",
			"X-User-Id":                     "mallory",
			"X-Session-Id":                  "mallory",
			"X-Session-Expires-At":          "2099-01-01T00:00:00Z",
			"X-Session-Absolute-Expires-At": "2099-01-01T00:00:00Z",
			"X-Session-Authenticated-At":    "2099-01-01T00:00:00Z",
			"X-Forwarded-User":              "mallory",
			// CGI, WSGI and Rack read these as HTTP_REMOTE_USER and so on.
			"Remote_User":   "mallory",
			"Remote_Groups": "admin",
			"X_User_Id":     "mallory",
		}
		got := e.appSaw(t, e.do(req{method: "GET", path: "/app/whoami", cookie: bob, header: spoof}))
		if u, id := got.Header.Get("Remote-User"), got.Header.Get("X-User-Id"); u != "bob" || id != bobID {
			t.Errorf("the app got Remote-User %q, X-User-Id %q; want bob, %q", u, id, bobID)
		}
		for k := range spoof {
			if v := strings.Join(got.Header.Values(k), ","); strings.Contains(v, "mallory") || strings.Contains(v, "2099") || v == "admin" {
				t.Errorf("the client's %s reached the app: %q", k, v)
			}
		}
		if g := got.Header.Values("Remote-Groups"); strings.Join(g, "") != "" {
			t.Errorf("bob has no roles, but the app got Remote-Groups %q", g)
		}

		hits := e.app.hits.Load()
		r := e.do(req{method: "GET", path: "/app/whoami", header: spoof})
		if r.StatusCode != 401 {
			t.Errorf("spoofed headers without a session: %d %s, want 401", r.StatusCode, r.body)
		}
		if e.app.hits.Load() != hits {
			t.Error("a request without a session reached the app")
		}
	})

	t.Run("no or invalid session: 401, and the app is never reached", func(t *testing.T) {
		for name, r := range map[string]req{
			"no session":          {method: "GET", path: "/app/page"},
			"garbage cookie":      {method: "GET", path: "/app/page", cookie: "garbage"},
			"well-formed unknown": {method: "GET", path: "/app/page", cookie: strings.Repeat("A", 43)},
			"garbage bearer":      {method: "GET", path: "/app/page", bearer: "garbage"},
			"POST":                {method: "POST", path: "/app/page", json: map[string]any{"x": 1}},
		} {
			hits := e.app.hits.Load()
			res := e.do(r)
			if res.StatusCode != 401 || res.errorCode(t) != "unauthenticated" {
				t.Errorf("%s: %d %s, want 401 unauthenticated", name, res.StatusCode, res.body)
			}
			if loc := res.Header.Get("Location"); loc != "" {
				t.Errorf("%s: an API client got Location %q", name, loc)
			}
			if e.app.hits.Load() != hits {
				t.Errorf("%s: the request reached the app", name)
			}
		}
	})

	// sessiond believes the original URL from the proxy on loopback
	// (no --trusted-proxies), so the login page returns there.
	t.Run("browser: to the login page and back", func(t *testing.T) {
		page := e.origin + "/app/page?x=1"
		browser := map[string]string{
			"Accept": "text/html,application/xhtml+xml",
			// The client's own idea of the original URL is not believed.
			"X-Original-URL":   "https://evil.example/phish",
			"X-Forwarded-Host": "evil.example",
			"X-Forwarded-Uri":  "/phish",
		}
		hits := e.app.hits.Load()
		r := e.do(req{method: "GET", path: "/app/page?x=1", header: browser})
		want := e.origin + "/login?rd=" + url.QueryEscape(page)
		if r.StatusCode != http.StatusFound || r.Header.Get("Location") != want {
			t.Fatalf("browser without a session: %d Location %q, want 302 %q", r.StatusCode, r.Header.Get("Location"), want)
		}
		if e.app.hits.Load() != hits {
			t.Error("the browser's request reached the app")
		}

		form := e.do(req{method: "GET", path: strings.TrimPrefix(want, e.origin), header: map[string]string{"Accept": "text/html"}})
		if form.StatusCode != 200 || !bytes.Contains(form.body, []byte(`name="rd" value="`+page+`"`)) {
			t.Fatalf("login page through the proxy: %d, want 200 with rd %q:\n%s", form.StatusCode, page, form.body)
		}

		// The form post carries Origin, as browsers do: it passes
		// sessiond's cross-origin check only if the proxy kept Host.
		post := url.Values{"username": {"bob"}, "password": {"bob-password-1"}, "rd": {page}}.Encode()
		in := e.do(req{method: "POST", path: "/login", form: post, header: map[string]string{"Origin": e.origin}})
		if in.StatusCode != http.StatusSeeOther || in.Header.Get("Location") != page || in.sessionCookie() == "" {
			t.Fatalf("form login: %d Location %q, want 303 %q with a cookie; %s", in.StatusCode, in.Header.Get("Location"), page, in.body)
		}
		// The browser follows the redirect: it lands on the page it asked
		// for, signed in.
		landed, _ := url.Parse(in.Header.Get("Location"))
		back := e.appSaw(t, e.do(req{method: "GET", path: landed.RequestURI(), cookie: in.sessionCookie(), header: map[string]string{"Accept": "text/html"}}))
		if back.Path != "/app/page?x=1" || back.Header.Get("Remote-User") != "bob" {
			t.Errorf("back at the page, the app got %s as Remote-User %q, want /app/page?x=1 as bob", back.Path, back.Header.Get("Remote-User"))
		}

		forged := e.do(req{method: "POST", path: "/login", form: post, header: map[string]string{"Origin": "https://evil.example"}})
		if forged.StatusCode != http.StatusForbidden || forged.sessionCookie() != "" {
			t.Errorf("cross-origin form login through the proxy: %d, want 403 without a cookie", forged.StatusCode)
		}
	})

	t.Run("bearer token", func(t *testing.T) {
		r := e.do(req{method: "POST", path: "/api/v1/tokens", json: map[string]any{"username": "admin", "password": adminPassword}})
		if r.StatusCode != 201 {
			t.Fatalf("token through the proxy: %d %s", r.StatusCode, r.body)
		}
		tok := r.json(t)["token"].(string)
		got := e.appSaw(t, e.do(req{method: "GET", path: "/api/things", bearer: tok}))
		if got.Header.Get("Remote-User") != "admin" {
			t.Errorf("bearer: the app got Remote-User %q, want admin", got.Header.Get("Remote-User"))
		}
		if a := got.Header.Get("Authorization"); a != "" {
			t.Errorf("the app got the bearer token: Authorization %q", a)
		}
	})

	t.Run("revoked and logged-out sessions are refused at once", func(t *testing.T) {
		s1, _ := e.login("bob", "bob-password-1")
		s2, l2 := e.login("bob", "bob-password-1")
		e.appSaw(t, e.do(req{method: "GET", path: "/app/x", cookie: s2}))
		id2 := l2["session"].(map[string]any)["id"].(string)
		if r := e.do(req{method: "DELETE", path: "/api/v1/sessions/" + id2, cookie: s1}); r.StatusCode != 200 {
			t.Fatalf("revoke through the proxy: %d %s", r.StatusCode, r.body)
		}
		hits := e.app.hits.Load()
		if r := e.do(req{method: "GET", path: "/app/x", cookie: s2}); r.StatusCode != 401 {
			t.Errorf("revoked session: %d, want 401", r.StatusCode)
		}
		out := e.do(req{method: "POST", path: "/logout", cookie: s1})
		if out.StatusCode != 204 || out.Header.Get("Clear-Site-Data") != `"cookies"` {
			t.Errorf("logout through the proxy: %d, Clear-Site-Data %q", out.StatusCode, out.Header.Get("Clear-Site-Data"))
		}
		if r := e.do(req{method: "GET", path: "/app/x", cookie: s1}); r.StatusCode != 401 {
			t.Errorf("logged-out session: %d, want 401", r.StatusCode)
		}
		if e.app.hits.Load() != hits {
			t.Error("a revoked session reached the app")
		}
	})

	t.Run("sessiond records the client's address, not one it made up", func(t *testing.T) {
		r := e.do(req{method: "POST", path: "/login", json: map[string]any{"username": "bob", "password": "bob-password-1"}, header: map[string]string{"X-Forwarded-For": "203.0.113.7"}})
		if r.StatusCode != 200 {
			t.Fatalf("login: %d %s", r.StatusCode, r.body)
		}
		if ip := r.json(t)["session"].(map[string]any)["ip"]; ip != e.clientIP {
			t.Errorf("session IP %q, want the client's %q (sessiond sees the proxy on loopback and believes its X-Forwarded-For)", ip, e.clientIP)
		}
	})

	t.Run("every page form reaches sessiond, never the app", func(t *testing.T) {
		// From an address of its own, so that its sign-ins stay within
		// the per-IP login limit whatever the subtests above did.
		testPageFormsBehindProxy(t, e.from(t, "127.0.0.3"))
	})

	t.Run("the app never got a request for a sessiond path", func(t *testing.T) {
		if stray := e.app.stray(); len(stray) > 0 {
			t.Errorf("the proxy sent sessiond's requests to the app: %q", stray)
		}
	})
}

// pageForm is a form of one of sessiond's pages.
type pageForm struct{ method, action string }

var (
	formTag  = regexp.MustCompile(`<form\b[^>]*>`)
	formAttr = regexp.MustCompile(`\s(method|action)="([^"]*)"`)
	// formIDs are the user and session IDs in form actions.
	formIDs = []struct {
		re   *regexp.Regexp
		with string
	}{
		{regexp.MustCompile(`/users/[^/]+`), "/users/{user}"},
		{regexp.MustCompile(`/sessions/[^/]+/revoke$`), "/sessions/{id}/revoke"},
	}
)

// pattern is f with its IDs replaced by placeholders: what a test must
// submit once.
func (f pageForm) pattern() string {
	a := f.action
	for _, id := range formIDs {
		a = id.re.ReplaceAllString(a, id.with)
	}
	return f.method + " " + a
}

// testPageFormsBehindProxy submits every form of sessiond's pages through
// the proxy as a browser would, and checks for each that sessiond, not
// the app, received it (the app's request count does not move, and the
// answer is sessiond's redirect) and that its effect is there. Every form
// found on the pages must have been submitted.
func testPageFormsBehindProxy(t *testing.T, e *edge) {
	seen, submitted := map[string]bool{}, map[string]bool{}
	// forms returns the forms of the page at path, failing unless one
	// is method action.
	forms := func(path, token, method, action string) {
		t.Helper()
		found := false
		for _, f := range e.pageForms(t, path, token) {
			seen[f.pattern()] = true
			found = found || f.method == method && f.action == action
		}
		if !found {
			t.Fatalf("%s has no form %s %s", path, method, action)
		}
	}
	post := func(token, action string, form url.Values) resp {
		t.Helper()
		submitted[pageForm{"post", action}.pattern()] = true
		return e.submit(t, token, action, form)
	}
	id := func(v map[string]any, key string) string { return v[key].(map[string]any)["id"].(string) }

	// The sign-in form.
	forms("/login", "", "post", "/login")
	in := post("", "/login", url.Values{"username": {"admin"}, "password": {adminPassword}, "rd": {"/admin"}})
	admin := in.sessionCookie()
	if admin == "" || in.Header.Get("Location") != "/admin" {
		t.Fatalf("form login: Location %q, cookie %t; want /admin with a cookie", in.Header.Get("Location"), admin != "")
	}

	// The account page, as a user of its own (the login limit counts
	// attempts per account): sign out one session, the others, change
	// the password (both passwords in the form), sign out.
	if r := e.do(req{method: "POST", path: "/api/v1/admin/users", cookie: admin, json: map[string]any{"username": "frank", "password": "frank-password-1", "roles": []string{}}}); r.StatusCode != 201 {
		t.Fatalf("create frank: %d %s", r.StatusCode, r.body)
	}
	me, _ := e.login("frank", "frank-password-1")
	other, lo := e.login("frank", "frank-password-1")
	one := "/account/sessions/" + id(lo, "session") + "/revoke"
	forms("/account", me, "post", one)
	post(me, one, nil)
	if e.alive(t, other) || !e.alive(t, me) {
		t.Error("signing out one session: want that one ended and this one alive")
	}
	other, _ = e.login("frank", "frank-password-1")
	forms("/account", me, "post", "/account/sessions/revoke-others")
	post(me, "/account/sessions/revoke-others", nil)
	if e.alive(t, other) || !e.alive(t, me) {
		t.Error("signing out the others: want them ended and this one alive")
	}
	forms("/account", me, "post", "/account/password")
	changed := post(me, "/account/password", url.Values{"current_password": {"frank-password-1"}, "new_password": {"frank-password-2"}, "confirm_password": {"frank-password-2"}})
	if me = changed.sessionCookie(); me == "" || !e.alive(t, me) {
		t.Fatal("changing the password: want a new, live cookie for this session")
	}
	if r := e.do(req{method: "POST", path: "/login", json: map[string]any{"username": "frank", "password": "frank-password-1"}}); r.StatusCode != 401 {
		t.Errorf("login with the old password: %d, want 401", r.StatusCode)
	}
	e.login("frank", "frank-password-2")

	// Two-step verification: set up TOTP (confirmed with the previous
	// step's code, so the present one is unused; the code raises this
	// session), get recovery codes, raise a session signed in before with
	// a code at the second-factor step, re-authenticate, and turn TOTP off
	// with a recovery code.
	forms("/account", me, "post", "/account/totp")
	post(me, "/account/totp", nil)
	forms("/account/totp", me, "post", "/account/totp/confirm")
	page := e.do(req{method: "GET", path: "/account/totp", cookie: me, header: map[string]string{"Accept": "text/html"}})
	m := regexp.MustCompile(`id="totp-secret">([A-Z2-7 ]+)<`).FindSubmatch(page.body)
	if m == nil {
		t.Fatalf("no TOTP key on /account/totp: %.2000s", page.body)
	}
	code := totpCodes(t, strings.ReplaceAll(string(m[1]), " ", ""))
	low, _ := e.login("frank", "frank-password-2") // signed in before TOTP is on: AAL1
	if me = post(me, "/account/totp/confirm", url.Values{"code": {code(time.Now().Add(-30 * time.Second))}}).sessionCookie(); me == "" {
		t.Fatal("the first TOTP code gave no new cookie")
	}
	forms("/account", me, "post", "/account/recovery-codes")
	submitted[pageForm{"post", "/account/recovery-codes"}.pattern()] = true
	codes := e.do(req{method: "POST", path: "/account/recovery-codes", cookie: me, header: map[string]string{
		"Content-Type": "application/x-www-form-urlencoded", "Origin": e.origin, "Sec-Fetch-Site": "same-origin", "Accept": "text/html",
	}})
	rc := regexp.MustCompile(`<li><code>([0-9a-z-]+)</code>`).FindSubmatch(codes.body)
	if codes.StatusCode != 200 || codes.Header.Get("X-Test-App") != "" || rc == nil {
		t.Fatalf("recovery codes through the proxy: %d %.2000s", codes.StatusCode, codes.body)
	}
	forms("/login/second-factor?rd=/account", low, "post", "/login/second-factor")
	if post(low, "/login/second-factor", url.Values{"code": {code(time.Now())}, "rd": {"/account"}}).sessionCookie() == "" {
		t.Fatal("the second-factor step gave no new cookie")
	}
	forms("/login/reauth?rd=/account", me, "post", "/login/reauth")
	if me = post(me, "/login/reauth", url.Values{"password": {"frank-password-2"}, "rd": {"/account"}}).sessionCookie(); me == "" {
		t.Fatal("re-authentication gave no new cookie")
	}
	forms("/account", me, "post", "/account/totp/disable")
	post(me, "/account/totp/disable", url.Values{"code": {string(rc[1])}})

	forms("/account", me, "post", "/logout")
	if out := post(me, "/logout", nil); !strings.HasPrefix(out.Header.Get("Location"), "/login") || e.alive(t, me) {
		t.Errorf("sign out: Location %q, session alive %t; want the login page and the session ended", out.Header.Get("Location"), e.alive(t, me))
	}

	// The admin console: create a user.
	forms("/admin", admin, "post", "/admin/users")
	post(admin, "/admin/users", url.Values{"username": {"erin"}, "password": {"erin-password-1"}, "roles": {""}})
	erin1, l1 := e.login("erin", "erin-password-1")
	user := "/admin/users/" + id(l1, "user")

	// Her roles: set, and her sessions end.
	forms(user, admin, "post", user+"/roles")
	post(admin, user+"/roles", url.Values{"roles": {"editor"}})
	if e.alive(t, erin1) {
		t.Error("a role change left erin's session alive")
	}
	erin2, l2 := e.login("erin", "erin-password-1")
	if g := e.appSaw(t, e.do(req{method: "GET", path: "/app/whoami", cookie: erin2})).Header.Get("Remote-Groups"); g != "editor" {
		t.Errorf("after the role change the app got Remote-Groups %q, want editor", g)
	}

	// End one of her sessions, then all of them.
	erin3, _ := e.login("erin", "erin-password-1")
	one = user + "/sessions/" + id(l2, "session") + "/revoke"
	forms(user, admin, "post", one)
	post(admin, one, nil)
	if e.alive(t, erin2) || !e.alive(t, erin3) {
		t.Error("ending one session: want that one ended and the other alive")
	}
	forms(user, admin, "post", user+"/revoke")
	post(admin, user+"/revoke", url.Values{"confirm": {"yes"}}) // as its confirmation page posts it
	if e.alive(t, erin3) {
		t.Error("ending all her sessions left one alive")
	}

	// Disable her account, then enable it.
	erin4, _ := e.login("erin", "erin-password-1")
	forms(user, admin, "post", user+"/disable")
	post(admin, user+"/disable", url.Values{"confirm": {"yes"}})
	if e.alive(t, erin4) {
		t.Error("disabling the account left her session alive")
	}
	if r := e.do(req{method: "POST", path: "/login", json: map[string]any{"username": "erin", "password": "erin-password-1"}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("login of a disabled user: %d, want 403", r.StatusCode)
	}
	forms(user, admin, "post", user+"/enable")
	post(admin, user+"/enable", nil)
	e.login("erin", "erin-password-1")

	// The audit log's filter form (a GET).
	forms("/admin/audit", admin, "get", "/admin/audit")
	submitted[pageForm{"get", "/admin/audit"}.pattern()] = true
	hits := e.app.hits.Load()
	audit := e.do(req{method: "GET", path: "/admin/audit?user=erin&type=", cookie: admin, header: map[string]string{"Accept": "text/html"}})
	if audit.StatusCode != 200 || e.app.hits.Load() != hits || !bytes.Contains(audit.body, []byte(`href="`+user+`"`)) {
		t.Errorf("the audit log filtered by erin: %d, the app reached: %t; want sessiond's page with her events", audit.StatusCode, e.app.hits.Load() != hits)
	}

	// Reset her password (both passwords in the form), then delete her.
	erin5, _ := e.login("erin", "erin-password-1")
	forms(user, admin, "post", user+"/password")
	post(admin, user+"/password", url.Values{"password": {"erin-password-2"}, "confirm_password": {"erin-password-2"}})
	if e.alive(t, erin5) {
		t.Error("a password reset left her session alive")
	}
	erin6, _ := e.login("erin", "erin-password-2")
	forms(user, admin, "post", user+"/delete")
	post(admin, user+"/delete", url.Values{"confirm": {"yes"}})
	if e.alive(t, erin6) {
		t.Error("deleting her account left her session alive")
	}

	for p := range seen {
		if !submitted[p] {
			t.Errorf("the form %s of sessiond's pages was not submitted through the proxy", p)
		}
	}
}

// pageForms returns the forms of sessiond's page at path, fetched through
// the proxy with the session token, if not "".
func (e *edge) pageForms(t *testing.T, path, token string) []pageForm {
	t.Helper()
	hits := e.app.hits.Load()
	r := e.do(req{method: "GET", path: path, cookie: token, header: map[string]string{"Accept": "text/html"}})
	if r.StatusCode != 200 || e.app.hits.Load() != hits {
		t.Fatalf("GET %s: %d, the app reached: %t; want sessiond's page", path, r.StatusCode, e.app.hits.Load() != hits)
	}
	var out []pageForm
	for _, tag := range formTag.FindAllString(string(r.body), -1) {
		f := pageForm{method: "get"}
		for _, a := range formAttr.FindAllStringSubmatch(tag, -1) {
			if a[1] == "method" {
				f.method = strings.ToLower(a[2])
			} else {
				f.action = html.UnescapeString(a[2])
			}
		}
		out = append(out, f)
	}
	return out
}

// submit posts form to action through the proxy as a browser does (with
// the page's Origin), with the session token if not "", and checks that
// sessiond answered it with its redirect and the app got nothing.
func (e *edge) submit(t *testing.T, token, action string, form url.Values) resp {
	t.Helper()
	hits := e.app.hits.Load()
	r := e.do(req{method: "POST", path: action, form: form.Encode(), cookie: token, header: map[string]string{
		"Content-Type": "application/x-www-form-urlencoded", // an empty form too
		"Origin":       e.origin, "Sec-Fetch-Site": "same-origin", "Accept": "text/html",
	}})
	if e.app.hits.Load() != hits || r.Header.Get("X-Test-App") != "" {
		t.Errorf("POST %s through the proxy reached the app", action)
	}
	if r.StatusCode != http.StatusSeeOther {
		t.Errorf("POST %s through the proxy: %d, want sessiond's 303:\n%.2000s", action, r.StatusCode, r.body)
	}
	return r
}

// alive reports whether the session token gets a request to the app
// through the proxy.
func (e *edge) alive(t *testing.T, token string) bool {
	t.Helper()
	r := e.do(req{method: "GET", path: "/app/alive", cookie: token})
	switch {
	case r.StatusCode == 200 && r.Header.Get("X-Test-App") == "echo":
		return true
	case r.StatusCode == 401:
		return false
	}
	t.Fatalf("GET /app/alive through the proxy: %d %s", r.StatusCode, r.body)
	return false
}

// newEdge prepares everything but the proxy itself: a port, a
// certificate, the app, and a client.
func newEdge(t *testing.T) *edge {
	t.Helper()
	e := &edge{t: t, dir: t.TempDir(), app: newEchoApp(t)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	e.origin = "https://" + appHost + ":" + e.port

	pki := testenv.WritePKI(t, e.dir, appHost)
	e.certFile, e.keyFile = pki.CertFile, pki.KeyFile
	e.roots = pki.Roots
	// The client connects from 127.0.0.2 where it can, so that its
	// address differs from the proxy's (127.0.0.1), as in production.
	e.setClient("127.0.0.2")
	return e
}

// setClient gives e a client that connects to the proxy from ip, or from
// 127.0.0.1 where the system does not allow that.
func (e *edge) setClient(ip string) {
	t := e.t
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	e.clientIP = ip
	if c, err := d.Dial("tcp", e.app.Listener.Addr().String()); err != nil {
		t.Logf("cannot connect from %s (%v): the client uses 127.0.0.1, like the proxy", ip, err)
		d.LocalAddr, e.clientIP = nil, "127.0.0.1"
	} else {
		c.Close()
	}
	proxy := "127.0.0.1:" + e.port
	e.client = &http.Client{
		Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", proxy) },
			TLSClientConfig:   &tls.Config{RootCAs: e.roots},
			ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       20 * time.Second,
	}
	t.Cleanup(e.client.CloseIdleConnections)
}

// from returns a copy of e for the test t whose client connects from ip.
func (e *edge) from(t *testing.T, ip string) *edge {
	c := *e
	c.t = t
	c.setClient(ip)
	return &c
}

func (e *edge) write(name, content string) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fromDocs writes docs/proxies/name with each old string replaced by its
// new one, and returns the copy's path. Every old string must be there:
// the test runs the documented config, not one of its own.
func (e *edge) fromDocs(name string, replace map[string]string) string {
	e.t.Helper()
	conf := string(readFile(e.t, filepath.Join("..", "..", "docs", "proxies", name)))
	for old, new := range replace {
		if !strings.Contains(conf, old) {
			e.t.Fatalf("docs/proxies/%s has no %q to point at the test's servers: keep the docs and this test in step", name, old)
		}
		conf = strings.ReplaceAll(conf, old, new)
	}
	return e.write("docs-"+name, conf)
}

// run starts the proxy and waits until it accepts connections. At cleanup
// it stops the proxy and every process the proxy started.
func (e *edge) run(cmd *exec.Cmd) {
	e.t.Helper()
	t := e.t
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // nginx's workers join the group
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	name := filepath.Base(cmd.Path)
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop within 10s of SIGTERM; killing it", name)
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers of the group, if any
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, logs)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+e.port, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s exited at start (%v):\n%s", name, cmd.ProcessState, logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within 15s:\n%s", name, e.port, logs)
		}
	}
}

// do sends r to the proxy, as https://app.example.com:port/path.
func (e *edge) do(r req) resp {
	e.t.Helper()
	var body io.Reader
	ctype := ""
	switch {
	case r.json != nil:
		b, _ := json.Marshal(r.json)
		body, ctype = bytes.NewReader(b), "application/json"
	case r.form != "":
		body, ctype = strings.NewReader(r.form), "application/x-www-form-urlencoded"
	}
	hr, err := http.NewRequest(r.method, e.origin+r.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		hr.Header.Set("Content-Type", ctype)
	}
	if r.cookie != "" {
		hr.AddCookie(&http.Cookie{Name: "__Host-sid", Value: r.cookie})
	}
	if r.bearer != "" {
		hr.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	res, err := e.client.Do(hr)
	if err != nil {
		e.t.Fatalf("%s %s through the proxy: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res, b}
}

// login signs username in with JSON through the proxy and returns the
// session cookie's token and the response body.
func (e *edge) login(username, password string) (string, map[string]any) {
	e.t.Helper()
	r := e.do(req{method: "POST", path: "/login", json: map[string]any{"username": username, "password": password}})
	if r.StatusCode != 200 || r.sessionCookie() == "" {
		e.t.Fatalf("login %s through the proxy: %d %s", username, r.StatusCode, r.body)
	}
	return r.sessionCookie(), r.json(e.t)
}

// appSaw returns what the app received for r, failing unless r is the
// app's answer.
func (e *edge) appSaw(t *testing.T, r resp) seen {
	t.Helper()
	var s seen
	if r.StatusCode != 200 || r.Header.Get("X-Test-App") != "echo" {
		t.Fatalf("%s %s: %d %s, want the app's answer", r.Request.Method, r.Request.URL.Path, r.StatusCode, r.body)
	}
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatalf("the app's answer %q: %v", r.body, err)
	}
	return s
}
