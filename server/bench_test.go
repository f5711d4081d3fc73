package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// BenchmarkResolve answers GET /resolve for random sessions out of 1,000
// (100 users), through the whole handler the server registers, with the
// sessions in memory: the service's own cost per forward-auth request,
// without the network and without the store's. The full picture over
// real HTTP is bench/resolve.sh.
func BenchmarkResolve(b *testing.B) {
	ctx := context.Background()
	dir, err := sqliteusers.Open(filepath.Join(b.TempDir(), "users.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dir.Close() })
	accounts := users.NewAccounts(dir, users.Params{Memory: 64, Time: 1, Threads: 1})
	store := memstore.New()
	s, err := New(Config{}, Deps{Store: store, Accounts: accounts, Audit: dir})
	if err != nil {
		b.Fatal(err)
	}
	// Sessions are made by a Manager of their own, so that no audit event
	// is written for each.
	maker, err := session.New(store, session.Config{})
	if err != nil {
		b.Fatal(err)
	}
	const n = 1000
	reqs := make([]*http.Request, n)
	var u *users.User
	for i := range reqs {
		if i%10 == 0 {
			if u, err = accounts.Add(ctx, fmt.Sprintf("user%03d", i/10), "a long enough password", []string{"member"}); err != nil {
				b.Fatal(err)
			}
		}
		_, tok, err := maker.Create(ctx, session.Login{UserID: u.ID, Roles: u.Roles, Client: session.Client{IP: "192.0.2.1", UserAgent: "bench"}})
		if err != nil {
			b.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "http://sessiond.internal/resolve", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
		r.Header.Set("Cookie", s.sessions.Config().Cookie.Name+"="+tok)
		reqs[i] = r
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, reqs[i%n])
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
		i += 7
	}
}
