//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/testenv"
)

// The tests in this file put a real nginx and a real Caddy, configured
// with docs/proxies/nginx.conf and docs/proxies/Caddyfile, between a
// client and an app, with sessiond answering their forward-auth requests.
// They need the nginx and caddy binaries: on a machine without them they
// skip, in CI (CI=true) they fail.

// appHost is the app's host name in the docs' configs and in the tests.
const appHost = "app.example.com"

// TestProxyNginx runs docs/proxies/nginx.conf in a real nginx: an
// auth_request to /resolve, identity headers copied with
// auth_request_set, browsers sent to the login page from error_page 401.
func TestProxyNginx(t *testing.T) {
	bin := proxyBinary(t, "nginx")
	testBehindProxy(t, func(e *edge) {
		site := e.fromDocs("nginx.conf", map[string]string{
			"server sessiond:8080;":                  "server " + e.sessiond + ";",
			"server app:3000;":                       "server " + e.app.Listener.Addr().String() + ";",
			"listen 443 ssl;":                        "listen 127.0.0.1:" + e.port + " ssl;",
			"/etc/ssl/app.example.com/fullchain.pem": e.certFile,
			"/etc/ssl/app.example.com/privkey.pem":   e.keyFile,
		})
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
	})
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
	client   *http.Client
	clientIP string // the address the client connects from
}

// echoApp is the app behind the proxy: it answers every request with the
// path and headers it received, and counts requests.
type echoApp struct {
	*httptest.Server
	hits atomic.Int64
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
	in := start(t, "--trusted-proxies", "127.0.0.1", "--public-url", e.origin)
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
		for _, k := range []string{"X-Session-Expires-At", "X-Session-Authenticated-At"} {
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
			"Remote-User":                "mallory",
			"Remote-Groups":              "admin",
			"Remote-Email":               "mallory@example.net",
			"Remote-Name":                "mallory",
			"X-User-Id":                  "mallory",
			"X-Session-Id":               "mallory",
			"X-Session-Expires-At":       "2099-01-01T00:00:00Z",
			"X-Session-Authenticated-At": "2099-01-01T00:00:00Z",
			"X-Forwarded-User":           "mallory",
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
		back := e.appSaw(t, e.do(req{method: "GET", path: "/app/page?x=1", cookie: in.sessionCookie(), header: map[string]string{"Accept": "text/html"}}))
		if back.Header.Get("Remote-User") != "bob" {
			t.Errorf("back at the page, the app got Remote-User %q, want bob", back.Header.Get("Remote-User"))
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
			t.Errorf("session IP %q, want the client's %q (sessiond sees the proxy, 127.0.0.1, and trusts its X-Forwarded-For)", ip, e.clientIP)
		}
	})
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
	// The client connects from 127.0.0.2 where it can, so that its
	// address differs from the proxy's (127.0.0.1), as in production.
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	e.clientIP = "127.0.0.2"
	if c, err := d.Dial("tcp", e.app.Listener.Addr().String()); err != nil {
		t.Logf("cannot connect from 127.0.0.2 (%v): the client uses 127.0.0.1, like the proxy", err)
		d.LocalAddr, e.clientIP = nil, "127.0.0.1"
	} else {
		c.Close()
	}
	proxy := "127.0.0.1:" + e.port
	e.client = &http.Client{
		Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", proxy) },
			TLSClientConfig:   &tls.Config{RootCAs: pki.Roots},
			ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       20 * time.Second,
	}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
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
