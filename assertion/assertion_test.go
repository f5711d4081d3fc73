package assertion_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/assertion"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
)

const issuerURL = "https://login.example.com"

// clock is a settable time, shared by the Issuers of a test.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.set(c.now().Add(d)) }

// backend opens KeyStores on one database of the test's own: each call a
// new one (another instance), each closed when the test ends.
type backend struct {
	name string
	open func(t *testing.T) func(t *testing.T) assertion.KeyStore
}

var backends = []backend{
	{"sqlite", func(t *testing.T) func(t *testing.T) assertion.KeyStore {
		path := filepath.Join(t.TempDir(), "sessiond.db")
		return func(t *testing.T) assertion.KeyStore {
			ks, err := assertion.OpenSQLite(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ks.Close() })
			return ks
		}
	}},
	{"postgres", func(t *testing.T) func(t *testing.T) assertion.KeyStore {
		url := testenv.PostgresSchema(t)
		return func(t *testing.T) assertion.KeyStore {
			ks, err := assertion.OpenPostgres(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ks.Close() })
			return ks
		}
	}},
}

// eachBackend runs f on every backend.
func eachBackend(t *testing.T, f func(t *testing.T, open func(t *testing.T) assertion.KeyStore)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.open(t)) })
	}
}

// newIssuer is an Issuer over ks on clk with a publish lead of 10
// minutes and keys living 1 hour, closed when the test ends.
func newIssuer(t *testing.T, ks assertion.KeyStore, clk *clock, audience string) *assertion.Issuer {
	t.Helper()
	iss, err := assertion.New(context.Background(), ks, testConfig(clk, audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	return iss
}

func testConfig(clk *clock, audience string) assertion.Config {
	return assertion.Config{Issuer: issuerURL, Audience: audience, PublishLead: 10 * time.Minute,
		KeyLifetime: time.Hour, RefreshInterval: time.Hour / 24, Now: clk.now}
}

// newSession is a session of user u1 valid for hours from clk's now.
func newSession(clk *clock, id string) *session.Session {
	now := clk.now()
	return &session.Session{
		ID: id, TokenHash: sha256.Sum256([]byte("token of " + id)), UserID: "u1", Roles: []string{"member", "ops"},
		CreatedAt: now, AuthenticatedAt: now.Add(-time.Minute), AMR: []string{session.AMRPassword, session.AMROTP, session.AMRMultiFactor},
		IdleDeadline: now.Add(30 * time.Minute), AbsoluteDeadline: now.Add(12 * time.Hour),
	}
}

func TestAssertionVerifiesAgainstTheJWKS(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(t *testing.T) assertion.KeyStore) {
		clk := newClock()
		iss := newIssuer(t, open(t), clk, "")
		s := newSession(clk, "sess1")
		tok, err := iss.Assertion(s, "alice", "app.example.com")
		if err != nil {
			t.Fatal(err)
		}
		v := newVerifier(t, iss.JWKS(), issuerURL, "app.example.com", clk.now())
		claims, err := v.verify(tok)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		now := clk.now().Unix()
		want := map[string]any{
			"iss": issuerURL, "aud": "app.example.com", "sub": "u1", "sid": "sess1", "preferred_username": "alice",
			"groups": []any{"member", "ops"}, "auth_time": float64(s.AuthenticatedAt.Unix()),
			"amr": []any{"pwd", "otp", "mfa"}, "acr": "aal2", "iat": float64(now), "exp": float64(now + 300),
		}
		if !reflect.DeepEqual(map[string]any(claims), want) {
			t.Errorf("claims\n got %v\nwant %v", claims, want)
		}
	})
}

func TestAssertionRejectedWhenTamperedForAnotherAudienceOrExpired(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, backends[0].open(t)(t), clk, "")
	s := newSession(clk, "sess1")
	s.AMR = []string{session.AMRPassword}
	tok, err := iss.Assertion(s, "alice", "app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, iss.JWKS(), issuerURL, "app.example.com", clk.now())
	claims, err := v.verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if claims["acr"] != "aal1" {
		t.Errorf("acr %v, want aal1 for a password alone", claims["acr"])
	}

	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(payload), `"sub":"u1"`, `"sub":"u2"`, 1)
	if forged == string(payload) {
		t.Fatalf("payload %s has no sub u1", payload)
	}
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2]
	if _, err := v.verify(tampered); err == nil {
		t.Error("a tampered payload verifies")
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[10] ^= 1
	if _, err := v.verify(parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)); err == nil {
		t.Error("a tampered signature verifies")
	}
	if _, err := v.verify(parts[0] + "." + parts[1] + "."); err == nil {
		t.Error("an unsigned assertion verifies")
	}

	other := *v
	other.audience = "other.example.com"
	if _, err := other.verify(tok); err == nil {
		t.Error("the assertion verifies for another audience")
	}
	late := *v
	late.now = clk.now().Add(assertion.MaxLifetime + time.Second)
	if _, err := late.verify(tok); err == nil {
		t.Error("the assertion verifies after it expired")
	}
}

func TestAssertionNeverOutlivesTheSession(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, backends[0].open(t)(t), clk, "app.example.com")
	s := newSession(clk, "sess1")
	s.IdleDeadline = clk.now().Add(90 * time.Second)
	tok, err := iss.Assertion(s, "alice", "ignored.example.com")
	if err != nil {
		t.Fatal(err)
	}
	claims, err := newVerifier(t, iss.JWKS(), issuerURL, "app.example.com", clk.now()).verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if exp := int64(claims["exp"].(float64)); exp != s.IdleDeadline.Unix() {
		t.Errorf("exp %d, want the session's expiry %d", exp, s.IdleDeadline.Unix())
	}
	// Reused until then, however little time is left.
	clk.advance(80 * time.Second)
	again, err := iss.Assertion(s, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if again != tok {
		t.Error("an assertion that ends with its session was signed anew before the session's expiry")
	}
	clk.advance(10 * time.Second)
	if _, err := iss.Assertion(s, "alice", ""); !errors.Is(err, assertion.ErrExpired) {
		t.Error("an assertion was issued for an expired session")
	}
}

func TestAssertionReusedUntilHalfItsLifeOrTheSessionChanges(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, backends[0].open(t)(t), clk, "")
	s := newSession(clk, "sess1")
	first, err := iss.Assertion(s, "alice", "app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	get := func(s *session.Session, user, aud string) string {
		t.Helper()
		tok, err := iss.Assertion(s, user, aud)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	clk.advance(2 * time.Minute)
	if got := get(s, "alice", "app.example.com"); got != first {
		t.Error("not reused with 3 of 5 minutes left")
	}
	if got := get(s, "alice", "b.example.com"); got == first {
		t.Error("reused for another audience")
	}
	if got := get(s, "alice", "app.example.com"); got != first {
		t.Error("another audience pushed the first out of the cache")
	}
	for name, change := range map[string]func(s *session.Session){
		"token":    func(s *session.Session) { s.TokenHash[0] ^= 1 },
		"roles":    func(s *session.Session) { s.Roles = []string{"member"} },
		"amr":      func(s *session.Session) { s.AMR = []string{session.AMRPassword} },
		"authTime": func(s *session.Session) { s.AuthenticatedAt = s.AuthenticatedAt.Add(time.Second) },
	} {
		c := s.Clone()
		change(c)
		if got := get(c, "alice", "app.example.com"); got == first {
			t.Errorf("reused after a change of the session's %s", name)
		}
		// The entry is now the changed session's; the original gets a
		// fresh one.
		get(s, "alice", "app.example.com")
		first = get(s, "alice", "app.example.com")
	}
	if got := get(s, "alice2", "app.example.com"); got == first {
		t.Error("reused after a change of username")
	}
	first = get(s, "alice", "app.example.com")
	clk.advance(151 * time.Second)
	if got := get(s, "alice", "app.example.com"); got == first {
		t.Error("reused with less than half its lifetime left")
	}
}

func TestAssertionBadAudience(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, backends[0].open(t)(t), clk, "")
	for _, aud := range []string{"", "a b", "x\"y", strings.Repeat("a", 256), "é.example.com", "a\x00b"} {
		if _, err := iss.Assertion(newSession(clk, "s"), "alice", aud); !errors.Is(err, assertion.ErrAudience) {
			t.Errorf("audience %q: err %v, want ErrAudience", aud, err)
		}
	}
}

// TestAssertionKeyRotation follows a rotation on two instances sharing a
// database: the new key is published before either signs with it, what
// the old key signed verifies throughout the overlap, and the old key
// goes once that has expired.
func TestAssertionKeyRotation(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(t *testing.T) assertion.KeyStore) {
		ctx := context.Background()
		clk := newClock()
		a, b := newIssuer(t, open(t), clk, ""), newIssuer(t, open(t), clk, "")
		s := newSession(clk, "sess1")
		jwks := func(iss *assertion.Issuer) map[string]bool {
			return newVerifier(t, iss.JWKS(), issuerURL, "app", clk.now()).kids()
		}
		if ka, kb := jwks(a), jwks(b); len(ka) != 1 || !reflect.DeepEqual(ka, kb) {
			t.Fatalf("instances publish %v and %v, want the same one key", ka, kb)
		}
		oldTok, err := a.Assertion(s, "alice", "app")
		if err != nil {
			t.Fatal(err)
		}
		oldKid := kid(t, oldTok)
		if !jwks(b)[oldKid] {
			t.Fatalf("b does not publish a's signing key %s", oldKid)
		}

		newKey, err := assertion.Rotate(ctx, open(t), testConfig(clk, ""))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := assertion.Rotate(ctx, open(t), testConfig(clk, "")); !errors.Is(err, assertion.ErrKeyWaiting) {
			t.Errorf("a second rotation: err %v, want ErrKeyWaiting", err)
		}
		for _, iss := range []*assertion.Issuer{a, b} {
			if err := iss.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if k := jwks(iss); !k[oldKid] || !k[newKey.ID] || len(k) != 2 {
				t.Fatalf("after the rotation an instance publishes %v, want %s and %s", k, oldKid, newKey.ID)
			}
		}
		// Before the lead has passed, both still sign with the old key
		// (refreshing as they do in the background).
		clk.advance(9 * time.Minute)
		s2 := newSession(clk, "sess2")
		for _, iss := range []*assertion.Issuer{a, b} {
			if err := iss.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			tok, err := iss.Assertion(s2, "alice", "app")
			if err != nil {
				t.Fatal(err)
			}
			if kid(t, tok) != oldKid {
				t.Errorf("signed with %s before the new key's lead passed", kid(t, tok))
			}
		}
		lastOld, _ := b.Assertion(s2, "alice", "app")

		// After it, both sign with the new key; the old one's assertions
		// still verify against what either publishes.
		clk.advance(2 * time.Minute)
		s3 := newSession(clk, "sess3")
		for _, iss := range []*assertion.Issuer{a, b} {
			tok, err := iss.Assertion(s3, "alice", "app")
			if err != nil {
				t.Fatal(err)
			}
			if kid(t, tok) != newKey.ID {
				t.Errorf("signed with %s after the new key's lead, want %s", kid(t, tok), newKey.ID)
			}
			v := newVerifier(t, iss.JWKS(), issuerURL, "app", clk.now())
			for _, old := range []string{lastOld} {
				if _, err := v.verify(old); err != nil {
					t.Errorf("an assertion of the old key fails during the overlap: %v", err)
				}
			}
			if _, err := v.verify(tok); err != nil {
				t.Errorf("new assertion: %v", err)
			}
		}

		// Once the old key's last assertion has expired (plus skew), a
		// refresh deletes it and neither publishes it.
		clk.advance(assertion.MaxLifetime + time.Minute)
		for _, iss := range []*assertion.Issuer{a, b} {
			if err := iss.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if k := jwks(iss); k[oldKid] || !k[newKey.ID] {
				t.Errorf("after the overlap an instance publishes %v, want only %s", k, newKey.ID)
			}
		}
		keys, err := open(t).Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0].ID != newKey.ID {
			t.Errorf("stored keys %v, want only the new one", keys)
		}
	})
}

func TestAssertionRotatesOnSchedule(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(t *testing.T) assertion.KeyStore) {
		ctx := context.Background()
		clk := newClock()
		a, b := newIssuer(t, open(t), clk, ""), newIssuer(t, open(t), clk, "")
		first := kidOf(t, a, clk)
		// A key lives an hour and the lead is 10 minutes: at 50 minutes
		// the next key is published, by whichever instance refreshes.
		clk.advance(50 * time.Minute)
		var wg sync.WaitGroup
		for _, iss := range []*assertion.Issuer{a, b, a, b} {
			wg.Go(func() {
				if err := iss.Refresh(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		a.Refresh(ctx)
		b.Refresh(ctx)
		if ka, kb := newVerifier(t, a.JWKS(), issuerURL, "app", clk.now()).kids(), newVerifier(t, b.JWKS(), issuerURL, "app", clk.now()).kids(); len(ka) != 2 || !reflect.DeepEqual(ka, kb) {
			t.Fatalf("after the scheduled rotation the instances publish %v and %v, want the same two keys", ka, kb)
		}
		if got := kidOf(t, a, clk); got != first {
			t.Errorf("the new key signs before its lead: %s", got)
		}
		clk.advance(10 * time.Minute)
		a.Refresh(ctx)
		b.Refresh(ctx)
		if ga, gb := kidOf(t, a, clk), kidOf(t, b, clk); ga == first || ga != gb {
			t.Errorf("after the lead the instances sign with %s and %s, want the same new key", ga, gb)
		}
	})
}

// kidOf is the key iss signs a fresh session's assertion with at clk's now.
func kidOf(t *testing.T, iss *assertion.Issuer, clk *clock) string {
	t.Helper()
	tok, err := iss.Assertion(newSession(clk, "s"+clk.now().String()), "alice", "app")
	if err != nil {
		t.Fatal(err)
	}
	return kid(t, tok)
}

func TestAssertionConcurrentRotationsAddOneKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(t *testing.T) assertion.KeyStore) {
		ctx := context.Background()
		clk := newClock()
		stores := []assertion.KeyStore{open(t), open(t)}
		// Two instances start on an empty database at once: one makes
		// the first key.
		var wg sync.WaitGroup
		issuers := make([]*assertion.Issuer, 4)
		for i := range issuers {
			wg.Go(func() {
				iss, err := assertion.New(ctx, stores[i%2], testConfig(clk, ""))
				if err != nil {
					t.Error(err)
					return
				}
				t.Cleanup(iss.Close)
				issuers[i] = iss
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if keys, _ := stores[0].Keys(ctx); len(keys) != 1 {
			t.Fatalf("%d keys after concurrent starts, want 1", len(keys))
		}
		var added, waiting atomic.Int32
		for i := range 8 {
			wg.Go(func() {
				_, err := assertion.Rotate(ctx, stores[i%2], testConfig(clk, ""))
				switch {
				case err == nil:
					added.Add(1)
				case errors.Is(err, assertion.ErrKeyWaiting):
					waiting.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if added.Load() != 1 || waiting.Load() != 7 {
			t.Errorf("concurrent rotations: %d added a key and %d found one waiting, want 1 and 7", added.Load(), waiting.Load())
		}
		keys, err := stores[1].Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2 {
			t.Fatalf("%d keys after concurrent rotations, want 2", len(keys))
		}
		for _, iss := range issuers {
			if err := iss.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if string(iss.JWKS()) != string(issuers[0].JWKS()) {
				t.Errorf("instances publish different key sets:\n%s\n%s", iss.JWKS(), issuers[0].JWKS())
			}
		}
	})
}

func TestAssertionStopsSigningWithStaleKeys(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, backends[0].open(t)(t), clk, "")
	// Past the lead less the skew without a refresh, another instance
	// may have added a key that signs by now.
	clk.advance(9 * time.Minute)
	if _, err := iss.Assertion(newSession(clk, "s1"), "alice", "app"); !errors.Is(err, assertion.ErrNoKey) {
		t.Errorf("err %v, want ErrNoKey", err)
	}
	if err := iss.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Assertion(newSession(clk, "s2"), "alice", "app"); err != nil {
		t.Errorf("after a refresh: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []assertion.Config{
		{},
		{Issuer: "login.example.com"},
		{Issuer: issuerURL, Lifetime: 6 * time.Minute},
		{Issuer: issuerURL, PublishLead: time.Minute},
		{Issuer: issuerURL, KeyLifetime: time.Hour},
		{Issuer: issuerURL, Audience: "a b"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: valid", c)
		}
	}
	if err := (assertion.Config{Issuer: issuerURL}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func FuzzAudience(f *testing.F) {
	for _, s := range []string{"app.example.com", "app.example.com:8443", "[::1]:80", "a\"b", "ü", `\u0000`} {
		f.Add(s)
	}
	clk := newClock()
	ks, err := assertion.OpenSQLite(filepath.Join(f.TempDir(), "k.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer ks.Close()
	iss, err := assertion.New(context.Background(), ks, testConfig(clk, ""))
	if err != nil {
		f.Fatal(err)
	}
	defer iss.Close()
	f.Fuzz(func(t *testing.T, aud string) {
		tok, err := iss.Assertion(newSession(clk, "s"), "alice", aud)
		if errors.Is(err, assertion.ErrAudience) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		claims, err := newVerifier(t, iss.JWKS(), issuerURL, aud, clk.now()).verify(tok)
		if err != nil || claims["aud"] != aud {
			t.Fatalf("audience %q: claims %v, err %v", aud, claims, err)
		}
	})
}

func TestAssertionCacheIsBounded(t *testing.T) {
	clk := newClock()
	cfg := testConfig(clk, "")
	cfg.CacheSize = 10
	iss, err := assertion.New(context.Background(), backends[0].open(t)(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	first := make([]string, 100)
	for i := range first {
		if first[i], err = iss.Assertion(newSession(clk, fmt.Sprint("s", i)), "alice", "app"); err != nil {
			t.Fatal(err)
		}
	}
	// Newest first: the last one is surely still there, and at most the
	// 10 the cache holds are reused.
	reused := 0
	for i := len(first) - 1; i >= 0; i-- {
		if tok, _ := iss.Assertion(newSession(clk, fmt.Sprint("s", i)), "alice", "app"); tok == first[i] {
			reused++
		}
	}
	if reused > 10 || reused == 0 {
		t.Errorf("%d of 100 sessions' assertions were reused from a cache of 10, want 1 to 10", reused)
	}
}
