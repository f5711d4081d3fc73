package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/testenv"
)

// scrape returns the sessiond_ samples /metrics at base shows, by series
// (name and labels, as written).
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %s", res.StatusCode, b)
	}
	samples := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "sessiond_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples
}

// TestEveryMetricAtZeroAfterStart scrapes /metrics on the internal
// listener right after the start: every sessiond series whose labels are
// known is there at 0 (so that rates and alerts are defined before the
// first event), and sessiond_build_info is 1 with the version and Go's.
func TestEveryMetricAtZeroAfterStart(t *testing.T) {
	in := start(t, "--internal-listen", "127.0.0.1:0")
	samples := scrape(t, in.Internal)
	want := []string{
		`sessiond_session_events_total{type="created"}`,
		`sessiond_session_events_total{type="revoked"}`,
		`sessiond_session_events_total{type="theft_suspected"}`,
		`sessiond_resolve_total{outcome="ok"}`,
		`sessiond_resolve_total{outcome="store_unavailable"}`,
		`sessiond_resolve_duration_seconds_count`,
		`sessiond_login_failures_total{reason="bad_credentials"}`,
		`sessiond_login_failures_total{reason="rate_limited"}`,
		`sessiond_logins_total`,
		`sessiond_store_errors_total`,
		`sessiond_rate_limited_total{limit="login"}`,
		`sessiond_rate_limited_total{limit="invalid_token"}`,
		`sessiond_http_requests_total{code="2xx",route="/resolve"}`,
		`sessiond_http_requests_total{code="4xx",route="POST /login"}`,
		`sessiond_http_requests_total{code="5xx",route="POST /api/v1/tokens"}`,
		`sessiond_http_requests_total{code="3xx",route="GET /metrics"}`,
		`sessiond_http_requests_total{code="4xx",route="other"}`,
		`sessiond_http_request_duration_seconds_count{route="GET /api/v1/session"}`,
		`sessiond_http_request_duration_seconds_bucket{route="/resolve",le="0.001"}`,
	}
	for _, s := range want {
		if v, ok := samples[s]; !ok || v != 0 {
			t.Errorf("%s = %v (present: %v), want 0", s, v, ok)
		}
	}
	build := `sessiond_build_info{goversion="` + runtime.Version() + `",version="` + version + `"}`
	if samples[build] != 1 {
		t.Errorf("%s = %v, want 1", build, samples[build])
	}
	for s, v := range samples {
		if v != 0 && s != build {
			t.Errorf("%s = %v right after the start, want 0", s, v)
		}
	}
	if t.Failed() {
		t.Logf("the sessiond samples: %v", samples)
	}
}

// TestAccessLogThroughMain: sessiond serve logs a line per request with
// the route pattern, status, client IP, and the user and session once
// known, and no token, cookie, Authorization value or password anywhere
// in its log.
func TestAccessLogThroughMain(t *testing.T) {
	in := start(t)
	cookie := in.login("admin", adminPassword)
	token, sessionID := in.token("admin", adminPassword)
	if r := in.do(req{method: "GET", path: "/api/v1/session", bearer: token}); r.StatusCode != 200 {
		t.Fatalf("who am I: %d %s", r.StatusCode, r.body)
	}
	if !in.resolves(cookie) {
		t.Fatal("the cookie does not resolve")
	}
	in.do(req{method: "GET", path: "/api/v1/sessions", header: map[string]string{"Authorization": "Bearer not-a-token"}})
	in.stop()
	logs := in.logs.String()
	for _, line := range []*regexp.Regexp{
		regexp.MustCompile(`level=INFO msg=request method=POST route="POST /login" status=200 duration=\S+ ip=127\.0\.0\.1 user_id=u_\S+ session_id=\S+\n`),
		regexp.MustCompile(`level=INFO msg=request method=GET route="GET /api/v1/session" status=200 duration=\S+ ip=127\.0\.0\.1 user_id=u_\S+ session_id=` + regexp.QuoteMeta(sessionID) + `\n`),
		regexp.MustCompile(`level=DEBUG msg=request method=GET route=/resolve status=200 duration=\S+ ip=127\.0\.0\.1 user_id=u_\S+ session_id=\S+\n`),
		regexp.MustCompile(`level=INFO msg=request method=GET route="GET /api/v1/sessions" status=401 duration=\S+ ip=127\.0\.0\.1\n`),
	} {
		if !line.MatchString(logs) {
			t.Errorf("no access log line matches %s", line)
		}
	}
	for _, secret := range []string{cookie, token, adminPassword, "Bearer", "not-a-token", "__Host-sid"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	if t.Failed() {
		t.Logf("the log:\n%s", logs)
	}
}

// lastLogLine is the last line of logs written by the logger (not by
// Main's error report).
func lastLogLine(logs string) string {
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], " level=") {
			return lines[i]
		}
	}
	return ""
}

// TestStopLogsStoppedLast: a stop with nothing in flight exits 0, and
// its last log line says sessiond stopped.
func TestStopLogsStoppedLast(t *testing.T) {
	in := start(t)
	if code := in.stop(); code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, in.logs)
	}
	if last := lastLogLine(in.logs.String()); !strings.Contains(last, "msg=\"sessiond stopped\"") {
		t.Fatalf("last log line %q, want sessiond stopped:\n%s", last, in.logs)
	}
}

// TestShutdownTimeoutBoundsTheDrain: a request that never finishes holds
// the stop up for --shutdown-timeout, not longer; it is then cut off, the
// exit code says so, and "sessiond stopped" is still the last log line.
func TestShutdownTimeoutBoundsTheDrain(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	t.Cleanup(app.Close)
	t.Cleanup(func() { close(release) }) // before app.Close, which waits for the handler
	const timeout = 500 * time.Millisecond
	in := start(t, "--upstream", app.URL, "--shutdown-timeout", timeout.String())
	cookie := in.login("admin", adminPassword)
	go func() {
		r, _ := http.NewRequest("GET", in.URL+"/slow", nil)
		r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: cookie})
		if res, err := http.DefaultClient.Do(r); err == nil {
			res.Body.Close()
		}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the app")
	}
	began := time.Now()
	code := in.stop()
	took := time.Since(began)
	if took < timeout || took > timeout+3*time.Second {
		t.Errorf("stopping took %v with a request in flight, want --shutdown-timeout %v and little more", took, timeout)
	}
	if code == 0 || !strings.Contains(in.logs.String(), "cut off") {
		t.Errorf("exit %d after cutting a request off, want non-zero and a message saying so", code)
	}
	if last := lastLogLine(in.logs.String()); !strings.Contains(last, "msg=\"sessiond stopped\"") {
		t.Errorf("last log line %q, want sessiond stopped", last)
	}
	if t.Failed() {
		t.Logf("the log:\n%s", in.logs)
	}
}

// TestShutdownTimeoutMustBePositive: --shutdown-timeout 0 (or the
// environment's) stops the start with a message that says what to use.
func TestShutdownTimeoutMustBePositive(t *testing.T) {
	var out testenv.SyncBuffer
	code := Main(t.Context(), []string{"serve", "--listen", "127.0.0.1:0", "--store", "memory:"}, func(k string) string {
		if k == "SESSIOND_SHUTDOWN_TIMEOUT" {
			return "0s"
		}
		return ""
	}, strings.NewReader(""), &out, &out)
	if code == 0 || !strings.Contains(out.String(), "--shutdown-timeout 0s: use a positive duration") {
		t.Fatalf("exit %d:\n%s", code, &out)
	}
}

// TestSecondSignalStopsAtOnce: the first signal ends the context serve
// runs under, and serve's exit code is returned when it is done; a second
// signal returns at once, with 128 + the signal's number, however long
// serve would still take.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	canceled, never := make(chan struct{}), make(chan struct{})
	defer close(never)
	var out testenv.SyncBuffer
	codes := make(chan int, 1)
	go func() {
		codes <- untilSecondSignal(sigs, &out, func(ctx context.Context) int {
			<-ctx.Done()
			close(canceled)
			<-never // a drain that does not end
			return 0
		})
	}()
	sigs <- syscall.SIGTERM
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the first signal did not end the context")
	}
	select {
	case code := <-codes:
		t.Fatalf("returned %d after one signal, before serve was done", code)
	case <-time.After(50 * time.Millisecond):
	}
	sigs <- syscall.SIGINT
	select {
	case code := <-codes:
		if code != 130 {
			t.Errorf("exit %d after a second SIGINT, want 130", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second signal did not stop at once")
	}
	if !strings.Contains(out.String(), "again") {
		t.Errorf("nothing said about the second signal: %q", &out)
	}

	// One signal, then serve finishes: its own code.
	sigs = make(chan os.Signal, 2)
	sigs <- syscall.SIGTERM
	if code := untilSecondSignal(sigs, io.Discard, func(ctx context.Context) int { <-ctx.Done(); return 3 }); code != 3 {
		t.Errorf("exit %d, want serve's 3", code)
	}
}

// TestPlainHTTPBeyondLoopback: sessiond warns when it serves plain HTTP
// to other hosts with no TLS proxy named in front of it, where browsers
// drop the Secure session cookie; on loopback, with TLS or with
// --trusted-proxies it does not.
func TestPlainHTTPBeyondLoopback(t *testing.T) {
	for _, c := range []struct {
		addr         string
		tls, proxies bool
		want         bool
	}{
		{"127.0.0.1:8080", false, false, false},
		{"[::1]:8080", false, false, false},
		{"127.0.0.2:8080", false, false, false},
		{"0.0.0.0:8080", false, false, true},
		{"[::]:8080", false, false, true},
		{"192.0.2.10:8080", false, false, true},
		{"192.0.2.10:8080", true, false, false},
		{"0.0.0.0:8080", false, true, false},
	} {
		addr, err := net.ResolveTCPAddr("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := plainHTTPBeyondLoopback(addr, c.tls, c.proxies); got != c.want {
			t.Errorf("%s, TLS %v, trusted proxies %v: warn %v, want %v", c.addr, c.tls, c.proxies, got, c.want)
		}
	}

	// Through Main: on all addresses it warns, unless a proxy is named.
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"--listen", "0.0.0.0:0"}, true},
		{[]string{"--listen", "0.0.0.0:0", "--trusted-proxies", "192.0.2.0/24"}, false},
		{[]string{"--listen", "127.0.0.1:0"}, false},
	} {
		logs := &testenv.SyncBuffer{}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan int, 1)
		args := append([]string{"serve", "--store", "memory:", "--users", "sqlite:" + t.TempDir() + "/u.db"}, c.args...)
		go func() {
			done <- Main(ctx, args, func(k string) string {
				if k == "SESSIOND_ADMIN_PASSWORD" {
					return adminPassword
				}
				return ""
			}, strings.NewReader(""), logs, logs)
		}()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), "sessiond listening") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if !strings.Contains(logs.String(), "sessiond listening") {
			t.Fatalf("%v: did not start:\n%s", c.args, logs)
		}
		if got := strings.Contains(logs.String(), "level=WARN msg=\"serving plain HTTP"); got != c.want {
			t.Errorf("%v: warned %v, want %v:\n%s", c.args, got, c.want, logs)
		}
	}
}
