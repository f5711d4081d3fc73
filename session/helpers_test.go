package session_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
)

var ctx = context.Background()

// clock is a settable time source for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// countingStore is a real memstore that counts the calls made to it.
type countingStore struct {
	*memstore.Store
	byHash, touch atomic.Int64
}

func (s *countingStore) ByHash(ctx context.Context, h session.Hash) (*session.Session, error) {
	s.byHash.Add(1)
	return s.Store.ByHash(ctx, h)
}

func (s *countingStore) Touch(ctx context.Context, id string, t session.TouchInfo) error {
	s.touch.Add(1)
	return s.Store.Touch(ctx, id, t)
}

// downStore is a store whose backend is unreachable.
type downStore struct{ session.Store }

var errDown = errors.New("dial tcp 127.0.0.1:1: connection refused")

func (downStore) ByHash(context.Context, session.Hash) (*session.Session, error) { return nil, errDown }

// events records lifecycle events.
type events struct {
	mu  sync.Mutex
	all []session.Event
}

func (e *events) Record(_ context.Context, ev session.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) types() []session.EventType {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ts []session.EventType
	for _, ev := range e.all {
		ts = append(ts, ev.Type)
	}
	return ts
}

func (e *events) last(typ session.EventType) (session.Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range slices.Backward(e.all) {
		if ev.Type == typ {
			return ev, true
		}
	}
	return session.Event{}, false
}

// fixture is a Manager on a counting memstore with a settable clock.
type fixture struct {
	m      *session.Manager
	store  *countingStore
	clock  *clock
	events *events
}

func newFixture(t *testing.T, cfg session.Config) *fixture {
	t.Helper()
	f := &fixture{store: &countingStore{Store: memstore.New()}, clock: newClock(), events: &events{}}
	cfg.Now, cfg.Events = f.clock.Now, f.events
	m, err := session.New(f.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	return f
}

func (f *fixture) login(t *testing.T, user string) (*session.Session, string) {
	t.Helper()
	s, tok, err := f.m.Create(ctx, session.Login{UserID: user, Roles: []string{"user"}, Client: session.Client{IP: "192.0.2.1", UserAgent: "test"}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return s, tok
}

// valid reports whether tok validates, failing the test on a store error.
func (f *fixture) valid(t *testing.T, tok string) bool {
	t.Helper()
	_, err := f.m.Validate(ctx, tok, session.Client{})
	if err != nil && !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Validate: %v", err)
	}
	return err == nil
}
