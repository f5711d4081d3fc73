package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
	"github.com/sessiond/sessiond/store/sqlitestore"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// testServer is a Server on store with its users in a SQLite file, cheap
// password hashing, and its logs at level debug in logs.
type testServer struct {
	*Server
	accounts *users.Accounts
	maker    *session.Manager // makes sessions without audit events
	logs     *testenv.SyncBuffer
}

func newTestServer(tb testing.TB, store session.Store) *testServer {
	tb.Helper()
	return newTestServerWith(tb, store, Config{})
}

// newTestServerWith is newTestServer with the service configured by cfg.
func newTestServerWith(tb testing.TB, store session.Store, cfg Config) *testServer {
	tb.Helper()
	dir, err := sqliteusers.Open(filepath.Join(tb.TempDir(), "users.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dir.Close() })
	ts := &testServer{accounts: users.NewAccounts(dir, users.Params{Memory: 64, Time: 1, Threads: 1}), logs: &testenv.SyncBuffer{}}
	log := slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if ts.Server, err = New(cfg, Deps{Store: store, Accounts: ts.accounts, Audit: dir, Logger: log}); err != nil {
		tb.Fatal(err)
	}
	if ts.maker, err = session.New(store, session.Config{}); err != nil {
		tb.Fatal(err)
	}
	return ts
}

// openSQLiteStore opens a sqlitestore in a new temporary directory,
// closed when the test ends.
func openSQLiteStore(tb testing.TB) *sqlitestore.Store {
	tb.Helper()
	st, err := sqlitestore.Open(filepath.Join(tb.TempDir(), "sessions.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// resolveRequests makes n sessions for n/10 new users and returns a
// GET /resolve request carrying each one's cookie.
func (ts *testServer) resolveRequests(tb testing.TB, n int) []*http.Request {
	tb.Helper()
	ctx := context.Background()
	reqs := make([]*http.Request, n)
	var u *users.User
	for i := range reqs {
		if i%10 == 0 {
			var err error
			if u, err = ts.accounts.Add(ctx, fmt.Sprintf("user%03d", i/10), "a long enough password", []string{"member"}); err != nil {
				tb.Fatal(err)
			}
		}
		_, tok, err := ts.maker.Create(ctx, session.Login{UserID: u.ID, Roles: u.Roles, Client: session.Client{IP: "192.0.2.1", UserAgent: "test"}})
		if err != nil {
			tb.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "http://sessiond.internal/resolve", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
		r.Header.Set("Cookie", ts.sessions.Config().Cookie.Name+"="+tok)
		reqs[i] = r
	}
	return reqs
}

// metric returns the value of the counter name (with the one label
// value label, if not ""), as /metrics would show it; 0 if it has none.
func (ts *testServer) metric(t *testing.T, name, label string) float64 {
	t.Helper()
	for _, m := range ts.family(t, name) {
		if label == "" || len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// family returns the series of the metric name, as /metrics would show
// them.
func (ts *testServer) family(t *testing.T, name string) []*dto.Metric {
	t.Helper()
	families, err := ts.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

// TestClientGoneIsNotAStoreFailure resolves a session for a client that
// has gone away before the store answered (its context is cancelled): the
// answer is not a 200, and it is neither logged as an error nor counted as
// a store failure, which would page someone for nothing.
func TestClientGoneIsNotAStoreFailure(t *testing.T) {
	st := openSQLiteStore(t)
	ts := newTestServer(t, st)
	r := ts.resolveRequests(t, 1)[0]
	ctx, cancel := context.WithCancel(r.Context())
	cancel()
	w := httptest.NewRecorder()
	ts.ServeHTTP(w, r.WithContext(ctx))
	if w.Code == http.StatusOK {
		t.Fatalf("resolve with a cancelled context: 200; the store cannot have vouched for it")
	}
	if strings.Contains(ts.logs.String(), "level=ERROR") {
		t.Errorf("logged as an error:\n%s", ts.logs)
	}
	if n := ts.metric(t, "sessiond_store_errors_total", ""); n != 0 {
		t.Errorf("store errors counted: %v", n)
	}
	if n := ts.metric(t, "sessiond_resolve_total", "canceled"); n != 1 {
		t.Errorf(`resolves{outcome="canceled"} = %v, want 1`, n)
	}

	// The same store failing for a client still waiting is an error.
	st.Close()
	w = httptest.NewRecorder()
	ts.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(ts.logs.String(), "level=ERROR") || ts.metric(t, "sessiond_store_errors_total", "") != 1 {
		t.Errorf("closed store: %d, store errors %v, logs:\n%s", w.Code, ts.metric(t, "sessiond_store_errors_total", ""), ts.logs)
	}
}

// TestEveryErrorHasItsStatus: each code the app uses has a status in the
// one table, and a code the table lacks is a 500, never a panic.
func TestEveryErrorHasItsStatus(t *testing.T) {
	for _, code := range []app.Code{app.CodeBadRequest, app.CodeInvalid, app.CodeUnauthenticated, app.CodeBadCredentials, app.CodeWrongPassword, app.CodeForbidden, app.CodeCrossOrigin, app.CodeAccountDisabled, app.CodeNotFound, app.CodeMethodNotAllowed, app.CodeConflict, app.CodeLastAdmin, app.CodeTooLarge, app.CodeUnsupportedMedia, app.CodeRateLimited, app.CodeTooManySessions, app.CodeStoreUnavailable, app.CodeBusy, app.CodeUpstreamUnavailable} {
		if s, ok := statusOf[code]; !ok || s < 400 || s == 500 {
			t.Errorf("code %q: status %d", code, s)
		}
	}
	rec := httptest.NewRecorder()
	writeError(rec, app.Errorf("no_such_code", "x"))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("an unknown code: status %d, want 500", rec.Code)
	}
}

// TestEveryPresentedCredentialCounts: a request carrying many invalid
// session cookies costs the client that many of its invalid-token budget,
// so that packing guesses into one request buys nothing.
func TestEveryPresentedCredentialCounts(t *testing.T) {
	ts := newTestServer(t, memstore.New())
	resolve := func(cookies int) int {
		r := httptest.NewRequest(http.MethodGet, "http://sessiond.internal/resolve", nil)
		r.RemoteAddr = "192.0.2.9:40000"
		var parts []string
		for range cookies {
			parts = append(parts, "__Host-sid="+strings.Repeat("A", session.TokenLen))
		}
		r.Header.Set("Cookie", strings.Join(parts, "; "))
		w := httptest.NewRecorder()
		ts.ServeHTTP(w, r)
		return w.Code
	}
	if code := resolve(60); code != http.StatusUnauthorized {
		t.Fatalf("60 invalid cookies: %d, want 401", code)
	}
	if code := resolve(60); code != http.StatusTooManyRequests {
		t.Fatalf("120 invalid cookies within the burst of 100: %d, want 429", code)
	}
}

// TestPasswordChangeRenewsTheCredentialThatAuthenticated: a browser that
// also sends a dead bearer header gets a new cookie, not a token in the
// body, since its cookie is what the session came in.
func TestPasswordChangeRenewsTheCredentialThatAuthenticated(t *testing.T) {
	ts := newTestServer(t, memstore.New())
	ctx := t.Context()
	u, err := ts.accounts.Add(ctx, "ivy", "ivy's old passphrase", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := ts.maker.Create(ctx, session.Login{UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	body := strings.NewReader(`{"current_password":"ivy's old passphrase","new_password":"ivy's new passphrase"}`)
	r := httptest.NewRequest(http.MethodPost, "http://sessiond.internal/api/v1/password", body)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Authorization", "Bearer "+strings.Repeat("B", session.TokenLen))
	r.Header.Set("Cookie", "__Host-sid="+tok)
	w := httptest.NewRecorder()
	ts.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("password change: %d %s", w.Code, w.Body)
	}
	if strings.Contains(w.Body.String(), `"token"`) {
		t.Error("the new token went into the body of a cookie-authenticated request")
	}
	var renewed bool
	for _, c := range w.Result().Cookies() {
		renewed = renewed || c.Name == "__Host-sid" && c.Value != "" && c.Value != tok
	}
	if !renewed {
		t.Error("no new session cookie")
	}
}

func mustPrefixes(t *testing.T, prefixes ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, p := range prefixes {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// TestForwardedHeadersBelievedFromLoopbackAndTrustedProxies: the client
// address and the original URL come from forwarding headers sent by a
// loopback peer or a trusted proxy, and from no one else.
func TestForwardedHeadersBelievedFromLoopbackAndTrustedProxies(t *testing.T) {
	plain := newTestServer(t, memstore.New())
	trusting := newTestServerWith(t, memstore.New(), Config{TrustedProxies: mustPrefixes(t, "10.0.0.0/8")})
	for _, c := range []struct {
		name string
		s    *testServer
		peer string
		xff  string
		want string
	}{
		{"loopback peer", plain, "127.0.0.1:4000", "203.0.113.7", "203.0.113.7"},
		{"IPv6 loopback peer", plain, "[::1]:4000", "203.0.113.7", "203.0.113.7"},
		{"another peer", plain, "192.0.2.1:4000", "203.0.113.7", "192.0.2.1"},
		{"a trusted proxy", trusting, "10.1.2.3:4000", "203.0.113.7", "203.0.113.7"},
		{"a trusted proxy behind loopback", trusting, "127.0.0.1:4000", "203.0.113.7, 10.9.9.9", "203.0.113.7"},
		{"an untrusted peer of the trusted proxy", trusting, "192.0.2.1:4000", "203.0.113.7", "192.0.2.1"},
		{"a client on loopback behind a loopback proxy", plain, "127.0.0.1:4000", "127.0.0.2", "127.0.0.2"},
		{"the client's own claim before the proxy's", plain, "127.0.0.1:4000", "198.51.100.1, 203.0.113.7", "203.0.113.7"},
		{"garbage in the nearest hop", plain, "127.0.0.1:4000", "203.0.113.7, garbage", "127.0.0.1"},
	} {
		r := httptest.NewRequest("GET", "/resolve", nil)
		r.RemoteAddr = c.peer
		r.Header.Set("X-Forwarded-For", c.xff)
		if got := c.s.clientIP(r); got != c.want {
			t.Errorf("%s: X-Forwarded-For %q from %s: client %s, want %s", c.name, c.xff, c.peer, got, c.want)
		}
	}

	for _, c := range []struct {
		peer string
		want string
	}{
		{"127.0.0.1:4000", "/login?rd=" + url.QueryEscape("https://app.example/x?y=1")},
		{"[::1]:4000", "/login?rd=" + url.QueryEscape("https://app.example/x?y=1")},
		{"192.0.2.1:4000", "/login"},
	} {
		r := httptest.NewRequest("GET", "/resolve", nil)
		r.RemoteAddr = c.peer
		r.Header.Set("Accept", "text/html")
		r.Header.Set("X-Original-URL", "https://app.example/x?y=1")
		w := httptest.NewRecorder()
		plain.ServeHTTP(w, r)
		if w.Code != 401 || w.Header().Get("Location") != c.want {
			t.Errorf("X-Original-URL from %s: %d Location %q, want 401 %q", c.peer, w.Code, w.Header().Get("Location"), c.want)
		}
	}
}

// TestIdentityHeaderTimes: X-Session-Expires-At is the earlier of the
// idle and the absolute deadline, whichever it is, and
// X-Session-Absolute-Expires-At the absolute one; X-Session-AAL and
// X-Session-AMR say how the user signed in.
func TestIdentityHeaderTimes(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2026, 5, 1, h, 0, 0, 0, time.FixedZone("CEST", 2*3600)) }
	for _, tt := range []struct {
		name                      string
		idle, absolute            time.Time
		amr                       []string
		wantExpires, wantAbsolute string
		wantAAL, wantAMR          string
	}{
		{"idle first", at(13), at(20), []string{"pwd"}, "2026-05-01T11:00:00Z", "2026-05-01T18:00:00Z", "1", "pwd"},
		{"absolute first", at(21), at(20), []string{"pwd", "otp", "mfa"}, "2026-05-01T18:00:00Z", "2026-05-01T18:00:00Z", "2", "pwd,otp,mfa"},
		{"no methods recorded", at(13), at(20), nil, "2026-05-01T11:00:00Z", "2026-05-01T18:00:00Z", "1", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := identity{username: "ivy", session: &session.Session{
				ID: "s1", UserID: "u1", Roles: []string{"a", "b"}, AMR: tt.amr,
				AuthenticatedAt: at(12), IdleDeadline: tt.idle, AbsoluteDeadline: tt.absolute,
			}}
			h := http.Header{}
			id.setHeaders(h)
			for k, want := range map[string]string{
				"Remote-User": "ivy", "Remote-Groups": "a,b", "X-User-Id": "u1", "X-Session-Id": "s1",
				"X-Session-Expires-At": tt.wantExpires, "X-Session-Absolute-Expires-At": tt.wantAbsolute,
				"X-Session-Authenticated-At": "2026-05-01T10:00:00Z",
				"X-Session-AAL":              tt.wantAAL, "X-Session-AMR": tt.wantAMR,
			} {
				if got := h.Values(k); len(got) != 1 || got[0] != want {
					t.Errorf("%s: got %q, want %q", k, got, want)
				}
			}
			if len(h) != 9 {
				t.Errorf("%d headers, want 9: %v", len(h), h)
			}
		})
	}
}
