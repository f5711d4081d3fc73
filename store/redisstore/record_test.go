package redisstore

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
)

// sameSession reports whether a and b hold the same values (times to the
// microsecond).
func sameSession(a, b *session.Session) bool {
	return a.ID == b.ID && a.UserID == b.UserID && a.TokenHash == b.TokenHash && a.PrevTokenHash == b.PrevTokenHash &&
		slices.Equal(a.Roles, b.Roles) && a.CreatedAt.Equal(b.CreatedAt) && a.AuthenticatedAt.Equal(b.AuthenticatedAt) &&
		a.RotatedAt.Equal(b.RotatedAt) && a.LastSeenAt.Equal(b.LastSeenAt) && a.IdleDeadline.Equal(b.IdleDeadline) &&
		a.AbsoluteDeadline.Equal(b.AbsoluteDeadline) && a.Remember == b.Remember && a.CreatedIP == b.CreatedIP &&
		a.CreatedUserAgent == b.CreatedUserAgent && a.LastIP == b.LastIP && a.LastUserAgent == b.LastUserAgent &&
		string(a.Data) == string(b.Data) && a.Version == b.Version
}

func TestRecordRoundTrip(t *testing.T) {
	base := newSession("u_1")
	cases := map[string]func(s *session.Session){
		"as created": func(*session.Session) {},
		"everything different": func(s *session.Session) {
			s.PrevTokenHash = randHash()
			s.AuthenticatedAt = s.CreatedAt.Add(time.Minute)
			s.RotatedAt = s.CreatedAt.Add(2 * time.Minute)
			s.LastSeenAt = s.CreatedAt.Add(3 * time.Minute)
			s.LastIP, s.LastUserAgent = "2001:db8::1", "curl/8 ünïcode"
			s.Remember = true
			s.Roles = []string{"admin", "", strings.Repeat("r", 300)}
			s.Data = []byte(`{"cart":[1,2,3]}`)
			s.Version = math.MaxInt32 + 7
		},
		"zero times": func(s *session.Session) {
			s.CreatedAt, s.AuthenticatedAt, s.LastSeenAt = time.Time{}, time.Time{}, time.Time{}
		},
		"no roles":           func(s *session.Session) { s.Roles = nil },
		"empty strings":      func(s *session.Session) { s.CreatedIP, s.CreatedUserAgent, s.LastIP, s.LastUserAgent = "", "", "", "" },
		"large data":         func(s *session.Session) { s.Data = []byte(strings.Repeat("x", 70000)) },
		"negative version":   func(s *session.Session) { s.Version = -5 },
		"times before 1970":  func(s *session.Session) { s.CreatedAt = time.Date(1969, 7, 20, 20, 17, 40, 123456000, time.UTC) },
		"deadlines far away": func(s *session.Session) { s.AbsoluteDeadline = time.Date(2200, 1, 1, 0, 0, 0, 1000, time.UTC) },
	}
	for name, change := range cases {
		s := base.Clone()
		change(s)
		got, err := decodeRecord(s.UserID, s.ID, encodeRecord(s))
		if err != nil {
			t.Errorf("%s: decode: %v", name, err)
			continue
		}
		if !sameSession(got, s) {
			t.Errorf("%s: round trip changed the session:\ngot  %+v\nwant %+v", name, got, s)
		}
		tok, prev, ok := recordHashes(encodeRecord(s))
		if !ok || tok != s.TokenHash || prev != s.PrevTokenHash {
			t.Errorf("%s: recordHashes: %x %x %v", name, tok, prev, ok)
		}
	}
}

// TestRecordTimeRange checks the times a record keeps: to the microsecond
// within ±2^53 µs of the epoch, clamped beyond, which keeps their order
// relative to the present.
func TestRecordTimeRange(t *testing.T) {
	s := newSession("u_1")
	s.AbsoluteDeadline = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	s.AuthenticatedAt = time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC) // not the zero time
	got, err := decodeRecord(s.UserID, s.ID, encodeRecord(s))
	if err != nil {
		t.Fatal(err)
	}
	if !got.AbsoluteDeadline.Equal(time.UnixMicro(maxMicros)) || got.AbsoluteDeadline.Year() != 2255 {
		t.Errorf("year 9999 came back as %v, want the latest storable time in 2255", got.AbsoluteDeadline)
	}
	if got.AuthenticatedAt.IsZero() || !got.AuthenticatedAt.Equal(time.UnixMicro(-maxMicros)) {
		t.Errorf("year 1 came back as %v, want the earliest storable time", got.AuthenticatedAt)
	}
	if got.Expired(time.Now()) {
		t.Error("a session with a far-away deadline came back expired")
	}
}

// TestRecordDecodeRejects checks that bytes no Store wrote are an invalid
// record, never a panic or a session.
func TestRecordDecodeRejects(t *testing.T) {
	good := encodeRecord(newSession("u_1"))
	for name, b := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("garbage"),
		"truncated": good[:len(good)-3],
		"trailing":  append(append([]byte(nil), good...), 0xc0),
		"no array":  {0xa3, 'a', 'b', 'c'},
		"15 fields": append([]byte{0x9f}, good[3:]...),
	} {
		if s, err := decodeRecord("u", "id", b); !errors.Is(err, session.ErrInvalidRecord) {
			t.Errorf("%s: got %v, %v; want ErrInvalidRecord", name, s, err)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(newSession("u_1")))
	s := newSession("u_2")
	s.PrevTokenHash, s.LastIP, s.Data = randHash(), "198.51.100.1", []byte(`{}`)
	f.Add(encodeRecord(s))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeRecord("u", "id", b)
		if err != nil {
			if !errors.Is(err, session.ErrInvalidRecord) {
				t.Fatalf("error %v does not wrap ErrInvalidRecord", err)
			}
			return
		}
		// Whatever decodes encodes to something that decodes the same.
		again, err := decodeRecord("u", "id", encodeRecord(s))
		if err != nil || !sameSession(again, s) {
			t.Fatalf("re-encoding %+v gave %+v, %v", s, again, err)
		}
	})
}
