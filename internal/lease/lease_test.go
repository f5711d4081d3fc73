package lease

import (
	"testing"
	"time"
)

func TestCovers(t *testing.T) {
	var l Lease
	if covered, due := l.Covers(Now()); covered || !due {
		t.Errorf("a lease with no fence: covered %v, due %v; want false, true", covered, due)
	}
	sent := Now()
	l.Extend(sent)
	for _, c := range []struct {
		after        time.Duration
		covered, due bool
	}{
		{0, true, false},
		{Read/2 - 1, true, false},
		{Read / 2, true, true},
		{Read - 1, true, true},
		{Read, false, true},
	} {
		if covered, due := l.Covers(sent + int64(c.after)); covered != c.covered || due != c.due {
			t.Errorf("%v after the fence was sent: covered %v, due %v; want %v, %v", c.after, covered, due, c.covered, c.due)
		}
	}
	l.Extend(sent - int64(time.Second)) // an older fence answered later
	if covered, _ := l.Covers(sent + int64(Read) - 1); !covered {
		t.Error("an older fence shortened the lease")
	}
	l.End()
	if covered, _ := l.Covers(sent); covered {
		t.Error("an ended lease still covers")
	}
}

func TestSettle(t *testing.T) {
	if Write <= Read {
		t.Fatalf("Write %v must exceed Read %v", Write, Read)
	}
	changed := Now()
	Settle(changed)
	if took := time.Duration(Now() - changed); took < Write {
		t.Errorf("Settle returned %v after the change, want at least %v", took, Write)
	}
	start := time.Now()
	Settle(changed - int64(time.Second))
	if took := time.Since(start); took > 5*time.Millisecond {
		t.Errorf("Settle of a change a second old took %v", took)
	}
}
