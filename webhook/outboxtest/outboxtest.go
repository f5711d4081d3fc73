// Package outboxtest is the conformance suite of webhook.Outbox
// implementations, run against real receivers on loopback: Run(t, h).
package outboxtest

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/webhook"
)

// Env is a fresh database holding an audit log, with a way to open
// outboxes on it.
type Env struct {
	// Log appends events: the audit log the outbox sits beside.
	Log audit.Log
	// Open opens another handle on the outbox, as another instance
	// would; the suite closes nothing it opens (the harness does).
	Open func(t *testing.T) webhook.Outbox
}

// Harness makes environments for the suite.
type Harness struct {
	New func(t *testing.T) Env
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("LeaseIsExclusive", func(t *testing.T) { testLease(t, h) })
	t.Run("OnlyEnabledHooksGetDeliveries", func(t *testing.T) { testEnabled(t, h) })
	t.Run("TwoInstancesDeliverEachEventOnce", func(t *testing.T) { testTwoInstances(t, h) })
	t.Run("DownReceiverGetsEventsWhenBack", func(t *testing.T) { testDown(t, h) })
	t.Run("DeadLettersAndRetry", func(t *testing.T) { testDead(t, h) })
	t.Run("DeletedEventIsDeadLetter", func(t *testing.T) { testMissing(t, h) })
}

var ctx = context.Background()

// Secret is a fixed test secret (32 bytes of 0x01).
const Secret = "whsec_AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="

func hook(t *testing.T, url string) webhook.Hook {
	t.Helper()
	h, err := webhook.NewHook(url, Secret)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func appendEvents(t *testing.T, log audit.Log, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range n {
		e := audit.Event{Time: time.Now().UTC(), Type: audit.LoginSucceeded, UserID: "u_" + strconv.Itoa(i), Username: "user" + strconv.Itoa(i), IP: "192.0.2.1"}
		if err := log.Append(ctx, &e); err != nil {
			t.Fatal(err)
		}
		ids[i] = e.ID
	}
	return ids
}

// start runs a dispatcher until the test ends.
func start(t *testing.T, cfg webhook.Config) *webhook.Dispatcher {
	t.Helper()
	if cfg.Poll == 0 {
		cfg.Poll = 20 * time.Millisecond
	}
	d, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Run(c); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

func testLease(t *testing.T, h Harness) {
	env := h.New(t)
	a, b := env.Open(t), env.Open(t)
	if err := a.SetHooks(ctx, []string{"h1"}); err != nil {
		t.Fatal(err)
	}
	ids := appendEvents(t, env.Log, 3)
	now := time.Now()
	got, err := a.Claim(ctx, "A", []string{"h1"}, now, time.Minute, 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("A claims %d (%v), want 3", len(got), err)
	}
	for _, d := range got {
		if d.Attempts != 1 || d.Missing || d.Event.Type != audit.LoginSucceeded {
			t.Errorf("claimed %+v, want attempt 1 of a login.succeeded event", d)
		}
	}
	if again, err := b.Claim(ctx, "B", []string{"h1"}, now.Add(59*time.Second), time.Minute, 10); err != nil || len(again) != 0 {
		t.Fatalf("B claims %d (%v) under A's lease, want 0", len(again), err)
	}
	// After the lease, B takes them over; A's late report changes nothing.
	taken, err := b.Claim(ctx, "B", []string{"h1"}, now.Add(61*time.Second), time.Minute, 10)
	if err != nil || len(taken) != 3 {
		t.Fatalf("B claims %d (%v) after A's lease, want 3", len(taken), err)
	}
	if taken[0].Attempts != 2 {
		t.Errorf("attempts = %d, want 2", taken[0].Attempts)
	}
	if err := a.Delivered(ctx, "A", got[0]); err != nil {
		t.Fatal(err)
	}
	st, err := a.Stats(ctx)
	if err != nil || st["h1"].Pending != len(ids) {
		t.Fatalf("after a stale Delivered: %+v (%v), want %d pending", st["h1"], err, len(ids))
	}
	for _, d := range taken {
		if err := b.Delivered(ctx, "B", d); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := a.Stats(ctx); st["h1"].Pending != 0 {
		t.Fatalf("pending = %d after delivery, want 0", st["h1"].Pending)
	}
}

func testEnabled(t *testing.T, h Harness) {
	env := h.New(t)
	o := env.Open(t)
	appendEvents(t, env.Log, 1) // no hook yet
	if err := o.SetHooks(ctx, []string{"h1", "h2"}); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, env.Log, 2)
	if err := o.SetHooks(ctx, []string{"h2"}); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, env.Log, 1)
	st, err := o.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st["h1"].Pending != 2 || st["h2"].Pending != 3 {
		t.Fatalf("pending h1 %d, h2 %d; want 2 and 3", st["h1"].Pending, st["h2"].Pending)
	}
	if err := o.SetHooks(ctx, nil); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, env.Log, 1)
	if st, _ := o.Stats(ctx); st["h2"].Pending != 3 {
		t.Fatalf("pending h2 %d with no hook enabled, want 3", st["h2"].Pending)
	}
}

func testTwoInstances(t *testing.T, h Harness) {
	env := h.New(t)
	r := NewReceiver(t, Secret)
	hk := hook(t, r.URL())
	for range 2 {
		start(t, webhook.Config{Hooks: []webhook.Hook{hk}, Outbox: env.Open(t), Batch: 8})
	}
	time.Sleep(100 * time.Millisecond) // both have enabled the hook
	const writers, each = 4, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []int64
	for range writers {
		wg.Go(func() {
			ids := appendEvents(t, env.Log, each)
			mu.Lock()
			all = append(all, ids...)
			mu.Unlock()
		})
	}
	wg.Wait()
	r.WaitFor(len(all), 60*time.Second)
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive now
	got := r.Got()
	for _, id := range all {
		mid := webhook.MessageID(id)
		if got[mid] != 1 {
			t.Errorf("event %d received %d times, want once", id, got[mid])
		}
		if p, ok := r.Payload(mid); ok && (p.Data.ID != id || p.Type != audit.LoginSucceeded || p.Timestamp.IsZero()) {
			t.Errorf("payload of %s: %+v", mid, p)
		}
	}
	if len(got) != len(all) {
		t.Errorf("received %d distinct messages, want %d", len(got), len(all))
	}
	if bad := r.Bad(); len(bad) > 0 {
		t.Errorf("refused: %v", bad)
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func testDown(t *testing.T, h Harness) {
	env := h.New(t)
	addr := freeAddr(t)
	hk := hook(t, "http://"+addr+"/hook")
	o := env.Open(t)
	d := start(t, webhook.Config{Hooks: []webhook.Hook{hk}, Outbox: o, MinBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond})
	time.Sleep(100 * time.Millisecond)
	ids := appendEvents(t, env.Log, 5)
	d.Notify()
	// Connection refused: the failures show in the admin view.
	waitStatus(t, d, func(s webhook.HookStatus) bool {
		return s.FailingSince != nil && s.LastError != "" && s.Pending == len(ids)
	})
	// Then 500s.
	r := NewReceiverAt(t, Secret, addr)
	r.Status.Store(500)
	deadline := time.Now().Add(10 * time.Second)
	for r.Attempts() < 2*len(ids) {
		if time.Now().After(deadline) {
			t.Fatalf("%d attempts at the receiver answering 500, want %d", r.Attempts(), 2*len(ids))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(r.Got()) != 0 {
		t.Fatal("a 500 counted as delivered")
	}
	r.Status.Store(0)
	r.WaitFor(len(ids), 10*time.Second)
	waitStatus(t, d, func(s webhook.HookStatus) bool { return s.FailingSince == nil && s.Pending == 0 && s.Dead == 0 })
	for _, id := range ids {
		if r.Got()[webhook.MessageID(id)] != 1 {
			t.Errorf("event %d received %d times", id, r.Got()[webhook.MessageID(id)])
		}
	}
}

func waitStatus(t *testing.T, d *webhook.Dispatcher, ok func(webhook.HookStatus) bool) webhook.HookStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := d.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) == 1 && ok(st[0]) {
			return st[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("hook status %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testDead(t *testing.T, h Harness) {
	env := h.New(t)
	r := NewReceiver(t, Secret)
	r.Status.Store(503)
	hk := hook(t, r.URL())
	const maxAttempts = 3
	d := start(t, webhook.Config{Hooks: []webhook.Hook{hk}, Outbox: env.Open(t), MaxAttempts: maxAttempts,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
	time.Sleep(100 * time.Millisecond)
	ids := appendEvents(t, env.Log, 4)
	d.Notify()
	st := waitStatus(t, d, func(s webhook.HookStatus) bool { return s.Dead == len(ids) })
	if st.Pending != 0 || st.LastError != "HTTP status 503" {
		t.Errorf("status %+v, want no pending and the last error HTTP status 503", st)
	}
	time.Sleep(100 * time.Millisecond) // no attempt after the last
	if got := r.Attempts(); got != maxAttempts*len(ids) {
		t.Errorf("%d attempts, want %d", got, maxAttempts*len(ids))
	}
	if _, err := d.Retry(ctx, "nope"); err != webhook.ErrUnknownHook {
		t.Errorf("Retry of an unknown hook: %v", err)
	}
	r.Status.Store(0)
	n, err := d.Retry(ctx, hk.ID)
	if err != nil || n != len(ids) {
		t.Fatalf("Retry = %d, %v; want %d", n, err, len(ids))
	}
	r.WaitFor(len(ids), 10*time.Second)
	waitStatus(t, d, func(s webhook.HookStatus) bool { return s.Dead == 0 && s.Pending == 0 && s.FailingSince == nil })
	if bad := r.Bad(); len(bad) > 0 {
		t.Errorf("refused: %v", bad)
	}
}

func testMissing(t *testing.T, h Harness) {
	env := h.New(t)
	p, ok := env.Log.(audit.Pruner)
	if !ok {
		t.Skip("the log deletes no events")
	}
	o := env.Open(t)
	if err := o.SetHooks(ctx, []string{"h1"}); err != nil {
		t.Fatal(err)
	}
	e := audit.Event{Time: time.Now().Add(-time.Hour).UTC(), Type: audit.UserCreated}
	if err := env.Log.Append(ctx, &e); err != nil {
		t.Fatal(err)
	}
	if n, err := p.DeleteBefore(ctx, time.Now(), 10); err != nil || n != 1 {
		t.Fatalf("DeleteBefore = %d, %v", n, err)
	}
	got, err := o.Claim(ctx, "A", []string{"h1"}, time.Now(), time.Minute, 10)
	if err != nil || len(got) != 1 || !got[0].Missing {
		t.Fatalf("claimed %+v (%v), want one Missing delivery", got, err)
	}
}
