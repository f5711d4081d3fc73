package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/sessiond/sessiond/internal/testenv"
)

// countingStore is an scs store that counts the writes (Commit, Delete)
// made through it to the store it wraps.
type countingStore struct {
	scs.Store
	writes atomic.Int64
}

func (c *countingStore) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	if cs, ok := c.Store.(scs.CtxStore); ok {
		return cs.FindCtx(ctx, token)
	}
	return c.Store.Find(token)
}

func (c *countingStore) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	c.writes.Add(1)
	if cs, ok := c.Store.(scs.CtxStore); ok {
		return cs.CommitCtx(ctx, token, b, expiry)
	}
	return c.Store.Commit(token, b, expiry)
}

func (c *countingStore) DeleteCtx(ctx context.Context, token string) error {
	c.writes.Add(1)
	if cs, ok := c.Store.(scs.CtxStore); ok {
		return cs.DeleteCtx(ctx, token)
	}
	return c.Store.Delete(token)
}

// openTestBackend opens the stores of kind for a case of the test's own,
// whose Redis keys or PostgreSQL schema no other run shares, and closes
// them (removing keys and schema) when the test ends.
func openTestBackend(t *testing.T, kind string) *backend {
	t.Helper()
	redisURL, pgURL := defaultRedis, defaultPostgres
	switch {
	case strings.HasSuffix(kind, "redis"):
		redisURL = "redis://" + testenv.Redis(t) + "/0"
	case strings.HasSuffix(kind, "postgres"):
		pgURL = testenv.Postgres(t)
	}
	name := "test-" + kind + "-" + strings.ToLower(rand.Text()[:8])
	dir := filepath.Join(t.TempDir(), name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	be, err := openBackend(context.Background(), kind, dir, redisURL, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := be.close(); err != nil {
			t.Error(err)
		}
	})
	return be
}

// get sends GET /resolve with the Cookie header cookie (none if empty) to
// h.
func get(h http.Handler, cookie string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/resolve", nil)
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	r.Header.Set("User-Agent", userAgent)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestSCSAnswersAsResolveAndWritesNothing checks each peer kind: a valid
// session's answer is 200 with the headers sessiond's /resolve sends, with
// the session's values; a request without a valid session gets 401; and no
// request writes to the store, so that the peer cases measure the read
// path.
func TestSCSAnswersAsResolveAndWritesNothing(t *testing.T) {
	// The header keys of sessiond's own answer, from its real server.
	sd := openTestBackend(t, "memstore")
	sdh, sdCookies, err := sessiondHandler(sd, 10, &clock{})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(func(yield func(string) bool) {
		for k := range get(sdh, sdCookies[0]).Header() {
			if !yield(k) {
				return
			}
		}
	})

	for _, kind := range []string{"scs-memstore", "scs-redis", "scs-postgres"} {
		t.Run(kind, func(t *testing.T) {
			be := openTestBackend(t, kind)
			store := &countingStore{Store: be.peer}
			be.peer = store
			const n = 25
			began := time.Now()
			h, cookies, err := scsHandler(be, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(cookies) != n {
				t.Fatalf("got %d cookies, want %d", len(cookies), n)
			}
			store.writes.Store(0)
			for i, c := range cookies {
				w := get(h, c)
				if w.Code != http.StatusOK {
					t.Fatalf("session %d: status %d, want 200", i, w.Code)
				}
				hdr := w.Header()
				got := slices.Sorted(func(yield func(string) bool) {
					for k := range hdr {
						if k != "Vary" && !yield(k) { // scs's own Vary: Cookie
							return
						}
					}
				})
				if !slices.Equal(got, want) {
					t.Fatalf("session %d: headers %q, want sessiond's %q", i, got, want)
				}
				u := i % max(1, n/sessionsPerUser)
				for k, v := range map[string]string{
					"Remote-User":   fmt.Sprintf("user%06d", u),
					"Remote-Groups": "member",
					"X-User-Id":     fmt.Sprintf("u_load%06d", u),
					"Cache-Control": "no-store",
				} {
					if got := hdr.Get(k); got != v {
						t.Errorf("session %d: %s %q, want %q", i, k, got, v)
					}
				}
				if id := hdr.Get("X-Session-Id"); len(id) != 22 {
					t.Errorf("session %d: X-Session-Id %q, want 22 characters as sessiond's", i, id)
				}
				for _, k := range []string{"X-Session-Expires-At", "X-Session-Absolute-Expires-At"} {
					at, err := time.Parse(time.RFC3339, hdr.Get(k))
					if err != nil || at.Before(began.Add(12*time.Hour-time.Second)) || at.After(time.Now().Add(12*time.Hour)) {
						t.Errorf("session %d: %s %q, want 12 hours after its creation (%v)", i, k, hdr.Get(k), err)
					}
				}
				if at, err := time.Parse(time.RFC3339, hdr.Get("X-Session-Authenticated-At")); err != nil || at.Before(began.Add(-time.Second)) || at.After(time.Now()) {
					t.Errorf("session %d: X-Session-Authenticated-At %q, want its creation (%v)", i, hdr.Get("X-Session-Authenticated-At"), err)
				}
				if sc := hdr.Values("Set-Cookie"); len(sc) != 0 {
					t.Errorf("session %d: Set-Cookie %q, want none", i, sc)
				}
			}

			tok := strings.TrimPrefix(cookies[0], "__Host-sid=")
			for _, c := range []string{"", "__Host-sid=" + rand.Text() + rand.Text()[:17], "session=" + tok, "__Host-sid=" + tok[:42]} {
				if w := get(h, c); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `"code":"unauthenticated"`) {
					t.Errorf("Cookie %q: status %d %q, want 401 with a JSON error", c, w.Code, w.Body)
				}
			}
			if n := store.writes.Load(); n != 0 {
				t.Errorf("%d writes to the store while answering, want none", n)
			}

			// The store keys each session by the SHA-256 of its token, as
			// sessiond's stores do, not by the token.
			sum := sha256.Sum256([]byte(tok))
			if _, found, err := store.FindCtx(context.Background(), base64.RawURLEncoding.EncodeToString(sum[:])); err != nil || !found {
				t.Errorf("no session under the hash of its token (found %v, %v)", found, err)
			}
			if _, found, err := store.FindCtx(context.Background(), tok); err != nil || found {
				t.Errorf("a session under its token itself (found %v, %v)", found, err)
			}
		})
	}
}
