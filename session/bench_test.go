package session_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
)

// benchSessions is how many live sessions the hot-path benchmarks keep in
// the store; each request names one of them at random.
const benchSessions = 10_000

// benchUserAgent is a browser's User-Agent, so that ClientOf does the work
// it does for real traffic.
const benchUserAgent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

// benchFixture is a Manager with the default Config on a memstore holding
// benchSessions live sessions, one user each, and their tokens in a random
// order.
//
// No Touch write happens while a benchmark runs: the sessions are created
// just before it and the default TouchInterval is one minute. What is
// measured is the read path that almost every request takes.
type benchFixture struct {
	m      *session.Manager
	tokens []string
}

func newBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	m, err := session.New(memstore.New(), session.Config{})
	if err != nil {
		b.Fatal(err)
	}
	f := &benchFixture{m: m, tokens: make([]string, benchSessions)}
	for i := range f.tokens {
		_, tok, err := m.Create(context.Background(), session.Login{
			UserID: fmt.Sprintf("user-%05d", i),
			Roles:  []string{"member"},
			Client: session.Client{IP: "192.0.2.1", UserAgent: benchUserAgent},
		})
		if err != nil {
			b.Fatal(err)
		}
		f.tokens[i] = tok
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(f.tokens), func(i, j int) { f.tokens[i], f.tokens[j] = f.tokens[j], f.tokens[i] })
	return f
}

// cookieHeaders returns, for each token in the order of f.tokens, the
// Cookie header a browser sends with it.
func (f *benchFixture) cookieHeaders() []string {
	name := f.m.Config().Cookie.Name
	hs := make([]string, len(f.tokens))
	for i, tok := range f.tokens {
		hs[i] = (&http.Cookie{Name: name, Value: tok}).String()
	}
	return hs
}

// benchRequest returns a browser's GET request with an empty Cookie
// header, which a benchmark fills in before each use (req.Header["Cookie"][0]
// = ...). Reusing one request, rather than building one per iteration,
// keeps request construction out of the measurement and keeps the request
// in the CPU cache, as a request the server has just parsed would be. The
// middleware only reads it: Handler passes a copy made by WithContext.
func benchRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://example.com/account", nil)
	r.Header.Set("User-Agent", benchUserAgent)
	r.Header["Cookie"] = []string{""}
	return r
}

// readSession is the trivial application handler: it reads the user ID
// of the session the middleware loaded, and fails loudly if there is none.
// It writes no response, so the recorder does no work beyond its
// allocation.
var readSession = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if s := session.FromContext(r.Context()); s == nil || s.UserID == "" {
		panic("benchmark request has no session")
	}
})

func BenchmarkParseToken(b *testing.B) {
	f := newBenchFixture(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h, err := session.ParseToken(f.tokens[i%len(f.tokens)])
		if err != nil || h.IsZero() {
			b.Fatal("ParseToken refused a minted token")
		}
		i++
	}
}

// BenchmarkValidate measures Manager.Validate alone: parse, hash, store
// lookup and the expiry checks, for a random live session out of 10k.
func BenchmarkValidate(b *testing.B) {
	f := newBenchFixture(b)
	ctx := context.Background()
	c := session.Client{IP: "192.0.2.1", UserAgent: benchUserAgent}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s, err := f.m.Validate(ctx, f.tokens[i%len(f.tokens)], c)
		if err != nil || s.UserID == "" {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMiddleware measures one request through Manager.Handler with a
// valid session cookie, to a handler that reads FromContext. Each
// iteration includes httptest.NewRecorder (the harness, not the
// middleware); BenchmarkNoMiddleware measures that harness alone, so the
// middleware's own cost is the difference. Request construction is not
// included: one request is reused, with the cookie of a random session
// set into its Cookie header each time.
func BenchmarkMiddleware(b *testing.B) {
	f := newBenchFixture(b)
	cookies := f.cookieHeaders()
	r := benchRequest()
	h := f.m.Handler(readSession)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Header["Cookie"][0] = cookies[i%len(cookies)]
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d, want %d", w.Code, http.StatusOK)
		}
		i++
	}
}

// BenchmarkMiddlewareColdRequests is BenchmarkMiddleware with one request
// built beforehand per session (10k of them) instead of one reused
// request. The requests then fall out of the CPU cache between uses, which
// a request the server has just parsed would not: the difference from
// BenchmarkMiddleware is the cost of those cache misses, not of the
// middleware.
func BenchmarkMiddlewareColdRequests(b *testing.B) {
	f := newBenchFixture(b)
	rs := make([]*http.Request, len(f.tokens))
	for i, c := range f.cookieHeaders() {
		rs[i] = benchRequest()
		rs[i].Header["Cookie"][0] = c
	}
	h := f.m.Handler(readSession)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, rs[i%len(rs)])
		if w.Code != http.StatusOK {
			b.Fatalf("status %d, want %d", w.Code, http.StatusOK)
		}
		i++
	}
}

// BenchmarkNoMiddleware is BenchmarkMiddleware's harness alone: the same
// reused request, its Cookie header set the same way, and a fresh
// recorder, to the same handler with no middleware (the session is put in
// the request's context beforehand).
func BenchmarkNoMiddleware(b *testing.B) {
	f := newBenchFixture(b)
	cookies := f.cookieHeaders()
	r := benchRequest()
	r.Header["Cookie"][0] = cookies[0]
	s, err := f.m.Load(r)
	if err != nil {
		b.Fatal(err)
	}
	r = r.WithContext(session.NewContext(r.Context(), s))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Header["Cookie"][0] = cookies[i%len(cookies)]
		w := httptest.NewRecorder()
		readSession.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d, want %d", w.Code, http.StatusOK)
		}
		i++
	}
}

// BenchmarkMiddlewareParallel is BenchmarkMiddleware from GOMAXPROCS
// goroutines at once, each with its own request, which contend on the
// memstore's lock.
func BenchmarkMiddlewareParallel(b *testing.B) {
	f := newBenchFixture(b)
	cookies := f.cookieHeaders()
	h := f.m.Handler(readSession)
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := benchRequest()
		// Each goroutine starts at its own place in the random order.
		i := int(worker.Add(1)) * 7919
		for pb.Next() {
			r.Header["Cookie"][0] = cookies[i%len(cookies)]
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Errorf("status %d, want %d", w.Code, http.StatusOK)
				return
			}
			i++
		}
	})
}
