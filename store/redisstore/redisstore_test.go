package redisstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

var ctx = context.Background()

// testPrefix returns a key prefix of the test's own, so that tests and
// packages sharing one Redis never see each other's keys.
func testPrefix() string { return "sessiond-test:" + strings.ToLower(rand.Text()[:10]) + ":" }

// withOptions returns base with the query options kv (name, value, …)
// added.
func withOptions(base string, kv ...string) string {
	q := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	sep := "/?"
	if strings.Contains(base, "?") {
		sep = "&"
	} else if strings.Count(base, "/") > 2 {
		sep = "?"
	}
	return base + sep + q.Encode()
}

// openTest opens a Store on url, closes it when the test ends and then
// deletes every key under its prefix.
func openTest(t testing.TB, url string) *Store {
	t.Helper()
	st, err := Open(ctx, url)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	t.Cleanup(func() {
		deleteAll(t, st)
		st.Close()
	})
	return st
}

// localStore opens a Store on the shared test Redis with a prefix of its
// own and the query options kv.
func localStore(t testing.TB, kv ...string) *Store {
	t.Helper()
	return openTest(t, withOptions("redis://"+testenv.Redis(t), append([]string{"prefix", testPrefix()}, kv...)...))
}

// scanKeys calls fn for every key under st's prefix, on every master, with
// the master's address and client.
func scanKeys(t testing.TB, st *Store, fn func(addr string, n rueidis.Client, key string)) {
	t.Helper()
	for addr, n := range st.c.Nodes() {
		var cursor uint64
		for {
			e, err := n.Do(ctx, n.B().Scan().Cursor(cursor).Match(st.prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Fatalf("SCAN: %v", err)
			}
			for _, k := range e.Elements {
				fn(addr, n, k)
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
}

func deleteAll(t testing.TB, st *Store) {
	scanKeys(t, st, func(_ string, n rueidis.Client, key string) {
		n.Do(ctx, n.B().Unlink().Key(key).Build())
	})
}

// rawDump returns every key under st's prefix with its value, as bytes.
func rawDump(t testing.TB, st *Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	scanKeys(t, st, func(_ string, n rueidis.Client, key string) {
		typ, err := n.Do(ctx, n.B().Type().Key(key).Build()).ToString()
		if err != nil {
			t.Fatalf("TYPE %s: %v", key, err)
		}
		var vals []string
		switch typ {
		case "none": // expired since SCAN
		case "string":
			v, err := n.Do(ctx, n.B().Get().Key(key).Build()).ToString()
			if err != nil && !rueidis.IsRedisNil(err) {
				t.Fatalf("GET %s: %v", key, err)
			}
			vals = []string{v}
		case "zset":
			zs, err := n.Do(ctx, n.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Build()).AsZScores()
			if err != nil {
				t.Fatalf("ZRANGE %s: %v", key, err)
			}
			for _, z := range zs {
				vals = append(vals, z.Member, fmt.Sprint(z.Score))
			}
		default:
			t.Fatalf("key %s has type %s, which the store never writes", key, typ)
		}
		buf.WriteString(key + "\n")
		for _, v := range vals {
			buf.WriteString(v + "\n")
		}
	})
	return buf.Bytes()
}

func harness(newStore func(t *testing.T) *Store) storetest.Harness {
	return storetest.Harness{
		New: func(t *testing.T) session.Store { return newStore(t) },
		Raw: func(t *testing.T, st session.Store) []byte { return rawDump(t, st.(*Store)) },
	}
}

func TestStore(t *testing.T) {
	for _, mode := range []CacheMode{CacheFenced, CacheUnsafeUnfenced, CacheOff} {
		t.Run("cache="+string(mode), func(t *testing.T) {
			t.Parallel()
			h := harness(func(t *testing.T) *Store { return localStore(t, "cache", string(mode)) })
			if mode != CacheUnsafeUnfenced { // which serves stale reads across clients, by design
				h.Shared = func(t *testing.T, st session.Store) session.Store {
					return openTest(t, withOptions("redis://"+testenv.Redis(t), "prefix", st.(*Store).prefix, "cache", string(mode)))
				}
			}
			storetest.Run(t, h)
		})
	}
}

func randID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randHash() session.Hash {
	var b [32]byte
	rand.Read(b[:])
	return sha256.Sum256(b[:])
}

// newSession returns a session for userID as a Manager would create it,
// live for an hour.
func newSession(userID string) *session.Session {
	now := time.Now().Truncate(time.Microsecond)
	return &session.Session{
		ID:               randID(),
		TokenHash:        randHash(),
		UserID:           userID,
		Roles:            []string{"user"},
		CreatedAt:        now,
		AuthenticatedAt:  now,
		RotatedAt:        now,
		LastSeenAt:       now,
		IdleDeadline:     now.Add(30 * time.Minute),
		AbsoluteDeadline: now.Add(time.Hour),
		CreatedIP:        "192.0.2.1",
		CreatedUserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		LastIP:           "192.0.2.1",
		LastUserAgent:    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		Version:          1,
	}
}

func mustCreate(t testing.TB, st *Store, s *session.Session) {
	t.Helper()
	if _, err := st.Create(ctx, s, session.Limit{}); err != nil {
		t.Fatalf("Create: %v", err)
	}
}

// pttl returns the time to live of key in milliseconds (-2: no such key).
func pttl(t testing.TB, st *Store, key string) int64 {
	t.Helper()
	n, err := st.c.Do(ctx, st.c.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatalf("PTTL %s: %v", key, err)
	}
	return n
}

// TestKeys checks the data model: which keys a session has, that they
// expire with it, and that they go with it.
func TestKeys(t *testing.T) {
	st := localStore(t)
	s := newSession("alice")
	s.PrevTokenHash = randHash()
	mustCreate(t, st, s)
	keys := map[string]string{
		"record":          st.recordKey(s.UserID, s.ID),
		"index":           st.indexKey(s.UserID),
		"token pointer":   st.hashKey(s.TokenHash),
		"previous token":  st.hashKey(s.PrevTokenHash),
		"session pointer": st.idKey(s.ID),
	}
	want := time.Until(s.IdleDeadline).Milliseconds()
	for name, k := range keys {
		if ttl := pttl(t, st, k); ttl < want-5000 || ttl > want+1000 {
			t.Errorf("%s key %s: TTL %dms, want about %dms (the idle deadline)", name, k, ttl, want)
		}
	}
	var all []string
	scanKeys(t, st, func(_ string, _ rueidis.Client, k string) { all = append(all, k) })
	if len(all) != len(keys) {
		t.Errorf("the session has keys %q, want the %d above", all, len(keys))
	}
	// Every key of a user is in one Cluster slot.
	if a, b := rueidisSlot(keys["record"]), rueidisSlot(keys["index"]); a != b {
		t.Errorf("record and index keys are in slots %d and %d", a, b)
	}

	// Touch extends every key.
	later := time.Now().Add(50 * time.Minute).Truncate(time.Microsecond)
	if err := st.Touch(ctx, s.ID, session.TouchInfo{At: time.Now(), IP: "192.0.2.9", UserAgent: "x", IdleDeadline: later}); err != nil {
		t.Fatal(err)
	}
	want = time.Until(later).Milliseconds()
	for name, k := range keys {
		if ttl := pttl(t, st, k); ttl < want-5000 || ttl > want+1000 {
			t.Errorf("after Touch, %s key: TTL %dms, want about %dms", name, ttl, want)
		}
	}

	// Rotation: the pointer of the hash that left goes, the new one comes.
	old := s.PrevTokenHash
	s.PrevTokenHash, s.TokenHash = s.TokenHash, randHash()
	if err := st.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	if ttl := pttl(t, st, st.hashKey(old)); ttl != -2 {
		t.Errorf("the pointer of a hash the session no longer has is still there (TTL %d)", ttl)
	}
	if ttl := pttl(t, st, st.hashKey(s.TokenHash)); ttl < want-5000 {
		t.Errorf("the new token's pointer has TTL %dms, want at least the record's, about %dms", ttl, want)
	}

	if err := st.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	all = nil
	scanKeys(t, st, func(_ string, _ rueidis.Client, k string) { all = append(all, k) })
	if len(all) != 0 {
		t.Errorf("after Delete these keys remain: %q", all)
	}
}

// rueidisSlot is the Redis Cluster slot of key: CRC16 (XMODEM) of its
// hash tag, or of the whole key if it has none, modulo 16384.
func rueidisSlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for _, c := range []byte(key) {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

// TestUpdateKeepsUser checks that Update refuses to move a session to
// another user rather than reporting it gone.
func TestUpdateKeepsUser(t *testing.T) {
	st := localStore(t)
	s := newSession("alice")
	mustCreate(t, st, s)
	moved := s.Clone()
	moved.UserID = "bob"
	err := st.Update(ctx, moved)
	if err == nil || errors.Is(err, session.ErrNotFound) || errors.Is(err, session.ErrConflict) {
		t.Errorf("Update changing the user: got %v, want an error saying a session cannot change user", err)
	}
	if got, err := st.ByID(ctx, s.ID); err != nil || got.UserID != "alice" {
		t.Errorf("after the refused Update: %v, %v", got, err)
	}
}

// TestCreateRefusesBadIDs checks the IDs that cannot name a key safely,
// and that a taken ID is refused without harming its session.
func TestCreateRefusesBadIDs(t *testing.T) {
	st := localStore(t)
	for _, id := range []string{"", "a}b"} {
		s := newSession("alice")
		s.ID = id
		if _, err := st.Create(ctx, s, session.Limit{}); err == nil {
			t.Errorf("Create with ID %q: no error", id)
		}
	}
	s := newSession("alice")
	mustCreate(t, st, s)
	dup := newSession("mallory")
	dup.ID = s.ID
	if _, err := st.Create(ctx, dup, session.Limit{}); err == nil {
		t.Errorf("Create with a taken ID: no error")
	}
	if _, err := st.ByHash(ctx, dup.TokenHash); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the refused duplicate resolves: %v", err)
	}
	if got, err := st.ByID(ctx, s.ID); err != nil || got.UserID != "alice" || got.TokenHash != s.TokenHash {
		t.Errorf("the original session after a duplicate Create: %+v, %v", got, err)
	}
}

// TestCorruptRecord checks that a record the store cannot decode is an
// invalid session (ErrInvalidRecord), not a valid one nor a store failure.
func TestCorruptRecord(t *testing.T) {
	st := localStore(t)
	s := newSession("alice")
	mustCreate(t, st, s)
	rk := st.recordKey(s.UserID, s.ID)
	if err := st.c.Do(ctx, st.c.B().Set().Key(rk).Value("garbage").Keepttl().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"ByHash": func() error { _, err := st.ByHash(ctx, s.TokenHash); return err },
		"ByID":   func() error { _, err := st.ByID(ctx, s.ID); return err },
		"List":   func() error { _, err := st.ListByUser(ctx, s.UserID); return err },
	} {
		if err := f(); !errors.Is(err, session.ErrInvalidRecord) {
			t.Errorf("%s of a corrupt record: got %v, want ErrInvalidRecord", name, err)
		}
	}
	if err := st.Delete(ctx, s.ID); err != nil {
		t.Errorf("Delete of a corrupt record: %v", err)
	}
}

// TestStaleIndexMembers checks that index entries of sessions Redis has
// expired are removed, and never count against the limit.
func TestStaleIndexMembers(t *testing.T) {
	st := localStore(t)
	user := "carol"
	var ids []string
	for range 3 {
		s := newSession(user)
		s.IdleDeadline = time.Now().Add(150 * time.Millisecond)
		mustCreate(t, st, s)
		ids = append(ids, s.ID)
	}
	time.Sleep(300 * time.Millisecond)
	fresh := newSession(user)
	if ev, err := st.Create(ctx, fresh, session.Limit{Max: 1, Reject: true}); err != nil || len(ev) != 0 {
		t.Fatalf("Create with limit 1 after the others expired: evicted %q, %v", ev, err)
	}
	members, err := st.c.Do(ctx, st.c.B().Zrange().Key(st.indexKey(user)).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(members, []string{fresh.ID}) {
		t.Errorf("index holds %q, want only the live session %q", members, fresh.ID)
	}
}

// TestIndexStaysBoundedWithoutLimit checks that a user who keeps making
// sessions without a limit, and never lists them, does not accumulate the
// index entries of the expired ones without bound.
func TestIndexStaysBoundedWithoutLimit(t *testing.T) {
	st := localStore(t)
	user := "dave"
	for range 200 {
		s := newSession(user)
		s.IdleDeadline = time.Now().Add(100 * time.Millisecond)
		mustCreate(t, st, s)
	}
	if n, _ := st.c.Do(ctx, st.c.B().Zcard().Key(st.indexKey(user)).Build()).AsInt64(); n != 200 {
		t.Fatalf("the index holds %d members, want the 200 sessions", n)
	}
	time.Sleep(200 * time.Millisecond)
	for range 200 {
		mustCreate(t, st, newSession(user))
	}
	n, err := st.c.Do(ctx, st.c.B().Zcard().Key(st.indexKey(user)).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	if n > 300 {
		t.Errorf("the index holds %d members for 200 live sessions", n)
	}
	t.Logf("index: %d members for 200 live sessions", n)
}
