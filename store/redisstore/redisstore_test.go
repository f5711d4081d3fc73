package redisstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/url"
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

// TestStoreOneNamespace runs the conformance suite, and the check that a
// session cannot change users, with every user in one namespace, as users
// whose IDs' hashes collide would be: every script must tell the users'
// sessions apart.
func TestStoreOneNamespace(t *testing.T) {
	t.Parallel()
	one := func(string) uint64 { return 0xc0111de }
	h := harness(func(t *testing.T) *Store {
		st := localStore(t)
		st.nsOf = one
		return st
	})
	h.Shared = func(t *testing.T, st session.Store) session.Store {
		other := openTest(t, withOptions("redis://"+testenv.Redis(t), "prefix", st.(*Store).prefix))
		other.nsOf = one
		return other
	}
	storetest.Run(t, h)

	st := localStore(t)
	st.nsOf = one
	s := newSession("alice")
	storetest.MustCreate(t, st, s)
	moved := s.Clone()
	moved.UserID = "bob"
	if err := st.Update(ctx, moved); err == nil || errors.Is(err, session.ErrNotFound) || errors.Is(err, session.ErrConflict) {
		t.Errorf("Update changing the user within a namespace: got %v, want an error saying a session cannot change user", err)
	}
	storetest.MustCreate(t, st, newSession("bob"))
	if list, err := st.ListByUser(ctx, "alice"); err != nil || len(list) != 1 || list[0].ID != s.ID {
		t.Errorf("ListByUser(alice) beside bob: %v, %v", list, err)
	}
	if gone, err := st.DeleteByUser(ctx, "bob", ""); err != nil || len(gone) != 1 {
		t.Errorf("DeleteByUser(bob): %q, %v", gone, err)
	}
	if _, err := st.ByHash(ctx, s.TokenHash); err != nil {
		t.Errorf("alice's session after bob's were revoked: %v", err)
	}
}

// randID returns a session ID of the size session.Manager gives them (16
// random bytes, longer than storetest.NewID's), so that records weigh what
// real ones do.
func randID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newSession returns a session for userID as a Manager would create it,
// live for an hour.
func newSession(userID string) *session.Session {
	now := time.Now().Truncate(time.Microsecond)
	return &session.Session{
		ID:               randID(),
		TokenHash:        storetest.NewHash(),
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

// pttl returns the time to live of key in milliseconds (-2: no such key).
func pttl(t testing.TB, st *Store, key string) int64 {
	t.Helper()
	n, err := st.c.Do(ctx, st.c.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatalf("PTTL %s: %v", key, err)
	}
	return n
}

// recordKey returns the key of the record of session id of user uid,
// found through the session's ID pointer, or "" if there is none.
func (st *Store) recordKey(uid, id string) string {
	ns, slot, ok, err := st.locate(ctx, id, false)
	if err != nil || !ok || ns != st.namespace(uid) {
		return ""
	}
	return st.slotKey(ns, slot)
}

// TestKeys checks the data model: which keys a session has, that they
// expire with it, and that they go with it.
func TestKeys(t *testing.T) {
	st := localStore(t)
	s := newSession("alice")
	s.PrevTokenHash = storetest.NewHash()
	storetest.MustCreate(t, st, s)
	ns := st.namespace(s.UserID)
	keys := map[string]string{
		"record":          st.slotKey(ns, 0),
		"token pointer":   st.hashKey(s.TokenHash),
		"previous token":  st.hashKey(s.PrevTokenHash),
		"session pointer": st.idKey(s.ID),
	}
	if got := st.recordKey(s.UserID, s.ID); got != keys["record"] {
		t.Errorf("a user's first session is in %q, want slot 0, %q", got, keys["record"])
	}
	checkTTLs := func(when string, want int64) {
		t.Helper()
		for name, k := range keys {
			if ttl := pttl(t, st, k); ttl < want-5000 || ttl > want+1000 {
				t.Errorf("%s: %s key %s: TTL %dms, want about %dms", when, name, k, ttl, want)
			}
		}
	}
	checkTTLs("after Create", time.Until(s.IdleDeadline).Milliseconds())
	countKeys := func() []string {
		var all []string
		scanKeys(t, st, func(_ string, _ rueidis.Client, k string) { all = append(all, k) })
		return all
	}
	if all := countKeys(); len(all) != len(keys) {
		t.Errorf("the session has keys %q, want the %d above (no index for a user's only session)", all, len(keys))
	}
	// Pointers hold integers, which Redis keeps in the key's object.
	for _, k := range []string{keys["token pointer"], keys["session pointer"]} {
		if enc, err := st.c.Do(ctx, st.c.B().ObjectEncoding().Key(k).Build()).ToString(); err != nil || enc != "int" {
			t.Errorf("OBJECT ENCODING %s: %q, %v; want int", k, enc, err)
		}
	}

	// A second session takes slot 1, which the index marks.
	s2 := newSession("alice")
	storetest.MustCreate(t, st, s2)
	keys["second record"] = st.slotKey(ns, 1)
	keys["index"] = st.indexKey(ns)
	if got := st.recordKey(s2.UserID, s2.ID); got != keys["second record"] {
		t.Errorf("the second session is in %q, want %q", got, keys["second record"])
	}
	if n, err := st.c.Do(ctx, st.c.B().Getbit().Key(keys["index"]).Offset(1).Build()).AsInt64(); err != nil || n != 1 {
		t.Errorf("GETBIT index 1: %d, %v; want 1", n, err)
	}
	// Every key of a user is in one Cluster slot.
	if a, b, c := keySlot(keys["record"]), keySlot(keys["second record"]), keySlot(keys["index"]); a != b || a != c {
		t.Errorf("record, record and index keys are in slots %d, %d and %d", a, b, c)
	}

	// Touch extends every key.
	later := time.Now().Add(50 * time.Minute).Truncate(time.Microsecond)
	for _, id := range []string{s.ID, s2.ID} {
		if err := st.Touch(ctx, id, session.TouchInfo{At: time.Now(), IP: "192.0.2.9", UserAgent: "x", IdleDeadline: later}); err != nil {
			t.Fatal(err)
		}
	}
	delete(keys, "second record")
	checkTTLs("after Touch", time.Until(later).Milliseconds())

	// Rotation: the pointer of the hash that left goes, the new one comes.
	old := s.PrevTokenHash
	s.PrevTokenHash, s.TokenHash = s.TokenHash, storetest.NewHash()
	if err := st.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	if ttl := pttl(t, st, st.hashKey(old)); ttl != -2 {
		t.Errorf("the pointer of a hash the session no longer has is still there (TTL %d)", ttl)
	}
	if ttl := pttl(t, st, st.hashKey(s.TokenHash)); ttl < time.Until(later).Milliseconds()-5000 {
		t.Errorf("the new token's pointer has TTL %dms, want at least the record's", ttl)
	}

	for _, id := range []string{s.ID, s2.ID} {
		if err := st.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if all := countKeys(); len(all) != 0 {
		t.Errorf("after Delete these keys remain: %q", all)
	}
}

// TestKeySlot checks keySlot against the slots rueidis routes commands by.
func TestKeySlot(t *testing.T) {
	var b rueidis.Builder
	if c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{testenv.Redis(t)}, ForceSingleClient: true, DisableCache: true}); err == nil {
		b = c.B()
		defer c.Close()
	} else {
		t.Fatal(err)
	}
	for _, key := range []string{"", "a", "foo", "{user1000}.following", "{}x", "x{}{y}", "sessiond:{0123456789ab}1z", "sessiond:hAAAAAAAAAAAAAAAA", "{a", "a}b{"} {
		cmd := b.Get().Key(key).Build()
		// A client of one server marks its slots with a bit above them.
		if got, want := keySlot(key), cmd.Slot()%clusterSlots; got != want {
			t.Errorf("keySlot(%q) = %d, rueidis routes it to %d", key, got, want)
		}
	}
}

// TestUpdateKeepsUser checks that Update refuses to move a session to
// another user rather than reporting it gone.
func TestUpdateKeepsUser(t *testing.T) {
	st := localStore(t)
	s := newSession("alice")
	storetest.MustCreate(t, st, s)
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

// TestCreateRefusesBadIDs checks that an empty or taken ID is refused,
// without harming the session that has it.
func TestCreateRefusesBadIDs(t *testing.T) {
	st := localStore(t)
	s := newSession("alice")
	s.ID = ""
	if _, err := st.Create(ctx, s, session.Limit{}); err == nil {
		t.Errorf("Create with an empty ID: no error")
	}
	s = newSession("alice")
	storetest.MustCreate(t, st, s)
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
	if list, err := st.ListByUser(ctx, "mallory"); err != nil || len(list) != 0 {
		t.Errorf("mallory holds %d sessions after the refused Create, %v", len(list), err)
	}
}

// TestIDsAnyForm checks IDs that are not base64url, which records keep as
// they are.
func TestIDsAnyForm(t *testing.T) {
	st := localStore(t)
	for _, id := range []string{"a}b{c", "x", "with space", "AAAA=", strings.Repeat("é", 100)} {
		s := newSession("alice")
		s.ID = id
		storetest.MustCreate(t, st, s)
		if got, err := st.ByID(ctx, id); err != nil || got.ID != id {
			t.Errorf("ByID(%q): %+v, %v", id, got, err)
		}
		if got, err := st.ByHash(ctx, s.TokenHash); err != nil || got.ID != id {
			t.Errorf("ByHash of session %q: %+v, %v", id, got, err)
		}
	}
	if gone, err := st.DeleteByUser(ctx, "alice", "x"); err != nil || len(gone) != 4 {
		t.Errorf("DeleteByUser except x: %q, %v", gone, err)
	}
	if list, err := st.ListByUser(ctx, "alice"); err != nil || len(list) != 1 || list[0].ID != "x" {
		t.Errorf("ListByUser after: %v, %v", list, err)
	}
}

// TestCorruptRecord checks that a record the store cannot decode is an
// invalid session (ErrInvalidRecord), not a valid one nor a store failure.
func TestCorruptRecord(t *testing.T) {
	st := localStore(t)
	s := newSession("alice")
	storetest.MustCreate(t, st, s)
	rk := st.recordKey(s.UserID, s.ID)
	if err := st.c.Do(ctx, st.c.B().Set().Key(rk).Value("garbage").Keepttl().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"ByHash": func() error { _, err := st.ByHash(ctx, s.TokenHash); return err },
		"ByID":   func() error { _, err := st.ByID(ctx, s.ID); return err },
		"List":   func() error { _, err := st.ListByUser(ctx, s.UserID); return err },
		"Touch": func() error {
			return st.Touch(ctx, s.ID, session.TouchInfo{At: time.Now(), IdleDeadline: time.Now().Add(time.Hour)})
		},
		"Update": func() error { return st.Update(ctx, s) },
	} {
		if err := f(); !errors.Is(err, session.ErrInvalidRecord) {
			t.Errorf("%s of a corrupt record: got %v, want ErrInvalidRecord", name, err)
		}
	}
	if err := st.Delete(ctx, s.ID); err != nil {
		t.Errorf("Delete of a corrupt record: %v", err)
	}
}

// TestUnfinishedCreate checks a session whose ID pointer does not have its
// slot yet, as a Create that stopped after the record leaves it: ByID,
// Touch, Update and Delete find the record by searching the namespace.
func TestUnfinishedCreate(t *testing.T) {
	st := localStore(t)
	storetest.MustCreate(t, st, newSession("alice")) // slot 0
	s := newSession("alice")
	storetest.MustCreate(t, st, s) // slot 1
	ns := st.namespace(s.UserID)
	if err := st.c.Do(ctx, st.c.B().Set().Key(st.idKey(s.ID)).Value(reservation(ns)).Keepttl().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if got, err := st.ByID(ctx, s.ID); err != nil || got.ID != s.ID {
		t.Fatalf("ByID: %+v, %v", got, err)
	}
	later := time.Now().Add(time.Minute).Truncate(time.Microsecond)
	if err := st.Touch(ctx, s.ID, session.TouchInfo{At: later, IP: "198.51.100.1", IdleDeadline: later.Add(time.Hour)}); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	s.Roles = []string{"changed"}
	if err := st.Update(ctx, s); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got, err := st.ByHash(ctx, s.TokenHash); err != nil || !got.LastSeenAt.Equal(later) || got.Roles[0] != "changed" {
		t.Fatalf("ByHash: %+v, %v", got, err)
	}
	if err := st.Delete(ctx, s.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := st.ByID(ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ByID after Delete: %v", err)
	}
}

// TestStaleSlots checks that the slots of sessions Redis has expired are
// unmarked and used again, and that those sessions never count against
// the limit.
func TestStaleSlots(t *testing.T) {
	st := localStore(t)
	user := "carol"
	end := time.Now().Add(500 * time.Millisecond)
	for range 3 {
		s := newSession(user)
		s.IdleDeadline = end
		storetest.MustCreate(t, st, s)
	}
	ik := st.indexKey(st.namespace(user))
	if n, err := st.c.Do(ctx, st.c.B().Bitcount().Key(ik).Build()).AsInt64(); (err != nil || n != 2) && time.Now().Before(end) {
		t.Fatalf("the index marks %d slots, %v; want 2 (slots 1 and 2)", n, err)
	}
	time.Sleep(time.Until(end) + 100*time.Millisecond)
	fresh := newSession(user)
	if ev, err := st.Create(ctx, fresh, session.Limit{Max: 1, Reject: true}); err != nil || len(ev) != 0 {
		t.Fatalf("Create with limit 1 after the others expired: evicted %q, %v", ev, err)
	}
	if got := st.recordKey(user, fresh.ID); got != st.slotKey(st.namespace(user), 0) {
		t.Errorf("the new session is in %q, want slot 0", got)
	}
	if ttl := pttl(t, st, ik); ttl != -2 {
		t.Errorf("the index is still there (TTL %d), with no slot marked", ttl)
	}
}

// TestIndexStaysBoundedWithoutLimit checks that a user who keeps making
// sessions without a limit, and never lists them, does not accumulate the
// marks of the expired ones without bound.
func TestIndexStaysBoundedWithoutLimit(t *testing.T) {
	st := localStore(t)
	user := "dave"
	ik := st.indexKey(st.namespace(user))
	end := time.Now().Add(time.Second)
	for range 200 {
		s := newSession(user)
		s.IdleDeadline = end
		storetest.MustCreate(t, st, s)
	}
	if n, _ := st.c.Do(ctx, st.c.B().Bitcount().Key(ik).Build()).AsInt64(); n != 199 && time.Now().Before(end) {
		t.Fatalf("the index marks %d slots, want 199 (the 200 sessions but the one in slot 0)", n)
	}
	time.Sleep(time.Until(end) + 100*time.Millisecond)
	for range 200 {
		storetest.MustCreate(t, st, newSession(user))
	}
	n, err := st.c.Do(ctx, st.c.B().Bitcount().Key(ik).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	if n > 300 {
		t.Errorf("the index marks %d slots for 200 live sessions", n)
	}
	t.Logf("index: %d slots marked for 200 live sessions", n)
}
