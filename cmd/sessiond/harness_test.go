package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/sessiond/sessiond/internal/testenv"
)

const adminPassword = "correct-horse-battery"

// instance is a sessiond started by Main on 127.0.0.1:0.
type instance struct {
	t   *testing.T
	URL string
	// Internal is the URL of the internal endpoints' listener, if they
	// have one (--internal-listen, or --upstream).
	Internal string
	dir      string
	db       string
	logs     *testenv.SyncBuffer
	stop     func() int
	env      map[string]string
}

var (
	listening         = regexp.MustCompile(`sessiond listening.*url=(https?://127\.0\.0\.1:\d+)`)
	internalListening = regexp.MustCompile(`internal endpoints listening.*url=(http://127\.0\.0\.1:\d+)`)
)

// start runs "sessiond serve" with args on a fresh data directory (or the
// one of share, to run a second instance on the same store). With
// --upstream and no --internal-listen, the internal endpoints listen on
// 127.0.0.1:0 rather than on their default port.
func start(t *testing.T, args ...string) *instance {
	t.Helper()
	dir := t.TempDir()
	return startIn(t, dir, args...)
}

func startIn(t *testing.T, dir string, args ...string) *instance {
	t.Helper()
	in := &instance{t: t, dir: dir, db: filepath.Join(dir, "sessiond.db"), logs: &testenv.SyncBuffer{}, env: map[string]string{"SESSIOND_ADMIN_PASSWORD": adminPassword}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	full := append([]string{"serve", "--listen", "127.0.0.1:0", "--store", "sqlite:" + in.db, "--log-level", "debug"}, args...)
	if slices.Contains(args, "--upstream") && !slices.Contains(args, "--internal-listen") {
		full = append(full, "--internal-listen", "127.0.0.1:0")
	}
	go func() { done <- Main(ctx, full, in.getenv, strings.NewReader(""), in.logs, in.logs) }()
	var once sync.Once
	code := 0
	in.stop = func() int {
		once.Do(func() { cancel(); code = <-done })
		return code
	}
	// Cleanups run last first: the logs are shown whole, once it stopped.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sessiond's log:\n%s", in.logs)
		}
	})
	t.Cleanup(func() { in.stop() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := listening.FindStringSubmatch(in.logs.String()); m != nil {
			in.URL = m[1]
			if m := internalListening.FindStringSubmatch(in.logs.String()); m != nil {
				in.Internal = m[1]
			}
			return in
		}
		select {
		case c := <-done:
			done <- c // for in.stop, which the cleanup calls
			t.Fatalf("sessiond exited with %d:\n%s", c, in.logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("sessiond did not start:\n%s", in.logs)
	return nil
}

func (in *instance) getenv(k string) string { return in.env[k] }

// req describes one request.
type req struct {
	method, path string
	json         any
	form         string
	cookie       string // session token sent as the cookie
	bearer       string
	header       map[string]string
}

// resp is a response with its body read.
type resp struct {
	*http.Response
	body []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", r.Request.URL, r.body, err)
	}
	return v
}

// errorCode returns the code of a JSON error body, failing if the body
// is not {"error":{"code","message"}}.
func (r resp) errorCode(t *testing.T) string {
	t.Helper()
	var v struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(r.body, &v); err != nil || v.Error.Code == "" || v.Error.Message == "" {
		t.Fatalf("%s %s: %d body %q is not a JSON error", r.Request.Method, r.Request.URL.Path, r.StatusCode, r.body)
	}
	return v.Error.Code
}

// sessionCookie returns the session token set by r, "" if none.
func (r resp) sessionCookie() string {
	for _, c := range r.Cookies() {
		if c.Name == "__Host-sid" && c.MaxAge >= 0 {
			return c.Value
		}
	}
	return ""
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 20 * time.Second}

func (in *instance) do(r req) resp {
	in.t.Helper()
	var body io.Reader
	hr, err := http.NewRequest(r.method, in.URL+r.path, nil)
	if err != nil {
		in.t.Fatal(err)
	}
	switch {
	case r.json != nil:
		b, _ := json.Marshal(r.json)
		body = bytes.NewReader(b)
		hr.Header.Set("Content-Type", "application/json")
	case r.form != "":
		body = strings.NewReader(r.form)
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if body != nil {
		hr, _ = http.NewRequest(r.method, in.URL+r.path, body)
		hr.Header.Set("Content-Type", map[bool]string{true: "application/json", false: "application/x-www-form-urlencoded"}[r.json != nil])
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	if r.cookie != "" {
		hr.AddCookie(&http.Cookie{Name: "__Host-sid", Value: r.cookie}) // after any Cookie header above
	}
	if r.bearer != "" {
		hr.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	res, err := noRedirect.Do(hr)
	if err != nil {
		in.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res, b}
}

// login signs username in with JSON and returns the session cookie's token.
func (in *instance) login(username, password string) string {
	in.t.Helper()
	r := in.do(req{method: "POST", path: "/login", json: map[string]any{"username": username, "password": password}})
	if r.StatusCode != 200 || r.sessionCookie() == "" {
		in.t.Fatalf("login %s: %d %s", username, r.StatusCode, r.body)
	}
	return r.sessionCookie()
}

// token gets a bearer token for username.
func (in *instance) token(username, password string) (string, string) {
	in.t.Helper()
	r := in.do(req{method: "POST", path: "/api/v1/tokens", json: map[string]any{"username": username, "password": password}})
	if r.StatusCode != 201 {
		in.t.Fatalf("token for %s: %d %s", username, r.StatusCode, r.body)
	}
	v := r.json(in.t)
	return v["token"].(string), v["session"].(map[string]any)["id"].(string)
}

// resolves reports whether token (as a cookie) passes /resolve.
func (in *instance) resolves(token string) bool {
	in.t.Helper()
	r := in.do(req{method: "GET", path: "/resolve", cookie: token})
	switch r.StatusCode {
	case 200:
		return true
	case 401:
		return false
	}
	in.t.Fatalf("resolve: %d %s", r.StatusCode, r.body)
	return false
}

// addUser creates a user through the admin API.
func (in *instance) addUser(admin, username, password string, roles ...string) string {
	in.t.Helper()
	if roles == nil {
		roles = []string{}
	}
	r := in.do(req{method: "POST", path: "/api/v1/admin/users", cookie: admin, json: map[string]any{"username": username, "password": password, "roles": roles}})
	if r.StatusCode != 201 {
		in.t.Fatalf("create user %s: %d %s", username, r.StatusCode, r.body)
	}
	return r.json(in.t)["user"].(map[string]any)["id"].(string)
}

// dataFiles returns the bytes of every file in the data directory. It
// reads them with cat in another process: closing a file descriptor on a
// SQLite file in this process would drop the locks the server holds on it.
func (in *instance) dataFiles() []byte {
	in.t.Helper()
	entries, _ := os.ReadDir(in.dir)
	var names []string
	for _, e := range entries {
		names = append(names, filepath.Join(in.dir, e.Name()))
	}
	out, err := exec.Command("cat", names...).Output()
	if err != nil || len(out) == 0 {
		in.t.Fatalf("reading the data files: %v", err)
	}
	return out
}

// enrolTOTP turns on TOTP for the user signed in with cookie, over the API
// through do, and returns the code of the user's authenticator app at a
// time, and the session's new cookie (the first code raises it to AAL2).
// The confirmation uses the code of the previous time step (one step of
// skew is accepted), so that the code of the present step is unused.
func enrolTOTP(t *testing.T, do func(req) resp, cookie string) (func(time.Time) string, string) {
	t.Helper()
	r := do(req{method: "POST", path: "/api/v1/mfa/totp", cookie: cookie})
	secret, _ := r.json(t)["secret"].(string)
	if r.StatusCode != 201 || secret == "" {
		t.Fatalf("begin TOTP: %d %s", r.StatusCode, r.body)
	}
	codeAt := totpCodes(t, secret)
	r = do(req{method: "POST", path: "/api/v1/mfa/totp/confirm", cookie: cookie, json: map[string]any{"code": codeAt(time.Now().Add(-30 * time.Second))}})
	if r.StatusCode/100 != 2 || r.sessionCookie() == "" {
		t.Fatalf("confirm TOTP: %d %s", r.StatusCode, r.body)
	}
	return codeAt, r.sessionCookie()
}

// totpCodes returns the codes of secret's authenticator app, by time.
func totpCodes(t *testing.T, secret string) func(time.Time) string {
	return func(at time.Time) string {
		c, err := totp.GenerateCode(secret, at)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}
