package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiond/sessiond/assertion"
	"github.com/sessiond/sessiond/store/memstore"
)

// newAssertions is an Issuer of https://login.example.com over keys in a
// SQLite file of the test's own, closed when the test ends.
func newAssertions(tb testing.TB) *assertion.Issuer {
	tb.Helper()
	ks, err := assertion.OpenSQLite(filepath.Join(tb.TempDir(), "keys.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ks.Close() })
	iss, err := assertion.New(context.Background(), ks, assertion.Config{Issuer: "https://login.example.com"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(iss.Close)
	return iss
}

// verifyAssertion checks tok as an app would, with golang-jwt (not the
// library that signs) and keys built from the JWK Set that h serves at
// /.well-known/jwks.json, and returns its claims.
func verifyAssertion(t *testing.T, h http.Handler, tok, audience string) (jwt.MapClaims, error) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "https://login.example.com/.well-known/jwks.json", nil))
	if w.Code != 200 {
		t.Fatalf("GET /.well-known/jwks.json: %d %s", w.Code, w.Body)
	}
	var set struct {
		Keys []struct{ Kid, Kty, Crv, X, Y, D string } `json:"keys"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range set.Keys {
		x, _ := base64.RawURLEncoding.DecodeString(k.X)
		y, _ := base64.RawURLEncoding.DecodeString(k.Y)
		if k.D != "" || k.Kty != "EC" || k.Crv != "P-256" {
			t.Fatalf("JWKS key %+v", k)
		}
		keys[k.Kid] = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(tk *jwt.Token) (any, error) {
		if k := keys[fmt.Sprint(tk.Header["kid"])]; k != nil {
			return k, nil
		}
		return nil, fmt.Errorf("unknown kid %v", tk.Header["kid"])
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer("https://login.example.com"), jwt.WithAudience(audience), jwt.WithExpirationRequired())
	return claims, err
}

func TestResolveAssertion(t *testing.T) {
	ts := newTestServerWith(t, memstore.New(), Config{Assertions: newAssertions(t)})
	r := ts.resolveRequests(t, 1)[0]
	resolve := func(peer string, header map[string]string) *httptest.ResponseRecorder {
		req := r.Clone(context.Background())
		req.RemoteAddr = peer
		for k, v := range header {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		ts.ServeHTTP(w, req)
		return w
	}
	for _, c := range []struct {
		name, peer string
		header     map[string]string
		aud        string
	}{
		{"traefik", "127.0.0.1:1", map[string]string{"X-Forwarded-Host": "App.Example.com"}, "app.example.com"},
		{"nginx", "127.0.0.1:1", map[string]string{"X-Original-URL": "https://app.example.com:8443/x?y"}, "app.example.com:8443"},
		{"envoy", "127.0.0.1:1", nil, "sessiond.internal"},
		{"untrusted peer", "192.0.2.7:1", map[string]string{"X-Forwarded-Host": "evil.example.com"}, "sessiond.internal"},
	} {
		w := resolve(c.peer, c.header)
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", c.name, w.Code, w.Body)
		}
		tok := w.Header().Get("X-Session-Assertion")
		claims, err := verifyAssertion(t, ts, tok, c.aud)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if claims["sub"] != w.Header().Get("X-User-Id") || claims["sid"] != w.Header().Get("X-Session-Id") || claims["preferred_username"] != "user000" {
			t.Errorf("%s: claims %v do not match the identity headers %v", c.name, claims, w.Header())
		}
		if again := resolve(c.peer, c.header).Header().Get("X-Session-Assertion"); again != tok {
			t.Errorf("%s: the assertion was not reused on the next request", c.name)
		}
	}
	if w := resolve("127.0.0.1:1", map[string]string{"X-Forwarded-Host": "bad host"}); w.Code != 400 || w.Header().Get("X-Session-Assertion") != "" || w.Header().Get("Remote-User") != "" {
		t.Errorf("a bad original host: %d %v, want 400 without identity", w.Code, w.Header())
	}
	if n := ts.metric(t, "sessiond_resolve_total", "bad_host"); n != 1 {
		t.Errorf("sessiond_resolve_total{outcome=bad_host} = %v, want 1", n)
	}

	// Revoked: no assertion, old or new.
	sess, err := ts.sessions.LoadContext(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.sessions.Revoke(context.Background(), sess.ID, "test", "revoked"); err != nil {
		t.Fatal(err)
	}
	if w := resolve("127.0.0.1:1", map[string]string{"X-Forwarded-Host": "app.example.com"}); w.Code != 401 || w.Header().Get("X-Session-Assertion") != "" {
		t.Errorf("after revocation: %d with X-Session-Assertion %q, want 401 without", w.Code, w.Header().Get("X-Session-Assertion"))
	}
}

func TestJWKSServedPublicOnly(t *testing.T) {
	ts := newTestServerWith(t, memstore.New(), Config{Assertions: newAssertions(t)})
	w := httptest.NewRecorder()
	ts.ServeHTTP(w, httptest.NewRequest("GET", "/.well-known/jwks.json", nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/jwk-set+json" || w.Header().Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("%s: %v", w.Body, err)
	}
	for k := range set.Keys[0] {
		if k != "kty" && k != "crv" && k != "x" && k != "y" && k != "kid" && k != "alg" && k != "use" {
			t.Errorf("the JWKS key has the member %q", k)
		}
	}
	// Without assertions there is no key set.
	plain := newTestServer(t, memstore.New())
	w = httptest.NewRecorder()
	plain.ServeHTTP(w, httptest.NewRequest("GET", "/.well-known/jwks.json", nil))
	if w.Code != 404 {
		t.Errorf("without assertions: %d, want 404", w.Code)
	}
}

// TestUpstreamAssertion: the app gets sessiond's assertion and never the
// client's, in any spelling; the key set is sessiond's path with
// assertions on, and the app's without.
func TestUpstreamAssertion(t *testing.T) {
	f := newUpstreamFixture(t, Config{Assertions: newAssertions(t)})
	host := strings.TrimPrefix(f.url, "http://")
	for _, spelled := range spellings("X-Session-Assertion") {
		header := map[string][]string{"Cookie": {f.cookie()}, spelled: {"eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0."}}
		if res, body := f.do(t, "GET", "/app", header, nil); res.StatusCode != 200 || body != "app" {
			t.Fatalf("%s: %d %q", spelled, res.StatusCode, body)
		}
		got := f.app.last(t)
		var values []string
		for k, vs := range got.Header {
			if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "X-Session-Assertion") {
				values = append(values, vs...)
			}
		}
		if len(values) != 1 {
			t.Fatalf("%s: the app got assertions %q, want sessiond's alone", spelled, values)
		}
		claims, err := verifyAssertion(t, f.Server, values[0], host)
		if err != nil || claims["sub"] != f.userID {
			t.Errorf("%s: the app's assertion: claims %v, err %v", spelled, claims, err)
		}
	}
	before := len(f.app.requests())
	if res, _ := f.do(t, "GET", "/.well-known/jwks.json", nil, nil); res.StatusCode != 200 || len(f.app.requests()) != before {
		t.Errorf("GET /.well-known/jwks.json: %d, app reached %v; want sessiond's 200", res.StatusCode, len(f.app.requests()) != before)
	}

	plain := newUpstreamFixture(t, Config{})
	if res, body := plain.do(t, "GET", "/.well-known/jwks.json", map[string][]string{"Cookie": {plain.cookie()}}, nil); res.StatusCode != 200 || body != "app" {
		t.Errorf("without assertions GET /.well-known/jwks.json: %d %q, want the app's", res.StatusCode, body)
	}
}
