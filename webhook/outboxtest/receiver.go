package outboxtest

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/sessiond/sessiond/webhook"
)

// Receiver is a webhook endpoint on loopback that checks every message's
// signature with the Standard Webhooks' own Go library (not this
// project's signer) and counts messages by webhook-id.
type Receiver struct {
	t      testing.TB
	srv    *httptest.Server
	verify *standardwebhooks.Webhook
	// Status is the HTTP status the receiver answers with; 0 means 204.
	Status atomic.Int32

	mu       sync.Mutex
	got      map[string]int
	payloads map[string]webhook.Payload
	attempts int
	bad      []string
}

// NewReceiver starts a receiver that verifies with secret (whsec_…) and
// stops it when the test ends.
func NewReceiver(t testing.TB, secret string) *Receiver {
	return NewReceiverAt(t, secret, "127.0.0.1:0")
}

// NewReceiverAt starts a receiver listening on addr.
func NewReceiverAt(t testing.TB, secret, addr string) *Receiver {
	t.Helper()
	v, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{t: t, verify: v, got: map[string]int{}, payloads: map[string]webhook.Payload{}}
	r.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: r}}
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the receiver's address.
func (r *Receiver) URL() string { return r.srv.URL }

// Close stops the receiver.
func (r *Receiver) Close() { r.srv.Close() }

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if st := int(r.Status.Load()); st != 0 && st/100 != 2 {
		w.WriteHeader(st)
		return
	}
	if err != nil {
		r.bad = append(r.bad, "read: "+err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := r.verify.Verify(body, req.Header); err != nil {
		r.bad = append(r.bad, "verify "+req.Header.Get("webhook-id")+": "+err.Error())
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		r.bad = append(r.bad, "payload: "+err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id := req.Header.Get("webhook-id")
	r.got[id]++
	r.payloads[id] = p
	w.WriteHeader(http.StatusNoContent)
}

// Got returns how many times each webhook-id was accepted.
func (r *Receiver) Got() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.got))
	for k, v := range r.got {
		out[k] = v
	}
	return out
}

// Payload returns the payload accepted with webhook-id id.
func (r *Receiver) Payload(id string) (webhook.Payload, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.payloads[id]
	return p, ok
}

// Attempts counts every request, accepted or not.
func (r *Receiver) Attempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts
}

// Bad lists the messages refused for a bad signature or payload.
func (r *Receiver) Bad() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

// WaitFor waits up to d for the receiver to have accepted n distinct
// messages, and fails the test if it has not.
func (r *Receiver) WaitFor(n int, d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for len(r.Got()) < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("receiver got %d distinct messages in %v, want %d", len(r.Got()), d, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
