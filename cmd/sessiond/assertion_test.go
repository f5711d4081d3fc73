package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestAssertionTwoInstancesAndKeysCommands runs two instances with
// --assertion on one database: both publish the same key set, and an
// assertion one signs verifies (with golang-jwt, not the signing library)
// against the key set the other serves. keys rotate publishes one new key
// whatever the number of rotations, and keys list shows it waiting.
func TestAssertionTwoInstancesAndKeysCommands(t *testing.T) {
	args := []string{"--assertion", "--public-url", "https://login.example.com"}
	a := start(t, args...)
	b := startIn(t, a.dir, args...)
	ja, jb := a.do(req{method: "GET", path: "/.well-known/jwks.json"}), b.do(req{method: "GET", path: "/.well-known/jwks.json"})
	if ja.StatusCode != 200 || string(ja.body) != string(jb.body) {
		t.Fatalf("the instances publish %d %s and %d %s, want the same key set", ja.StatusCode, ja.body, jb.StatusCode, jb.body)
	}
	token := a.login("admin", adminPassword)
	r := a.do(req{method: "GET", path: "/resolve", cookie: token, header: map[string]string{"X-Forwarded-Host": "app.example.com"}})
	tok := r.Header.Get("X-Session-Assertion")
	if r.StatusCode != 200 || tok == "" {
		t.Fatalf("resolve: %d, assertion %q", r.StatusCode, tok)
	}
	claims := verifyWith(t, jb.body, tok, "app.example.com")
	if claims["preferred_username"] != "admin" || fmt.Sprint(claims["groups"]) != "[admin]" {
		t.Errorf("claims %v", claims)
	}
	if strings.Contains(a.logs.String(), tok) || strings.Contains(a.logs.String(), `"d":`) {
		t.Error("the log holds the assertion or a private key")
	}

	store := "sqlite:" + a.db
	code, out, errOut := runCLI(t, nil, "keys", "rotate", "--store", store)
	if code != 0 || !strings.Contains(out, "published key ") {
		t.Fatalf("keys rotate: %d %q %q", code, out, errOut)
	}
	code, out, _ = runCLI(t, nil, "keys", "rotate", "--store", store)
	if code != 0 || !strings.Contains(out, "already published") {
		t.Errorf("keys rotate again: %d %q", code, out)
	}
	code, out, _ = runCLI(t, nil, "keys", "list", "--store", store)
	if code != 0 || strings.Count(out, "signing") != 1 || strings.Count(out, "waiting") != 1 {
		t.Errorf("keys list: %d\n%s", code, out)
	}
}

func TestAssertionNeedsPublicURL(t *testing.T) {
	code, _, errOut := runCLI(t, nil, "serve", "--assertion", "--listen", "127.0.0.1:0", "--store", "memory:", "--users", "sqlite:"+t.TempDir()+"/u.db")
	if code == 0 || !strings.Contains(errOut, "--assertion needs --public-url") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// verifyWith verifies tok for audience against the JWK Set jwks, keys
// built by hand, and returns its claims.
func verifyWith(t *testing.T, jwks []byte, tok, audience string) jwt.MapClaims {
	t.Helper()
	var set struct {
		Keys []struct{ Kid, X, Y string } `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range set.Keys {
		x, _ := base64.RawURLEncoding.DecodeString(k.X)
		y, _ := base64.RawURLEncoding.DecodeString(k.Y)
		keys[k.Kid] = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(tk *jwt.Token) (any, error) {
		if k := keys[fmt.Sprint(tk.Header["kid"])]; k != nil {
			return k, nil
		}
		return nil, fmt.Errorf("unknown kid %v", tk.Header["kid"])
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer("https://login.example.com"), jwt.WithAudience(audience), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return claims
}

// TestAssertionKeySecretFile: with --assertion-key-secret-file the keys
// are sealed, serve and keys rotate work with the file, and without the
// secret the server refuses to start rather than sign with what it cannot
// open. A bad file is refused without quoting it.
func TestAssertionKeySecretFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "secrets")
	if err := os.WriteFile(good, []byte("# assertion key secrets\n"+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("not-a-secret-c2VjcmV0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--assertion", "--public-url", "https://login.example.com", "--assertion-key-secret-file", good}
	a := start(t, args...)
	token := a.login("admin", adminPassword)
	if r := a.do(req{method: "GET", path: "/resolve", cookie: token}); r.StatusCode != 200 || r.Header.Get("X-Session-Assertion") == "" {
		t.Fatalf("resolve: %d, assertion %q", r.StatusCode, r.Header.Get("X-Session-Assertion"))
	}
	a.stop()
	store := "sqlite:" + a.db
	if code, out, errOut := runCLI(t, nil, "keys", "rotate", "--store", store, "--assertion-key-secret-file", good); code != 0 {
		t.Fatalf("keys rotate: %d %s %s", code, out, errOut)
	}
	code, out, _ := runCLI(t, nil, "keys", "list", "--store", store)
	if code != 0 || strings.Count(out, " sealed") != 2 || strings.Contains(out, "unsealed") {
		t.Errorf("keys list: %d\n%s", code, out)
	}
	code, _, errOut := runCLI(t, nil, append([]string{"serve", "--listen", "127.0.0.1:0", "--store", store}, args[:3]...)...)
	if code == 0 || !strings.Contains(errOut, "not configured") {
		t.Errorf("serve without the secret: exit %d: %s", code, errOut)
	}
	code, _, errOut = runCLI(t, nil, "serve", "--listen", "127.0.0.1:0", "--store", store, "--assertion", "--public-url", "https://login.example.com", "--assertion-key-secret-file", bad)
	if code == 0 || !strings.Contains(errOut, "want 32 random bytes in base64") || strings.Contains(errOut, "c2VjcmV0") {
		t.Errorf("a bad secret file: exit %d: %s", code, errOut)
	}
}
