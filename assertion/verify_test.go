package assertion_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// verifier checks assertions as an app would, with a JWT library other
// than the one that signs them (golang-jwt, against go-jose) and keys
// built by hand from the published JWK Set.
type verifier struct {
	keys     map[string]*ecdsa.PublicKey
	issuer   string
	audience string
	now      time.Time
}

// newVerifier reads the JWK Set jwks, failing the test if any key is not
// a public P-256 ES256 signing key.
func newVerifier(t *testing.T, jwks []byte, issuer, audience string, now time.Time) *verifier {
	t.Helper()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("JWKS %s: %v", jwks, err)
	}
	v := &verifier{keys: map[string]*ecdsa.PublicKey{}, issuer: issuer, audience: audience, now: now}
	for _, k := range set.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Fatalf("the JWKS publishes the private member %q: %v", private, k)
			}
		}
		if k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" {
			t.Fatalf("unexpected key %v", k)
		}
		x, err1 := base64.RawURLEncoding.DecodeString(k["x"].(string))
		y, err2 := base64.RawURLEncoding.DecodeString(k["y"].(string))
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			t.Fatalf("bad coordinates in %v", k)
		}
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if !pub.Curve.IsOnCurve(pub.X, pub.Y) {
			t.Fatalf("key %v is not on P-256", k)
		}
		v.keys[k["kid"].(string)] = pub
	}
	return v
}

// kids returns the IDs of the keys the verifier knows.
func (v *verifier) kids() map[string]bool {
	m := map[string]bool{}
	for k := range v.keys {
		m[k] = true
	}
	return m
}

// verify returns the claims of tok if it is a valid assertion for the
// verifier's issuer and audience at its time, signed by one of its keys.
func (v *verifier) verify(tok string) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(tk *jwt.Token) (any, error) {
		if typ, _ := tk.Header["typ"].(string); typ != "JWT" {
			return nil, fmt.Errorf("typ %q", typ)
		}
		kid, _ := tk.Header["kid"].(string)
		k := v.keys[kid]
		if k == nil {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		return k, nil
	},
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return v.now }),
	)
	if err != nil {
		return nil, err
	}
	return claims, nil
}

// kid returns the kid header of tok, unverified.
func kid(t *testing.T, tok string) string {
	t.Helper()
	tk, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := tk.Header["kid"].(string)
	return k
}
