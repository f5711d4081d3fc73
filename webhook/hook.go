package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/sessiond/sessiond/audit"
)

// Hook is one endpoint that receives every audit event.
type Hook struct {
	// ID names the hook in the outbox, the metrics and the admin API: the
	// first 16 hex digits of the SHA-256 of its URL, so that every
	// instance configured with the URL agrees on it without sharing the
	// secret.
	ID string
	// URL is where events are POSTed.
	URL *url.URL
	// Key is the decoded secret the hook's messages are signed with.
	Key []byte
}

// NewHook returns the hook at rawURL (an absolute http:// or https://
// URL) signing with secret (whsec_…, see ParseSecret). Its errors name
// the URL without its user-info and never the secret.
func NewHook(rawURL, secret string) (Hook, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Hook{}, fmt.Errorf("webhook: %q: want an absolute http:// or https:// URL", redact(rawURL))
	}
	key, err := ParseSecret(secret)
	if err != nil {
		return Hook{}, fmt.Errorf("webhook %s: %w", Redact(u), err)
	}
	sum := sha256.Sum256([]byte(u.String()))
	return Hook{ID: hex.EncodeToString(sum[:8]), URL: u, Key: key}, nil
}

// Redact returns u as text with any user-info replaced by "xxxxx", for
// logs and the admin view.
func Redact(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	c := *u
	c.User = url.User("xxxxx")
	return c.String()
}

// redact is Redact of a URL that may not parse: the text up to the host
// is dropped if it holds an "@".
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return Redact(u)
	}
	return "(unparsable URL)"
}

// MessageID is the webhook-id of event id: the same for every attempt, so
// that receivers can drop duplicates.
func MessageID(eventID int64) string {
	return "evt_" + strconv.FormatInt(eventID, 10)
}

// Payload is the body of a webhook message, in Standard Webhooks' shape.
type Payload struct {
	// Type is the audit event's type ("session.created", "login.failed", …).
	Type string `json:"type"`
	// Timestamp is when the event happened.
	Timestamp time.Time `json:"timestamp"`
	// Data is the audit event: no token, password or code is ever in one.
	Data audit.Event `json:"data"`
}

// Body returns the JSON body that carries e.
func Body(e audit.Event) ([]byte, error) {
	return json.Marshal(Payload{Type: e.Type, Timestamp: e.Time.UTC(), Data: e})
}
