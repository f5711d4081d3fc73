package session_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
)

// An app that logs users in and out. The app checks credentials itself;
// the Manager starts, checks and ends the sessions.
func Example() {
	m, err := session.New(memstore.New(), session.Config{})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		user := r.PostFormValue("username")
		if user == "" || r.PostFormValue("password") != "correct horse" { // your password check here
			http.Error(w, "wrong username or password", http.StatusUnauthorized)
			return
		}
		if _, err := m.Login(w, r, session.Login{UserID: user, Roles: []string{"user"}}); err != nil {
			http.Error(w, "cannot sign in", http.StatusForbidden)
			return
		}
		http.Redirect(w, r, "/me", http.StatusSeeOther)
	})
	mux.Handle("GET /me", m.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s", session.FromContext(r.Context()).UserID)
	})))
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Logout(w, r); err != nil {
			http.Error(w, "cannot sign out", http.StatusForbidden)
			return
		}
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
	srv := httptest.NewTLSServer(mux) // the session cookie is Secure: HTTPS only
	defer srv.Close()

	client := srv.Client()
	client.Jar, _ = cookiejar.New(nil)
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	get := func() {
		resp, err := client.Get(srv.URL + "/me")
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
	}
	post := func(path string, form url.Values) {
		resp, err := client.PostForm(srv.URL+path, form)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
	}

	get()
	post("/login", url.Values{"username": {"alice"}, "password": {"correct horse"}})
	get()
	post("/logout", nil)
	get()
	// Output:
	// 401 {"error":{"code":"unauthenticated","message":"Sign in to continue."}}
	// 200 hello, alice
	// 401 {"error":{"code":"unauthenticated","message":"Sign in to continue."}}
}

// A native or API client gets the token itself and sends it as a bearer
// token; it never sees a cookie.
func ExampleManager_Create() {
	m, _ := session.New(memstore.New(), session.Config{})
	s, token, err := m.Create(ctx, session.Login{UserID: "alice", Client: session.Client{IP: "192.0.2.1", UserAgent: "app/1.0"}})
	if err != nil {
		log.Fatal(err)
	}
	// Hand token to the client (once; it is never stored). On each request:
	r := httptest.NewRequest("GET", "/api/orders", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	got, err := m.Load(r)
	fmt.Println(got.ID == s.ID, got.UserID, err)
	// Output: true alice <nil>
}

// "Log out everywhere else": end every session of the user but this one,
// for instance after a password change.
func ExampleManager_RevokeUser() {
	m, _ := session.New(memstore.New(), session.Config{})
	laptop, _, _ := m.Create(ctx, session.Login{UserID: "alice"})
	m.Create(ctx, session.Login{UserID: "alice"}) // phone
	m.Create(ctx, session.Login{UserID: "alice"}) // tablet
	n, _ := m.RevokeUser(ctx, "alice", laptop.ID, "alice", "password changed")
	left, _ := m.List(ctx, "alice")
	fmt.Println(n, len(left), left[0].ID == laptop.ID)
	// Output: 2 1 true
}

// With Config.LoginURL, Require sends a browser without a session to the
// login page, with rd the page to come back to, and still answers 401 to
// API clients.
func ExampleConfig_loginURL() {
	m, _ := session.New(memstore.New(), session.Config{LoginURL: "/login"})
	orders := m.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "your orders")
	}))
	for _, accept := range []string{"text/html,application/xhtml+xml", "application/json"} {
		r := httptest.NewRequest("GET", "/orders?page=2", nil)
		r.Header.Set("Accept", accept)
		w := httptest.NewRecorder()
		orders.ServeHTTP(w, r)
		fmt.Println(accept, "→", w.Code, w.Header().Get("Location"))
	}
	// Output:
	// text/html,application/xhtml+xml → 303 /login?rd=%2Forders%3Fpage%3D2
	// application/json → 401
}
