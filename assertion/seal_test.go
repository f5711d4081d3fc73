package assertion_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/sessiond/sessiond/assertion"
)

func secret() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// TestSealedKeys: with key secrets, the stored private keys are sealed
// (no PKCS#8 in the database), bound to their key IDs, and open with any
// configured secret; without the secret that sealed them they do not.
func TestSealedKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(t *testing.T) assertion.KeyStore) {
		ctx := context.Background()
		clk := newClock()
		old, cur := secret(), secret()
		cfg := testConfig(clk, "")
		cfg.KeySecrets = [][]byte{old}
		ks := open(t)
		iss, err := assertion.New(ctx, ks, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(iss.Close)
		keys, err := ks.Keys(ctx)
		if err != nil || len(keys) != 1 {
			t.Fatalf("%d keys, %v", len(keys), err)
		}
		if _, err := x509.ParsePKCS8PrivateKey(keys[0].PrivateKey); err == nil || bytes.Contains(keys[0].PrivateKey, []byte{0x30, 0x81}) {
			t.Fatal("the stored private key is readable PKCS#8")
		}
		if info := assertion.Describe(keys, clk.now()); !info[0].Sealed {
			t.Error("Describe does not say the key is sealed")
		}
		tok, err := iss.Assertion(newSession(clk, "s1"), "alice", "app")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newVerifier(t, iss.JWKS(), issuerURL, "app", clk.now()).verify(tok); err != nil {
			t.Fatal(err)
		}

		// A new secret first, the old one still configured: the old key
		// opens, a rotation seals with the new one.
		cfg.KeySecrets = [][]byte{cur, old}
		if _, err := assertion.New(ctx, open(t), cfg); err != nil {
			t.Fatalf("with the old secret second: %v", err)
		}
		if _, err := assertion.Rotate(ctx, open(t), cfg); err != nil {
			t.Fatal(err)
		}
		// Without the old secret, the old key does not open.
		cfg.KeySecrets = [][]byte{cur}
		if _, err := assertion.New(ctx, open(t), cfg); err == nil || !strings.Contains(err.Error(), "not configured") {
			t.Errorf("without the secret that sealed a key: err %v, want one that says the secret is not configured", err)
		}
		// Nor without any secret.
		cfg.KeySecrets = nil
		if _, err := assertion.New(ctx, open(t), cfg); err == nil {
			t.Error("sealed keys open without a secret")
		}
	})
}

// TestSealedKeyBoundToItsID: a sealed private key moved to another key's
// row does not open.
func TestSealedKeyBoundToItsID(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	cfg := testConfig(clk, "")
	cfg.KeySecrets = [][]byte{secret()}
	ks := backends[0].open(t)(t)
	if _, err := assertion.Rotate(ctx, ks, cfg); err != nil { // the first key
		t.Fatal(err)
	}
	if _, err := assertion.Rotate(ctx, ks, cfg); err != nil { // the second
		t.Fatal(err)
	}
	err := ks.Update(ctx, func(keys []assertion.StoredKey) ([]assertion.StoredKey, []string, error) {
		a, b := keys[0], keys[1]
		a.PrivateKey, b.PrivateKey = b.PrivateKey, a.PrivateKey
		return []assertion.StoredKey{a, b}, []string{a.ID, b.ID}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := assertion.New(ctx, ks, cfg); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Errorf("swapped sealed keys: err %v, want one that says the key does not open", err)
	}
}
