package assertion

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// sealedPrefix begins a private key sealed with a key-encryption key
// (Config.KeySecrets). An unsealed one is PKCS#8 DER, which begins with
// 0x30 (an ASN.1 SEQUENCE).
var sealedPrefix = []byte("sessiond-sealed-v1:")

// keyring seals and opens private keys with the key-encryption keys of
// Config.KeySecrets: AES-256-GCM, a random nonce per key, the key ID as
// associated data (so a sealed key copied to another row does not open),
// and an 8-byte fingerprint of the secret that sealed it, so that a
// secret missing from the ring is named as such. The first secret seals;
// any of them opens. Without secrets, keys are stored unsealed.
type keyring struct {
	secrets [][]byte
}

// fingerprint is what identifies a secret in a sealed key: the first 8
// bytes of its SHA-256 (of a 32-byte random secret, it tells nothing).
func fingerprint(secret []byte) []byte {
	sum := sha256.Sum256(secret)
	return sum[:8]
}

func (kr keyring) aead(secret []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(secret)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal returns der, the private key of key kid, sealed with the first
// secret, or der itself if there is none.
func (kr keyring) seal(kid string, der []byte) ([]byte, error) {
	if len(kr.secrets) == 0 {
		return der, nil
	}
	g, err := kr.aead(kr.secrets[0])
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	rand.Read(nonce)
	out := append(append(append([]byte{}, sealedPrefix...), fingerprint(kr.secrets[0])...), nonce...)
	return g.Seal(out, nonce, der, []byte(kid)), nil
}

// open returns the PKCS#8 DER of a stored private key of key kid,
// unsealing it if it is sealed.
func (kr keyring) open(kid string, stored []byte) ([]byte, error) {
	rest, sealed := bytes.CutPrefix(stored, sealedPrefix)
	if !sealed {
		return stored, nil
	}
	if len(rest) < 8+12 {
		return nil, errors.New("the sealed private key is truncated")
	}
	fp, rest := rest[:8], rest[8:]
	for _, s := range kr.secrets {
		if !bytes.Equal(fingerprint(s), fp) {
			continue
		}
		g, err := kr.aead(s)
		if err != nil {
			return nil, err
		}
		der, err := g.Open(nil, rest[:g.NonceSize()], rest[g.NonceSize():], []byte(kid))
		if err != nil {
			return nil, errors.New("the sealed private key does not open: it was altered, or moved from another key")
		}
		return der, nil
	}
	return nil, fmt.Errorf("the private key is sealed with a secret that is not configured (fingerprint %x)", fp)
}

// sealed reports whether a stored private key is sealed.
func sealed(stored []byte) bool { return bytes.HasPrefix(stored, sealedPrefix) }
