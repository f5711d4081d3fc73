package redisstore

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// BenchmarkByHash resolves tokens of 1000 stored sessions, with each cache
// mode: off (two reads from Redis: the token pointer, then the record),
// fenced (the default: the pointer and record from the client-side cache
// and one round trip, the fence) and unsafe-unfenced (no round trip).
// The Parallel variants resolve from 32 goroutines per CPU at once, as
// concurrent requests do, which lets rueidis pipeline their commands.
func BenchmarkByHash(b *testing.B) {
	const n = 1000
	for _, mode := range []CacheMode{CacheOff, CacheFenced, CacheUnsafeUnfenced} {
		st := localStore(b, "cache", string(mode))
		hashes := storedHashes(b, st, n)
		b.Run("cache="+string(mode), func(b *testing.B) { lookUp(b, st, hashes) })
		b.Run("cache="+string(mode)+"/Parallel", func(b *testing.B) { lookUpParallel(b, st, hashes) })
	}
}

// storedHashes stores n sessions in st and returns their token hashes,
// each looked up once (which fills a client-side cache).
func storedHashes(b *testing.B, st *Store, n int) []session.Hash {
	b.Helper()
	hashes := make([]session.Hash, n)
	for i := range hashes {
		s := newSession("bench-" + randID())
		storetest.MustCreate(b, st, s)
		hashes[i] = s.TokenHash
	}
	for _, h := range hashes {
		if _, err := st.ByHash(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
	return hashes
}

// lookUp resolves the hashes in turn, b.N of them.
func lookUp(b *testing.B, st *Store, hashes []session.Hash) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := st.ByHash(ctx, hashes[i%len(hashes)]); err != nil {
			b.Fatal(err)
		}
	}
}

// lookUpParallel is lookUp from 32 goroutines per CPU at once, like many
// concurrent requests.
func lookUpParallel(b *testing.B, st *Store, hashes []session.Hash) {
	b.ReportAllocs()
	b.SetParallelism(32)
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := st.ByHash(ctx, hashes[next.Add(1)%int64(len(hashes))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCreate measures Create without a limit and with the default
// limit of 100 sessions per user (5 live sessions each).
func BenchmarkCreate(b *testing.B) {
	st := localStore(b)
	for _, lim := range []session.Limit{{}, {Max: 100}} {
		name := "NoLimit"
		if lim.Max > 0 {
			name = "Limit"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			user := ""
			for b.Loop() {
				if i%5 == 0 {
					user = "bench-" + randID()
				}
				i++
				if _, err := st.Create(ctx, newSession(user), lim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTouch measures Touch, which the Manager calls at most once per
// touch interval per session.
func BenchmarkTouch(b *testing.B) {
	st := localStore(b)
	s := newSession("bench-" + randID())
	storetest.MustCreate(b, st, s)
	t := session.TouchInfo{At: s.LastSeenAt, IP: "192.0.2.1", UserAgent: s.LastUserAgent, IdleDeadline: s.IdleDeadline}
	b.ReportAllocs()
	for b.Loop() {
		t.At = t.At.Add(1000)
		t.IdleDeadline = t.IdleDeadline.Add(1000)
		if err := st.Touch(ctx, s.ID, t); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkByHashCommands resolves tokens of 1000 sessions in the fenced
// cache mode on a Redis of its own, so that its INFO counts only these
// lookups, and reports the Redis commands each lookup costs (cmds/op: all
// of them; pttl/op: the fences), serially and from 32 goroutines per CPU.
// A fence serves every lookup of the next 20ms (see "Fence leases" in
// docs/stores/redis.md), so pttl/op is about 10ms's worth of lookups
// less than 1.
func BenchmarkByHashCommands(b *testing.B) {
	const n = 1000
	srv := testenv.StartRedis(b)
	st := openTest(b, withOptions("redis://"+srv.Addr(), "prefix", testPrefix(), "cache", string(CacheFenced)))
	hashes := storedHashes(b, st, n)
	report := func(b *testing.B, run func()) {
		b.Helper()
		total0, pttl0 := commandCounts(b, srv.Addr())
		run()
		total1, pttl1 := commandCounts(b, srv.Addr())
		b.ReportMetric(float64(total1-total0-1)/float64(b.N), "cmds/op") // less the first INFO
		b.ReportMetric(float64(pttl1-pttl0)/float64(b.N), "pttl/op")
	}
	b.Run("Serial", func(b *testing.B) { report(b, func() { lookUp(b, st, hashes) }) })
	b.Run("Parallel", func(b *testing.B) { report(b, func() { lookUpParallel(b, st, hashes) }) })
}

// commandCounts returns how many commands the Redis at addr has run, and
// how many of them were PTTL, from INFO commandstats.
func commandCounts(t testing.TB, addr string) (total, pttl int64) {
	t.Helper()
	info, err := testenv.RedisReply(addr, "INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		c, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			t.Fatalf("INFO commandstats: %q", line)
		}
		total += c
		if name == "cmdstat_pttl" {
			pttl = c
		}
	}
	return total, pttl
}
