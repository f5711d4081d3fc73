// Package bench compares the cost of resolving a request's session in
// sessiond with a peer library and with no session at all. It is a module
// of its own so that the peers never enter sessiond's go.mod; see
// README.md.
package bench

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"

	"github.com/sessiond/sessiond/session"
	sessiondmem "github.com/sessiond/sessiond/store/memstore"
	"github.com/sessiond/sessiond/store/sqlitestore"
)

// sessions is how many live sessions each store holds; every request
// names one of them, in a random order fixed by the seed below.
const sessions = 10_000

// userAgent is a browser's User-Agent, sent with every request.
const userAgent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

// A workload is a handler under test and the requests to send it: request
// i carries Cookie header cookies[i], and the handler must store users[i]
// (any user ID if users is nil) in the string it was set up with.
type workload struct {
	h       http.Handler
	cookies []string
	users   []string
}

// BenchmarkResolve sends one GET request per iteration through a session
// middleware to a handler that reads the user ID from the session. Every
// request carries a cookie naming one of 10k live sessions at random;
// "bare" is net/http with no session at all, the baseline the others are
// compared with. The cases are named lib=... so that
// "benchstat -col /lib" sets them side by side against bare. The handler writes no response, so what differs between
// the cases is the session middleware alone.
//
// Each iteration includes a fresh httptest.NewRecorder. It excludes
// building the request: one request is reused, with its Cookie header
// replaced before each use, so it stays in the CPU cache as a request the
// server has just parsed would.
func BenchmarkResolve(b *testing.B) {
	cases := []struct {
		name  string
		setup func(b *testing.B, got *string) workload
	}{
		{"lib=bare", bare},
		{"lib=sessiond-memstore", func(b *testing.B, got *string) workload { return sessiond(b, sessiondmem.New(), got) }},
		{"lib=sessiond-sqlitestore", sessiondSQLite},
		{"lib=scs-memstore", scsMemstore},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var got string
			resolve(b, c.setup(b, &got), &got)
		})
	}
}

// resolve runs the benchmark loop for wl, whose handler stores the user
// ID it read in *got.
func resolve(b *testing.B, wl workload, got *string) {
	r := httptest.NewRequest(http.MethodGet, "https://example.com/account", nil)
	r.Header.Set("User-Agent", userAgent)
	r.Header["Cookie"] = []string{""}
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(wl.cookies))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		n := order[i%len(order)]
		r.Header["Cookie"][0] = wl.cookies[n]
		*got = ""
		w := httptest.NewRecorder()
		wl.h.ServeHTTP(w, r)
		if w.Code != http.StatusOK || *got == "" || wl.users != nil && *got != wl.users[n] {
			b.Fatalf("request %d: status %d, user %q; want 200 and the session's user", n, w.Code, *got)
		}
		i++
	}
}

// userID returns the user ID of session i.
func userID(i int) string { return fmt.Sprintf("user-%05d", i) }

// bare is the baseline: a handler that takes a user ID it already knows,
// behind no middleware, for requests carrying a random 43-character
// cookie that nothing reads.
func bare(b *testing.B, got *string) workload {
	rng := rand.New(rand.NewPCG(3, 4))
	wl := workload{cookies: make([]string, sessions)}
	for i := range wl.cookies {
		var tok [32]byte
		for j := range tok {
			tok[j] = byte(rng.Uint32())
		}
		wl.cookies[i] = "__Host-sid=" + base64.RawURLEncoding.EncodeToString(tok[:])
	}
	user := userID(0)
	wl.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*got = user
	})
	return wl
}

// sessiond is sessiond's Handler middleware with the default Config on
// store, holding 10k sessions. No Touch write happens while it runs: the
// sessions are created just before, and the default TouchInterval is a
// minute.
func sessiond(b *testing.B, store session.Store, got *string) workload {
	m, err := session.New(store, session.Config{})
	if err != nil {
		b.Fatal(err)
	}
	wl := workload{cookies: make([]string, sessions), users: make([]string, sessions)}
	for i := range wl.cookies {
		s, tok, err := m.Create(context.Background(), session.Login{
			UserID: userID(i),
			Roles:  []string{"member"},
			Client: session.Client{IP: "192.0.2.1", UserAgent: userAgent},
		})
		if err != nil {
			b.Fatal(err)
		}
		wl.cookies[i] = (&http.Cookie{Name: m.Config().Cookie.Name, Value: tok}).String()
		wl.users[i] = s.UserID
	}
	wl.h = m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if s == nil {
			http.Error(w, "no session", http.StatusUnauthorized)
			return
		}
		*got = s.UserID
	}))
	return wl
}

// sessiondSQLite is sessiond on a sqlitestore in a fresh database file.
func sessiondSQLite(b *testing.B, got *string) workload {
	st, err := sqlitestore.Open(filepath.Join(b.TempDir(), "sessions.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return sessiond(b, st, got)
}

// scsMemstore is alexedwards/scs with its defaults (scs.New: its memstore,
// gob codec, no idle timeout) and its LoadAndSave middleware, holding 10k
// sessions with a user ID each.
func scsMemstore(b *testing.B, got *string) workload {
	sm := scs.New()
	b.Cleanup(sm.Store.(*memstore.MemStore).StopCleanup)
	wl := workload{cookies: make([]string, sessions), users: make([]string, sessions)}
	for i := range wl.cookies {
		ctx, err := sm.Load(context.Background(), "")
		if err != nil {
			b.Fatal(err)
		}
		sm.Put(ctx, "userID", userID(i))
		tok, _, err := sm.Commit(ctx)
		if err != nil {
			b.Fatal(err)
		}
		wl.cookies[i] = (&http.Cookie{Name: sm.Cookie.Name, Value: tok}).String()
		wl.users[i] = userID(i)
	}
	wl.h = sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := sm.GetString(r.Context(), "userID")
		if user == "" {
			http.Error(w, "no session", http.StatusUnauthorized)
			return
		}
		*got = user
	}))
	return wl
}
