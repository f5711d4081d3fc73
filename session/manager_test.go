package session_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
)

func TestCreateIssuesFreshTokens(t *testing.T) {
	f := newFixture(t, session.Config{})
	a, tokA := f.login(t, "alice")
	b, tokB := f.login(t, "alice")
	if tokA == tokB || a.ID == b.ID {
		t.Fatal("two logins share a token or an ID")
	}
	if strings.Contains(tokA, a.ID) || strings.Contains(a.ID, tokA) {
		t.Error("the public ID is derived from the token")
	}
	if a.TokenHash == (session.Hash{}) {
		t.Error("session has no token hash")
	}
	if _, _, err := f.m.Create(ctx, session.Login{}); err == nil {
		t.Error("Create without a user ID succeeded")
	}
}

func TestValidate(t *testing.T) {
	f := newFixture(t, session.Config{})
	s, tok := f.login(t, "alice")
	got, err := f.m.Validate(ctx, tok, session.Client{})
	if err != nil || got.ID != s.ID || got.UserID != "alice" {
		t.Fatalf("Validate(token) = %+v, %v; want session %s", got, err, s.ID)
	}
	other := strings.Repeat("A", session.TokenLen)
	if f.valid(t, other) {
		t.Error("a well-formed token that was never issued validated")
	}
}

func TestMalformedTokenCostsNoStoreLookup(t *testing.T) {
	f := newFixture(t, session.Config{})
	for _, tok := range []string{"", "x", strings.Repeat("A", 44), "../../etc/passwd", strings.Repeat("+", 43)} {
		if f.valid(t, tok) {
			t.Errorf("malformed token %q validated", tok)
		}
	}
	if n := f.store.byHash.Load(); n != 0 {
		t.Errorf("malformed tokens caused %d store lookups, want 0", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	f := newFixture(t, session.Config{IdleTimeout: 30 * time.Minute})
	_, tok := f.login(t, "alice")
	// Activity every 20 minutes keeps the session alive past 30 minutes...
	for range 6 {
		f.clock.Advance(20 * time.Minute)
		if !f.valid(t, tok) {
			t.Fatal("an active session expired: the idle deadline did not slide")
		}
	}
	// ...and 30 idle minutes end it.
	f.clock.Advance(30 * time.Minute)
	if f.valid(t, tok) {
		t.Fatal("session valid after 30 idle minutes")
	}
	if _, ok := f.events.last(session.EventExpired); !ok {
		t.Error("no expired event")
	}
}

func TestAbsoluteTimeout(t *testing.T) {
	f := newFixture(t, session.Config{IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 2 * time.Hour})
	_, tok := f.login(t, "alice")
	for range 5 {
		f.clock.Advance(20 * time.Minute)
		if !f.valid(t, tok) {
			t.Fatal("session ended before its absolute deadline")
		}
	}
	f.clock.Advance(20 * time.Minute) // 2 hours since login, however active
	if f.valid(t, tok) {
		t.Fatal("session valid past its absolute timeout")
	}
}

func TestRememberMeTimeouts(t *testing.T) {
	f := newFixture(t, session.Config{})
	s, tok, err := f.m.Create(ctx, session.Login{UserID: "alice", Remember: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.AbsoluteDeadline.Sub(s.CreatedAt); got != 30*24*time.Hour {
		t.Errorf("remember-me absolute lifetime %v, want 720h", got)
	}
	f.clock.Advance(24 * time.Hour) // a day away: too long for a normal session
	if !f.valid(t, tok) {
		t.Error("remember-me session ended after one idle day")
	}
}

func TestValidationIsNotAWritePerRequest(t *testing.T) {
	f := newFixture(t, session.Config{TouchInterval: time.Minute})
	_, tok := f.login(t, "alice")
	for range 100 {
		f.clock.Advance(100 * time.Millisecond)
		f.valid(t, tok)
	}
	if n := f.store.touch.Load(); n != 0 {
		t.Errorf("100 validations within the touch interval wrote %d times, want 0", n)
	}
	f.clock.Advance(time.Minute)
	f.valid(t, tok)
	f.valid(t, tok)
	if n := f.store.touch.Load(); n != 1 {
		t.Errorf("after the touch interval: %d writes, want 1", n)
	}
}

func TestRotateKillsOldTokenAtOnce(t *testing.T) {
	f := newFixture(t, session.Config{})
	s, old := f.login(t, "alice")
	f.clock.Advance(time.Minute)
	rotated, tok, err := f.m.Rotate(ctx, s.ID, session.Change{Roles: []string{"admin"}, Reauthenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	if tok == old {
		t.Fatal("Rotate returned the old token")
	}
	if f.valid(t, old) {
		t.Error("the token from before the privilege change still validates")
	}
	got, err := f.m.Validate(ctx, tok, session.Client{})
	if err != nil {
		t.Fatalf("new token: %v", err)
	}
	if got.ID != s.ID || !slices.Equal(got.Roles, []string{"admin"}) || !got.AuthenticatedAt.Equal(f.clock.Now()) {
		t.Errorf("rotated session: ID %s roles %q authenticated %v; want %s [admin] %v", got.ID, got.Roles, got.AuthenticatedAt, s.ID, f.clock.Now())
	}
	if rotated.Version <= s.Version {
		t.Error("Rotate did not go through compare-and-swap")
	}
}

func TestRotateRetriesOnConflict(t *testing.T) {
	f := newFixture(t, session.Config{})
	s, _ := f.login(t, "alice")
	if _, err := f.m.SetData(ctx, s.ID, map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	// s is now stale (version 1); Rotate reloads and keeps the data.
	got, _, err := f.m.Rotate(ctx, s.ID, session.Change{})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != `{"n":1}` {
		t.Errorf("Rotate lost concurrent data: %s", got.Data)
	}
}

func TestRevoke(t *testing.T) {
	f := newFixture(t, session.Config{})
	a, tokA := f.login(t, "alice")
	b, tokB := f.login(t, "alice")
	_, tokC := f.login(t, "alice")
	_, tokBob := f.login(t, "bob")

	if err := f.m.Revoke(ctx, a.ID, "admin-1", "lost laptop"); err != nil {
		t.Fatal(err)
	}
	if f.valid(t, tokA) {
		t.Error("revoked session still validates")
	}
	ev, _ := f.events.last(session.EventRevoked)
	if ev.SessionID != a.ID || ev.Actor != "admin-1" || ev.Reason != "lost laptop" || ev.UserID != "alice" {
		t.Errorf("revoke event %+v lacks the session, actor or reason", ev)
	}
	if err := f.m.Revoke(ctx, a.ID, "x", "y"); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("second Revoke: got %v, want ErrNotFound", err)
	}

	n, err := f.m.RevokeUser(ctx, "alice", b.ID, "alice", "log out others")
	if err != nil || n != 1 {
		t.Fatalf("RevokeUser(except current) = %d, %v; want 1", n, err)
	}
	if !f.valid(t, tokB) || f.valid(t, tokC) || !f.valid(t, tokBob) {
		t.Error("revoke-others ended the wrong sessions")
	}
	list, _ := f.m.List(ctx, "alice")
	if len(list) != 1 || list[0].ID != b.ID || list[0].CreatedIP != "192.0.2.1" || list[0].CreatedUserAgent != "test" {
		t.Errorf("List after revoke-others: %+v", list)
	}
	if n, _ := f.m.RevokeUser(ctx, "alice", "", "admin-1", "log out everywhere"); n != 1 || f.valid(t, tokB) {
		t.Error("RevokeUser(all) left a session")
	}
}

func TestLimitEvictsOldest(t *testing.T) {
	f := newFixture(t, session.Config{MaxSessionsPerUser: 2})
	first, tok1 := f.login(t, "alice")
	f.clock.Advance(time.Second)
	f.login(t, "alice")
	f.login(t, "alice")
	if f.valid(t, tok1) {
		t.Error("oldest session survived a login past the limit")
	}
	ev, _ := f.events.last(session.EventRevoked)
	if ev.SessionID != first.ID || ev.Reason != session.ReasonLimit {
		t.Errorf("eviction event %+v", ev)
	}
	f2 := newFixture(t, session.Config{MaxSessionsPerUser: 1, RejectAtLimit: true})
	f2.login(t, "alice")
	if _, _, err := f2.m.Create(ctx, session.Login{UserID: "alice"}); !errors.Is(err, session.ErrTooManySessions) {
		t.Errorf("login at the limit with RejectAtLimit: got %v", err)
	}
}

func TestData(t *testing.T) {
	type cart struct{ Items []string }
	f := newFixture(t, session.Config{MaxDataSize: 64})
	s, tok := f.login(t, "alice")
	if _, err := f.m.SetData(ctx, s.ID, cart{Items: []string{"book"}}); err != nil {
		t.Fatal(err)
	}
	got, _ := f.m.Validate(ctx, tok, session.Client{})
	c, err := session.DataAs[cart](got)
	if err != nil || !slices.Equal(c.Items, []string{"book"}) {
		t.Errorf("DataAs = %+v, %v", c, err)
	}
	if _, err := f.m.SetData(ctx, s.ID, cart{Items: []string{strings.Repeat("x", 100)}}); !errors.Is(err, session.ErrDataTooLarge) {
		t.Errorf("oversized data: got %v, want ErrDataTooLarge", err)
	}
	if _, err := session.DataAs[int](got); err == nil {
		t.Error("DataAs into the wrong type succeeded")
	}
}

func TestUndecodableDataIsAnInvalidSession(t *testing.T) {
	f := newFixture(t, session.Config{})
	s, tok := f.login(t, "alice")
	s.Data = []byte(`{"truncated":`)
	if err := f.store.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	_, err := f.m.Validate(ctx, tok, session.Client{})
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("corrupt data: got %v, want ErrNotFound (an invalid session, not a server error)", err)
	}
	if _, ok := f.events.last(session.EventInvalid); !ok {
		t.Error("no invalid-session event")
	}
}

func TestStoreOutageFailsClosed(t *testing.T) {
	m, err := session.New(downStore{memstore.New()}, session.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.Repeat("A", session.TokenLen)
	s, err := m.Validate(ctx, tok, session.Client{})
	if s != nil || err == nil || errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Validate with the store down = %v, %v; want no session and a store error", s, err)
	}
}

func TestEvents(t *testing.T) {
	f := newFixture(t, session.Config{})
	s, _ := f.login(t, "alice")
	f.m.Rotate(ctx, s.ID, session.Change{})
	f.m.Revoke(ctx, s.ID, "alice", session.ReasonLogout)
	want := []session.EventType{session.EventCreated, session.EventRotated, session.EventRevoked}
	if got := f.events.types(); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	for _, ev := range f.events.all {
		if ev.SessionID != s.ID || ev.UserID != "alice" || ev.Time.IsZero() || ev.Actor == "" {
			t.Errorf("event %+v lacks session, user, time or actor", ev)
		}
	}
}

func TestSweepReportsExpired(t *testing.T) {
	f := newFixture(t, session.Config{IdleTimeout: time.Minute})
	s, _ := f.login(t, "alice")
	f.clock.Advance(2 * time.Minute)
	n, err := f.m.Sweep(ctx, 100)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if ev, ok := f.events.last(session.EventExpired); !ok || ev.SessionID != s.ID {
		t.Errorf("no expired event for the swept session")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (session.Config{}).Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	for name, c := range map[string]session.Config{
		"idle above absolute":     {IdleTimeout: 13 * time.Hour},
		"negative timeout":        {AbsoluteTimeout: -time.Hour},
		"touch not below idle":    {IdleTimeout: time.Minute, TouchInterval: time.Minute},
		"grace not below rotate":  {RotationInterval: time.Minute, RotationGrace: time.Minute},
		"__Host- with Domain":     {Cookie: session.CookieConfig{Domain: "example.com"}},
		"insecure with __Host-":   {Cookie: session.CookieConfig{InsecureDevelopmentNoSecureFlag: true}},
		"insecure with __Secure-": {Cookie: session.CookieConfig{Name: "__Secure-sid", InsecureDevelopmentNoSecureFlag: true}},
		"bad cookie name":         {Cookie: session.CookieConfig{Name: "sid;x"}},
		"relative LoginURL":       {LoginURL: "login"},
		"protocol-relative login": {LoginURL: "//evil.example/login"},
		"javascript LoginURL":     {LoginURL: "javascript:alert(1)"},
		"LoginURL with fragment":  {LoginURL: "/login#x"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
		if _, err := session.New(memstore.New(), c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	ok := session.Config{Cookie: session.CookieConfig{Name: "sid", Domain: "example.com", InsecureDevelopmentNoSecureFlag: true}}
	if err := ok.Validate(); err != nil {
		t.Errorf("plain-named dev cookie: %v", err)
	}
	for _, u := range []string{"/login", "/sso/login?app=shop", "https://login.example/start"} {
		if err := (session.Config{LoginURL: u}).Validate(); err != nil {
			t.Errorf("LoginURL %q: %v", u, err)
		}
	}
}

// TestConfirmFailureLeavesNoSession: a Login whose Confirm fails gets no
// token, and the stored session is gone; one whose Confirm passes is
// created as usual, and Confirm sees it stored.
func TestConfirmFailureLeavesNoSession(t *testing.T) {
	f := newFixture(t, session.Config{})
	changed := errors.New("account changed")
	_, tok, err := f.m.Create(ctx, session.Login{UserID: "alice", Confirm: func(_ context.Context, s *session.Session) error {
		if got, err := f.m.Get(ctx, s.ID); err != nil || got.UserID != "alice" {
			t.Errorf("Confirm does not see its session stored: %v", err)
		}
		return changed
	}})
	if !errors.Is(err, changed) || tok != "" {
		t.Fatalf("Create with a failing Confirm: token %q, err %v; want no token and its error", tok, err)
	}
	if list, _ := f.m.List(ctx, "alice"); len(list) != 0 {
		t.Fatalf("%d sessions left after a failing Confirm", len(list))
	}
	s, tok, err := f.m.Create(ctx, session.Login{UserID: "alice", Confirm: func(context.Context, *session.Session) error { return nil }})
	if err != nil || !f.valid(t, tok) || s.UserID != "alice" {
		t.Fatalf("Create with a passing Confirm: %v", err)
	}
}
