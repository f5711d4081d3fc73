package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
)

// jsonLog sends ts's own log lines (not the app's) as JSON to the
// returned buffer, at level.
func (ts *testServer) jsonLog(level slog.Level) *testenv.SyncBuffer {
	buf := &testenv.SyncBuffer{}
	ts.log = slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level}))
	return buf
}

// requestLines returns the access log lines in buf, decoded.
func requestLines(t *testing.T, buf *testenv.SyncBuffer) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if v["msg"] == "request" {
			lines = append(lines, v)
		}
	}
	return lines
}

// serve sends r to ts from 192.0.2.1 and returns the answer.
func (ts *testServer) serve(r *http.Request) *httptest.ResponseRecorder {
	r.RemoteAddr = "192.0.2.1:40000"
	w := httptest.NewRecorder()
	ts.ServeHTTP(w, r)
	return w
}

// TestAccessLogLine: every request gets one access log line with its
// method, route pattern (never the raw path), status, duration and client
// IP, and the user and public session ID when the request has a session;
// an attribute without a value is left out, and no token, cookie,
// Authorization value or password is in the log. A 2xx of /resolve is at
// level debug, everything else at info.
func TestAccessLogLine(t *testing.T) {
	ts := newTestServer(t, memstore.New())
	logs := ts.jsonLog(slog.LevelDebug)
	ctx := t.Context()
	const password = "olive's long passphrase"
	u, err := ts.accounts.Add(ctx, "olive", password, nil)
	if err != nil {
		t.Fatal(err)
	}
	sess, tok, err := ts.maker.Create(ctx, session.Login{UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	bogus := strings.Repeat("Z", session.TokenLen)
	var newToken, newSession string

	for _, c := range []struct {
		name                 string
		req                  func() *http.Request
		level, method, route string
		status               int
		user, session        string
	}{
		{"resolve", func() *http.Request {
			r := httptest.NewRequest("GET", "/resolve", nil)
			r.Header.Set("Cookie", "__Host-sid="+tok)
			return r
		}, "DEBUG", "GET", "/resolve", 200, u.ID, sess.ID},
		{"resolve under a path", func() *http.Request {
			r := httptest.NewRequest("GET", "/resolve/app/page", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			return r
		}, "DEBUG", "GET", "/resolve/", 200, u.ID, sess.ID},
		{"resolve refused", func() *http.Request {
			r := httptest.NewRequest("GET", "/resolve", nil)
			r.Header.Set("Cookie", "__Host-sid="+bogus)
			return r
		}, "INFO", "GET", "/resolve", 401, "", ""},
		{"who am I", func() *http.Request {
			r := httptest.NewRequest("GET", "/api/v1/session", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			return r
		}, "INFO", "GET", "GET /api/v1/session", 200, u.ID, sess.ID},
		{"a pattern with a wildcard", func() *http.Request {
			r := httptest.NewRequest("DELETE", "/api/v1/sessions/no-such-session", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			return r
		}, "INFO", "DELETE", "DELETE /api/v1/sessions/{id}", 404, u.ID, sess.ID},
		{"an admin route refused", func() *http.Request {
			r := httptest.NewRequest("GET", "/api/v1/admin/users", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			return r
		}, "INFO", "GET", "GET /api/v1/admin/users", 403, u.ID, sess.ID},
		{"a token issued", func() *http.Request {
			r := httptest.NewRequest("POST", "/api/v1/tokens", strings.NewReader(`{"username":"olive","password":"`+password+`"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}, "INFO", "POST", "POST /api/v1/tokens", 201, u.ID, "(new)"},
		{"a wrong password", func() *http.Request {
			r := httptest.NewRequest("POST", "/api/v1/tokens", strings.NewReader(`{"username":"olive","password":"not `+password+`"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}, "INFO", "POST", "POST /api/v1/tokens", 401, "", ""},
		{"no route", func() *http.Request { return httptest.NewRequest("GET", "/no/such/"+tok, nil) }, "INFO", "GET", "other", 404, "", ""},
		{"a health probe", func() *http.Request { return httptest.NewRequest("GET", "/healthz", nil) }, "DEBUG", "GET", "GET /healthz", 200, "", ""},
	} {
		before := len(requestLines(t, logs))
		w := ts.serve(c.req())
		if w.Code != c.status {
			t.Fatalf("%s: status %d, want %d: %s", c.name, w.Code, c.status, w.Body)
		}
		if c.session == "(new)" {
			var body struct {
				Token   string
				Session struct{ ID string }
			}
			json.Unmarshal(w.Body.Bytes(), &body)
			newToken, newSession = body.Token, body.Session.ID
			c.session = newSession
		}
		lines := requestLines(t, logs)
		if len(lines) != before+1 {
			t.Fatalf("%s: %d access log lines, want 1:\n%s", c.name, len(lines)-before, logs)
		}
		got := lines[before]
		want := map[string]any{"level": c.level, "method": c.method, "route": c.route, "status": float64(c.status), "ip": "192.0.2.1"}
		if c.user != "" {
			want["user_id"], want["session_id"] = c.user, c.session
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v (line %v)", c.name, k, got[k], v, got)
			}
		}
		if d, ok := got["duration"].(float64); !ok || d <= 0 {
			t.Errorf("%s: duration %v, want a positive one", c.name, got["duration"])
		}
		for k, v := range got {
			if _, known := want[k]; !known && k != "time" && k != "msg" && k != "duration" {
				t.Errorf("%s: attribute %s=%v, want none", c.name, k, v)
			}
			if v == "" {
				t.Errorf("%s: empty attribute %s", c.name, k)
			}
		}
	}
	if newToken == "" {
		t.Fatal("no token was issued")
	}
	for _, secret := range []string{tok, newToken, bogus, password, "Bearer", "__Host-sid"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the access log holds %q:\n%s", secret, logs)
		}
	}
}

// TestResolveLogsNothingAtInfo: at level info (the default), a 200 from
// /resolve writes no log line, while a refusal does.
func TestResolveLogsNothingAtInfo(t *testing.T) {
	ts := newTestServer(t, memstore.New())
	logs := ts.jsonLog(slog.LevelInfo)
	ok := ts.resolveRequests(t, 1)[0]
	for range 3 {
		if w := ts.serve(ok); w.Code != 200 {
			t.Fatalf("resolve: %d", w.Code)
		}
	}
	if w := ts.serve(httptest.NewRequest("GET", "/healthz", nil)); w.Code != 200 {
		t.Fatalf("healthz: %d", w.Code)
	}
	if n := len(requestLines(t, logs)); n != 0 {
		t.Fatalf("%d lines for 200s of the internal endpoints at level info:\n%s", n, logs)
	}
	if w := ts.serve(httptest.NewRequest("GET", "/resolve", nil)); w.Code != 401 {
		t.Fatalf("resolve without a session: %d", w.Code)
	}
	if lines := requestLines(t, logs); len(lines) != 1 || lines[0]["status"] != float64(401) {
		t.Fatalf("a refused resolve: lines %v, want one with status 401", lines)
	}
}

// series returns the value of the counter, gauge or histogram count name
// with exactly the labels labels, and whether it exists.
func (ts *testServer) series(t *testing.T, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	for _, m := range ts.family(t, name) {
		same := len(m.GetLabel()) == len(labels)
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
				same = false
			}
		}
		if !same {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// TestEverySeriesExistsFromTheStart: before any request, every series
// whose labels are known exists at 0 (so that rates and alerts over them
// are defined from the start), and sessiond_build_info is 1.
func TestEverySeriesExistsFromTheStart(t *testing.T) {
	ts := newTestServerWith(t, memstore.New(), Config{Version: "v1.2.3"})
	type series struct {
		name   string
		labels map[string]string
	}
	var want []series
	for _, typ := range []string{"created", "rotated", "extended", "revoked", "expired", "theft_suspected", "invalid"} {
		want = append(want, series{"sessiond_session_events_total", map[string]string{"type": typ}})
	}
	for _, o := range []string{"ok", "unauthenticated", "rate_limited", "store_unavailable", "canceled"} {
		want = append(want, series{"sessiond_resolve_total", map[string]string{"outcome": o}})
	}
	for _, r := range []string{"bad_credentials", "disabled", "rate_limited", "busy"} {
		want = append(want, series{"sessiond_login_failures_total", map[string]string{"reason": r}})
	}
	for _, l := range []string{"login", "invalid_token"} {
		want = append(want, series{"sessiond_rate_limited_total", map[string]string{"limit": l}})
	}
	for _, route := range []string{"/resolve", "/resolve/", "POST /login", "GET /api/v1/session", "DELETE /api/v1/admin/users/{user}", "GET /admin/audit", "GET /metrics", "other"} {
		for _, class := range []string{"2xx", "3xx", "4xx", "5xx"} {
			want = append(want, series{"sessiond_http_requests_total", map[string]string{"route": route, "code": class}})
		}
		want = append(want, series{"sessiond_http_request_duration_seconds", map[string]string{"route": route}})
	}
	want = append(want, series{"sessiond_logins_total", nil}, series{"sessiond_store_errors_total", nil}, series{"sessiond_resolve_duration_seconds", nil})
	for _, s := range want {
		if v, ok := ts.series(t, s.name, s.labels); !ok || v != 0 {
			t.Errorf("%s%v: %v (exists: %v), want 0", s.name, s.labels, v, ok)
		}
	}
	if v, ok := ts.series(t, "sessiond_build_info", map[string]string{"version": "v1.2.3", "goversion": runtime.Version()}); v != 1 {
		t.Errorf("sessiond_build_info: %v (exists: %v), want 1", v, ok)
	}
	if _, ok := ts.series(t, "sessiond_http_requests_total", map[string]string{"route": "upstream", "code": "2xx"}); ok {
		t.Error(`a route "upstream" without Config.Upstream`)
	}
}

// TestHTTPMetricsCountByRouteAndClass: each answer is counted once under
// its route pattern and status class, and timed; a successful login is
// counted in sessiond_logins_total.
func TestHTTPMetricsCountByRouteAndClass(t *testing.T) {
	ts := newTestServer(t, memstore.New())
	ts.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := ts.accounts.Add(t.Context(), "pia", "pia's long passphrase", nil); err != nil {
		t.Fatal(err)
	}
	ok := ts.resolveRequests(t, 1)[0]
	ts.serve(ok)
	ts.serve(ok)
	ts.serve(httptest.NewRequest("GET", "/resolve", nil))
	ts.serve(httptest.NewRequest("GET", "/resolve/x", nil))
	ts.serve(httptest.NewRequest("GET", "/api/v1/sessions/x/y/z", nil))
	login := httptest.NewRequest("POST", "/login", strings.NewReader(`{"username":"pia","password":"pia's long passphrase"}`))
	login.Header.Set("Content-Type", "application/json")
	if w := ts.serve(login); w.Code != 200 {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	for _, c := range []struct {
		route, class string
		want         float64
	}{
		{"/resolve", "2xx", 2},
		{"/resolve", "4xx", 1},
		{"/resolve/", "4xx", 1},
		{"other", "4xx", 1},
		{"POST /login", "2xx", 1},
		{"POST /login", "4xx", 0},
	} {
		if v, _ := ts.series(t, "sessiond_http_requests_total", map[string]string{"route": c.route, "code": c.class}); v != c.want {
			t.Errorf(`sessiond_http_requests_total{route=%q,code=%q} = %v, want %v`, c.route, c.class, v, c.want)
		}
	}
	if v, _ := ts.series(t, "sessiond_http_request_duration_seconds", map[string]string{"route": "/resolve"}); v != 3 {
		t.Errorf(`sessiond_http_request_duration_seconds{route="/resolve"} count = %v, want 3`, v)
	}
	if v, _ := ts.series(t, "sessiond_logins_total", nil); v != 1 {
		t.Errorf("sessiond_logins_total = %v, want 1", v)
	}
}

// TestUpstreamRequestsAreOneRoute: in upstream mode every request passed
// to the app is counted and logged under the route "upstream", with the
// user and session it was let through with, whatever its path.
func TestUpstreamRequestsAreOneRoute(t *testing.T) {
	f := newUpstreamFixture(t, Config{})
	logs := f.jsonLog(slog.LevelInfo)
	for _, path := range []string{"/a", "/b/c?d=e"} {
		if res, body := f.do(t, "GET", path, map[string][]string{"Cookie": {f.cookie()}}, nil); res.StatusCode != 200 || body != "app" {
			t.Fatalf("GET %s: %d %q", path, res.StatusCode, body)
		}
	}
	if v, _ := f.series(t, "sessiond_http_requests_total", map[string]string{"route": "upstream", "code": "2xx"}); v != 2 {
		t.Errorf(`sessiond_http_requests_total{route="upstream",code="2xx"} = %v, want 2`, v)
	}
	lines := requestLines(t, logs)
	if len(lines) != 2 {
		t.Fatalf("%d access log lines, want 2:\n%s", len(lines), logs)
	}
	for _, l := range lines {
		if l["route"] != "upstream" || l["user_id"] != f.userID || l["session_id"] == nil {
			t.Errorf("access log line %v: want route upstream, user %s and a session", l, f.userID)
		}
	}
}
