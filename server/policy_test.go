package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

func TestParsePolicy(t *testing.T) {
	for _, tt := range []struct {
		query string
		want  policy
	}{
		{"", policy{}},
		{"aal=2", policy{aal: 2}},
		{"aal=1", policy{aal: 1}},
		{"max_age=300", policy{maxAge: 5 * time.Minute}},
		{"role=admin,ops&aal=2&redirect=1", policy{aal: 2, roles: []string{"admin", "ops"}, redirect: true}},
		{"role=a%2Cb", policy{roles: []string{"a", "b"}}},
		{"redirect=1&app_cookie=1", policy{redirect: true, appCookie: true}},
	} {
		got, err := parsePolicy(tt.query)
		if err != nil || got.aal != tt.want.aal || got.maxAge != tt.want.maxAge || !slices.Equal(got.roles, tt.want.roles) || got.redirect != tt.want.redirect || got.appCookie != tt.want.appCookie {
			t.Errorf("parsePolicy(%q) = %+v, %v; want %+v", tt.query, got, err, tt.want)
		}
	}
	for _, query := range []string{
		"aal=3", "aal=", "aal=02", "aal=2&aal=1", "aal=1&aal=2", // a repeat could undo the proxy's own value
		"role=admin&role=user", "role=", "role=a,,b", "role=" + strings.Repeat("r,", 40) + "r",
		"max_age=0", "max_age=-5", "max_age=1e3", "max_age=99999999999", "max_age=" + strings.Repeat("9", 30),
		"redirect=0", "redirect=true", "app_cookie=yes", "app_cookie=1&app_cookie=1",
		"maxage=60", "AAL=2", "aal%20=2", "role =admin", "x=1", // mistyped: refuse, never ignore
		"aal=2;role=admin", "%zz", strings.Repeat("a", maxPolicyQuery+1),
	} {
		if p, err := parsePolicy(query); !errors.Is(err, errPolicy) {
			t.Errorf("parsePolicy(%.40q) = %+v, %v; want an errPolicy error", query, p, err)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, q := range []string{"", "aal=2", "max_age=60&role=a,b", "redirect=1", "aal=2&aal=2", "%zz"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		p, err := parsePolicy(query)
		if err != nil {
			if !errors.Is(err, errPolicy) {
				t.Fatalf("error %v is not an errPolicy", err)
			}
			return
		}
		if p.aal < 0 || p.aal > 2 || p.maxAge < 0 || p.maxAge > maxPolicyAge || len(p.roles) > maxPolicyRoles || slices.Contains(p.roles, "") {
			t.Fatalf("parsePolicy(%q) = %+v: out of bounds", query, p)
		}
	})
}

// policyServer is a server whose clock the test moves, with users in
// SQLite and sessions made directly with any AMR.
type policyServer struct {
	*Server
	accounts *users.Accounts
	now      time.Time
}

func newPolicyServer(t *testing.T, sf app.SecondFactorPolicy) *policyServer {
	t.Helper()
	dir, err := sqliteusers.Open(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	ps := &policyServer{accounts: users.NewAccounts(dir, users.Params{Memory: 64, Time: 1, Threads: 1}), now: time.Now()}
	clock := func() time.Time { return ps.now }
	ps.Server, err = New(Config{Now: clock}, Deps{Store: memstore.New(), Accounts: ps.accounts, Audit: dir, SecondFactor: sf})
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// session creates a session for a new user with roles, signed in by amr,
// and returns its token.
func (ps *policyServer) session(t *testing.T, name string, roles []string, amr ...string) string {
	t.Helper()
	u, err := ps.accounts.Add(context.Background(), name, "a long enough password", roles)
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := ps.Sessions().Create(context.Background(), session.Login{UserID: u.ID, Roles: u.Roles, AMR: amr})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// resolve asks target (a /resolve URL) about token, from nginx on
// loopback for the original URL https://app.example/private?x=1, as a
// browser's request if browser is set.
func (ps *policyServer) resolve(token, target string, browser bool) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("X-Original-URL", "https://app.example/private?x=1")
	if token != "" {
		r.Header.Set("Cookie", "__Host-sid="+token)
	}
	if browser {
		r.Header.Set("Accept", "text/html")
	}
	w := httptest.NewRecorder()
	ps.Internal().ServeHTTP(w, r)
	return w
}

// TestResolvePolicy: each part of a route's policy refuses the sessions
// that fall short of it, with the status and the way forward the contract
// names, and passes the others.
func TestResolvePolicy(t *testing.T) {
	ps := newPolicyServer(t, app.SecondFactorPolicy{})
	password := ps.session(t, "pat", []string{"member"}, session.AMRPassword)
	twoStep := ps.session(t, "tia", []string{"member", "admin"}, session.AMRPassword, session.AMROTP)
	passkey := ps.session(t, "pia", []string{"ops"}, session.AMRHardwareKey, session.AMRUserPresence, session.AMRMultiFactor)
	rd := "?rd=" + url.QueryEscape("https://app.example/private?x=1")

	for _, tt := range []struct {
		name, token, target string
		browser             bool
		status              int
		location, aal, code string
	}{
		{"no policy, AAL1", password, "/resolve", false, 200, "", "1", ""},
		{"aal=2 met by password and code", twoStep, "/resolve?aal=2", false, 200, "", "2", ""},
		{"aal=2 met by a passkey", passkey, "/resolve?aal=2", false, 200, "", "2", ""},
		{"aal=2, AAL1, API client", password, "/resolve?aal=2", false, 401, "", "", "second_factor_required"},
		{"aal=2, AAL1, browser", password, "/resolve?aal=2", true, 401, "/login/second-factor" + rd, "", "second_factor_required"},
		{"aal=2, AAL1, browser, redirect", password, "/resolve?aal=2&redirect=1", true, 302, "/login/second-factor" + rd, "", ""},
		{"role held", twoStep, "/resolve?role=admin,ops", false, 200, "", "2", ""},
		{"role held (the other one)", passkey, "/resolve?role=admin,ops", false, 200, "", "2", ""},
		{"role lacking, browser: no way forward", password, "/resolve?role=admin", true, 403, "", "", "forbidden"},
		{"role lacking before aal", password, "/resolve?role=admin&aal=2", true, 403, "", "", "forbidden"},
		{"max_age met", password, "/resolve?max_age=60", false, 200, "", "1", ""},
		{"no session", "", "/resolve?aal=2", true, 401, "/login" + rd, "", "unauthenticated"},
		{"Envoy's path: its query is the client's, not a policy", password, "/resolve/private?aal=2", false, 200, "", "1", ""},
		{"bad policy refuses even a good session", twoStep, "/resolve?aal=3", false, 400, "", "", "bad_request"},
		{"bad policy refuses without a session", "", "/resolve?maxage=60", true, 400, "", "", "bad_request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := ps.resolve(tt.token, tt.target, tt.browser)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if got := w.Header().Get("Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
			if got := w.Header().Get("X-Session-AAL"); got != tt.aal {
				t.Errorf("X-Session-AAL %q, want %q", got, tt.aal)
			}
			if tt.code != "" && !strings.Contains(w.Body.String(), `"code":"`+tt.code+`"`) {
				t.Errorf("body %s, want code %s", w.Body, tt.code)
			}
			if w.Code != 200 && w.Header().Get("Remote-User") != "" {
				t.Errorf("a refusal carries Remote-User %q", w.Header().Get("Remote-User"))
			}
		})
	}

	t.Run("role lacking, browser, redirect: a page, not a redirect", func(t *testing.T) {
		w := ps.resolve(password, "/resolve?role=admin&redirect=1", true)
		if w.Code != 403 || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), "does not have a role this page needs") {
			t.Errorf("status %d, Location %q, body %s", w.Code, w.Header().Get("Location"), w.Body)
		}
	})

	t.Run("max_age: stale after the time passes, and reauth is the way", func(t *testing.T) {
		ps.now = ps.now.Add(2 * time.Minute)
		t.Cleanup(func() { ps.now = ps.now.Add(-2 * time.Minute) })
		w := ps.resolve(password, "/resolve?max_age=60", true)
		if w.Code != 401 || w.Header().Get("Location") != "/login/reauth"+rd {
			t.Fatalf("status %d, Location %q: %s", w.Code, w.Header().Get("Location"), w.Body)
		}
		if w := ps.resolve(password, "/resolve?max_age=180", true); w.Code != 200 {
			t.Errorf("max_age=180 two minutes after sign-in: status %d", w.Code)
		}
	})
}

// TestResolveRequiresSecondFactorByRole: with a second factor required of
// a role, an AAL1 session of a user holding it is refused on every route,
// policy or not, and other users pass.
func TestResolveRequiresSecondFactorByRole(t *testing.T) {
	ps := newPolicyServer(t, app.SecondFactorPolicy{Roles: []string{"admin"}})
	adminAAL1 := ps.session(t, "ada", []string{"admin"}, session.AMRPassword)
	adminAAL2 := ps.session(t, "ari", []string{"admin"}, session.AMRPassword, session.AMROTP)
	member := ps.session(t, "mo", []string{"member"}, session.AMRPassword)
	for _, tt := range []struct {
		name, token string
		status      int
	}{
		{"admin at AAL1", adminAAL1, 401},
		{"admin at AAL2", adminAAL2, 200},
		{"member at AAL1", member, 200},
	} {
		if w := ps.resolve(tt.token, "/resolve", true); w.Code != tt.status {
			t.Errorf("%s: status %d, want %d", tt.name, w.Code, tt.status)
		} else if tt.status == 401 && !strings.HasPrefix(w.Header().Get("Location"), "/login/second-factor?rd=") {
			t.Errorf("%s: Location %q, want the second-factor step", tt.name, w.Header().Get("Location"))
		}
	}

	everyone := newPolicyServer(t, app.SecondFactorPolicy{Everyone: true})
	if w := everyone.resolve(everyone.session(t, "eve", nil, session.AMRPassword), "/resolve", false); w.Code != 401 {
		t.Errorf("second factor required of everyone, AAL1 session without roles: status %d, want 401", w.Code)
	}
}

// TestResolveAppCookie: with app_cookie=1, a 200 carries the request's
// cookies without sessiond's, byte for byte; none if nothing is left; and
// never without the parameter.
func TestResolveAppCookie(t *testing.T) {
	ps := newPolicyServer(t, app.SecondFactorPolicy{})
	tok := ps.session(t, "cora", nil, session.AMRPassword)
	for _, tt := range []struct{ cookie, want string }{
		{"theme=dark; __Host-sid=" + tok + "; lang=en", "theme=dark; lang=en"},
		{"__Host-sid=" + tok, ""},
		{"__Host-sid=" + tok + "; odd=\"a b\"", "odd=\"a b\""},
	} {
		r := httptest.NewRequest(http.MethodGet, "/resolve?app_cookie=1", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("Cookie", tt.cookie)
		w := httptest.NewRecorder()
		ps.Internal().ServeHTTP(w, r)
		if w.Code != 200 || strings.Join(w.Header().Values("Cookie"), "; ") != tt.want || (tt.want == "" && w.Header()["Cookie"] != nil) {
			t.Errorf("Cookie %q: status %d, answer's Cookie %q, want %q", strings.ReplaceAll(tt.cookie, tok, "TOKEN"), w.Code, w.Header().Values("Cookie"), tt.want)
		}
		if strings.Contains(strings.Join(w.Header().Values("Cookie"), ""), tok) {
			t.Error("the answer carries the session token")
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/resolve", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("Cookie", "theme=dark; __Host-sid="+tok)
	w := httptest.NewRecorder()
	ps.Internal().ServeHTTP(w, r)
	if w.Code != 200 || w.Header()["Cookie"] != nil {
		t.Errorf("without app_cookie: status %d, Cookie %q, want none", w.Code, w.Header()["Cookie"])
	}
}

// TestPolicyCache: the cache answers as parsePolicy does, keeps no wrong
// policy, and keeps at most maxCachedPolicies however many distinct ones
// arrive.
func TestPolicyCache(t *testing.T) {
	var c policyCache
	for range 2 {
		if p, err := c.get("role=admin&aal=2"); err != nil || p.aal != 2 || !slices.Equal(p.roles, []string{"admin"}) {
			t.Fatalf("get: %+v, %v", p, err)
		}
		if _, err := c.get("aal=3"); !errors.Is(err, errPolicy) {
			t.Fatalf("a wrong policy: %v, want errPolicy", err)
		}
	}
	if _, ok := c.m.Load("aal=3"); ok {
		t.Error("a wrong policy was kept")
	}
	for i := range 3 * maxCachedPolicies {
		if p, err := c.get(fmt.Sprintf("max_age=%d", i+1)); err != nil || p.maxAge != time.Duration(i+1)*time.Second {
			t.Fatalf("max_age=%d: %+v, %v", i+1, p, err)
		}
	}
	n := 0
	c.m.Range(func(_, _ any) bool { n++; return true })
	if n > maxCachedPolicies {
		t.Errorf("%d policies kept, want at most %d", n, maxCachedPolicies)
	}
}
