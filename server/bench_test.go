package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
)

// BenchmarkResolve answers GET /resolve for random sessions out of 1,000
// (100 users), through the whole handler the server registers: the
// service's own cost per forward-auth request, without the network. On
// sqlitestore (the default) every lookup after a session's first is
// answered by the store's record cache, as under load; memstore copies
// each session out of its map. The log is at level info, sessiond's
// default, where a 200 from /resolve writes no access log line; the
// log=debug case writes one per request (to io.Discard), and the policy
// case asks /resolve?role=member&max_age=86400 (a role and a recent
// sign-in). The assertion case signs X-Session-Assertion (Config.Assertions),
// reused per session as under load after each session's first request.
// The full picture over real HTTP is bench/resolve.sh.
func BenchmarkResolve(b *testing.B) {
	for _, bc := range []struct {
		name      string
		store     func(b *testing.B) session.Store
		level     slog.Level
		policy    string
		assertion bool
	}{
		{"store=sqlitestore", func(b *testing.B) session.Store { return openSQLiteStore(b) }, slog.LevelInfo, "", false},
		{"store=memstore", func(*testing.B) session.Store { return memstore.New() }, slog.LevelInfo, "", false},
		{"store=sqlitestore/log=debug", func(b *testing.B) session.Store { return openSQLiteStore(b) }, slog.LevelDebug, "", false},
		{"store=sqlitestore/policy", func(b *testing.B) session.Store { return openSQLiteStore(b) }, slog.LevelInfo, "role=member&max_age=86400", false},
		{"store=sqlitestore/assertion", func(b *testing.B) session.Store { return openSQLiteStore(b) }, slog.LevelInfo, "", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var cfg Config
			if bc.assertion {
				cfg.Assertions = newAssertions(b)
			}
			ts := newTestServerWith(b, bc.store(b), cfg)
			ts.log = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: bc.level}))
			reqs := ts.resolveRequests(b, 1000)
			for _, r := range reqs {
				r.URL.RawQuery = bc.policy
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				w := httptest.NewRecorder()
				ts.ServeHTTP(w, reqs[i%len(reqs)])
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
				i += 7
			}
		})
	}
}
