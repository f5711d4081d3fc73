package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"
)

// StoredKey is a signing key as a KeyStore keeps it.
type StoredKey struct {
	// ID is the key ID (the JWS kid): the RFC 7638 thumbprint of the
	// public key, base64url.
	ID string
	// PrivateKey is the ECDSA P-256 private key, PKCS#8 DER, or that
	// sealed with a key-encryption key (Config.KeySecrets).
	PrivateKey []byte
	// CreatedAt is when the key was made, and published.
	CreatedAt time.Time
	// SignFrom is when the key starts signing. It signs until the next
	// key's SignFrom.
	SignFrom time.Time
}

// KeyStore keeps the signing keys, shared by every instance. Both of
// sessiond's (OpenSQLite, OpenPostgres) are safe for concurrent use by any
// number of processes.
type KeyStore interface {
	// Keys returns every stored key.
	Keys(ctx context.Context) ([]StoredKey, error)
	// Update calls f with every stored key, holding a lock that every
	// other Update of the same database waits for, and then deletes the
	// keys whose IDs f names and inserts the ones it adds, all in one
	// transaction. An error from f is returned and changes nothing.
	Update(ctx context.Context, f func(keys []StoredKey) (add []StoredKey, del []string, err error)) error
	// Close releases the store's connections.
	Close() error
}

// clockSkew is how far the clocks of sessiond's instances and of the
// verifiers may differ; the key schedule leaves this much room.
const clockSkew = time.Minute

// newStoredKey makes a new P-256 key, published at now and signing from
// signFrom, its private key sealed with ring's first secret if any.
func newStoredKey(now, signFrom time.Time, ring keyring) (StoredKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return StoredKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return StoredKey{}, err
	}
	kid := thumbprint(&priv.PublicKey)
	if der, err = ring.seal(kid, der); err != nil {
		return StoredKey{}, err
	}
	return StoredKey{ID: kid, PrivateKey: der, CreatedAt: now.UTC(), SignFrom: signFrom.UTC()}, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of a P-256 public key,
// base64url: SHA-256 of its required members in lexical order.
func thumbprint(pub *ecdsa.PublicKey) string {
	b, _ := pub.Bytes() // 0x04 || X || Y, 32 bytes each for P-256
	enc := base64.RawURLEncoding
	js := `{"crv":"P-256","kty":"EC","x":"` + enc.EncodeToString(b[1:33]) + `","y":"` + enc.EncodeToString(b[33:65]) + `"}`
	sum := sha256.Sum256([]byte(js))
	return enc.EncodeToString(sum[:])
}

// parseKey decodes a stored key's private key, unsealing it with ring.
func parseKey(k StoredKey, ring keyring) (*ecdsa.PrivateKey, error) {
	der, err := ring.open(k.ID, k.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	p, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	priv, ok := p.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key %s: not an ECDSA P-256 key", k.ID)
	}
	if thumbprint(&priv.PublicKey) != k.ID {
		return nil, fmt.Errorf("key %s: the ID is not the key's thumbprint", k.ID)
	}
	return priv, nil
}

// schedule is the key timing an Issuer follows.
type schedule struct {
	lead        time.Duration // published this long before signing
	keyLifetime time.Duration // a key signs for about this long
	retention   time.Duration // a key stays published this long after it stops signing
	ring        keyring       // seals new keys' private keys
}

// sortKeys orders keys by SignFrom, then ID.
func sortKeys(keys []StoredKey) {
	slices.SortFunc(keys, func(a, b StoredKey) int {
		if c := a.SignFrom.Compare(b.SignFrom); c != 0 {
			return c
		}
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
}

// signerAt is the index in keys (sorted by sortKeys) of the key that signs
// at now: the one with the latest SignFrom not after now; -1 if none.
func signerAt(keys []StoredKey, now time.Time) int {
	i := -1
	for j, k := range keys {
		if !k.SignFrom.After(now) {
			i = j
		}
	}
	return i
}

// expired reports whether keys[i] (sorted) stopped signing so long ago
// that nothing it signed is still valid: its successor has signed for
// sched.retention.
func (sc schedule) expired(keys []StoredKey, i int, now time.Time) bool {
	return i+1 < len(keys) && !keys[i+1].SignFrom.Add(sc.retention).After(now)
}

// plan decides the changes to the stored keys at now: the first key, if
// there is none (signing at once: no verifier can hold an older set); a
// new key published now and signing after the lead, if the signing key is
// due for rotation (force: at once) and no key is waiting already; and
// the deletion of expired keys: the keys to add and the IDs to delete.
func (sc schedule) plan(keys []StoredKey, now time.Time, force bool) (add []StoredKey, del []string, err error) {
	keys = slices.Clone(keys)
	sortKeys(keys)
	for i := range keys {
		if sc.expired(keys, i, now) {
			del = append(del, keys[i].ID)
		}
	}
	cur := signerAt(keys, now)
	switch {
	case cur == -1 && len(keys) == 0:
		// Signing from a skew earlier, so that an instance whose clock
		// is behind signs with it at once too.
		k, err := newStoredKey(now, now.Add(-clockSkew), sc.ring)
		return []StoredKey{k}, del, err
	case cur == -1 || cur < len(keys)-1:
		return nil, del, nil // a key is waiting to sign
	case force || !keys[cur].SignFrom.Add(sc.keyLifetime-sc.lead).After(now):
		k, err := newStoredKey(now, now.Add(sc.lead), sc.ring)
		return []StoredKey{k}, del, err
	}
	return nil, del, nil
}

// ErrKeyWaiting is returned by Rotate when a key is already waiting to
// start signing: a rotation would only push it further off.
var ErrKeyWaiting = errors.New("assertion: a new key is already published and waiting to sign")

// KeyInfo describes a stored key, without its private key.
type KeyInfo struct {
	ID                  string
	CreatedAt, SignFrom time.Time
	// State is "waiting" (published, not yet signing), "signing", or
	// "retired" (published until what it signed has expired).
	State string
	// Sealed says the private key is sealed (Config.KeySecrets).
	Sealed bool
}

// Describe lists keys at now, oldest first.
func Describe(keys []StoredKey, now time.Time) []KeyInfo {
	keys = slices.Clone(keys)
	sortKeys(keys)
	cur := signerAt(keys, now)
	out := make([]KeyInfo, len(keys))
	for i, k := range keys {
		state := "retired"
		switch {
		case i == cur:
			state = "signing"
		case i > cur:
			state = "waiting"
		}
		out[i] = KeyInfo{ID: k.ID, CreatedAt: k.CreatedAt, SignFrom: k.SignFrom, State: state, Sealed: sealed(k.PrivateKey)}
	}
	return out
}
