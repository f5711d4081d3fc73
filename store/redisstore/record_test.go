package redisstore

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// sameSession reports whether a and b hold the same values (times to the
// microsecond).
func sameSession(a, b *session.Session) bool {
	return a.ID == b.ID && a.UserID == b.UserID && a.TokenHash == b.TokenHash && a.PrevTokenHash == b.PrevTokenHash &&
		slices.Equal(a.Roles, b.Roles) && slices.Equal(a.AMR, b.AMR) && a.CreatedAt.Equal(b.CreatedAt) && a.AuthenticatedAt.Equal(b.AuthenticatedAt) &&
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
			s.PrevTokenHash = storetest.NewHash()
			s.AuthenticatedAt = s.CreatedAt.Add(time.Minute)
			s.RotatedAt = s.CreatedAt.Add(2 * time.Minute)
			s.LastSeenAt = s.CreatedAt.Add(3 * time.Minute)
			s.LastIP, s.LastUserAgent = "2001:db8::1", "curl/8 ünïcode"
			s.Remember = true
			s.Roles = []string{"admin", "", strings.Repeat("r", 300)}
			s.Data = []byte(`{"cart":[1,2,3]}`)
			s.AMR = []string{session.AMRHardwareKey, session.AMRUserPresence, session.AMRMultiFactor}
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
		"deadlines far away": func(s *session.Session) { s.AbsoluteDeadline = time.Date(2160, 1, 1, 0, 0, 0, 1000, time.UTC) },
		"times far apart": func(s *session.Session) {
			s.CreatedAt = time.UnixMicro(recordEpoch - maxRel)
			s.LastSeenAt = time.UnixMicro(recordEpoch + maxRel)
			s.IdleDeadline = s.CreatedAt
		},
		"only the deadlines set": func(s *session.Session) {
			s.CreatedAt, s.AuthenticatedAt, s.RotatedAt, s.LastSeenAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		},
		"zero deadlines":       func(s *session.Session) { s.IdleDeadline, s.AbsoluteDeadline = time.Time{}, time.Time{} },
		"whole seconds":        func(s *session.Session) { s.CreatedAt = time.Unix(1800000000, 0) },
		"non-canonical IPs":    func(s *session.Session) { s.CreatedIP, s.LastIP = "::FFFF:192.0.2.1", "192.000.2.1" },
		"IPv6 with zone":       func(s *session.Session) { s.CreatedIP, s.LastIP = "fe80::1%eth0", "::ffff:192.0.2.1" },
		"IDs not base64url":    func(s *session.Session) { s.ID = "a}b" },
		"ID almost base64url":  func(s *session.Session) { s.ID = "AB" }, // decodes to one byte, which encodes as "AA"
		"empty user and roles": func(s *session.Session) { s.UserID, s.Roles = "", []string{""} },
	}
	for name, change := range cases {
		s := base.Clone()
		change(s)
		got, err := decodeRecord(encodeRecord(s))
		if err != nil {
			t.Errorf("%s: decode: %v", name, err)
			continue
		}
		if !sameSession(got, s) {
			t.Errorf("%s: round trip changed the session:\ngot  %+v\nwant %+v", name, got, s)
		}
	}
}

// TestRecordSize checks the size of the record of a session as sessiond
// makes it, which decides its allocation class (see "Memory" in
// docs/stores/redis.md): it must leave room for a last-seen time of its
// own under 220 bytes, the most the 224-byte class holds with Redis's 4
// bytes of string header.
func TestRecordSize(t *testing.T) {
	s := newSession("u_0000000000000001")
	s.ID = randID() // 22 characters, as session.Manager makes them
	s.Roles = []string{"user"}
	s.CreatedUserAgent, s.LastUserAgent = chromeUA, chromeUA
	fresh := len(encodeRecord(s))
	s.LastSeenAt = s.CreatedAt.Add(2*time.Hour + 123*time.Microsecond)
	s.IdleDeadline = s.LastSeenAt.Add(30 * time.Minute)
	touched := len(encodeRecord(s))
	t.Logf("record: %d bytes as created, %d after a Touch", fresh, touched)
	if touched > 220 {
		t.Errorf("a touched record takes %d bytes, more than the 220 of the 224-byte class", touched)
	}
	// The user agent, token hash, ID, user ID, IPv4 address and role
	// take 185 bytes; flags, lengths, version and times 20 more.
	if want := 111 + 32 + 16 + 18 + 4 + 4; fresh > want+20 {
		t.Errorf("a fresh record takes %d bytes, %d more than its user agent, token hash, ID, user ID, IP and role", fresh, fresh-want)
	}
}

// TestRecordTimeRange checks the times a record keeps: to the microsecond
// within ±2^52 µs of recordEpoch, clamped beyond, which keeps their order
// relative to the present.
func TestRecordTimeRange(t *testing.T) {
	s := newSession("u_1")
	s.AbsoluteDeadline = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	s.AuthenticatedAt = time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC) // not the zero time
	got, err := decodeRecord(encodeRecord(s))
	if err != nil {
		t.Fatal(err)
	}
	if !got.AbsoluteDeadline.Equal(time.UnixMicro(recordEpoch+maxRel)) || got.AbsoluteDeadline.Year() != 2168 {
		t.Errorf("year 9999 came back as %v, want the latest storable time in 2168", got.AbsoluteDeadline)
	}
	if got.AuthenticatedAt.IsZero() || !got.AuthenticatedAt.Equal(time.UnixMicro(recordEpoch-maxRel)) || got.AuthenticatedAt.Year() != 1883 {
		t.Errorf("year 1 came back as %v, want the earliest storable time, in 1883", got.AuthenticatedAt)
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
		"bad time":  {0, 1, 'u', 2, 'i', 2, 0x02},
		"bad IP tag": func() []byte {
			s := newSession("u_1")
			s.CreatedIP = "192.0.2.1"
			b := encodeRecord(s)
			i := bytes.Index(b, []byte{1, 192, 0, 2, 1})
			b[i] = 5
			return b
		}(),
	} {
		if s, err := decodeRecord(b); !errors.Is(err, session.ErrInvalidRecord) {
			t.Errorf("%s: got %v, %v; want ErrInvalidRecord", name, s, err)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(newSession("u_1")))
	s := newSession("u_2")
	s.PrevTokenHash, s.LastIP, s.Data = storetest.NewHash(), "198.51.100.1", []byte(`{}`)
	f.Add(encodeRecord(s))
	s.AMR = []string{session.AMRPassword, session.AMROTP, session.AMRMultiFactor}
	f.Add(encodeRecord(s))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, session.ErrInvalidRecord) {
				t.Fatalf("error %v does not wrap ErrInvalidRecord", err)
			}
			return
		}
		// Whatever decodes encodes to something that decodes the same.
		again, err := decodeRecord(encodeRecord(s))
		if err != nil || !sameSession(again, s) {
			t.Fatalf("re-encoding %+v gave %+v, %v", s, again, err)
		}
	})
}

// TestPointerValue checks the values of pointers: a namespace and slot,
// or a namespace alone (a reservation), and nothing else.
func TestPointerValue(t *testing.T) {
	for _, tt := range []struct {
		ns   uint64
		slot int64
	}{{0, 0}, {1, 1}, {1<<48 - 1, 0}, {1<<48 - 1, 1<<14 - 1}, {12345, 1 << 14}, {1<<48 - 1, 1 << 40}} {
		v := pointerValue(tt.ns, tt.slot)
		if ns, slot, ok := parsePointer(v); !ok || ns != tt.ns || slot != tt.slot {
			t.Errorf("parsePointer(pointerValue(%d, %d) = %q) = %d, %d, %v", tt.ns, tt.slot, v, ns, slot, ok)
		}
		if tt.slot < 1<<14 && strings.ContainsAny(v, ":-") {
			t.Errorf("pointerValue(%d, %d) = %q, want an integer", tt.ns, tt.slot, v)
		}
		r := reservation(tt.ns)
		if ns, slot, ok := parsePointer(r); !ok || ns != tt.ns || slot != -1 {
			t.Errorf("parsePointer(reservation(%d) = %q) = %d, %d, %v", tt.ns, r, ns, slot, ok)
		}
	}
	for _, v := range []string{"", "x", "1:2", "-281474976710657", "4611686018427387904", "99999999999999999999", "16384:281474976710656"} {
		if ns, slot, ok := parsePointer(v); ok {
			t.Errorf("parsePointer(%q) = %d, %d, true; want false", v, ns, slot)
		}
	}
}
