package app

import (
	"fmt"
	"testing"
	"time"
)

// TestFailuresHoldAtMostMaxKeys: however many keys fail, the count of
// keys held stays within the bound.
func TestFailuresHoldAtMostMaxKeys(t *testing.T) {
	f := newFailures(DefaultThrottle.Pair, 1000)
	now := time.Now()
	for i := range 50_000 {
		f.fail(fmt.Sprintf("key%d", i), now)
		if len(f.keys) > 1000 {
			t.Fatalf("after %d keys: %d held, want at most 1000", i+1, len(f.keys))
		}
	}
	k := newKnownSet(100)
	for i := range 5000 {
		k.add(fmt.Sprint(i))
		if len(k.keys) > 100 {
			t.Fatalf("known set: %d held, want at most 100", len(k.keys))
		}
	}
}

// TestFailuresDecay: failures are forgotten one per Decay, and the wait
// doubles per failure past Free up to Max.
func TestFailuresDecay(t *testing.T) {
	b := Backoff{Free: 2, Base: time.Second, Max: 4 * time.Second, Decay: time.Minute}
	f := newFailures(b, 10)
	now := time.Now()
	var waits []time.Duration
	for range 6 {
		waits = append(waits, f.wait("k", now))
		f.fail("k", now)
	}
	want := []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	if w := f.wait("k", now.Add(5*time.Minute)); w != 0 {
		t.Errorf("after 5 decays of 6 failures (1 left, Free 2): wait %v, want 0", w)
	}
}

func TestClientNetwork(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"::ffff:192.0.2.1":     "192.0.2.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::1":      "2001:db8:1:2::/64",
		"not an address":       "not an address",
	} {
		if got := ClientNetwork(in); got != want {
			t.Errorf("ClientNetwork(%q) = %q, want %q", in, got, want)
		}
	}
}
