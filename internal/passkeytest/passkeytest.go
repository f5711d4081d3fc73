// Package passkeytest is a software WebAuthn authenticator for tests: it
// answers a relying party's registration and sign-in options as a browser
// with a passkey would (ES256, "none" attestation), and lets a test forge
// what a real one never sends (another origin, a sign count that goes
// backwards, no user verification).
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
)

// Authenticator holds one passkey, made by Create.
type Authenticator struct {
	// Origin is the origin the browser reports in clientDataJSON.
	Origin string
	// UserVerified says the authenticator verifies its user (a PIN or a
	// biometric); BackupEligible and BackupState that the passkey is
	// synced and backed up.
	UserVerified, BackupEligible, BackupState bool
	// SignCount is the count the next assertion reports, then raised by
	// one; 0 keeps it at 0, as synced passkeys do.
	SignCount uint32

	key        *ecdsa.PrivateKey
	ID         []byte // the credential ID
	UserHandle []byte
	rpID       string
}

// New returns an authenticator at origin that verifies its user, with a
// sign count starting at 1.
func New(origin string) *Authenticator {
	return &Authenticator{Origin: origin, UserVerified: true, SignCount: 1}
}

var b64 = base64.RawURLEncoding

// options is what Create and Get read of the server's options.
type options struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		RPID string `json:"rpId"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
	} `json:"publicKey"`
}

func readOptions(opts []byte) (*options, error) {
	var o options
	if err := json.Unmarshal(opts, &o); err != nil {
		return nil, fmt.Errorf("passkeytest: options: %w", err)
	}
	if o.PublicKey.Challenge == "" {
		return nil, fmt.Errorf("passkeytest: options without a challenge: %s", opts)
	}
	return &o, nil
}

func (a *Authenticator) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.Origin, "crossOrigin": false})
	return b
}

func (a *Authenticator) flags(attested bool) byte {
	f := byte(0x01) // user present
	if a.UserVerified {
		f |= 0x04
	}
	if a.BackupEligible {
		f |= 0x08
	}
	if a.BackupState {
		f |= 0x10
	}
	if attested {
		f |= 0x40
	}
	return f
}

func (a *Authenticator) authData(attested bool) []byte {
	h := sha256.Sum256([]byte(a.rpID))
	out := append(h[:], a.flags(attested))
	out = binary.BigEndian.AppendUint32(out, a.SignCount)
	if a.SignCount > 0 {
		a.SignCount++
	}
	return out
}

// Create answers registration options (the JSON {"publicKey":{…}} a
// server sends) with a new passkey, and returns the credential as the
// browser's PublicKeyCredential.toJSON() has it.
func (a *Authenticator) Create(opts []byte) ([]byte, error) {
	o, err := readOptions(opts)
	if err != nil {
		return nil, err
	}
	if a.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	a.ID = make([]byte, 32)
	rand.Read(a.ID)
	if a.UserHandle, err = b64.DecodeString(o.PublicKey.User.ID); err != nil {
		return nil, fmt.Errorf("passkeytest: user handle: %w", err)
	}
	a.rpID = o.PublicKey.RP.ID
	x, y := make([]byte, 32), make([]byte, 32)
	a.key.X.FillBytes(x)
	a.key.Y.FillBytes(y)
	cose, err := webauthncbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
	if err != nil {
		return nil, err
	}
	auth := a.authData(true)
	auth = append(auth, make([]byte, 16)...) // AAGUID
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(a.ID)))
	auth = append(auth, a.ID...)
	auth = append(auth, cose...)
	att, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": auth})
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.ID), "rawId": b64.EncodeToString(a.ID), "type": "public-key",
		"authenticatorAttachment": "platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(a.clientData("webauthn.create", o.PublicKey.Challenge)),
			"attestationObject": b64.EncodeToString(att),
			"transports":        []string{"internal"},
		},
	})
}

// Get answers sign-in options with an assertion of the passkey made by
// Create, as the browser's PublicKeyCredential.toJSON() has it.
func (a *Authenticator) Get(opts []byte) ([]byte, error) {
	o, err := readOptions(opts)
	if err != nil {
		return nil, err
	}
	if a.key == nil {
		return nil, fmt.Errorf("passkeytest: Get before Create")
	}
	if o.PublicKey.RPID != "" && o.PublicKey.RPID != a.rpID {
		return nil, fmt.Errorf("passkeytest: options for relying party %q, the passkey is for %q", o.PublicKey.RPID, a.rpID)
	}
	cd := a.clientData("webauthn.get", o.PublicKey.Challenge)
	auth := a.authData(false)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, auth...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.ID), "rawId": b64.EncodeToString(a.ID), "type": "public-key",
		"authenticatorAttachment": "platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(cd),
			"authenticatorData": b64.EncodeToString(auth),
			"signature":         b64.EncodeToString(sig),
			"userHandle":        b64.EncodeToString(a.UserHandle),
		},
	})
}
