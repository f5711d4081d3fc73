package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sessiond/sessiond/store/memstore"
)

// BenchmarkResolve answers GET /resolve for random sessions out of 1,000
// (100 users), through the whole handler the server registers, with the
// sessions in memory: the service's own cost per forward-auth request,
// without the network and without the store's. The full picture over
// real HTTP is bench/resolve.sh.
func BenchmarkResolve(b *testing.B) {
	ts := newTestServer(b, memstore.New())
	reqs := ts.resolveRequests(b, 1000)
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
}
