package webhook_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/webhook"
)

func TestParseSecret(t *testing.T) {
	b := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"whsec_" + b(24), true},
		{"whsec_" + b(32), true},
		{"whsec_" + b(64), true},
		{"whsec_" + b(23), false},
		{"whsec_" + b(65), false},
		{b(32), false},
		{"whsec_" + strings.TrimRight(b(32), "="), false},
		{"whsec_" + base64.URLEncoding.EncodeToString([]byte(strings.Repeat("\xff", 32))), false},
		{"whsec_", false},
		{"", false},
	} {
		key, err := webhook.ParseSecret(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseSecret(%q) = %v, want ok %v", tc.in, err, tc.ok)
		}
		if err != nil && err != webhook.ErrSecret {
			t.Errorf("ParseSecret(%q) = %v, want ErrSecret", tc.in, err)
		}
		if err == nil && len(key) < webhook.MinSecretBytes {
			t.Errorf("ParseSecret(%q) = %d bytes", tc.in, len(key))
		}
	}
}

func TestNewSecretParses(t *testing.T) {
	s1, s2 := webhook.NewSecret(), webhook.NewSecret()
	if s1 == s2 {
		t.Fatal("two new secrets are equal")
	}
	key, err := webhook.ParseSecret(s1)
	if err != nil || len(key) != 32 {
		t.Fatalf("ParseSecret(NewSecret()) = %d bytes, %v", len(key), err)
	}
}

func FuzzParseSecret(f *testing.F) {
	f.Add(webhook.NewSecret())
	f.Add("whsec_")
	f.Add("whsec_====")
	f.Fuzz(func(t *testing.T, s string) {
		key, err := webhook.ParseSecret(s)
		if err != nil {
			if err != webhook.ErrSecret { // a fixed text, which quotes nothing
				t.Fatalf("error %v, want ErrSecret", err)
			}
			return
		}
		if len(key) < webhook.MinSecretBytes || len(key) > webhook.MaxSecretBytes {
			t.Fatalf("accepted a %d-byte key", len(key))
		}
		if webhook.SecretPrefix+base64.StdEncoding.EncodeToString(key) != s {
			t.Fatalf("accepted %q, which is not the canonical encoding of its key", s)
		}
	})
}

// TestSignMatchesStandardWebhooks checks Sign against the Standard
// Webhooks Go library, and that the library refuses a tampered message.
func TestSignMatchesStandardWebhooks(t *testing.T) {
	secret := webhook.NewSecret()
	key, _ := webhook.ParseSecret(secret)
	v, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"type":"session.created"}`)
	ts := time.Now().Unix()
	h := http.Header{}
	h.Set("webhook-id", "evt_1")
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", webhook.Sign(key, "evt_1", ts, body))
	if err := v.Verify(body, h); err != nil {
		t.Fatalf("the library refuses Sign's signature: %v", err)
	}
	if err := v.Verify([]byte(`{"type":"session.revoked"}`), h); err == nil {
		t.Fatal("the library accepts a changed body")
	}
	other, _ := webhook.ParseSecret(webhook.NewSecret())
	h.Set("webhook-signature", webhook.Sign(other, "evt_1", ts, body))
	if err := v.Verify(body, h); err == nil {
		t.Fatal("the library accepts another secret's signature")
	}
}

func TestNewHook(t *testing.T) {
	s := webhook.NewSecret()
	h, err := webhook.NewHook("https://user:pw@hooks.example/in", s)
	if err != nil {
		t.Fatal(err)
	}
	if got := webhook.Redact(h.URL); strings.Contains(got, "pw") || strings.Contains(got, "user") {
		t.Errorf("Redact = %q", got)
	}
	h2, _ := webhook.NewHook("https://user:pw@hooks.example/in", webhook.NewSecret())
	if h.ID != h2.ID || len(h.ID) != 16 {
		t.Errorf("IDs %q, %q: want one 16-digit ID per URL whatever the secret", h.ID, h2.ID)
	}
	for _, bad := range []string{"ftp://x/", "/relative", "http://", "://"} {
		if _, err := webhook.NewHook(bad, s); err == nil {
			t.Errorf("NewHook(%q) accepted", bad)
		}
	}
	_, err = webhook.NewHook("https://user:pw@hooks.example/in", "whsec_nope")
	if err == nil || strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "nope") {
		t.Errorf("NewHook with a bad secret: %v", err)
	}
}

func TestBody(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	b, err := webhook.Body(audit.Event{ID: 7, Time: at, Type: audit.UserDisabled, UserID: "u1", Actor: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"user.disabled","timestamp":"2026-01-02T03:04:05.000000006Z","data":{"id":7,"time":"2026-01-02T03:04:05.000000006Z","type":"user.disabled","user_id":"u1","actor":"cli"}}`
	if string(b) != want {
		t.Errorf("Body = %s\nwant %s", b, want)
	}
}

// memOutbox is an Outbox of one delivery, enough to drive one attempt.
type memOutbox struct {
	d      webhook.Delivery
	done   atomic.Bool
	failed atomic.Value
}

func (m *memOutbox) SetHooks(context.Context, []string) error { return nil }
func (m *memOutbox) Claim(_ context.Context, _ string, ids []string, _ time.Time, _ time.Duration, _ int) ([]webhook.Delivery, error) {
	if m.done.Swap(true) {
		return nil, nil
	}
	d := m.d
	d.HookID, d.Attempts = ids[0], 1
	return []webhook.Delivery{d}, nil
}
func (m *memOutbox) Delivered(context.Context, string, webhook.Delivery) error {
	m.failed.Store("")
	return nil
}
func (m *memOutbox) Failed(_ context.Context, _ string, _ webhook.Delivery, _, _ time.Time, _ bool, msg string) error {
	m.failed.Store(msg)
	return nil
}
func (m *memOutbox) Stats(context.Context) (map[string]webhook.Stats, error) { return nil, nil }
func (m *memOutbox) Retry(context.Context, string, time.Time) (int, error)   { return 0, nil }

// attempt makes one delivery to handler and returns the recorded
// failure ("" for delivered).
func attempt(t *testing.T, handler http.Handler) (string, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	h, err := webhook.NewHook(srv.URL, webhook.NewSecret())
	if err != nil {
		t.Fatal(err)
	}
	ob := &memOutbox{d: webhook.Delivery{Event: audit.Event{ID: 1, Type: audit.UserCreated}, Since: time.Now()}}
	d, err := webhook.New(webhook.Config{Hooks: []webhook.Hook{h}, Outbox: ob, Poll: 10 * time.Millisecond,
		Client: &http.Client{Timeout: time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for ob.failed.Load() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	msg, _ := ob.failed.Load().(string)
	if ob.failed.Load() == nil {
		t.Fatal("no outcome recorded")
	}
	return msg, srv
}

func TestRedirectIsAFailure(t *testing.T) {
	var followed atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { followed.Store(true) })
	msg, _ := attempt(t, mux)
	if msg != "HTTP status 307" || followed.Load() {
		t.Fatalf("failure %q, followed %v; want HTTP status 307, not followed", msg, followed.Load())
	}
}

func TestDefaultClientFollowsNoRedirect(t *testing.T) {
	var followed atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) })
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { followed.Store(true) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	h, _ := webhook.NewHook(srv.URL, webhook.NewSecret())
	ob := &memOutbox{d: webhook.Delivery{Event: audit.Event{ID: 1, Type: audit.UserCreated}, Since: time.Now()}}
	d, err := webhook.New(webhook.Config{Hooks: []webhook.Hook{h}, Outbox: ob, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go d.Run(ctx)
	defer cancel()
	deadline := time.Now().Add(5 * time.Second)
	for ob.failed.Load() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if msg, _ := ob.failed.Load().(string); msg != "HTTP status 302" || followed.Load() {
		t.Fatalf("failure %q, followed %v", msg, followed.Load())
	}
}

func TestLargeResponseIsBounded(t *testing.T) {
	var wrote atomic.Int64
	msg, _ := attempt(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 32<<10)
		for range 1 << 12 { // 128 MiB, far more than is read
			n, err := w.Write(chunk)
			wrote.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	if msg != "" {
		t.Fatalf("a 200 with a large body: failure %q", msg)
	}
	if wrote.Load() >= 128<<20 {
		t.Fatalf("the whole %d-byte body was read", wrote.Load())
	}
}

func TestNewRefusesDuplicateHooksAndShortLease(t *testing.T) {
	h, _ := webhook.NewHook("https://hooks.example/", webhook.NewSecret())
	if _, err := webhook.New(webhook.Config{Hooks: []webhook.Hook{h, h}, Outbox: &memOutbox{}}); err == nil {
		t.Error("New accepted a hook twice")
	}
	if _, err := webhook.New(webhook.Config{Outbox: &memOutbox{}, Lease: time.Second}); err == nil {
		t.Error("New accepted a lease shorter than the client's timeout")
	}
}

func TestBackoff(t *testing.T) {
	d, err := webhook.New(webhook.Config{Outbox: &memOutbox{}, MinBackoff: time.Second, MaxBackoff: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		attempt int
		full    time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {4, 8 * time.Second}, {7, time.Minute}, {40, time.Minute}, {1 << 20, time.Minute}} {
		seen := map[time.Duration]bool{}
		for range 200 {
			b := webhook.Backoff(d, tc.attempt)
			if b < tc.full/2 || b > tc.full {
				t.Fatalf("backoff after attempt %d = %v, want within [%v, %v]", tc.attempt, b, tc.full/2, tc.full)
			}
			seen[b] = true
		}
		if len(seen) < 10 {
			t.Errorf("backoff after attempt %d took %d values in 200 draws: no jitter", tc.attempt, len(seen))
		}
	}
}

// TestStopFinishesDeliveriesInFlight: a delivery under way when Run's
// context ends completes and is recorded before Run returns, rather than
// waiting for its lease to end.
func TestStopFinishesDeliveriesInFlight(t *testing.T) {
	started := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	h, _ := webhook.NewHook(srv.URL, webhook.NewSecret())
	ob := &memOutbox{d: webhook.Delivery{Event: audit.Event{ID: 1, Type: audit.UserCreated}, Since: time.Now()}}
	d, err := webhook.New(webhook.Config{Hooks: []webhook.Hook{h}, Outbox: ob, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	<-started
	cancel()
	<-done
	if msg, ok := ob.failed.Load().(string); !ok || msg != "" {
		t.Fatalf("outcome %q (recorded: %v), want delivered", msg, ok)
	}
}
