package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// pathRecorder is an app that records the path of every request it gets
// and answers 200 "app".
type pathRecorder struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func newPathRecorder(t *testing.T) *pathRecorder {
	a := &pathRecorder{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.paths = append(a.paths, r.URL.Path)
		a.mu.Unlock()
		io.WriteString(w, "app")
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *pathRecorder) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.paths...)
}

// get fetches url with the session cookie token, if not "".
func get(t *testing.T, url, token string) resp {
	t.Helper()
	r, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: token})
	}
	res, err := noRedirect.Do(r)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res, b}
}

var internalPaths = []string{"/metrics", "/healthz", "/readyz", "/resolve", "/resolve/app/page"}

// TestUpstreamInternalListener runs sessiond as the proxy in front of an
// app: /metrics, /healthz, /readyz and /resolve are not served on the
// public listener, where they are the app's paths (signed in only), and
// are served on the internal listener.
func TestUpstreamInternalListener(t *testing.T) {
	app := newPathRecorder(t)
	in := start(t, "--upstream", app.URL, "--internal-listen", "127.0.0.1:0")
	if in.Internal == "" {
		t.Fatalf("no internal listener logged:\n%s", in.logs)
	}
	tok := in.login("admin", adminPassword)
	for _, path := range internalPaths {
		before := len(app.got())
		if r := get(t, in.URL+path, ""); r.StatusCode != 401 || strings.Contains(string(r.body), "sessiond_") || len(app.got()) != before {
			t.Errorf("public GET %s without a session: %d %.80q; want 401, and the app not reached", path, r.StatusCode, r.body)
		}
		r := get(t, in.URL+path, tok)
		if got := app.got(); r.StatusCode != 200 || string(r.body) != "app" || got[len(got)-1] != path {
			t.Errorf("public GET %s with a session: %d %.80q; want the app's answer", path, r.StatusCode, r.body)
		}
	}
	checkInternal(t, in, tok)
}

// TestInternalListenWithoutUpstream: with --internal-listen alone, the
// internal endpoints move off --listen, whose pages stay.
func TestInternalListenWithoutUpstream(t *testing.T) {
	in := start(t, "--internal-listen", "127.0.0.1:0")
	if in.Internal == "" {
		t.Fatalf("no internal listener logged:\n%s", in.logs)
	}
	tok := in.login("admin", adminPassword)
	for _, path := range internalPaths {
		if r := get(t, in.URL+path, tok); r.StatusCode != 404 {
			t.Errorf("public GET %s: %d %.80q, want 404", path, r.StatusCode, r.body)
		}
	}
	if r := get(t, in.URL+"/account", tok); r.StatusCode != 200 {
		t.Errorf("public GET /account: %d, want 200", r.StatusCode)
	}
	checkInternal(t, in, tok)
}

// checkInternal checks that the internal listener of in serves the
// internal endpoints, and nothing else.
func checkInternal(t *testing.T, in *instance, tok string) {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := get(t, in.Internal+path, ""); r.StatusCode != 200 {
			t.Errorf("internal GET %s: %d %s, want 200", path, r.StatusCode, r.body)
		}
	}
	if r := get(t, in.Internal+"/resolve", tok); r.StatusCode != 200 || r.Header.Get("Remote-User") != "admin" {
		t.Errorf("internal GET /resolve with a session: %d, Remote-User %q; want 200 admin", r.StatusCode, r.Header.Get("Remote-User"))
	}
	if r := get(t, in.Internal+"/resolve/app/page", ""); r.StatusCode != 401 {
		t.Errorf("internal GET /resolve/app/page without a session: %d, want 401", r.StatusCode)
	}
	if r := get(t, in.Internal+"/metrics", ""); r.StatusCode != 200 || !strings.Contains(string(r.body), `sessiond_resolve_total{outcome="ok"} 1`) {
		t.Errorf("internal GET /metrics: %d, want 200 with one resolve ok:\n%.400s", r.StatusCode, r.body)
	}
	for _, path := range []string{"/login", "/account", "/api/v1/session"} {
		if r := get(t, in.Internal+path, tok); r.StatusCode != 404 {
			t.Errorf("internal GET %s: %d, want 404", path, r.StatusCode)
		}
	}
}

// TestInternalListenDefault: with --upstream the internal endpoints
// listen on 127.0.0.1:8081 unless --internal-listen (or its environment
// variable) says otherwise; without --upstream they stay on --listen
// unless it is set.
func TestInternalListenDefault(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, ""},
		{[]string{"--upstream", "http://127.0.0.1:3000"}, nil, "127.0.0.1:8081"},
		{[]string{"--upstream", "http://127.0.0.1:3000", "--internal-listen", "10.0.0.5:9100"}, nil, "10.0.0.5:9100"},
		{[]string{"--internal-listen", "127.0.0.1:9100"}, nil, "127.0.0.1:9100"},
		{nil, map[string]string{"SESSIOND_UPSTREAM": "http://127.0.0.1:3000", "SESSIOND_INTERNAL_LISTEN": "127.0.0.1:9200"}, "127.0.0.1:9200"},
	} {
		o, _, err := parseOptions("t", c.args, func(k string) string { return c.env[k] }, io.Discard, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := o.serverConfig()
		if err != nil {
			t.Fatal(err)
		}
		if got := o.internalAddr(); got != c.want || cfg.SeparateInternal != (c.want != "") {
			t.Errorf("%q %v: internal endpoints at %q (apart: %t), want %q", c.args, c.env, got, cfg.SeparateInternal, c.want)
		}
	}
}
